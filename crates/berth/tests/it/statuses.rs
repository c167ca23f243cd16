//! Every status berth answers itself, over real HTTP.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    harness::{Berth, alice, basic, config_with, http},
    process::berth_std_command,
    requests::{self, ACCEPT_BOTH as BOTH, initialize, stateless_call},
};

struct Case {
    name: &'static str,
    method: Method,
    path: &'static str,
    auth: Option<String>,
    headers: Vec<(&'static str, &'static str)>,
    body: String,
    status: StatusCode,
    /// `Some(id)`: the body must be a JSON-RPC error with that id; `None`: plain JSON `error`.
    jsonrpc_id: Option<i64>,
}

fn case(name: &'static str, method: Method, path: &'static str, status: StatusCode) -> Case {
    Case { name, method, path, auth: Some(alice()), headers: vec![], body: String::new(), status, jsonrpc_id: None }
}

#[tokio::test]
async fn every_status_berth_answers_itself() {
    let berth = Berth::start(&config_with(
        "[server]\nmax_body_bytes = 2048\npublic_hosts = [\"mcp.example.com\", \"*.mcp.example.com\"]\n",
    ))
    .await;
    let post = |name, headers: Vec<(&'static str, &'static str)>, body: &str, status, id| Case {
        headers,
        body: body.to_string(),
        jsonrpc_id: id,
        ..case(name, Method::POST, "/conformance/mcp", status)
    };
    let json = ("content-type", "application/json");
    let init = initialize("2025-11-25").to_string();
    let region_call = stateless_call(3, "test_header_param", json!({"region": "us-west1"})).to_string();
    let cases = vec![
        Case { auth: None, ..case("health needs no auth", Method::GET, "/", StatusCode::OK) },
        Case { auth: None, ..case("readyz needs no auth", Method::GET, "/readyz", StatusCode::OK) },
        Case {
            auth: None,
            ..case(
                "oauth discovery fails fast",
                Method::GET,
                "/.well-known/oauth-protected-resource",
                StatusCode::NOT_FOUND,
            )
        },
        Case {
            auth: None,
            ..case(
                "oauth metadata fails fast",
                Method::GET,
                "/.well-known/oauth-authorization-server",
                StatusCode::NOT_FOUND,
            )
        },
        Case { auth: None, ..case("no credentials", Method::POST, "/conformance/mcp", StatusCode::UNAUTHORIZED) },
        Case {
            auth: Some(basic("alice", "wrong")),
            ..case("wrong password", Method::POST, "/conformance/mcp", StatusCode::UNAUTHORIZED)
        },
        Case {
            auth: Some(basic("mallory", "correct horse battery staple")),
            ..case("unknown user", Method::GET, "/conformance/mcp", StatusCode::UNAUTHORIZED)
        },
        Case {
            auth: None,
            ..case("unknown backend hides behind auth", Method::GET, "/nope/mcp", StatusCode::UNAUTHORIZED)
        },
        case("unknown backend", Method::GET, "/nope/mcp", StatusCode::NOT_FOUND),
        case("not an MCP path", Method::GET, "/conformance", StatusCode::NOT_FOUND),
        Case {
            headers: vec![("host", "evil.example.org")],
            ..case("foreign host", Method::GET, "/conformance/mcp", StatusCode::FORBIDDEN)
        },
        Case {
            headers: vec![("origin", "https://evil.example.org"), ("accept", "text/event-stream")],
            ..case("foreign origin", Method::GET, "/conformance/mcp", StatusCode::FORBIDDEN)
        },
        case("GET without text/event-stream", Method::GET, "/conformance/mcp", StatusCode::NOT_ACCEPTABLE),
        post(
            "POST accepting only JSON",
            vec![("accept", "application/json"), json],
            &init,
            StatusCode::NOT_ACCEPTABLE,
            Some(1),
        ),
        post(
            "POST that is not JSON",
            vec![("accept", BOTH), ("content-type", "text/plain")],
            &init,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some(1),
        ),
        post(
            "POST over the body limit",
            vec![("accept", BOTH), json],
            &format!(r#"{{"jsonrpc":"2.0","id":2,"method":"ping","params":{{"pad":"{}"}}}}"#, "x".repeat(4096)),
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
        ),
        post(
            "unknown protocol version",
            vec![("accept", BOTH), json, ("mcp-protocol-version", "2023-01-01")],
            &init,
            StatusCode::BAD_REQUEST,
            Some(1),
        ),
        post(
            "Mcp-Param header contradicting the arguments",
            vec![
                ("accept", BOTH),
                json,
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "test_header_param"),
                ("mcp-param-region", "eu-north1"),
            ],
            &region_call,
            StatusCode::BAD_REQUEST,
            Some(3),
        ),
        post("malformed JSON", vec![("accept", BOTH), json], "{\"jsonrpc\":", StatusCode::BAD_REQUEST, None),
        case("PUT on an MCP endpoint", Method::PUT, "/conformance/mcp", StatusCode::METHOD_NOT_ALLOWED),
        post("a good initialize", vec![("accept", BOTH), json], &init, StatusCode::OK, None),
    ];
    let client = http();
    for case in cases {
        let mut request = client.request(case.method.clone(), berth.url(case.path)).body(case.body.clone());
        if let Some(auth) = &case.auth {
            request = request.header("authorization", auth);
        }
        for (name, value) in &case.headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), case.status, "{}", case.name);
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        if case.status == StatusCode::UNAUTHORIZED {
            assert_eq!(headers["www-authenticate"], "Basic realm=\"berth\", charset=\"UTF-8\"", "{}", case.name);
        }
        if case.status.is_client_error() {
            let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{}: body {text}", case.name));
            match case.jsonrpc_id {
                Some(id) => {
                    assert_eq!(body["jsonrpc"], "2.0", "{}: {body}", case.name);
                    assert_eq!(body["id"], id, "{}: {body}", case.name);
                    assert!(body["error"]["code"].is_i64(), "{}: {body}", case.name);
                }
                None => assert!(body.get("error").is_some(), "{}: {body}", case.name),
            }
        }
        if case.status == StatusCode::OK && case.path == "/" {
            assert_eq!(text, r#"{"status":"ok"}"#);
        }
    }
    berth.stop().await;
}

#[tokio::test]
async fn head_health_and_host_routing() {
    let berth = Berth::start(&config_with("[server]\nbase_domain = \"mcp.example.com\"\n")).await;
    let client = http();
    let head = client.head(berth.url("/")).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    // fs.mcp.example.com/mcp reaches backend `conformance` by host name alone.
    let response = requests::post(&client, berth.url("/mcp"))
        .header("host", "conformance.mcp.example.com")
        .body(initialize("2025-11-25").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("mcp-session-id"));
    let unknown = client
        .get(berth.url("/mcp"))
        .header("host", "nope.mcp.example.com")
        .header("authorization", alice())
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    berth.stop().await;
}

#[tokio::test]
async fn bcrypt_users_from_an_htpasswd_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("htpasswd");
    let line = format!("bob:{}\n", bcrypt_hash("s3cret"));
    std::fs::write(&path, line).unwrap();
    let berth = Berth::start(&format!(
        "[auth]\nusers_file = \"{}\"\n[backends.conformance]\nkind = \"native\"\n",
        path.display()
    ))
    .await;
    let client = http();
    for (password, status) in [
        ("s3cret", StatusCode::NOT_ACCEPTABLE),
        ("nope", StatusCode::UNAUTHORIZED),
        ("s3cret", StatusCode::NOT_ACCEPTABLE),
    ] {
        let response = client
            .get(berth.mcp_url("conformance"))
            .header("authorization", basic("bob", password))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{password}");
    }
    berth.stop().await;
}

fn bcrypt_hash(password: &str) -> String {
    let output = berth_std_command()
        .args(["hash-password", "--user", "x", "--cost", "4"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    let line = String::from_utf8(output.stdout).unwrap();
    line.trim().strip_prefix("x:").unwrap().to_string()
}
