//! Stdio backends run as local processes, in both sharing modes, against berth's raw
//! JSON-RPC fixture (`berth-fixture-stdio`): pass-through of what berth does not know, server
//! requests, progress, isolation of concurrent sessions, crashes, timeouts, limits, leaks.

use std::{collections::HashSet, time::Duration};

use reqwest::StatusCode;
use serde_json::json;

use crate::{
    harness::{Berth, FIXTURE_ROUTES, config_with, fixture_config, http},
    process::{children, is_alive},
    raw::{RawSession, churn_sessions},
    wait::{wait_until, wait_until_async},
};

#[tokio::test]
async fn unknown_fields_and_methods_pass_through() {
    let berth = Berth::start(&fixture_config("")).await;
    for backend in FIXTURE_ROUTES {
        let session = RawSession::open(&berth.mcp_url(backend), json!({})).await;
        assert_eq!(session.init["result"]["x-extra-init"], "kept", "{backend}: {}", session.init);
        assert!(session.init["result"]["capabilities"]["x-custom-capability"].is_object());
        let custom = session.request(json!("c1"), "x/echo", json!({"a": 1, "x-extra-param": [true]})).await;
        assert_eq!(custom["id"], "c1");
        assert_eq!(custom["result"]["echo"], json!({"a": 1, "x-extra-param": [true]}), "{backend}: {custom}");
        assert_eq!(custom["result"]["x-extra"], "from the server");
        assert_eq!(custom["x-extra-envelope"], 1, "{backend}: unknown envelope fields are kept");
        let echo = session.request(json!(7), "tools/call", json!({"name": "echo", "arguments": {"text": "hi"}})).await;
        assert_eq!(echo["result"]["x-extra-result"], json!({"nested": [1, 2, 3]}));
        assert_eq!(echo["result"]["content"][0]["x-extra-content"], true);
        let mut stream = session.listen().await;
        assert_eq!(session.tool("notify", json!({})).await, "notified");
        let first = stream.next().await.unwrap();
        assert_eq!(first["method"], "notifications/x-custom", "{backend}: {first}");
        assert_eq!(first["params"]["x-extra"], 42);
        assert_eq!(stream.next().await.unwrap()["method"], "notifications/tools/list_changed");
        let missing = session.request(json!(8), "no/such/method", json!({})).await;
        assert_eq!(missing["error"]["code"], -32601);
        assert_eq!(session.delete().await, StatusCode::OK);
    }
    berth.stop().await;
}

#[tokio::test]
async fn server_requests_reach_the_client_and_come_back() {
    let berth = Berth::start(&fixture_config("")).await;
    for backend in FIXTURE_ROUTES {
        let session = RawSession::open(&berth.mcp_url(backend), json!({"sampling": {}})).await;
        for method in ["sampling/createMessage", "x/custom-server-request"] {
            let call = json!({"jsonrpc": "2.0", "id": "q", "method": "tools/call",
                "params": {"name": "ask", "arguments": {"method": method}}});
            let mut stream = session.send(call).await;
            let request = stream.next().await.expect("the server's request");
            assert_eq!(request["method"], method, "{backend}: {request}");
            let id = request["id"].clone();
            assert!(id.as_str().is_some_and(|id| id.starts_with("berth-")), "{id}");
            assert!(request["params"].get("x-extra-param").is_some(), "unknown params pass through: {request}");
            let answer = json!({"jsonrpc": "2.0", "id": id, "result": {"model": "m", "role": "assistant",
                "content": {"type": "text", "text": format!("answer to {method}")}}});
            assert_eq!(session.send(answer).await.status, StatusCode::ACCEPTED);
            let result = stream.response().await;
            assert_eq!(result["id"], "q");
            let text = result["result"]["content"][0]["text"].as_str().unwrap();
            assert!(text.contains(&format!("answer to {method}")), "{backend}: {text}");
        }
    }
    berth.stop().await;
}

#[tokio::test]
async fn fifty_sessions_on_one_instance_each_get_their_own_answers() {
    let berth = Berth::start(&fixture_config("")).await;
    let url = berth.mcp_url("fx");
    let tasks: Vec<_> = (0..50)
        .map(|n| {
            let url = url.clone();
            tokio::spawn(async move {
                let session = RawSession::open(&url, json!({})).await;
                let pid = session.tool("pid", json!({})).await;
                for call in 0..20 {
                    // Every session uses the same ids and progress tokens: berth must keep them apart.
                    let text = format!("session {n} call {call}");
                    let answer = session
                        .request(json!(1), "tools/call", json!({"name": "echo", "arguments": {"text": text},
                            "_meta": {"progressToken": "t"}}))
                        .await;
                    assert_eq!(answer["id"], 1);
                    assert_eq!(answer["result"]["content"][0]["text"], text);
                }
                let mut progress = session
                    .send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                        "params": {"name": "progress", "arguments": {"steps": 3, "ms": 5}, "_meta": {"progressToken": "t"}}}))
                    .await
                    .all()
                    .await;
                let result = progress.pop().unwrap();
                assert_eq!(result["result"]["content"][0]["text"], "3 steps");
                assert_eq!(progress.len(), 3, "exactly this session's progress: {progress:?}");
                assert!(progress.iter().all(|p| p["params"]["progressToken"] == "t"));
                session.delete().await;
                pid
            })
        })
        .collect();
    let mut pids = HashSet::new();
    for task in tasks {
        pids.insert(task.await.unwrap());
    }
    assert_eq!(pids.len(), 1, "one shared instance served every session");
    berth.stop().await;
}

#[tokio::test]
async fn a_crash_mid_call_fails_the_call_at_once_and_the_session_lives_on() {
    let berth = Berth::start(&fixture_config("")).await;
    for backend in FIXTURE_ROUTES {
        let session = RawSession::open(&berth.mcp_url(backend), json!({})).await;
        let pid: u32 = session.tool("pid", json!({})).await.parse().unwrap();
        let slow = json!({"jsonrpc": "2.0", "id": "slow", "method": "tools/call",
            "params": {"name": "slow", "arguments": {"ms": 600_000}}});
        let pending = session.spawn_request(slow);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
        // The in-flight call fails now, not when the 10-minute call would have ended (the
        // raw client's guard would catch a hang).
        let failed = tokio::time::timeout(Duration::from_secs(30), pending).await.expect("no hang").unwrap();
        assert_eq!(failed["id"], "slow");
        assert_eq!(failed["error"]["code"], -32000, "{backend}: {failed}");
        // The same session works again, on a new process, without initializing again.
        let again: u32 = session.tool("pid", json!({})).await.parse().unwrap();
        assert_ne!(again, pid, "{backend}: a new process");
        assert_eq!(session.tool("echo", json!({"text": "back"})).await, "back");
    }
    berth.stop().await;
}

#[tokio::test]
async fn per_session_instances_are_private_capped_and_stopped() {
    let berth = Berth::start(&fixture_config("max_instances = 2")).await;
    let url = berth.mcp_url("fx-solo");
    let first = RawSession::open(&url, json!({})).await;
    let second = RawSession::open(&url, json!({})).await;
    let one: u32 = first.tool("pid", json!({})).await.parse().unwrap();
    let two: u32 = second.tool("pid", json!({})).await.parse().unwrap();
    assert_ne!(one, two);
    let (status, body) = RawSession::try_open(&url, json!({})).await.err().expect("over the cap");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["error"]["message"].as_str().unwrap().contains("max_instances"), "{body}");
    assert_eq!(first.delete().await, StatusCode::OK);
    wait_until("the deleted session's process is gone", || !is_alive(one)).await;
    assert!(is_alive(two));
    assert_eq!(second.tool("echo", json!({"text": "still here"})).await, "still here");
    let third = RawSession::open(&url, json!({})).await;
    assert_eq!(third.tool("echo", json!({"text": "room again"})).await, "room again");
    assert_eq!(first.send(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})).await.status, StatusCode::NOT_FOUND);
    berth.stop().await;
    wait_until("every instance is gone after shutdown", || !is_alive(two)).await;
}

#[tokio::test]
async fn idle_per_session_instances_are_stopped() {
    let berth = Berth::start(&fixture_config("idle_timeout = \"300ms\"")).await;
    let session = RawSession::open(&berth.mcp_url("fx-solo"), json!({})).await;
    let pid: u32 = session.tool("pid", json!({})).await.parse().unwrap();
    wait_until("the idle instance stops", || !is_alive(pid)).await;
    let gone = session.send(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    berth.stop().await;
}

#[tokio::test]
async fn requests_time_out_unless_progress_keeps_them_alive() {
    let berth = Berth::start(&fixture_config("request_timeout = \"1s\"")).await;
    let session = RawSession::open(&berth.mcp_url("fx"), json!({})).await;
    let timed_out = session.request(json!(1), "tools/call", json!({"name": "slow", "arguments": {"ms": 5000}})).await;
    assert_eq!(timed_out["error"]["code"], -32001, "{timed_out}");
    let messages = session
        .send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "progress", "arguments": {"steps": 6, "ms": 400}, "_meta": {"progressToken": 9}}}))
        .await
        .all()
        .await;
    let last = messages.last().unwrap();
    assert_eq!(last["result"]["content"][0]["text"], "6 steps", "progress extends the deadline: {last}");
    berth.stop().await;
}

#[tokio::test]
async fn resource_subscriptions_are_reference_counted() {
    let berth = Berth::start(&fixture_config("")).await;
    let url = berth.mcp_url("fx");
    let a = RawSession::open(&url, json!({})).await;
    let b = RawSession::open(&url, json!({})).await;
    let mut stream_a = a.listen().await;
    let mut stream_b = b.listen().await;
    for session in [&a, &b] {
        let answer = session.request(json!(1), "resources/subscribe", json!({"uri": "test://r"})).await;
        assert_eq!(answer["result"], json!({}));
    }
    assert_eq!(a.tool("subscriptions", json!({})).await, "1 0", "the server saw one subscribe");
    a.tool("touch", json!({"uri": "test://r"})).await;
    for stream in [&mut stream_a, &mut stream_b] {
        let updated = stream.next().await.unwrap();
        assert_eq!(updated["method"], "notifications/resources/updated");
        assert_eq!(updated["params"]["uri"], "test://r");
    }
    a.request(json!(2), "resources/unsubscribe", json!({"uri": "test://r"})).await;
    assert_eq!(a.tool("subscriptions", json!({})).await, "1 0", "b still listens");
    b.request(json!(2), "resources/unsubscribe", json!({"uri": "test://r"})).await;
    assert_eq!(a.tool("subscriptions", json!({})).await, "1 1", "the last one let go");
    berth.stop().await;
}

#[tokio::test]
async fn readiness_reflects_a_backend_that_cannot_start() {
    let berth = Berth::start(&config_with(
        "[backends.broken]\nkind = \"process\"\ncommand = \"/nonexistent/mcp-server\"\nstart = \"eager\"\nrequired = true\nstartup_timeout = \"2s\"\n",
    ))
    .await;
    let client = http();
    wait_until_async("readiness names the broken backend", || async {
        let ready = client.get(berth.url("/readyz")).send().await.unwrap();
        ready.status() == StatusCode::SERVICE_UNAVAILABLE && ready.text().await.unwrap().contains("broken")
    })
    .await;
    let (status, body) = RawSession::try_open(&berth.mcp_url("broken"), json!({})).await.err().unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["error"]["message"].as_str().unwrap().contains("/nonexistent/mcp-server"), "{body}");
    berth.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_sessions_leave_no_process_behind() {
    let baseline = children();
    let berth = Berth::start(&fixture_config("")).await;
    for backend in FIXTURE_ROUTES {
        churn_sessions(&berth.mcp_url(backend)).await;
    }
    // The shared instance stays up while berth runs; per-session ones are all gone.
    wait_until("only the shared instance is left", || children() <= baseline + 1).await;
    berth.stop().await;
    wait_until("no instance is left after shutdown", || children() == baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_calls_finish_before_stopping_servers() {
    let berth = Berth::start(&format!("{}\n[server]\nshutdown_grace = \"60s\"\n", fixture_config(""))).await;
    let session = RawSession::open(&berth.mcp_url("fx"), json!({})).await;
    let pid: u32 = session.tool("pid", json!({})).await.parse().unwrap();
    let call = tokio::spawn(async move { session.tool("slow", json!({"ms": 1500})).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    berth.stop().await;
    assert_eq!(call.await.unwrap(), "slow done", "the in-flight call was drained, not cut");
    wait_until("the server is stopped after the drain", || !is_alive(pid)).await;
}

/// A session ended by DELETE is stopped in the background; shutdown right after it must still
/// wait for that stop, or berth would exit with the instance alive (or its container there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_sessions_still_being_ended() {
    let berth = Berth::start(&fixture_config("env = { FIXTURE_EXIT_DELAY_MS = \"1500\" }\nstop_grace = \"10s\"")).await;
    let session = RawSession::open(&berth.mcp_url("fx-solo"), json!({})).await;
    let pid: u32 = session.tool("pid", json!({})).await.parse().unwrap();
    assert_eq!(session.delete().await, StatusCode::OK);
    assert!(is_alive(pid), "the instance lingers after its stdin closed");
    berth.stop().await;
    assert!(!is_alive(pid), "serve returned before the ended session's instance had stopped");
}

#[tokio::test]
async fn a_server_request_caused_by_a_client_that_cannot_answer_it_reaches_no_other_client() {
    let berth = Berth::start(&fixture_config("")).await;
    let url = berth.mcp_url("fx");
    let capable = RawSession::open(&url, json!({"sampling": {}})).await;
    let mut listening = capable.listen().await;
    // This client declared no sampling; its call makes the server ask for a sample.
    let other = RawSession::open(&url, json!({})).await;
    let answer = other.tool("ask", json!({"method": "sampling/createMessage"})).await;
    assert!(answer.contains("-32601"), "berth refused the request on the server's behalf: {answer}");
    let leaked = tokio::time::timeout(Duration::from_millis(500), listening.next()).await;
    assert!(leaked.is_err(), "the other user's client must not see it: {leaked:?}");
    berth.stop().await;
}

/// `required = true` starts a shared backend at boot and probes a per-session one (one
/// instance started, initialized and stopped), so that `/readyz` is 503, naming them, until
/// they answer, without any client having called them.
#[tokio::test]
async fn required_backends_are_started_at_boot_and_readyz_waits_for_them() {
    let command = crate::harness::workspace_bin("berth-fixtures", "berth-fixture-stdio");
    let silent = format!(
        "kind = \"process\"\ncommand = \"{}\"\nrequired = true\nstartup_timeout = \"1s\"\n\
         env = {{ FIXTURE_MISBEHAVE = \"init-silent\" }}\n",
        command.display()
    );
    let berth = Berth::start(&config_with(&format!(
        "[backends.silent]\n{silent}\n[backends.silent-solo]\n{silent}sharing = \"per-session\"\n"
    )))
    .await;
    let client = http();
    // At once, and after the start-up timeout has passed.
    for _ in 0..3 {
        let ready = client.get(berth.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = ready.json().await.unwrap();
        assert_eq!(body["not_ready"], json!(["silent", "silent-solo"]), "{body}");
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    berth.stop().await;

    let baseline = children();
    let good = format!("kind = \"process\"\ncommand = \"{}\"\nrequired = true\n", command.display());
    let berth = Berth::start(&config_with(&format!(
        "[backends.good]\n{good}\n[backends.good-solo]\n{good}sharing = \"per-session\"\n"
    )))
    .await;
    wait_until_async("the required backends are ready", || async {
        client.get(berth.url("/readyz")).send().await.unwrap().status() == StatusCode::OK
    })
    .await;
    // No client came: the shared instance runs since boot, the per-session probe is gone.
    wait_until("only the shared instance is left", || children() == baseline + 1).await;
    let session = RawSession::open(&berth.url("/good-solo/mcp"), json!({})).await;
    assert_eq!(session.tool("echo", json!({"text": "after the probe"})).await, "after the probe");
    berth.stop().await;
}
