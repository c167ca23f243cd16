//! The admin listener: `/metrics` after real traffic through a process backend (values, not
//! only names), who may use it, `metrics_auth = false`, `/api/backends`, and the configuration
//! errors that keep it off the MCP port.

use std::path::Path;

use berth::{Config, Gateway, NativeRegistry};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    harness::{Berth, PASSWORD, USER, alice, basic, config_with, docker_ready, fixture_binary, http},
    raw::RawSession,
    wait::wait_for,
};

/// The fixture as backend `fx` (shared), Alice an admin, Bob an admin by `admin.users`, Carol
/// no admin; `admin` adds keys to `[admin]`.
pub(crate) fn admin_config(admin: &str, extra: &str) -> String {
    let fixture = fixture_binary();
    let users = format!(
        "[[auth.users]]\nname = \"{USER}\"\npassword = \"{PASSWORD}\"\nadmin = true\n\n\
         [[auth.users]]\nname = \"bob\"\npassword = \"bob-pw\"\n\n\
         [[auth.users]]\nname = \"carol\"\npassword = \"carol-pw\"\n\n"
    );
    format!(
        "{users}[admin]\nlisten = \"127.0.0.1:0\"\nusers = [\"bob\"]\n{admin}\n\n\
         [backends.fx]\nkind = \"process\"\ncommand = \"{}\"\n\n{extra}",
        fixture.display()
    )
}

/// The `/metrics` text, scraped as Alice.
pub(crate) async fn scrape(berth: &Berth) -> String {
    let response = http().get(berth.admin_url("/metrics")).header("authorization", alice()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    let text = response.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "OpenMetrics text ends with # EOF");
    text
}

/// The JSON answer of `GET <path>` on the admin listener, asked as Alice.
pub(crate) async fn admin_json(berth: &Berth, path: &str) -> Value {
    let response = http().get(berth.admin_url(path)).header("authorization", alice()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    response.json().await.unwrap()
}

/// The value of the series written exactly as `series` (name and labels), if it is there.
pub(crate) fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn admin_metrics_count_real_traffic_by_value() {
    let berth = Berth::start(&admin_config("", "")).await;
    let url = berth.mcp_url("fx");
    let session = RawSession::open(&url, json!({})).await;
    let tools = session.request(json!(1), "tools/list", json!({})).await;
    assert!(tools["result"]["tools"].as_array().is_some_and(|t| !t.is_empty()), "{tools}");
    for _ in 0..3 {
        assert_eq!(session.tool("echo", json!({"text": "hi"})).await, "hi");
    }
    // A name the backend never listed counts as `other`, whatever the client invents.
    let unknown = session.tool("no-such-tool-42", json!({})).await;
    assert!(unknown.contains("-32602"), "{unknown}");
    // A method nobody knows is `other` too.
    session.request(json!(2), "x/invented", json!({})).await;
    let refused = http().post(&url).header("authorization", basic(USER, "wrong")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    // The MCP port never serves the admin routes.
    let metrics_on_mcp = http().get(berth.url("/metrics")).header("authorization", alice()).send().await.unwrap();
    assert_eq!(metrics_on_mcp.status(), StatusCode::NOT_FOUND);

    let text = scrape(&berth).await;
    let table: &[(&str, f64)] = &[
        ("berth_tool_calls_total{backend=\"fx\",tool=\"echo\",outcome=\"ok\"}", 3.0),
        ("berth_tool_calls_total{backend=\"fx\",tool=\"other\",outcome=\"error\"}", 1.0),
        ("berth_mcp_requests_total{backend=\"fx\",method=\"tools/call\",outcome=\"ok\"}", 3.0),
        ("berth_mcp_requests_total{backend=\"fx\",method=\"tools/call\",outcome=\"error\"}", 1.0),
        ("berth_mcp_requests_total{backend=\"fx\",method=\"tools/list\",outcome=\"ok\"}", 1.0),
        ("berth_mcp_requests_total{backend=\"fx\",method=\"initialize\",outcome=\"ok\"}", 1.0),
        ("berth_mcp_requests_total{backend=\"fx\",method=\"notifications/initialized\",outcome=\"ok\"}", 1.0),
        ("berth_mcp_requests_total{backend=\"fx\",method=\"other\",outcome=\"error\"}", 1.0),
        ("berth_mcp_request_duration_seconds_count{backend=\"fx\",method=\"tools/call\"}", 4.0),
        ("berth_auth_failures_total{reason=\"wrong\"}", 1.0),
        ("berth_http_requests_total{listener=\"mcp\",status=\"401\"}", 1.0),
        ("berth_http_requests_total{listener=\"mcp\",status=\"404\"}", 1.0),
        ("berth_sessions{backend=\"fx\"}", 1.0),
        ("berth_instances{backend=\"fx\",state=\"ready\"}", 1.0),
        ("berth_instances{backend=\"fx\",state=\"down\"}", 0.0),
        ("berth_backend_ready{backend=\"fx\"}", 1.0),
        ("berth_instance_restarts_total{backend=\"fx\"}", 0.0),
        ("berth_instance_start_seconds_count{backend=\"fx\"}", 1.0),
        ("berth_config_reloads_total{result=\"ok\"}", 0.0),
        ("berth_config_reloads_total{result=\"error\"}", 0.0),
        ("berth_audit_dropped_total", 0.0),
        ("berth_build_info{version=\"0.1.0\"}", 1.0),
    ];
    for (series, expected) in table {
        assert_eq!(value(&text, series), Some(*expected), "{series} in\n{text}");
    }
    // berth's handshake, then initialized, tools/list, 4 calls and the invented method, at least.
    let to_server = value(&text, "berth_stdio_messages_total{backend=\"fx\",direction=\"to_server\"}").unwrap();
    let from_server = value(&text, "berth_stdio_messages_total{backend=\"fx\",direction=\"from_server\"}").unwrap();
    assert!(to_server >= 8.0 && from_server >= 7.0, "{to_server} {from_server}");
    // No user name or session id is ever a label.
    assert!(!text.contains(USER) && !text.contains(&session.id), "{text}");
    // A successful 200 counts on the MCP listener (the scrape itself on the admin one).
    assert!(value(&text, "berth_http_requests_total{listener=\"mcp\",status=\"200\"}").unwrap() >= 6.0);
    assert_eq!(value(&scrape(&berth).await, "berth_http_requests_total{listener=\"admin\",status=\"200\"}"), Some(1.0));
}

#[tokio::test]
async fn admin_access_is_for_admin_users_only() {
    let berth = Berth::start(&admin_config("", "")).await;
    let carol = basic("carol", "carol-pw");
    let bob = basic("bob", "bob-pw");
    let alice = alice();
    let wrong = basic(USER, "nope");
    let table: &[(&str, Option<&str>, u16)] = &[
        ("/metrics", Some(&alice), 200),
        ("/metrics", Some(&bob), 200),
        ("/api/backends", Some(&alice), 200),
        ("/api/backends", Some(&bob), 200),
        // A user who may use MCP but is no admin is refused as a wrong password is.
        ("/metrics", Some(&carol), 401),
        ("/api/backends", Some(&carol), 401),
        ("/metrics", Some(&wrong), 401),
        ("/metrics", None, 401),
        ("/api/backends", None, 401),
    ];
    for (path, authorization, status) in table {
        let mut request = http().get(berth.admin_url(path));
        if let Some(authorization) = authorization {
            request = request.header("authorization", *authorization);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), *status, "{path} as {authorization:?}");
        if *status == 401 {
            assert_eq!(response.headers()["www-authenticate"], "Basic realm=\"berth\", charset=\"UTF-8\"");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"], "unauthorized", "{body}");
        }
    }
    // Carol still uses MCP: admin rights are for the admin listener only.
    RawSession::open(&berth.mcp_url("fx"), json!({})).await;
    let text = scrape(&berth).await;
    assert_eq!(value(&text, "berth_auth_failures_total{reason=\"wrong\"}"), Some(3.0), "{text}");
    assert_eq!(value(&text, "berth_auth_failures_total{reason=\"missing\"}"), Some(2.0), "{text}");
    assert_eq!(value(&text, "berth_http_requests_total{listener=\"admin\",status=\"401\"}"), Some(5.0), "{text}");
}

#[tokio::test]
async fn admin_metrics_auth_false_opens_metrics_alone() {
    let berth = Berth::start(&admin_config("metrics_auth = false", "")).await;
    let metrics = http().get(berth.admin_url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    assert!(metrics.text().await.unwrap().contains("berth_build_info"));
    let api = http().get(berth.admin_url("/api/backends")).send().await.unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn admin_api_lists_backends_with_json_errors() {
    let berth = Berth::start(&admin_config("", "[backends.conformance]\nkind = \"native\"\n")).await;
    let session = RawSession::open(&berth.mcp_url("fx"), json!({})).await;
    let get = |path: &str| http().get(berth.admin_url(path)).header("authorization", alice()).send();
    let list: Value = get("/api/backends").await.unwrap().json().await.unwrap();
    let names: Vec<&str> = list["backends"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["conformance", "fx"]);
    let fx: Value = get("/api/backends/fx").await.unwrap().json().await.unwrap();
    assert_eq!(fx["kind"], "process", "{fx}");
    assert_eq!(fx["ready"], true, "{fx}");
    assert_eq!(fx["sessions"], 1, "{fx}");
    assert_eq!(fx["restarts"], 0, "{fx}");
    assert_eq!(fx["last_error"], Value::Null, "{fx}");
    let pid: u32 = session.tool("pid", json!({})).await.parse().unwrap();
    let instance = &fx["instances"][0];
    assert_eq!(fx["instances"].as_array().unwrap().len(), 1, "{fx}");
    assert_eq!((&instance["role"], &instance["state"]), (&json!("shared"), &json!("ready")), "{fx}");
    assert_eq!(instance["pid"], pid, "the instance's pid is the server's: {fx}");
    assert!(instance["started_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{fx}");
    assert_eq!((&instance["restarts"], &instance["last_exit"]), (&json!(0), &Value::Null), "{fx}");
    let native: Value = get("/api/backends/conformance").await.unwrap().json().await.unwrap();
    assert_eq!(native["kind"], "native", "{native}");
    // A crash shows as a restart and the last error.
    session.tool("crash", json!({})).await;
    let crashed = wait_for("the crash shows in /api/backends/fx", || async {
        let fx: Value = get("/api/backends/fx").await.ok()?.json().await.ok()?;
        (fx["restarts"] == 1).then_some(fx)
    })
    .await;
    assert!(crashed["last_error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{crashed}");
    assert!(crashed["last_error"]["at"].as_str().is_some_and(|t| t.ends_with('Z')), "{crashed}");
    let instance = wait_for("the instance runs again", || async {
        let fx: Value = get("/api/backends/fx").await.ok()?.json().await.ok()?;
        let instance = fx["instances"][0].clone();
        (instance["state"] == "ready").then_some(instance)
    })
    .await;
    assert_eq!(instance["restarts"], 1, "{instance}");
    // The crash is seen as the exit or as the end of stdout, whichever berth notices first.
    assert!(instance["last_exit"].as_str().is_some_and(|m| m.contains("backend `fx`")), "{instance}");
    assert!(instance["pid"].as_u64().is_some_and(|new| new != u64::from(pid)), "a new process: {instance}");
    let text = scrape(&berth).await;
    assert_eq!(value(&text, "berth_instance_restarts_total{backend=\"fx\"}"), Some(1.0), "{text}");
    let errors =
        [("/api/backends/nope", 404, "not_found"), ("/api/nothing", 404, "not_found"), ("/nothing", 404, "not_found")];
    for (path, status, slug) in errors {
        let response = get(path).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], slug, "{path}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{path}: {body}");
    }
    let post = http().post(berth.admin_url("/api/backends")).header("authorization", alice()).send().await.unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.headers()["allow"], "GET");
}

#[test]
fn admin_config_errors_name_the_line() {
    let users = format!("[[auth.users]]\nname = \"{USER}\"\npassword = \"{PASSWORD}\"\n");
    let table = [
        (
            format!("{users}[server]\nlisten = \"127.0.0.1:8080\"\n[admin]\nlisten = \"127.0.0.1:8080\"\n"),
            "test.toml:7: `admin.listen`: the admin listener 127.0.0.1:8080 must not be the MCP listener",
        ),
        (
            format!("{users}[server]\nlisten = \"0.0.0.0:8080\"\n[admin]\nlisten = \"127.0.0.1:8080\"\n"),
            "test.toml:7: `admin.listen`",
        ),
        (
            format!("{users}admin = true\n[admin]\nlisten = \"127.0.0.1:0\"\nusers = [\n  \"nobody\",\n]\n"),
            "test.toml:8: `admin.users`: no user `nobody`",
        ),
        (format!("{users}[admin]\nlisten = \"127.0.0.1:0\"\n"), "test.toml:5: `admin.listen`: no admin users"),
        ("auth = \"none\"\n[admin]\nlisten = \"127.0.0.1:0\"\n".to_string(), "test.toml:3: `admin.listen`"),
        (
            format!("{users}[audit]\nfile = \"stderr\"\nmax_size = \"10m\"\n"),
            "test.toml:6: `audit.max_size`: standard error cannot be rotated",
        ),
    ];
    for (text, expected) in table {
        let error = Config::parse(&text, Some(Path::new("test.toml")))
            .and_then(|config| Gateway::build_with_env(&config, &NativeRegistry::builtin(), &|_| None).map(|_| ()))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with(expected), "{text:?} gave {error}");
    }
    // config_with is the harness's configuration: it has no [admin], and must stay valid.
    Config::parse(&config_with(""), Some(Path::new("test.toml"))).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_metrics_count_docker_per_session_instances() {
    if !docker_ready(&["fixture"]) {
        return;
    }
    let docker = "[backends.fxd]\nkind = \"docker\"\nimage = \"berth-test/fixture:dev\"\nsharing = \"per-session\"\n";
    let berth = Berth::start(&admin_config("", docker)).await;
    let session = RawSession::open(&berth.mcp_url("fxd"), json!({})).await;
    session.request(json!(1), "tools/list", json!({})).await;
    for _ in 0..2 {
        assert_eq!(session.tool("echo", json!({"text": "in a container"})).await, "in a container");
    }
    let text = scrape(&berth).await;
    let table: &[(&str, f64)] = &[
        ("berth_tool_calls_total{backend=\"fxd\",tool=\"echo\",outcome=\"ok\"}", 2.0),
        ("berth_sessions{backend=\"fxd\"}", 1.0),
        ("berth_instances{backend=\"fxd\",state=\"ready\"}", 1.0),
        ("berth_instance_start_seconds_count{backend=\"fxd\"}", 1.0),
        ("berth_backend_ready{backend=\"fxd\"}", 1.0),
    ];
    for (series, expected) in table {
        assert_eq!(value(&text, series), Some(*expected), "{series} in\n{text}");
    }
    let fxd = admin_json(&berth, "/api/backends/fxd").await;
    let instance = &fxd["instances"][0];
    assert_eq!(fxd["instances"].as_array().unwrap().len(), 1, "{fxd}");
    assert_eq!(
        (&fxd["kind"], &instance["role"], &instance["state"]),
        (&json!("docker"), &json!("session"), &json!("ready"))
    );
    let container = instance["container"].as_str().unwrap();
    assert_eq!(container.len(), 12, "{fxd}");
    let running = crate::harness::containers_with("berth.backend=fxd");
    assert!(running.iter().any(|id| id.starts_with(container)), "{container} is one of {running:?}");
    assert_eq!(instance["pid"], Value::Null, "{fxd}");
    assert_eq!(session.delete().await, StatusCode::OK);
    wait_for("the session's instance is gone from the gauges", || async {
        let text = scrape(&berth).await;
        (value(&text, "berth_instances{backend=\"fxd\",state=\"ready\"}") == Some(0.0)).then_some(())
    })
    .await;
    berth.stop().await;
}

/// `POST /api/backends/{name}/call` as Alice: the status and the answer.
async fn call(berth: &Berth, backend: &str, body: &str) -> (StatusCode, Value) {
    let url = berth.admin_url(&format!("/api/backends/{backend}/call"));
    let response = http().post(url).header("authorization", alice()).body(body.to_string()).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// The admin API calls a tool through a session berth opens (and ends) itself, on a stdio and
/// a native backend alike, and answers the tool's result as JSON; bad bodies, unknown tools
/// and unknown backends get JSON errors.
#[tokio::test]
async fn admin_api_calls_a_tool_and_answers_its_result() {
    let berth = Berth::start(&admin_config("", "[backends.conformance]\nkind = \"native\"\n")).await;
    let (status, answer) = call(&berth, "fx", r#"{"tool": "echo", "arguments": {"text": "from the api"}}"#).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["backend"], "fx");
    assert_eq!(answer["tool"], "echo");
    assert_eq!(answer["result"]["content"][0]["text"], "from the api", "{answer}");
    let (status, answer) = call(&berth, "conformance", r#"{"tool": "test_simple_text"}"#).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["result"]["content"][0]["text"], "This is a simple text response for testing.", "{answer}");
    // berth's own sessions are ended: none is left open on the stdio backend.
    let fx = admin_json(&berth, "/api/backends/fx").await;
    assert_eq!(fx["sessions"], 0, "{fx}");
    // A tool the backend does not have: its JSON-RPC error, as a 422.
    let (status, answer) = call(&berth, "fx", r#"{"tool": "no-such-tool"}"#).await;
    assert_eq!((status, answer["error"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!("tool_error")), "{answer}");
    assert!(answer["jsonrpc_error"]["code"].is_i64(), "{answer}");
    // Bodies that are not a call.
    for body in ["", "nope", r#"{"tool": 1}"#, r#"{"tool": "echo", "arguments": "x"}"#, r#"{"tool": "echo", "x": 1}"#] {
        let (status, answer) = call(&berth, "fx", body).await;
        assert_eq!(
            (status, answer["error"].clone()),
            (StatusCode::BAD_REQUEST, json!("invalid_call")),
            "{body}: {answer}"
        );
    }
    let (status, answer) = call(&berth, "nope", r#"{"tool": "echo"}"#).await;
    assert_eq!((status, answer["error"].clone()), (StatusCode::NOT_FOUND, json!("not_found")), "{answer}");
    let response =
        http().get(berth.admin_url("/api/backends/fx/call")).header("authorization", alice()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    // Only admins call.
    let response =
        http().post(berth.admin_url("/api/backends/fx/call")).body(r#"{"tool":"echo"}"#).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// `GET /api/sessions` lists the open sessions of the stdio backends with their user, client
/// and times; `DELETE /api/sessions/{id}` ends one (its client then gets 404) and leaves the
/// others alone.
#[tokio::test]
async fn admin_api_lists_and_ends_sessions() {
    let berth = Berth::start(&admin_config("", "")).await;
    let url = berth.mcp_url("fx");
    let first = RawSession::open(&url, json!({})).await;
    let second = RawSession::open(&url, json!({})).await;
    let get = |path: String| http().get(berth.admin_url(&path)).header("authorization", alice()).send();
    let list: Value = get("/api/sessions".into()).await.unwrap().json().await.unwrap();
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{list}");
    let mut ids: Vec<&str> = sessions.iter().map(|s| s["id"].as_str().unwrap()).collect();
    ids.sort();
    let mut expected = [first.id.as_str(), second.id.as_str()];
    expected.sort();
    assert_eq!(ids, expected);
    let one: Value = get(format!("/api/sessions/{}", first.id)).await.unwrap().json().await.unwrap();
    assert_eq!(one["backend"], "fx", "{one}");
    assert_eq!(one["user"], USER, "{one}");
    assert_eq!(one["client"], json!({"name": "berth-tests", "version": "1"}), "{one}");
    assert_eq!(one["protocol_version"], first.version, "{one}");
    assert_eq!(one["instance"], "shared", "{one}");
    assert!(one["created"].as_str().unwrap() <= one["last_seen"].as_str().unwrap(), "{one}");

    let delete = |id: String| {
        http().delete(berth.admin_url(&format!("/api/sessions/{id}"))).header("authorization", alice()).send()
    };
    let ended = delete(first.id.clone()).await.unwrap();
    assert_eq!(ended.status(), StatusCode::OK);
    assert_eq!(ended.json::<Value>().await.unwrap(), json!({"ended": first.id, "backend": "fx"}));
    let (status, _) = crate::raw::post_raw(
        &url,
        Some(first.headers()),
        &json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the ended session is gone for its client");
    assert_eq!(second.tool("echo", json!({"text": "still here"})).await, "still here");
    assert_eq!(delete(first.id.clone()).await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(get(format!("/api/sessions/{}", first.id)).await.unwrap().status(), StatusCode::NOT_FOUND);
    let list: Value = get("/api/sessions".into()).await.unwrap().json().await.unwrap();
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1, "{list}");
    let put =
        http().put(berth.admin_url(&format!("/api/sessions/{}", second.id))).header("authorization", alice()).send();
    let put = put.await.unwrap();
    assert_eq!(put.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(put.headers()["allow"], "GET, DELETE");
    let anonymous = http().delete(berth.admin_url(&format!("/api/sessions/{}", second.id))).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

/// A browser's request from another site cannot change anything (its cached credentials would
/// otherwise let any page stop a backend); reads and requests without browser headers pass.
#[tokio::test]
async fn admin_changes_from_another_site_are_refused() {
    let berth = Berth::start(&admin_config("", "")).await;
    let url = berth.admin_url("/api/backends/fx/restart");
    let post = |headers: &[(&str, &str)]| {
        let mut request = http().post(&url).header("authorization", alice());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    for headers in [
        &[("origin", "https://evil.example")][..],
        &[("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "same-site"), ("origin", "http://other.localhost")],
    ] {
        let response = post(headers).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{headers:?}");
        assert_eq!(response.json::<Value>().await.unwrap()["error"], "cross_site");
    }
    let host = berth.admin_url("").trim_start_matches("http://").to_string();
    let own = format!("http://{host}");
    let response = post(&[("origin", own.as_str()), ("sec-fetch-site", "same-origin")]).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the page's own origin may");
    assert_eq!(post(&[]).await.unwrap().status(), StatusCode::OK, "curl may");
    let read = http()
        .get(berth.admin_url("/api/backends"))
        .header("authorization", alice())
        .header("sec-fetch-site", "cross-site");
    assert_eq!(read.send().await.unwrap().status(), StatusCode::OK, "reads are not changes");
}
