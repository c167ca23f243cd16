//! SEP-2243 `Mcp-Param-*` headers through a real berth: the first 2026-07-28 call to a backend
//! makes berth list the tools itself, and a `list_changed` on any stream of the backend makes
//! it list them again.

use std::sync::{Arc, Mutex};

use berth::NativeRegistry;
use reqwest::StatusCode;
use rmcp::{
    ErrorData as McpError, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, ListToolsResult, PaginatedRequestParams, ServerCapabilities,
        ServerConfig,
    },
    service::RequestContext,
};
use serde_json::{Value, json};

use crate::{
    harness::{Berth, config_with, http},
    raw::RawSession,
    requests::{self, McpHeaders, stateless_call},
    sse::Messages,
};

/// A service whose tool `where` mirrors `place` into `Mcp-Param-Region` until `shift` is
/// called, and into `Mcp-Param-Zone` from then on, which `shift` announces with
/// `notifications/tools/list_changed`.
#[derive(Debug, Clone)]
struct Shifting {
    header: Arc<Mutex<&'static str>>,
}

impl ServerHandler for Shifting {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_tool_list_changed().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let header = *self.header.lock().unwrap();
        Ok(serde_json::from_value(json!({"resultType": "complete", "tools": [
            {"name": "where", "inputSchema": {"type": "object", "properties": {
                "place": {"type": "string", "x-mcp-header": header}}}},
            {"name": "shift", "inputSchema": {"type": "object"}},
        ]}))
        .unwrap())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if request.name == "shift" {
            *self.header.lock().unwrap() = "Zone";
            context.peer.notify_tool_list_changed().await.unwrap();
        }
        let text = format!("{} done", request.name);
        Ok(CallToolResponse::Complete(
            serde_json::from_value(json!({"resultType": "complete", "content": [{"type": "text", "text": text}]}))
                .unwrap(),
        ))
    }
}

/// A stateless 2026-07-28 `tools/call` with the given `Mcp-Param-*` headers: status and answer.
async fn call(
    berth: &Berth,
    backend: &str,
    tool: &str,
    arguments: Value,
    params: &[(&str, &str)],
) -> (StatusCode, Value) {
    let message = stateless_call(7, tool, arguments);
    let mut request = requests::post(&http(), berth.mcp_url(backend)).stateless_call(tool);
    for (name, value) in params {
        request = request.header(*name, *value);
    }
    let response = request.body(message.to_string()).send().await.unwrap();
    let messages = Messages::from(response).await;
    let status = messages.status;
    (status, messages.response().await)
}

fn assert_mismatch((status, body): (StatusCode, Value)) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], -32020, "{body}");
    assert_eq!(body["id"], 7, "{body}");
}

fn assert_text((status, body): (StatusCode, Value), text: &str) {
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["content"][0]["text"], text, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_call_lists_the_tools_and_list_changed_lists_them_again() {
    let shifting = Shifting { header: Arc::new(Mutex::new("Region")) };
    let registry = NativeRegistry::builtin().register("shifting", move || shifting.clone());
    let berth = Berth::start_with(&config_with("[backends.shifting]\nkind = \"native\"\n"), &registry).await;

    // The very first request to the conformance route: berth knows no tools yet.
    let region = json!({"region": "us-west1"});
    let wrong = call(&berth, "conformance", "test_header_param", region.clone(), &[("mcp-param-region", "eu-north1")]);
    assert_mismatch(wrong.await);
    let right = call(&berth, "conformance", "test_header_param", region.clone(), &[("mcp-param-region", "us-west1")]);
    assert_text(right.await, "Region: us-west1");
    let encoded = [("mcp-param-region", "=?base64?dXMtd2VzdDE=?=")];
    assert_text(call(&berth, "conformance", "test_header_param", region, &encoded).await, "Region: us-west1");

    // Region until the list changes...
    let place = json!({"place": "dock 4"});
    assert_text(
        call(&berth, "shifting", "where", place.clone(), &[("mcp-param-region", "dock 4")]).await,
        "where done",
    );
    assert_mismatch(call(&berth, "shifting", "where", place.clone(), &[("mcp-param-zone", "dock 4")]).await);
    // ...which an older client's session hears on its GET stream, through berth.
    let session = RawSession::open(&berth.mcp_url("shifting"), json!({})).await;
    let mut stream = session.listen().await;
    assert_eq!(session.tool("shift", json!({})).await, "shift done");
    stream.find_method("notifications/tools/list_changed").await.expect("the GET stream stays open");
    // Zone from then on: berth listed the tools again.
    assert_text(call(&berth, "shifting", "where", place.clone(), &[("mcp-param-zone", "dock 4")]).await, "where done");
    assert_mismatch(call(&berth, "shifting", "where", place, &[("mcp-param-region", "dock 4")]).await);
    drop(stream);
    session.delete().await;
    berth.stop().await;
}
