//! Requests as an MCP client sends them over Streamable HTTP, as Alice: the POST of a message,
//! the GET of a stream, the DELETE of a session, the messages that open one or make a
//! stateless call, and rmcp's client transport with the same credentials.
//!
//! Every test that speaks MCP over HTTP builds its requests here, so that the headers a client
//! owes berth are written once. Tests that check what berth does with other headers (the
//! status table, raw bytes on a socket) write theirs on purpose.

use std::collections::HashMap;

use http::{HeaderName, HeaderValue};
use reqwest::{Client, IntoUrl, RequestBuilder, StatusCode, header::HeaderMap};
use rmcp::transport::{StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig};
use serde_json::{Value, json};

use crate::{
    harness::{alice, http},
    sse::Messages,
};

/// The `Accept` of a POST: the answer may be a JSON body or an SSE stream.
pub(crate) const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// The protocol version whose requests carry their session-free context in `_meta`.
pub(crate) const STATELESS_VERSION: &str = "2026-07-28";

/// A POST of a JSON-RPC message to an MCP endpoint, as Alice, accepting JSON or SSE.
pub(crate) fn post(client: &Client, url: impl IntoUrl) -> RequestBuilder {
    client
        .post(url)
        .header("authorization", alice())
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
}

/// The status of an `initialize` POSTed to `url` with `authorization`, and `host` as the `Host`
/// header when given: what a client with those credentials is told.
pub(crate) async fn initialize_status_as(url: &str, authorization: &str, host: Option<&str>) -> StatusCode {
    let mut request = http().post(url);
    if let Some(host) = host {
        request = request.header("host", host);
    }
    request
        .header("authorization", authorization)
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(initialize("2025-11-25").to_string())
        .send()
        .await
        .unwrap()
        .status()
}

/// A GET of an MCP endpoint's SSE stream, as Alice.
pub(crate) fn get_stream(client: &Client, url: impl IntoUrl) -> RequestBuilder {
    client.get(url).header("authorization", alice()).header("accept", "text/event-stream")
}

/// A DELETE that ends session `id`, as Alice.
pub(crate) fn delete(client: &Client, url: impl IntoUrl, id: &str) -> RequestBuilder {
    client.delete(url).header("authorization", alice()).header("mcp-session-id", id)
}

/// The headers that place a request in a session, a protocol version or a stream.
pub(crate) trait McpHeaders {
    /// `Mcp-Session-Id`.
    fn session(self, id: &str) -> Self;
    /// `MCP-Protocol-Version`.
    fn protocol(self, version: &str) -> Self;
    /// `Last-Event-ID`: where a resumed stream picks up.
    fn last_event_id(self, id: &str) -> Self;
    /// What a stateless `tools/call` of `tool` says in its headers: the protocol version,
    /// `Mcp-Method` and `Mcp-Name` (SEP-2243).
    fn stateless_call(self, tool: &str) -> Self;
}

impl McpHeaders for RequestBuilder {
    fn session(self, id: &str) -> Self {
        self.header("mcp-session-id", id)
    }

    fn protocol(self, version: &str) -> Self {
        self.header("mcp-protocol-version", version)
    }

    fn last_event_id(self, id: &str) -> Self {
        self.header("last-event-id", id)
    }

    fn stateless_call(self, tool: &str) -> Self {
        self.protocol(STATELESS_VERSION).header("mcp-method", "tools/call").header("mcp-name", tool)
    }
}

/// An `initialize` request with id 1 for protocol `version`, declaring no capabilities.
pub(crate) fn initialize(version: &str) -> Value {
    initialize_with(1, version, json!({}))
}

/// An `initialize` request with its id, protocol version and client capabilities.
pub(crate) fn initialize_with(id: i64, version: &str, capabilities: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": capabilities,
        "clientInfo": {"name": "berth-tests", "version": "1"}}})
}

/// The notification that completes a handshake.
pub(crate) fn initialized() -> Value {
    json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
}

/// A stateless `tools/call`: no session, the protocol version, client capabilities and client
/// information in its `_meta`.
pub(crate) fn stateless_call(id: impl Into<Value>, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id.into(), "method": "tools/call", "params": {
        "name": tool, "arguments": arguments, "_meta": {
            "io.modelcontextprotocol/protocolVersion": STATELESS_VERSION,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "berth-tests", "version": "1"}}}})
}

/// POSTs one JSON-RPC message as Alice, in `session` (speaking 2025-11-25) when given, from a
/// client of its own (no connection outlives the call); answers the status, the headers and
/// the answer's message that carries an id (the JSON body, or the first such SSE event).
pub(crate) async fn exchange(url: &str, session: Option<&str>, body: Value) -> (StatusCode, HeaderMap, Option<Value>) {
    let mut request = post(&http(), url).body(body.to_string());
    if let Some(session) = session {
        request = request.session(session).protocol("2025-11-25");
    }
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let message = Messages::from(response).await.all().await.into_iter().find(|message| message.get("id").is_some());
    (status, headers, message)
}

/// Opens a session (2025-11-25) at `url` with [`exchange`], so that no connection stays open
/// behind it: answers its id.
pub(crate) async fn open_session(url: &str) -> String {
    let (_, headers, _) = exchange(url, None, initialize("2025-11-25")).await;
    let session = headers["mcp-session-id"].to_str().unwrap().to_string();
    exchange(url, Some(&session), initialized()).await;
    session
}

/// rmcp's Streamable-HTTP client transport to `url`, authenticated as Alice.
pub(crate) fn transport(url: String) -> StreamableHttpClientTransport<Client> {
    let mut headers = HashMap::new();
    headers.insert(HeaderName::from_static("authorization"), HeaderValue::from_str(&alice()).unwrap());
    StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers),
    )
}
