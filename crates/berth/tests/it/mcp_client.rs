//! Real MCP clients through the whole stack: rmcp's Streamable-HTTP client over both protocol
//! generations, and the session lifecycle (initialize, session header, DELETE) over raw HTTP.

use reqwest::StatusCode;
use rmcp::{
    ServiceExt,
    model::{CallToolRequestParams, ProtocolVersion},
    service::{ClientLifecycleMode, ClientServiceExt, RoleClient, RunningService},
};
use serde_json::json;

use crate::{
    harness::{Berth, http},
    requests::{self, exchange, initialize, initialized, transport},
};

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
    let client = ().serve(transport(berth.mcp_url("conformance"))).await.expect("initialize");
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
        ().serve_with_lifecycle(transport(berth.mcp_url("conformance")), lifecycle).await.expect("server/discover");
    exercise(&client).await;
    client.cancel().await.unwrap();
    berth.stop().await;
}

#[tokio::test]
async fn concurrent_clients_each_get_their_own_answers() {
    let berth = Berth::default().await;
    let url = berth.mcp_url("conformance");
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

#[tokio::test]
async fn session_lifecycle_over_raw_http() {
    let berth = Berth::default().await;
    let url = berth.mcp_url("conformance");
    let (status, headers, message) = exchange(&url, None, initialize("2025-11-25")).await;
    assert_eq!(status, StatusCode::OK);
    let session = headers["mcp-session-id"].to_str().unwrap().to_string();
    assert_eq!(message.unwrap()["result"]["protocolVersion"], "2025-11-25");
    let (status, _, _) = exchange(&url, Some(&session), initialized()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _, message) =
        exchange(&url, Some(&session), json!({"jsonrpc":"2.0","id":2,"method":"tools/list"})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(message.unwrap()["result"]["tools"].as_array().is_some_and(|t| !t.is_empty()));
    let deleted = requests::delete(&http(), &url, &session).send().await.unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let (status, _, _) = exchange(&url, Some(&session), json!({"jsonrpc":"2.0","id":3,"method":"tools/list"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a deleted session is gone");
    berth.stop().await;
}
