//! Bad input gets a clear error at once and loses nothing, on every kind of route: malformed
//! JSON-RPC, ids berth cannot keep, batches where the protocol forbids them, concurrent
//! initializes beyond `max_instances`, a reaper that must not end calls in flight.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    harness::{Berth, FIXTURE_ROUTES, fixture_config, http},
    raw::{RawSession, post_raw},
    requests::McpHeaders,
    wait::{poll, wait_until},
};

const ROUTES: [&str; 3] = ["conformance", "fx", "fx-solo"];

/// The status, JSON-RPC code and id of one refusal.
fn refusal(status: StatusCode, messages: &[Value]) -> (u16, Option<i64>, Value) {
    let body = messages.first().cloned().unwrap_or(Value::Null);
    (status.as_u16(), body["error"]["code"].as_i64(), body["id"].clone())
}

#[tokio::test]
async fn malformed_messages_are_refused_at_once_on_every_route() {
    let berth = Berth::start(&fixture_config("")).await;
    for route in ROUTES {
        let url = berth.mcp_url(route);
        let session = RawSession::open(&url, json!({})).await;
        // (body, status, JSON-RPC code, id in the answer)
        let table: &[(&str, u16, i64, Value)] = &[
            (r#"{"foo":1}"#, 400, -32600, Value::Null),
            (r#"{"id":1,"method":"ping"}"#, 400, -32600, json!(1)),
            (r#"{"jsonrpc":"2.0","id":2,"method":"ping","params":"string"}"#, 400, -32600, json!(2)),
            (r#"{"jsonrpc":"2.0","id":3,"method":7}"#, 400, -32600, json!(3)),
            (r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, 400, -32600, Value::Null),
            (r#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"ping"}"#, 400, -32600, Value::Null),
            (r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, 400, -32600, Value::Null),
            (r#"{"jsonrpc":"2.0","id":4,"id":5,"method":"ping"}"#, 400, -32600, json!(5)),
            (r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":"x"}"#, 400, -32600, Value::Null),
            (r#"{"jsonrpc":"2.0","id":8,"method":"ping","params":[1]}"#, 400, -32600, json!(8)),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":{"a":1}}}"#,
                202,
                0,
                Value::Null,
            ),
            (r#"{"jsonrpc":"2.0","id":9,"result":{}}"#, 202, 0, Value::Null),
            (r#"not json"#, 400, -32700, Value::Null),
            (r#"{"jsonrpc":"2.0","id":6,"method":"ping""#, 400, -32700, Value::Null),
            (r#"[{"jsonrpc":"2.0","id":7,"method":"ping"}]"#, 400, -32600, json!(7)),
            (r#"[]"#, 400, -32600, Value::Null),
        ];
        for (body, status, code, id) in table {
            let (got_status, messages) = post_raw(&url, Some(session.headers()), body).await;
            if *status == 202 {
                assert_eq!(got_status.as_u16(), 202, "{route} {body}: {messages:?}");
                continue;
            }
            let (got_status, got_code, got_id) = refusal(got_status, &messages);
            assert_eq!((got_status, got_code, &got_id), (*status, Some(*code), id), "{route} {body}: {messages:?}");
        }
        // Nothing was lost: the session still works.
        let ping = session.request(json!("after"), "ping", json!({})).await;
        assert_eq!(ping["id"], "after", "{route}: {ping}");
        assert_eq!(ping["result"], json!({}), "{route}: {ping}");
    }
    berth.stop().await;
}

#[tokio::test]
async fn ids_come_back_exactly_as_written() {
    let berth = Berth::start(&fixture_config("")).await;
    for route in FIXTURE_ROUTES {
        let session = RawSession::open(&berth.mcp_url(route), json!({})).await;
        for id in ["9223372036854775807", "-9223372036854775808", "-0", "\"\\u0061\\n\"", "\"\""] {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"t"}}}}}}"#
            );
            let response = session.post(&http()).body(body.clone()).send().await.unwrap();
            let text = response.text().await.unwrap();
            assert!(text.contains(&format!("\"id\":{id}")), "{route}: id {id} came back as {text}");
            // berth's own refusals keep it too (here: an unknown session).
            let refused = crate::requests::post(&http(), berth.mcp_url(route))
                .session("no-such-session")
                .protocol("2025-11-25")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(refused.status(), StatusCode::NOT_FOUND);
            let text = refused.text().await.unwrap();
            assert!(text.contains(&format!("\"id\":{id}")), "{route}: a refusal's id {id} came back as {text}");
        }
    }
    berth.stop().await;
}

#[tokio::test]
async fn batches_are_refused_where_the_protocol_forbids_them_and_answered_whole_where_it_allows_them() {
    let berth = Berth::start(&fixture_config("")).await;
    let pings = |n: usize| {
        let messages: Vec<Value> = (0..n).map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "ping"})).collect();
        Value::from(messages).to_string()
    };
    for route in FIXTURE_ROUTES {
        let url = berth.mcp_url(route);
        // 2025-11-25 has no batches.
        let modern = RawSession::open(&url, json!({})).await;
        let (status, messages) = post_raw(&url, Some(modern.headers()), &pings(2)).await;
        assert_eq!(refusal(status, &messages), (400, Some(-32600), json!(0)), "{route}: {messages:?}");
        // 2025-03-26 has them: every answer comes back, berth's own included.
        let legacy = RawSession::open_version(&url, "2025-03-26").await;
        assert_eq!(legacy.version, "2025-03-26");
        let mut batch: Vec<Value> = (0..31).map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "ping"})).collect();
        batch.push(json!({"jsonrpc": "2.0", "id": "sub", "method": "resources/subscribe", "params": {"uri": "x://y"}}));
        let answers = legacy.send_raw(&Value::from(batch).to_string()).await.all().await;
        let mut ids: Vec<String> = answers.iter().map(|a| a["id"].to_string()).collect();
        ids.sort();
        assert_eq!(ids.len(), 32, "{route}: every answer: {answers:?}");
        ids.dedup();
        assert_eq!(ids.len(), 32, "{route}: each once");
        // Without a version header the session's negotiated version decides.
        let (status, messages) = post_raw(&url, Some((&modern.id, "")), &pings(2)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{route}: {messages:?}");
        // Bounded where allowed.
        let (status, messages) = post_raw(&url, Some(legacy.headers()), &pings(33)).await;
        assert_eq!(refusal(status, &messages).0, 400, "{route}: {messages:?}");
        assert!(messages[0]["error"]["message"].as_str().unwrap().contains("exceeds the limit of 32"));
    }
    // A native backend (rmcp) takes no batches at all: berth says so as it refuses everything.
    let url = berth.mcp_url("conformance");
    let legacy = RawSession::open_version(&url, "2025-03-26").await;
    let (status, messages) = post_raw(&url, Some(legacy.headers()), &pings(2)).await;
    assert_eq!(refusal(status, &messages), (400, Some(-32600), json!(0)), "native: {messages:?}");
    berth.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_initializes_never_exceed_max_instances() {
    let berth = Berth::start(&fixture_config("max_instances = 8")).await;
    let url = berth.mcp_url("fx-solo");
    let attempts: Vec<_> = (0..20)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { RawSession::try_open(&url, json!({})).await })
        })
        .collect();
    let mut opened = Vec::new();
    let mut refused = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(session) => opened.push(session),
            Err((status, body)) => {
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
                assert_eq!(body["error"]["code"], -32000, "{body}");
                assert!(body["error"]["message"].as_str().unwrap().contains("max_instances"), "{body}");
                refused += 1;
            }
        }
    }
    assert_eq!((opened.len(), refused), (8, 12));
    let mut pids = std::collections::HashSet::new();
    for session in &opened {
        pids.insert(session.tool("pid", json!({})).await);
    }
    assert_eq!(pids.len(), 8, "eight processes, one per session");
    // Slots come back when sessions end.
    for session in &opened {
        assert_eq!(session.delete().await, StatusCode::OK);
    }
    let again = poll(Duration::from_secs(10), || RawSession::try_open(&url, json!({})))
        .await
        .unwrap_or_else(|refusal| panic!("a slot is free again after the sessions ended: {refusal:?}"));
    assert_eq!(again.tool("echo", json!({"text": "room"})).await, "room");
    berth.stop().await;
}

#[tokio::test]
async fn a_session_with_a_call_in_flight_is_not_idle() {
    // The call lasts 3.2 s, well beyond the 2 s idle timeout; the margins around it are wide
    // enough for a loaded machine (the pid is asked first, right after the session opens).
    let berth = Berth::start(&fixture_config("idle_timeout = \"2s\"")).await;
    let session = RawSession::open(&berth.mcp_url("fx-solo"), json!({})).await;
    let pid: u32 = session.tool("pid", json!({})).await.parse().unwrap();
    let messages = session
        .send(json!({"jsonrpc": "2.0", "id": "long", "method": "tools/call",
            "params": {"name": "progress", "arguments": {"steps": 8, "ms": 400}, "_meta": {"progressToken": 1}}}))
        .await
        .all()
        .await;
    let last = messages.last().unwrap();
    assert_eq!(last["result"]["content"][0]["text"], "8 steps", "the call outlived idle_timeout: {last}");
    // Once nothing is in flight, the session does expire.
    wait_until("the idle session's instance stops", || !std::path::Path::new(&format!("/proc/{pid}")).exists()).await;
    berth.stop().await;
}

#[tokio::test]
async fn a_client_that_gives_up_on_initialize_leaves_no_process_behind() {
    let baseline = crate::process::children();
    let berth =
        Berth::start(&fixture_config("env = { FIXTURE_MISBEHAVE = \"init-silent\" }\nstartup_timeout = \"1h\"")).await;
    let url = berth.mcp_url("fx-solo");
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    for _ in 0..5 {
        let sent = crate::requests::post(&http(), &url)
            .timeout(Duration::from_millis(500))
            .body(init.to_string())
            .send()
            .await;
        assert!(sent.is_err(), "the server never answers initialize");
    }
    // Each attempt started a process; each is stopped once its client is gone.
    wait_until("every abandoned instance is stopped", || crate::process::children() == baseline).await;
    berth.stop().await;
}
