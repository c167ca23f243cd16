//! Streams that outlive their connection: a client whose connection drops resumes with
//! `Last-Event-ID` and gets what it missed; a client that goes away for good has its requests
//! cancelled on the server (after the resume window; at once for stateless requests, for which
//! closing the stream is the cancellation).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    everything,
    harness::{Berth, FIXTURE_ROUTES, docker_ready, fixture_config, http},
    raw::{RawSession, get_raw},
    requests::{self, McpHeaders, stateless_call},
    sse::Messages,
    wait::wait_until_async,
};

/// The fixture as `fx` (shared) and `fx-solo` (per-session) with a resume window of `window`.
fn resumable(window: &str) -> String {
    fixture_config(&format!("resume_window = \"{window}\""))
}

/// The request ids the fixture saw cancelled, asked through `session`.
async fn cancelled(session: &RawSession) -> Vec<Value> {
    fixture_counts(session).await.0
}

/// The request ids the fixture saw cancelled, and how many `slow` calls it started.
async fn fixture_counts(session: &RawSession) -> (Vec<Value>, u64) {
    let counts: Value = serde_json::from_str(&session.tool("cancelled", json!({})).await).unwrap();
    (serde_json::from_value(counts["cancelled"].clone()).unwrap(), counts["slow_started"].as_u64().unwrap())
}

/// Starts a call in `session` that streams progress for a long while, reads `seen` of its
/// progress notifications, then drops the connection: answers the last event id it saw and the
/// progress numbers seen.
async fn call_then_cut(session: &RawSession, call: Value, seen: usize) -> (String, Vec<f64>) {
    let mut stream = session.send(call).await;
    assert_eq!(stream.status, StatusCode::OK);
    let mut progress = Vec::new();
    while progress.len() < seen {
        let message = stream.next().await.expect("progress before the cut");
        assert_eq!(message["method"], "notifications/progress", "{message}");
        progress.push(message["params"]["progress"].as_f64().unwrap());
    }
    assert!(stream.retries > 0, "the stream tells the client how soon to reconnect");
    let last = stream.last_event_id.clone().expect("events carry ids on a session's stream");
    // Dropping the body closes the TCP connection under it.
    drop(stream);
    (last, progress)
}

/// Resumes from `last` and reads to the end: the progress numbers and the final response.
async fn resume_to_the_end(session: &RawSession, last: &str) -> (Vec<f64>, Value) {
    let resumed = session.resume(last).await;
    assert_eq!(resumed.status, StatusCode::OK, "{last}");
    let mut messages = resumed.all().await;
    let response = messages.pop().expect("the final response");
    let progress = messages
        .iter()
        .map(|m| {
            assert_eq!(m["method"], "notifications/progress", "{m}");
            m["params"]["progress"].as_f64().unwrap()
        })
        .collect();
    (progress, response)
}

#[tokio::test]
async fn a_dropped_post_stream_resumes_with_what_it_missed() {
    let berth = Berth::start(&resumable("1s")).await;
    for route in FIXTURE_ROUTES {
        let session = RawSession::open(&berth.mcp_url(route), json!({})).await;
        let call = json!({"jsonrpc": "2.0", "id": "long", "method": "tools/call",
            "params": {"name": "progress", "arguments": {"steps": 8, "ms": 150}, "_meta": {"progressToken": "mine"}}});
        let (last, before) = call_then_cut(&session, call, 2).await;
        assert_eq!(before, [1.0, 2.0]);
        // The client comes back while the call still runs (well within the resume window).
        let (after, response) = resume_to_the_end(&session, &last).await;
        assert_eq!(after, (3..=8).map(f64::from).collect::<Vec<_>>(), "{route}: exactly what was missed");
        assert_eq!(response["id"], "long");
        assert_eq!(response["result"]["content"][0]["text"], "8 steps", "{route}: {response}");
        // Nothing was cancelled: the client resumed in time.
        assert!(cancelled(&session).await.is_empty(), "{route}");
        // The stream can be replayed from its start too, while its events are kept.
        let (from_start, again) = resume_to_the_end(&session, &format!("{}-0", last.split('-').next().unwrap())).await;
        assert_eq!(from_start.len(), 8);
        assert_eq!(again["id"], "long");
    }
    berth.stop().await;
}

#[tokio::test]
async fn a_dropped_get_stream_resumes_with_what_it_missed() {
    let berth = Berth::start(&resumable("1s")).await;
    for route in FIXTURE_ROUTES {
        let session = RawSession::open(&berth.mcp_url(route), json!({})).await;
        let mut listening = session.listen().await;
        // The priming event gives an id before any message.
        assert_eq!(session.tool("echo", json!({"text": "x"})).await, "x");
        assert!(tokio::time::timeout(Duration::from_millis(300), listening.next()).await.is_err(), "nothing yet");
        let last = listening.last_event_id.clone().expect("a priming event id");
        drop(listening);
        assert_eq!(session.tool("notify", json!({})).await, "notified");
        let mut resumed = session.resume(&last).await;
        assert_eq!(resumed.next().await.unwrap()["method"], "notifications/x-custom", "{route}");
        assert_eq!(resumed.next().await.unwrap()["method"], "notifications/tools/list_changed", "{route}");
        // An id that is not berth's, or a stream that never was, is refused clearly.
        let (status, body) = get_raw(&session, "not-an-id").await;
        assert_eq!((status, body["error"]["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(-32600)), "{body}");
        let (status, _) = get_raw(&session, "999-1").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    berth.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_come_back_has_its_call_cancelled_on_the_server() {
    let berth = Berth::start(&resumable("1s")).await;
    for route in FIXTURE_ROUTES {
        let session = RawSession::open(&berth.mcp_url(route), json!({})).await;
        let call = json!({"jsonrpc": "2.0", "id": "abandoned", "method": "tools/call",
            "params": {"name": "progress", "arguments": {"steps": 400, "ms": 100}, "_meta": {"progressToken": 1}}});
        call_then_cut(&session, call, 1).await;
        // After the resume window (1 s) berth tells the server.
        wait_until_async("the abandoned call is cancelled", || async { cancelled(&session).await.len() == 1 }).await;
        assert_eq!(session.tool("echo", json!({"text": "alive"})).await, "alive", "{route}: the session lives on");
    }
    berth.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_calls_whose_connections_dropped_are_all_cancelled() {
    let berth = Berth::start(&resumable("1s")).await;
    let session = RawSession::open(&berth.mcp_url("fx"), json!({})).await;
    let calls: Vec<_> = (0..200)
        .map(|n| {
            let body = json!({"jsonrpc": "2.0", "id": n, "method": "tools/call",
                "params": {"name": "slow", "arguments": {"ms": 120_000}}});
            let request = session.post(&http()).body(body.to_string());
            tokio::spawn(async move {
                let response = request.send().await;
                let _ = response.unwrap().bytes().await;
                panic!("a two-minute call cannot have been answered");
            })
        })
        .collect();
    // Every call runs on the server; then every client goes away (its connection closes).
    wait_until_async("every call runs", || async { fixture_counts(&session).await.1 == 200 }).await;
    for call in &calls {
        call.abort();
    }
    wait_until_async("every call is cancelled", || async { cancelled(&session).await.len() == 200 }).await;
    let mut ids: Vec<String> = cancelled(&session).await.iter().map(Value::to_string).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200, "each call cancelled once");
    for call in calls {
        assert!(call.await.unwrap_err().is_cancelled());
    }
    berth.stop().await;
}

#[tokio::test]
async fn closing_a_stateless_requests_stream_cancels_it_at_once() {
    let berth = Berth::start(&resumable("1h")).await;
    let url = berth.mcp_url("fx");
    let send = |tool: &str, id: &str, arguments: Value, timeout: Duration| {
        let body = stateless_call(id, tool, arguments);
        requests::post(&http(), &url).stateless_call(tool).timeout(timeout).body(body.to_string()).send()
    };
    if let Ok(response) = send("slow", "gone", json!({"ms": 120_000}), Duration::from_millis(800)).await {
        assert!(response.bytes().await.is_err(), "a two-minute call cannot have been answered");
    }
    // Even with a resume window of an hour: stateless streams cannot resume.
    wait_until_async("the closed stream's call is cancelled", || async {
        let response = send("cancelled", "ask", json!({}), Duration::from_secs(30)).await.unwrap();
        let answer = Messages::from(response).await.response().await;
        let text = answer["result"]["content"][0]["text"].as_str().unwrap_or("{}").to_string();
        let counts: Value = serde_json::from_str(&text).unwrap();
        counts["cancelled"].as_array().is_some_and(|cancelled| cancelled.len() == 1)
    })
    .await;
    berth.stop().await;
}

/// server-everything's long-running operation, cut mid-way and resumed, on the given routes.
async fn everything_resumes(berth: &Berth, routes: [&str; 2]) {
    for route in routes {
        let session = RawSession::open(&berth.mcp_url(route), json!({})).await;
        let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
            "name": "trigger-long-running-operation", "arguments": {"duration": 3, "steps": 6},
            "_meta": {"progressToken": "everything"}}});
        let (last, before) = call_then_cut(&session, call, 2).await;
        assert_eq!(before, [1.0, 2.0], "{route}");
        tokio::time::sleep(Duration::from_millis(700)).await;
        let (after, response) = resume_to_the_end(&session, &last).await;
        assert_eq!(after, [3.0, 4.0, 5.0, 6.0], "{route}: the remaining progress");
        let text = response["result"]["content"][0]["text"].as_str().unwrap_or_default();
        assert!(text.starts_with("Long running operation completed"), "{route}: {response}");
        println!("{route}: cut after progress {before:?} (last event {last}), resumed with {after:?} and the result");
    }
}

#[tokio::test]
async fn server_everything_resumes_through_process_backends() {
    let berth = Berth::start(&everything::process_config()).await;
    everything_resumes(&berth, everything::PROCESS_ROUTES).await;
    berth.stop().await;
}

#[tokio::test]
async fn server_everything_resumes_through_docker_backends() {
    if !docker_ready(&["everything"]) {
        return;
    }
    let berth = Berth::start(&everything::docker_config()).await;
    everything_resumes(&berth, everything::DOCKER_ROUTES).await;
    berth.stop().await;
}

#[tokio::test]
async fn ending_a_session_answers_and_cancels_its_calls_in_flight() {
    let berth = Berth::start(&resumable("1h")).await;
    for route in ["fx", "fx-solo"] {
        let session = RawSession::open(&berth.url(&format!("/{route}/mcp")), json!({})).await;
        let observer = RawSession::open(&berth.url("/fx/mcp"), json!({})).await;
        let call = json!({"jsonrpc": "2.0", "id": "in-flight", "method": "tools/call",
            "params": {"name": "slow", "arguments": {"ms": 120_000}}});
        let pending = session.spawn_request(call);
        wait_until_async("the call runs on the server", || async { fixture_counts(&session).await.1 >= 1 }).await;
        assert_eq!(session.delete().await, StatusCode::OK);
        // The client waiting on the call gets an error at once, not after two minutes.
        let answer = tokio::time::timeout(Duration::from_secs(30), pending).await.expect("no hang").unwrap();
        assert_eq!(answer["id"], "in-flight", "{route}: {answer}");
        assert_eq!(answer["error"]["code"], -32000, "{route}: {answer}");
        if route == "fx" {
            // A shared server is told to drop the call; a session's own server is stopped.
            wait_until_async("the shared server is told to drop the call", || async {
                cancelled(&observer).await.len() == 1
            })
            .await;
        }
    }
    berth.stop().await;
}
