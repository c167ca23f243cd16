//! Live reconfiguration of a running berth: `POST /api/reload` and `server.watch_config` apply
//! the difference of a rewritten file (new backends start, removed ones stop, changed ones
//! restart, unchanged ones and their sessions are not touched, users and hosts apply to the
//! next request), refuse an invalid file or one that needs a restart with the line and field,
//! and twenty reloads under load fail no call and leak no process or container; an admin's
//! `POST /api/backends/{name}/start|stop|restart` swap a backend the same way.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    admin::admin_json,
    harness::{Berth, PASSWORD, USER, alice, basic, containers_with, docker_ready, fixture_binary, http, unique_name},
    process::tagged_processes,
    raw::{RawSession, post_raw},
    requests::{initialize, initialize_status_as},
    wait::wait_until,
};

/// Alice, an admin, and the admin listener; then `rest`.
fn config(rest: &str) -> String {
    format!(
        "[[auth.users]]\nname = \"{USER}\"\npassword = \"{PASSWORD}\"\nadmin = true\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n{rest}"
    )
}

/// A fixture backend `name` whose processes carry `TAG=<tag>` (and `extra` keys).
fn fixture(name: &str, tag: &str, extra: &str) -> String {
    format!(
        "[backends.{name}]\nkind = \"process\"\ncommand = \"{}\"\nenv = {{ TAG = \"{tag}\" }}\n{extra}\n\n",
        fixture_binary().display()
    )
}

/// A berth serving the configuration file `text`, and the file.
async fn serve(text: &str) -> (Berth, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("berth.toml");
    std::fs::write(&file, text).unwrap();
    (Berth::start_file(&file).await, dir, file)
}

/// Writes `text` and asks for a reload: the status and the answer.
async fn reload(berth: &Berth, file: &Path, text: &str) -> (StatusCode, Value) {
    std::fs::write(file, text).unwrap();
    let response = http().post(berth.admin_url("/api/reload")).header("authorization", alice()).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

fn names(report: &Value, key: &str) -> Vec<String> {
    let mut names: Vec<String> = serde_json::from_value(report["reloaded"][key].clone()).unwrap();
    names.sort();
    names
}

/// The value of one series in the admin listener's `/metrics`.
async fn metric(berth: &Berth, series: &str) -> f64 {
    let text = http().get(berth.admin_url("/metrics")).header("authorization", alice()).send().await.unwrap();
    let text = text.text().await.unwrap();
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}

#[tokio::test]
async fn a_reload_starts_stops_and_restarts_what_changed_and_leaves_the_rest_running() {
    let tag = unique_name("reload");
    let (keep, gone, change) = (format!("{tag}-keep"), format!("{tag}-gone"), format!("{tag}-change"));
    let before = config(&format!(
        "{}{}{}",
        fixture("keep", &keep, ""),
        fixture("gone", &gone, "start = \"eager\""),
        fixture("change", &change, "start = \"eager\"\nargs = []")
    ));
    let (berth, _dir, file) = serve(&before).await;
    let kept = RawSession::open(&berth.mcp_url("keep"), json!({})).await;
    let pid = kept.tool("pid", json!({})).await;
    let doomed = RawSession::open(&berth.mcp_url("gone"), json!({})).await;
    let changed = RawSession::open(&berth.mcp_url("change"), json!({})).await;
    assert_eq!(changed.tool("env", json!({"name": "FLAVOUR"})).await, "<unset>");
    assert_eq!(tagged_processes(&format!("TAG={gone}")).len(), 1);

    let after = config(&format!(
        "{}{}{}",
        fixture("keep", &keep, ""),
        fixture("change", &change, "start = \"eager\"\nargs = []")
            .replace(&format!("TAG = \"{change}\""), &format!("TAG = \"{change}\", FLAVOUR = \"new\"")),
        "[backends.fresh]\nkind = \"native\"\nservice = \"conformance\"\n"
    ));
    let (status, report) = reload(&berth, &file, &after).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(names(&report, "added"), ["fresh"]);
    assert_eq!(names(&report, "removed"), ["gone"]);
    assert_eq!(names(&report, "restarted"), ["change"]);
    assert_eq!(names(&report, "unchanged"), ["keep"]);

    // The unchanged backend's session goes on, on the same process.
    assert_eq!(kept.tool("pid", json!({})).await, pid, "the unchanged backend was not restarted");
    // The removed backend is gone, its process stopped and its session with it.
    wait_until("the removed backend's process stops", || tagged_processes(&format!("TAG={gone}")).is_empty()).await;
    assert_eq!(initialize_status_as(&berth.mcp_url("gone"), &alice(), None).await, StatusCode::NOT_FOUND);
    let (status, _) =
        post_raw(&doomed.url, Some((&doomed.id, "2025-11-25")), r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The changed one runs the new spec; its old sessions are unknown to it (404).
    let (status, _) =
        post_raw(&changed.url, Some((&changed.id, "2025-11-25")), r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a restarted backend's old session is gone");
    let renewed = RawSession::open(&berth.mcp_url("change"), json!({})).await;
    assert_eq!(renewed.tool("env", json!({"name": "FLAVOUR"})).await, "new");
    wait_until("only the new instance of the changed backend runs", || {
        tagged_processes(&format!("TAG={change}")).len() == 1
    })
    .await;
    // The new one serves.
    assert_eq!(initialize_status_as(&berth.mcp_url("fresh"), &alice(), None).await, StatusCode::OK);
    assert_eq!(metric(&berth, "berth_config_reloads_total{result=\"ok\"}").await, 1.0);
    let backends = admin_json(&berth, "/api/backends").await;
    let listed: Vec<&str> =
        backends["backends"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(listed, ["change", "fresh", "keep"]);
    drop(berth);
    wait_until("berth's shutdown stops every instance", || {
        [&keep, &change].iter().all(|tag| tagged_processes(&format!("TAG={tag}")).is_empty())
    })
    .await;
}

#[tokio::test]
async fn an_invalid_reload_or_one_that_needs_a_restart_changes_nothing_and_says_where() {
    let tag = unique_name("refused");
    let text = config(&format!("[server]\nlisten = \"127.0.0.1:0\"\n\n{}", fixture("fx", &tag, "")));
    let (berth, _dir, file) = serve(&text).await;
    let session = RawSession::open(&berth.mcp_url("fx"), json!({})).await;
    let pid = session.tool("pid", json!({})).await;

    // Not TOML at all: the line is named.
    let (status, answer) = reload(&berth, &file, &format!("{text}\n[backends.oops\n")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"], "invalid_config");
    assert!(answer["line"].as_u64().is_some(), "{answer}");
    // Valid TOML, invalid value: the line and the field.
    let unknown = format!("{text}\n[backends.nat]\nkind = \"native\"\nservice = \"nonesuch\"\n");
    let (status, answer) = reload(&berth, &file, &unknown).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["field"], "backends.nat.service", "{answer}");
    let line = unknown.lines().position(|l| l == "[backends.nat]").unwrap() + 1;
    assert_eq!(answer["line"], line, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("no native service `nonesuch`"), "{answer}");
    // A new listen address needs a restart.
    let moved = text.replace("[server]\nlisten = \"127.0.0.1:0\"", "[server]\nlisten = \"127.0.0.1:1\"");
    let (status, answer) = reload(&berth, &file, &moved).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"], "restart_needed");
    assert_eq!(answer["fields"], json!(["server.listen"]));
    assert!(answer["message"].as_str().unwrap().contains("a restart is needed"), "{answer}");
    // So does the login throttle, which the accept path shares between both listeners.
    let throttled = format!("{text}\n[auth.throttle]\nremembered = 100\n");
    let (status, answer) = reload(&berth, &file, &throttled).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["fields"], json!(["auth.throttle"]));

    // Nothing changed: the same process serves the same session, and nat does not exist.
    assert_eq!(session.tool("pid", json!({})).await, pid);
    assert_eq!(initialize_status_as(&berth.mcp_url("nat"), &alice(), None).await, StatusCode::NOT_FOUND);
    assert_eq!(metric(&berth, "berth_config_reloads_total{result=\"error\"}").await, 4.0);
    assert_eq!(metric(&berth, "berth_config_reloads_total{result=\"ok\"}").await, 0.0);
    // A server setting every backend is built with restarts every backend.
    let keep_alive = text.replace("[server]\n", "[server]\nsse_keep_alive = \"20s\"\n");
    let (status, answer) = reload(&berth, &file, &keep_alive).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["reloaded"]["restarted"], json!(["fx"]), "{answer}");
    // Only POST reloads.
    let response = http().get(berth.admin_url("/api/reload")).header("authorization", alice()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "POST");
    // Only admins reload.
    let response = http().post(berth.admin_url("/api/reload")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_configuration_is_shown_with_its_secrets_redacted() {
    let secret = "s3cr3t-value-never-shown";
    let text = config(&format!(
        "[[auth.users]]\nname = \"hashed\"\npassword_hash = \"$2b$04$abcdefghijklmnopqrstuu5Ijl/2t1t3bf6eBx0i9bwMEu9rAKXMG\"\n\n{}",
        fixture("fx", secret, "")
    ));
    let (berth, _dir, file) = serve(&text).await;
    let response = http().get(berth.admin_url("/api/config")).header("authorization", alice()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let shown: Value = response.json().await.unwrap();
    let body = shown.to_string();
    assert_eq!(shown["file"], file.display().to_string());
    for hidden in [PASSWORD, secret, "$2b$04$"] {
        assert!(!body.contains(hidden), "{hidden} is shown: {body}");
    }
    let config = &shown["config"];
    assert_eq!(config["auth"]["users"][0]["name"], USER);
    assert_eq!(config["auth"]["users"][0]["password"], "[redacted]");
    assert_eq!(config["auth"]["users"][1]["password_hash"], "[redacted]");
    assert_eq!(config["backends"]["fx"]["env"], json!({"TAG": "[redacted]"}), "names only");
    // Defaults are shown too: it is the configuration in effect.
    assert_eq!(config["server"]["max_connections"], 4096);
    assert_eq!(config["server"]["header_read_timeout"], "10s");
    assert!(
        config["server"]["listen"].as_str().unwrap().starts_with("127.0.0.1:")
            || config["server"]["listen"] == "0.0.0.0:8080"
    );
}

#[tokio::test]
async fn watch_config_reloads_when_the_file_changes() {
    let text = config(&format!(
        "[server]\nwatch_config = true\n\n{}",
        "[backends.one]\nkind = \"native\"\nservice = \"conformance\"\n"
    ));
    let (berth, _dir, file) = serve(&text).await;
    assert_eq!(initialize_status_as(&berth.mcp_url("two"), &alice(), None).await, StatusCode::NOT_FOUND);
    std::fs::write(&file, format!("{text}\n[backends.two]\nkind = \"native\"\nservice = \"conformance\"\n")).unwrap();
    let url = berth.mcp_url("two");
    crate::wait::wait_until_async("the watched file's new backend serves", || {
        let url = url.clone();
        async move { initialize_status_as(&url, &alice(), None).await == StatusCode::OK }
    })
    .await;
    assert_eq!(metric(&berth, "berth_config_reloads_total{result=\"ok\"}").await, 1.0);
    // A broken write is reported and changes nothing; the next good one applies.
    std::fs::write(&file, "[backends.two\n").unwrap();
    crate::wait::wait_until_async("the broken write is counted", || async {
        metric(&berth, "berth_config_reloads_total{result=\"error\"}").await >= 1.0
    })
    .await;
    assert_eq!(initialize_status_as(&berth.mcp_url("two"), &alice(), None).await, StatusCode::OK);
}

/// Twenty reloads while clients call: each reload adds or removes a backend (a process one, and
/// a docker one when an engine answers), restarts another, swaps a user in or out and changes
/// the public hosts; the sessions on the backends that never change call without one failure,
/// and in the end no instance of the churned backends is left.
#[tokio::test]
async fn twenty_reloads_under_load_fail_no_call_and_leak_nothing() {
    let tag = unique_name("churn");
    let docker = docker_ready(&["fixture"]);
    let steady = format!(
        "{}{}",
        fixture("steady", &format!("{tag}-steady"), ""),
        fixture("steady-solo", &format!("{tag}-solo"), "sharing = \"per-session\"")
    );
    let steady_docker =
        if docker { "[backends.steady-box]\nkind = \"docker\"\nimage = \"berth-test/fixture:dev\"\n\n" } else { "" };
    let version = |n: usize| {
        let hosts = if n.is_multiple_of(2) { "[\"berth.test\"]" } else { "[\"other.test\"]" };
        let user = if n.is_multiple_of(2) { "[[auth.users]]\nname = \"bob\"\npassword = \"bob-pw\"\n\n" } else { "" };
        let churn = if n.is_multiple_of(2) {
            fixture("churn", &format!("{tag}-churn"), "start = \"eager\"")
        } else {
            String::new()
        };
        let churn_box = if docker && n.is_multiple_of(2) {
            "[backends.churn-box]\nkind = \"docker\"\nimage = \"berth-test/fixture:dev\"\nstart = \"eager\"\n\n"
        } else {
            ""
        };
        // Restarted at every reload: its environment changes each time.
        let flip = fixture("flip", &format!("{tag}-flip"), &format!("start = \"eager\"\nargs = [\"{n}\"]"));
        format!(
            // Bob's refusals while he is away would throttle his address (as they should).
            "[server]\npublic_hosts = {hosts}\n\n[auth.throttle]\nenabled = false\n\n{user}{}",
            config(&format!("{steady}{steady_docker}{churn}{churn_box}{flip}"))
        )
    };
    let (berth, _dir, file) = serve(&version(0)).await;
    let mut sessions = vec![
        Arc::new(RawSession::open(&berth.mcp_url("steady"), json!({})).await),
        Arc::new(RawSession::open(&berth.mcp_url("steady-solo"), json!({})).await),
    ];
    if docker {
        sessions.push(Arc::new(RawSession::open(&berth.mcp_url("steady-box"), json!({})).await));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (calls, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(std::sync::Mutex::new(Vec::new())));
    let mut load = Vec::new();
    for (n, session) in sessions.iter().cycle().take(sessions.len() * 2).enumerate() {
        let (session, stop, calls, failures) =
            (Arc::clone(session), Arc::clone(&stop), Arc::clone(&calls), Arc::clone(&failures));
        load.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let text = format!("{n}-{i}");
                let answer = session.tool("echo", json!({"text": text})).await;
                if answer != text {
                    failures.lock().unwrap().push(format!("{}: {answer}", session.url));
                }
                calls.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    for n in 1..=20 {
        let (status, report) = reload(&berth, &file, &version(n)).await;
        assert_eq!(status, StatusCode::OK, "reload {n}: {report}");
        assert_eq!(names(&report, "restarted"), ["flip"], "reload {n}: {report}");
        // Users and hosts apply to the next request.
        let bob = initialize_status_as(&berth.mcp_url("steady"), &basic("bob", "bob-pw"), None).await;
        assert_eq!(bob, if n.is_multiple_of(2) { StatusCode::OK } else { StatusCode::UNAUTHORIZED }, "reload {n}: bob");
        let named = initialize_status_as(&berth.mcp_url("steady"), &alice(), Some("berth.test")).await;
        assert_eq!(named, if n.is_multiple_of(2) { StatusCode::OK } else { StatusCode::FORBIDDEN }, "reload {n}: host");
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{} of {} calls failed: {failures:?}", failures.len(), calls.load(Ordering::Relaxed));
    assert!(calls.load(Ordering::Relaxed) >= 20, "the load ran");
    // After the last (even) reload, churn runs once and flip once; nothing else of theirs is left.
    wait_until("one instance each of the churned backends", || {
        tagged_processes(&format!("TAG={tag}-churn")).len() == 1
            && tagged_processes(&format!("TAG={tag}-flip")).len() == 1
    })
    .await;
    let deployment = format!("berth.deployment={}", berth.deployment);
    if docker {
        let boxes = |backend: &str| {
            containers_with(&format!("berth.backend={backend}"))
                .into_iter()
                .filter(|id| containers_with(&deployment).contains(id))
                .count()
        };
        wait_until("one churn-box container", || boxes("churn-box") == 1).await;
        assert_eq!(boxes("steady-box"), 1, "the steady container was never replaced");
    }
    drop(sessions);
    drop(berth);
    wait_until("no instance outlives berth", || {
        ["churn", "flip", "steady", "solo"].iter().all(|name| tagged_processes(&format!("TAG={tag}-{name}")).is_empty())
    })
    .await;
    if docker {
        wait_until("no container outlives berth", || containers_with(&deployment).is_empty()).await;
    }
}

/// `POST /api/backends/{name}/{action}` as Alice: the status and the answer.
async fn act(berth: &Berth, name: &str, action: &str) -> (StatusCode, Value) {
    let url = berth.admin_url(&format!("/api/backends/{name}/{action}"));
    let response = http().post(url).header("authorization", alice()).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// An admin stops, starts and restarts a process backend (and a docker one when an engine
/// answers): a stop drains the call in flight, stops the instance and refuses requests with
/// `503 backend_stopped`; it stays stopped through a reload; a start serves again; a restart
/// replaces the instance (the old session gets 404); the other backend is never touched.
#[tokio::test]
async fn an_admin_stops_starts_and_restarts_a_backend_and_nothing_else_is_touched() {
    let tag = unique_name("act");
    let (target, other) = (format!("{tag}-target"), format!("{tag}-other"));
    let docker = docker_ready(&["fixture"]);
    let boxed = if docker { "[backends.box]\nkind = \"docker\"\nimage = \"berth-test/fixture:dev\"\n\n" } else { "" };
    let with_stderr = fixture("target", &target, "").replace(" }\n", ", FIXTURE_STDERR = \"hello from target\" }\n");
    let text = config(&format!("{with_stderr}{}{boxed}", fixture("other", &other, "")));
    let (berth, _dir, file) = serve(&text).await;
    let kept = RawSession::open(&berth.mcp_url("other"), json!({})).await;
    let kept_pid = kept.tool("pid", json!({})).await;
    let session = RawSession::open(&berth.mcp_url("target"), json!({})).await;
    let first = session.tool("pid", json!({})).await;
    assert_eq!(admin_json(&berth, "/api/backends/target").await["state"], "running");

    // A stop waits for the call in flight, answers once the process is gone.
    let slow = session.spawn_request(json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "slow", "arguments": {"ms": 700}}}));
    wait_until("the slow call is in flight", || !tagged_processes(&format!("TAG={target}")).is_empty()).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (status, answer) = act(&berth, "target", "stop").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"backend": "target", "action": "stop", "state": "stopped", "changed": true}));
    let slow = slow.await.unwrap();
    assert_eq!(slow["result"]["content"][0]["text"], "slow done", "the call in flight was drained: {slow}");
    assert!(tagged_processes(&format!("TAG={target}")).is_empty(), "the stop answers after the process is gone");
    let view = admin_json(&berth, "/api/backends/target").await;
    assert_eq!((view["state"].clone(), view["ready"].clone()), (json!("stopped"), json!(false)), "{view}");
    assert_eq!(metric(&berth, "berth_backend_ready{backend=\"target\"}").await, 0.0);
    let (status, body) = post_raw(&berth.mcp_url("target"), None, &initialize("2025-11-25").to_string()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body[0]["error"]["data"]["error"], "backend_stopped", "{body:?}");
    // Its stderr lines outlive it, in GET /api/backends/{name}/logs.
    let logs = http().get(berth.admin_url("/api/backends/target/logs")).header("authorization", alice()).send();
    let logs: Value = logs.await.unwrap().json().await.unwrap();
    assert_eq!(logs["backend"], "target");
    assert_eq!(logs["lines"].as_array().unwrap().len(), 1, "one server ran and wrote one line: {logs}");
    assert_eq!(logs["lines"][0]["line"], "hello from target", "{logs}");
    assert!(logs["lines"][0]["at"].as_str().unwrap().ends_with('Z'), "{logs}");
    // Stopping again changes nothing; a reload keeps it stopped.
    assert_eq!(act(&berth, "target", "stop").await.1["changed"], false);
    let (status, report) = reload(&berth, &file, &text).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(admin_json(&berth, "/api/backends/target").await["state"], "stopped");
    assert!(tagged_processes(&format!("TAG={target}")).is_empty(), "a reload does not start a stopped backend");

    // A start serves again, with a new process.
    let (status, answer) = act(&berth, "target", "start").await;
    assert_eq!(
        (status, answer["state"].clone(), answer["changed"].clone()),
        (StatusCode::OK, json!("running"), json!(true))
    );
    let again = RawSession::open(&berth.mcp_url("target"), json!({})).await;
    let second = again.tool("pid", json!({})).await;
    assert_ne!(second, first);
    assert_eq!(act(&berth, "target", "start").await.1["changed"], false);
    // A restart replaces it: the old session has ended.
    let (status, answer) = act(&berth, "target", "restart").await;
    assert_eq!((status, answer["state"].clone()), (StatusCode::OK, json!("running")), "{answer}");
    let (status, _) = post_raw(
        &berth.mcp_url("target"),
        Some(again.headers()),
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the restarted backend's old session is gone");
    let third = RawSession::open(&berth.mcp_url("target"), json!({})).await.tool("pid", json!({})).await;
    assert!(third != second && third != first);
    wait_until("one process of the restarted backend", || tagged_processes(&format!("TAG={target}")).len() == 1).await;

    if docker {
        let deployment = format!("berth.deployment={}", berth.deployment);
        let boxes = || containers_with(&deployment).len();
        let session = RawSession::open(&berth.mcp_url("box"), json!({})).await;
        session.tool("pid", json!({})).await;
        assert_eq!(boxes(), 1);
        assert_eq!(act(&berth, "box", "stop").await.0, StatusCode::OK);
        assert_eq!(boxes(), 0, "the stop answers after the container is gone");
        assert_eq!(act(&berth, "box", "start").await.0, StatusCode::OK);
        RawSession::open(&berth.mcp_url("box"), json!({})).await.tool("pid", json!({})).await;
        assert_eq!(boxes(), 1);
    }

    // Errors: an unknown backend, an unknown action, a GET.
    let logs = http().get(berth.admin_url("/api/backends/nope/logs")).header("authorization", alice()).send();
    assert_eq!(logs.await.unwrap().status(), StatusCode::NOT_FOUND);
    let (status, answer) = act(&berth, "nope", "stop").await;
    assert_eq!((status, answer["error"].clone()), (StatusCode::NOT_FOUND, json!("not_found")), "{answer}");
    let response = http().get(berth.admin_url("/api/backends/target/stop")).header("authorization", alice()).send();
    let response = response.await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "POST");
    assert_eq!(act(&berth, "target", "explode").await.0, StatusCode::METHOD_NOT_ALLOWED);
    // Only admins act.
    let url = berth.admin_url("/api/backends/target/stop");
    assert_eq!(http().post(url).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    // The other backend was never touched.
    assert_eq!(kept.tool("pid", json!({})).await, kept_pid);
    drop(berth);
    wait_until("no instance outlives berth", || {
        [&target, &other].iter().all(|tag| tagged_processes(&format!("TAG={tag}")).is_empty())
    })
    .await;
}

async fn change(berth: &Berth, method: reqwest::Method, name: &str, body: Option<Value>) -> (StatusCode, Value) {
    let url = berth.admin_url(&format!("/api/backends/{name}"));
    let mut request = http().request(method, url).header("authorization", alice());
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// `PUT /api/backends/{name}` makes a backend from a JSON `[backends.<name>]` table, validated
/// as the file is (the same messages, the field named), persisted in `admin.state_file` so that
/// it survives a restart; a `PUT` again replaces it, `DELETE` removes it (its process stops);
/// names of the configuration file cannot be written or deleted.
#[tokio::test]
async fn backends_made_through_the_api_persist_and_the_file_s_own_are_protected() {
    let tag = unique_name("made");
    let text = config(&fixture("fixed", &format!("{tag}-fixed"), "")).replacen(
        "[admin]\n",
        "[admin]\nstate_file = \"state.toml\"\n",
        1,
    );
    let (berth, dir, file) = serve(&text).await;
    let fixture = fixture_binary().display().to_string();
    let made = |text: &str| json!({"kind": "process", "command": fixture, "env": {"TAG": format!("{tag}-made"), "V": format!("{tag}-{text}")}});

    let (status, answer) = change(&berth, reqwest::Method::PUT, "made", Some(made("1"))).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!((answer["backend"].clone(), answer["created"].clone()), (json!("made"), json!(true)), "{answer}");
    assert_eq!(answer["reloaded"]["added"], json!(["made"]), "{answer}");
    let session = RawSession::open(&berth.mcp_url("made"), json!({})).await;
    assert_eq!(session.tool("echo", json!({"text": "made"})).await, "made");
    let state = std::fs::read_to_string(dir.path().join("state.toml")).unwrap();
    assert!(state.starts_with("# Written by berth") && state.contains("[backends.made]"), "{state}");

    // Invalid tables: the validation's own message and field; nothing is written.
    let (status, answer) = change(&berth, reqwest::Method::PUT, "broken", Some(json!({"kind": "process"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["field"], "backends.broken.command", "{answer}");
    let (status, answer) =
        change(&berth, reqwest::Method::PUT, "broken", Some(json!({"kind": "process", "comand": "x"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("comand"), "{answer}");
    let (status, answer) = change(&berth, reqwest::Method::PUT, "broken", Some(json!([1]))).await;
    assert_eq!((status, answer["error"].clone()), (StatusCode::BAD_REQUEST, json!("invalid_body")), "{answer}");
    assert!(!std::fs::read_to_string(dir.path().join("state.toml")).unwrap().contains("broken"));
    assert_eq!(initialize_status_as(&berth.mcp_url("broken"), &alice(), None).await, StatusCode::NOT_FOUND);
    // The file's own backends cannot be written or deleted.
    let (status, answer) = change(&berth, reqwest::Method::PUT, "fixed", Some(made("x"))).await;
    assert_eq!((status, answer["error"].clone()), (StatusCode::CONFLICT, json!("static_backend")), "{answer}");
    let (status, answer) = change(&berth, reqwest::Method::DELETE, "fixed", None).await;
    assert_eq!((status, answer["error"].clone()), (StatusCode::CONFLICT, json!("static_backend")), "{answer}");
    let (status, _) = change(&berth, reqwest::Method::DELETE, "nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A PUT again replaces it (restarted); the backend survives a restart of berth.
    let (status, answer) = change(&berth, reqwest::Method::PUT, "made", Some(made("2"))).await;
    assert_eq!((status, answer["reloaded"]["restarted"].clone()), (StatusCode::OK, json!(["made"])), "{answer}");
    drop(session);
    drop(berth);
    wait_until("berth's processes are gone", || tagged_processes(&format!("TAG={tag}-made")).is_empty()).await;
    let berth = Berth::start_file(&file).await;
    let session = RawSession::open(&berth.mcp_url("made"), json!({})).await;
    assert_eq!(session.tool("echo", json!({"text": "again"})).await, "again");
    assert_eq!(tagged_processes(&format!("V={tag}-2")).len(), 1, "the replaced table runs after the restart");
    // DELETE removes it: its sessions end and its process stops.
    let (status, answer) = change(&berth, reqwest::Method::DELETE, "made", None).await;
    assert_eq!((status, answer["reloaded"]["removed"].clone()), (StatusCode::OK, json!(["made"])), "{answer}");
    assert_eq!(initialize_status_as(&berth.mcp_url("made"), &alice(), None).await, StatusCode::NOT_FOUND);
    wait_until("the deleted backend's process stops", || tagged_processes(&format!("TAG={tag}-made")).is_empty()).await;
    assert!(!std::fs::read_to_string(dir.path().join("state.toml")).unwrap().contains("[backends.made]"));
    drop(berth);
}

/// Without `admin.state_file` the API makes no backends, and says why.
#[tokio::test]
async fn without_a_state_file_no_backend_is_made() {
    let (berth, _dir, _file) = serve(&config(&fixture("fixed", &unique_name("nostate"), ""))).await;
    let (status, answer) =
        change(&berth, reqwest::Method::PUT, "made", Some(json!({"kind": "native", "service": "conformance"}))).await;
    assert_eq!((status, answer["error"].clone()), (StatusCode::CONFLICT, json!("no_state_file")), "{answer}");
}
