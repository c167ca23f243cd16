//! Real MCP clients through the whole stack: rmcp's Streamable-HTTP client over both protocol
//! generations, and the session lifecycle (initialize, session header, DELETE) over raw HTTP.

use std::collections::HashMap;

use http::{HeaderName, HeaderValue};
use reqwest::StatusCode;
use rmcp::{
    ServiceExt,
    model::{CallToolRequestParams, ProtocolVersion},
    service::{ClientLifecycleMode, ClientServiceExt, RoleClient, RunningService},
    transport::{StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig},
};
use serde_json::{Value, json};

use crate::harness::{Berth, alice, http};

fn transport(url: String) -> StreamableHttpClientTransport<reqwest::Client> {
    let mut headers = HashMap::new();
    headers.insert(HeaderName::from_static("authorization"), HeaderValue::from_str(&alice()).unwrap());
    StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers),
    )
}

async fn exercise(client: &RunningService<RoleClient, ()>) {
    let tools = client.list_tools(None).await.expect("tools/list");
    let names: Vec<&str> = tools.tools.iter().map(|t| t.name.as_ref()).collect();
    assert!(names.contains(&"test_simple_text"), "{names:?}");
    let result = client.call_tool(CallToolRequestParams::new("test_simple_text")).await.expect("tools/call");
    let text = serde_json::to_value(&result.content).unwrap();
    assert!(text.to_string().contains("text"), "{text}");
    assert_ne!(result.is_error, Some(true));
}

#[tokio::test]
async fn rmcp_client_with_sessions() {
    let berth = Berth::default().await;
    let client = ().serve(transport(berth.url("/conformance/mcp"))).await.expect("initialize");
    let info = client.peer_info().expect("server info");
    assert!(info.protocol_version.has_initialize(), "{:?}", info.protocol_version);
    exercise(&client).await;
    client.cancel().await.unwrap();
    berth.stop().await;
}

#[tokio::test]
async fn rmcp_client_stateless_2026() {
    let berth = Berth::default().await;
    let lifecycle = ClientLifecycleMode::Discover { preferred_versions: vec![ProtocolVersion::V_2026_07_28] };
    let client =
        ().serve_with_lifecycle(transport(berth.url("/conformance/mcp")), lifecycle).await.expect("server/discover");
    exercise(&client).await;
    client.cancel().await.unwrap();
    berth.stop().await;
}

#[tokio::test]
async fn concurrent_clients_each_get_their_own_answers() {
    let berth = Berth::default().await;
    let url = berth.url("/conformance/mcp");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let client = ().serve(transport(url)).await.expect("initialize");
                for _ in 0..5 {
                    exercise(&client).await;
                }
                client.cancel().await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    berth.stop().await;
}

/// POSTs one JSON-RPC message; answers the status, headers and the JSON-RPC message in the body
/// (plain JSON or the first SSE `data:` event carrying an id).
pub(crate) async fn post(
    url: &str,
    session: Option<&str>,
    body: Value,
) -> (StatusCode, reqwest::header::HeaderMap, Option<Value>) {
    let mut request = http()
        .post(url)
        .header("authorization", alice())
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(session) = session {
        request = request.header("mcp-session-id", session).header("mcp-protocol-version", "2025-11-25");
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let message = serde_json::from_str(&text).ok().or_else(|| {
        text.lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
            .find(|message| message.get("id").is_some())
    });
    (status, headers, message)
}

#[tokio::test]
async fn session_lifecycle_over_raw_http() {
    let berth = Berth::default().await;
    let url = berth.url("/conformance/mcp");
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}});
    let (status, headers, message) = post(&url, None, init).await;
    assert_eq!(status, StatusCode::OK);
    let session = headers["mcp-session-id"].to_str().unwrap().to_string();
    assert_eq!(message.unwrap()["result"]["protocolVersion"], "2025-11-25");
    let (status, _, _) =
        post(&url, Some(&session), json!({"jsonrpc":"2.0","method":"notifications/initialized"})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _, message) = post(&url, Some(&session), json!({"jsonrpc":"2.0","id":2,"method":"tools/list"})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(message.unwrap()["result"]["tools"].as_array().is_some_and(|t| !t.is_empty()));
    let deleted =
        http().delete(&url).header("authorization", alice()).header("mcp-session-id", &session).send().await.unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let (status, _, _) = post(&url, Some(&session), json!({"jsonrpc":"2.0","id":3,"method":"tools/list"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a deleted session is gone");
    berth.stop().await;
}
