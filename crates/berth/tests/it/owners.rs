//! Sessions belong to whoever opened them: on a native backend, a shared and a per-session stdio
//! process and (with Docker) a shared container, Bob holding Alice's session id gets exactly
//! what an id that never existed gets, on POST, GET and DELETE, and Alice's session is untouched
//! by his tries.

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::{
    harness::{Berth, basic, config_with, docker_ready, fixture_config, http, shared_and_per_session},
    requests::{ACCEPT_BOTH, McpHeaders, exchange, open_session},
};

/// Bob, the second user of every configuration here.
const BOB: (&str, &str) = ("bob", "bob-pw");

/// Bob as a TOML user entry.
fn bob_user() -> String {
    format!("[[auth.users]]\nname = \"{}\"\npassword = \"{}\"\n\n", BOB.0, BOB.1)
}

/// A session id no one ever opened, in the shape of a real one.
const NEVER_OPENED: &str = "5f0c2a8e-0000-4000-8000-000000000000";

/// What Bob gets for a request in session `session`: status and JSON body, for POST, GET and
/// DELETE.
async fn bob_tries(client: &Client, url: &str, session: &str) -> Vec<(StatusCode, Value)> {
    let bob = basic(BOB.0, BOB.1);
    let post = client
        .post(url)
        .header("authorization", &bob)
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .session(session)
        .protocol("2025-11-25")
        .body(json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"}).to_string());
    let get = client
        .get(url)
        .header("authorization", &bob)
        .header("accept", "text/event-stream")
        .session(session)
        .protocol("2025-11-25");
    let delete = client.delete(url).header("authorization", &bob).session(session).protocol("2025-11-25");
    let mut answers = Vec::new();
    for request in [post, get, delete] {
        let response = request.send().await.unwrap();
        let status = response.status();
        // An SSE stream that opened for Bob never ends: name it instead of waiting on it.
        let body = tokio::time::timeout(Duration::from_secs(10), response.json::<Value>())
            .await
            .map_or_else(|_| json!("an open stream"), |body| body.unwrap_or(Value::Null));
        answers.push((status, body));
    }
    answers
}

/// Alice lists the tools in `session`: answers whether she got a result.
async fn alice_lists(url: &str, session: &str) -> bool {
    let (status, _, message) =
        exchange(url, Some(session), json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"})).await;
    status == StatusCode::OK && message.is_some_and(|message| message["result"]["tools"].is_array())
}

/// Alice opens a session at `route`; Bob's tries with it equal his tries with an id that was
/// never opened (404, a JSON-RPC error with his request's id); Alice's session still works.
async fn check_route(berth: &Berth, route: &str) {
    let url = berth.mcp_url(route);
    let client = http();
    let session = open_session(&url).await;
    let with_alices = bob_tries(&client, &url, &session).await;
    let with_unknown = bob_tries(&client, &url, NEVER_OPENED).await;
    assert_eq!(with_alices, with_unknown, "{route}: Bob can tell Alice's session from an unknown one");
    for (status, body) in &with_alices {
        assert_eq!(*status, StatusCode::NOT_FOUND, "{route}: {body}");
        assert_eq!(body["jsonrpc"], "2.0", "{route}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("session not found")), "{route}: {body}");
    }
    assert_eq!(with_alices[0].1["id"], 7, "{route}: the POST's refusal carries its id");
    assert!(alice_lists(&url, &session).await, "{route}: Bob's tries broke Alice's session");
    let deleted = crate::requests::delete(&client, &url, &session).send().await.unwrap().status();
    assert!(deleted.is_success(), "{route}: Alice cannot end her own session: {deleted}");
    assert!(!alice_lists(&url, &session).await, "{route}: the session outlived its DELETE");
}

#[tokio::test]
async fn another_users_session_is_answered_as_unknown() {
    let berth = Berth::start(&format!("{}{}", bob_user(), fixture_config(""))).await;
    for route in ["conformance", "fx", "fx-solo"] {
        check_route(&berth, route).await;
    }
    berth.stop().await;
}

#[tokio::test]
async fn another_users_container_session_is_answered_as_unknown() {
    if !docker_ready(&["fixture"]) {
        return;
    }
    let backends = shared_and_per_session(["fxd", "fxd-solo"], "kind = \"docker\"\nimage = \"berth-test/fixture:dev\"");
    let berth = Berth::start(&format!("{}{}", bob_user(), config_with(&backends))).await;
    for route in ["fxd", "fxd-solo"] {
        check_route(&berth, route).await;
    }
    berth.stop().await;
}
