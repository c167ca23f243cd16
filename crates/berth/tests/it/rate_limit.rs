//! Call rate limits per identity over real HTTP, on a native and a process backend: a user's
//! calls beyond the burst get 429 with `Retry-After` and a JSON-RPC error carrying the request's
//! id; another user's bucket is untouched, a backend without a limit is not limited, and the
//! limited user's session, its GET stream and its notifications stay open.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    harness::{Berth, PASSWORD, USER, basic, fixture_config, http},
    requests::{ACCEPT_BOTH, McpHeaders, initialize, initialized},
};

/// Five calls at once, then one every 12 minutes.
const LIMIT: &str = "rate_limit = { calls = 5, per = \"1h\" }\n";

/// A POST of `body` to `url` as `user` in `session`: the status, `Retry-After` and the JSON body
/// (or the first SSE `data:`).
async fn post(
    url: &str,
    user: (&str, &str),
    session: Option<&str>,
    body: Value,
) -> (StatusCode, Option<String>, Value, Option<String>) {
    let mut request = http()
        .post(url)
        .header("authorization", basic(user.0, user.1))
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .protocol("2025-11-25");
    if let Some(session) = session {
        request = request.session(session);
    }
    let response = request.body(body.to_string()).send().await.unwrap();
    let status = response.status();
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let opened = response.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text)
        .ok()
        .or_else(|| text.lines().find_map(|line| serde_json::from_str(line.strip_prefix("data:")?.trim()).ok()));
    (status, retry_after, json.unwrap_or(Value::Null), opened)
}

fn list(id: i64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"})
}

#[tokio::test]
async fn calls_beyond_the_limit_get_429_and_the_session_stays_open() {
    let config = fixture_config("")
        .replace("[backends.fx]\n", &format!("[backends.fx]\n{LIMIT}"))
        .replace("[backends.conformance]\n", &format!("[backends.conformance]\n{LIMIT}"));
    let config = format!("[[auth.users]]\nname = \"bob\"\npassword = \"bob-pw\"\n\n{config}");
    let berth = Berth::start(&config).await;
    let alice = (USER, PASSWORD);
    for route in ["conformance", "fx"] {
        let url = berth.mcp_url(route);
        // initialize is a call; notifications are not.
        let (status, _, _, session) = post(&url, alice, None, initialize("2025-11-25")).await;
        assert_eq!(status, StatusCode::OK, "{route}");
        let session = session.unwrap();
        for _ in 0..3 {
            assert_eq!(post(&url, alice, Some(&session), initialized()).await.0, StatusCode::ACCEPTED, "{route}");
        }
        for id in 2..=5 {
            let (status, _, body, _) = post(&url, alice, Some(&session), list(id)).await;
            assert_eq!(status, StatusCode::OK, "{route}: call {id} is within the burst: {body}");
            assert!(body["result"]["tools"].is_array(), "{route}: call {id}: {body}");
        }
        let (status, retry_after, body, _) = post(&url, alice, Some(&session), list(6)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{route}: {body}");
        let retry_after: u64 = retry_after.expect("Retry-After").parse().unwrap();
        assert!((1..=720).contains(&retry_after), "{route}: one call is earned back in 12 min: {retry_after}");
        assert_eq!(body["id"], 6, "{route}: {body}");
        assert_eq!(body["error"]["data"]["error"], "rate_limited", "{route}: {body}");
        assert_eq!(body["error"]["data"]["retry_after"], retry_after, "{route}: {body}");

        // The session and its streams stay open while Alice waits.
        assert_eq!(post(&url, alice, Some(&session), initialized()).await.0, StatusCode::ACCEPTED, "{route}");
        let stream = http()
            .get(&url)
            .header("authorization", basic(alice.0, alice.1))
            .header("accept", "text/event-stream")
            .session(&session)
            .protocol("2025-11-25")
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), StatusCode::OK, "{route}: the GET stream opens");
        drop(stream);

        // Bob has a bucket of his own.
        let (status, _, body, _) = post(&url, ("bob", "bob-pw"), None, initialize("2025-11-25")).await;
        assert_eq!(status, StatusCode::OK, "{route}: bob is not limited by alice's calls: {body}");
    }
    // fx-solo has no limit: Alice, limited on fx, still calls it.
    let url = berth.mcp_url("fx-solo");
    for _ in 0..8 {
        assert_eq!(post(&url, alice, None, initialize("2025-11-25")).await.0, StatusCode::OK);
    }
    berth.stop().await;
}
