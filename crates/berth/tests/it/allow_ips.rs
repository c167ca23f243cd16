//! Source-address allow-lists over real HTTP, distinct loopback addresses as distinct clients:
//! `server.allow_ips` refuses outsiders before authentication and leaves the health paths
//! public; a backend's `allow_ips` refuses them after routing, on every kind of backend; behind a
//! trusted proxy the address checked is the forwarded client's, and an untrusted peer cannot
//! claim one.

use reqwest::{Client, StatusCode};
use serde_json::Value;

use crate::{
    harness::{Berth, alice, fixture_config},
    protect::client_from,
    requests::{ACCEPT_BOTH, initialize},
};

/// The server admits 127.0.0.1–127.0.0.7 and 10.0.0.0/8; `fx` (a process) and `conformance` (native) only
/// 127.0.0.2 and the forwarded clients of the proxy at 127.0.0.5; `fx-solo` has no list.
fn config() -> String {
    let restricted = "allow_ips = [\"127.0.0.2\", \"10.9.0.0/16\"]";
    let mut config = fixture_config("").replace("[backends.fx]\n", &format!("[backends.fx]\n{restricted}\n"));
    config = config.replace("[backends.conformance]\n", &format!("[backends.conformance]\n{restricted}\n"));
    format!("[server]\nallow_ips = [\"127.0.0.0/29\", \"10.0.0.0/8\"]\ntrusted_proxies = [\"127.0.0.5\"]\n\n{config}")
}

/// POSTs an `initialize` to `route` from `client`, with `authorization` and extra headers;
/// answers the status and the JSON body of a refusal.
async fn initialize_from(
    client: &Client,
    url: &str,
    authorization: Option<&str>,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut request = client
        .post(url)
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(initialize("2025-06-18").to_string());
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body = if status.is_success() { Value::Null } else { response.json().await.unwrap_or(Value::Null) };
    (status, body)
}

#[tokio::test]
async fn outsiders_get_403_before_authentication_and_per_backend_after_routing() {
    let berth = Berth::start(&config()).await;
    let alice = alice();
    let (outsider, insider, allowed, proxy) =
        (client_from("127.0.0.9"), client_from("127.0.0.3"), client_from("127.0.0.2"), client_from("127.0.0.5"));
    let forbidden = |body: &Value| body["error"] == "forbidden_address";

    // Outside server.allow_ips: health stays public, every MCP request is 403, with or
    // without credentials (no 401, no challenge).
    for path in ["/", "/readyz"] {
        let status = outsider.get(berth.url(path)).send().await.unwrap().status();
        assert_eq!(status, StatusCode::OK, "{path} must stay public");
    }
    for route in ["conformance", "fx", "fx-solo"] {
        for authorization in [Some(alice.as_str()), None] {
            let (status, body) = initialize_from(&outsider, &berth.mcp_url(route), authorization, &[]).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{route} {authorization:?}: {body}");
            assert!(forbidden(&body), "{route}: {body}");
        }
    }

    // Inside the server's list: an unrestricted backend serves; a restricted one is 403 after
    // authentication (a client without credentials still gets 401 first) ...
    let (status, _) = initialize_from(&insider, &berth.mcp_url("fx-solo"), Some(&alice), &[]).await;
    assert_eq!(status, StatusCode::OK);
    for route in ["conformance", "fx"] {
        let (status, body) = initialize_from(&insider, &berth.mcp_url(route), Some(&alice), &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{route}: {body}");
        assert!(forbidden(&body), "{route}: {body}");
        let (status, _) = initialize_from(&insider, &berth.mcp_url(route), None, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{route}: routing comes after authentication");
        // ... and a client in its list is served.
        let (status, body) = initialize_from(&allowed, &berth.mcp_url(route), Some(&alice), &[]).await;
        assert_eq!(status, StatusCode::OK, "{route}: {body}");
    }

    // Behind the trusted proxy the forwarded client is checked; an untrusted peer's
    // X-Forwarded-For is ignored.
    for (client, forwarded, expected) in [
        (&proxy, "10.9.1.2", StatusCode::OK),
        (&proxy, "10.8.1.2", StatusCode::FORBIDDEN),
        (&insider, "127.0.0.2", StatusCode::FORBIDDEN),
    ] {
        let headers = [("x-forwarded-for", forwarded)];
        let (status, body) = initialize_from(client, &berth.mcp_url("fx"), Some(&alice), &headers).await;
        assert_eq!(status, expected, "X-Forwarded-For {forwarded}: {body}");
    }
    berth.stop().await;
}

#[tokio::test]
async fn ipv6_clients_are_checked_against_ipv6_blocks() {
    let config = fixture_config("").replace("[backends.fx]\n", "[backends.fx]\nallow_ips = [\"2001:db8::/32\"]\n");
    let config = format!("[server]\nallow_ips = [\"2001:db8::/32\", \"::1/128\"]\n\n{config}");
    let berth = Berth::start_on(&config, &berth::NativeRegistry::builtin(), "[::1]:0").await;
    let client = client_from("::1");
    let alice = alice();
    let (status, body) = initialize_from(&client, &berth.mcp_url("conformance"), Some(&alice), &[]).await;
    assert_eq!(status, StatusCode::OK, "::1 is in server.allow_ips: {body}");
    let (status, body) = initialize_from(&client, &berth.mcp_url("fx"), Some(&alice), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "::1 is not in fx's 2001:db8::/32: {body}");
    assert_eq!(body["error"], "forbidden_address");
    berth.stop().await;

    let outside = format!("[server]\nallow_ips = [\"2001:db8::/32\"]\n\n{}", fixture_config(""));
    let berth = Berth::start_on(&outside, &berth::NativeRegistry::builtin(), "[::1]:0").await;
    let (status, body) = initialize_from(&client, &berth.mcp_url("conformance"), Some(&alice), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "::1 is outside server.allow_ips: {body}");
    berth.stop().await;
}
