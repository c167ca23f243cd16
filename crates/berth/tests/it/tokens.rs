//! API tokens end to end: `berth token create` (the real binary) prints a token and its entry;
//! with the entry in the configuration, `Authorization: Bearer <token>` works on native and
//! process backends, through rmcp's own client too; an expired or unknown token gets 401; a
//! token's groups and `token:` entries count in `allow` lists; and a token's sessions and a
//! user's are each other's unknown sessions.

use std::collections::HashMap;

use http::{HeaderName, HeaderValue};
use reqwest::StatusCode;
use rmcp::{
    ServiceExt,
    transport::{StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig},
};
use serde_json::{Value, json};

use crate::{
    harness::{Berth, alice, fixture_config, http},
    process::berth_std_command,
    requests::{ACCEPT_BOTH, McpHeaders, initialize},
};

/// Runs `berth token create` with `args`: the token and the configuration entry it printed.
fn create(args: &[&str]) -> (String, String) {
    let output = berth_std_command().args(["token", "create"]).args(args).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let (token, entry) = stdout.split_once("\n\n").expect("the token, a blank line, the entry");
    assert!(!entry.contains(token), "the entry must not hold the token itself");
    (token.to_string(), entry.to_string())
}

/// A POST of `body` with `authorization`, in `session` when given: status, session id opened,
/// JSON body of a refusal.
async fn post(
    url: &str,
    authorization: &str,
    session: Option<&str>,
    body: Value,
) -> (StatusCode, Option<String>, Value) {
    let mut request = http()
        .post(url)
        .header("authorization", authorization)
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .protocol("2025-11-25");
    if let Some(session) = session {
        request = request.session(session);
    }
    let response = request.body(body.to_string()).send().await.unwrap();
    let status = response.status();
    let opened = response.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().to_string());
    let body = if status.is_success() { Value::Null } else { response.json().await.unwrap_or(Value::Null) };
    (status, opened, body)
}

#[tokio::test]
async fn bearer_tokens_authenticate_carry_groups_and_own_their_sessions() {
    let (ci, ci_entry) = create(&["--name", "ci", "--groups", "dev", "--expires", "2099-01-01"]);
    let (old, old_entry) = create(&["--name", "old", "--expires", "2020-01-01T00:00:00Z"]);
    let config = fixture_config("")
        .replace("[backends.conformance]\n", "[backends.conformance]\nallow = [\"token:ci\", \"user:alice\"]\n")
        .replace("[backends.fx]\n", "[backends.fx]\nallow = [\"group:dev\", \"token:old\"]\n")
        .replace("[backends.fx-solo]\n", "[backends.fx-solo]\nallow = [\"user:alice\"]\n");
    let berth = Berth::start(&format!("{ci_entry}\n{old_entry}\n{config}")).await;
    let bearer = format!("Bearer {ci}");

    // The token's identity and its group.
    for route in ["conformance", "fx"] {
        let (status, _, body) = post(&berth.mcp_url(route), &bearer, None, initialize("2025-11-25")).await;
        assert_eq!(status, StatusCode::OK, "{route}: {body}");
    }
    let (status, _, body) = post(&berth.mcp_url("fx-solo"), &bearer, None, initialize("2025-11-25")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "fx-solo allows alice only: {body}");

    // Expired and unknown tokens, and the scheme's case.
    let (status, _, body) = post(&berth.mcp_url("fx"), &format!("Bearer {old}"), None, initialize("2025-11-25")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["message"].as_str().unwrap().contains("expired"), "{body}");
    let (status, _, _) = post(&berth.mcp_url("fx"), &format!("Bearer {ci}x"), None, initialize("2025-11-25")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = post(&berth.mcp_url("fx"), &format!("bearer {ci}"), None, initialize("2025-11-25")).await;
    assert_eq!(status, StatusCode::OK, "the scheme is case-insensitive");

    // A token's session is not Alice's, and Alice's is not the token's.
    let url = berth.mcp_url("conformance");
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let (_, tokens_session, _) = post(&url, &bearer, None, initialize("2025-11-25")).await;
    let (_, alices_session, _) = post(&url, &alice(), None, initialize("2025-11-25")).await;
    let (tokens_session, alices_session) = (tokens_session.unwrap(), alices_session.unwrap());
    for (who, authorization, session) in [("alice", alice(), &tokens_session), ("ci", bearer.clone(), &alices_session)]
    {
        let (status, _, body) = post(&url, &authorization, Some(session), list.clone()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{who} used the other's session: {body}");
    }
    for (authorization, session) in [(bearer.clone(), &tokens_session), (alice(), &alices_session)] {
        assert_eq!(post(&url, &authorization, Some(session), list.clone()).await.0, StatusCode::OK);
    }

    // rmcp's own client, with the bearer header.
    let mut headers = HashMap::new();
    headers.insert(HeaderName::from_static("authorization"), HeaderValue::from_str(&bearer).unwrap());
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(berth.mcp_url("fx")).custom_headers(headers),
    );
    let client = ().serve(transport).await.expect("initialize with a bearer token");
    let tools = client.list_tools(None).await.expect("tools/list");
    assert!(!tools.tools.is_empty());
    client.cancel().await.unwrap();
    berth.stop().await;
}

#[test]
fn token_create_refuses_bad_names_and_dates() {
    for args in [["--name", "a b", "--expires", "2027-01-01"], ["--name", "ci", "--expires", "soon"]] {
        let output = berth_std_command().args(["token", "create"]).args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(64), "{args:?}");
        assert!(output.stdout.is_empty(), "nothing printed on a refusal");
    }
}
