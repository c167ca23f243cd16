//! `POST /api/backends/{name}/call`: one tool call, answered as plain JSON.
//!
//! berth opens a session of its own on the backend (initialize, initialized), calls the tool,
//! and ends the session, speaking to the backend exactly as the MCP route does (the same
//! [`Backend::handle`]), so every kind of backend is called alike. The session belongs to the
//! admin who asked; the call is audited as an admin action, not counted in the MCP metrics.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde_json::{Value, json};

use crate::{
    backend::Backend,
    body::{RequestBody, ResponseBody, request_body},
    extensions::AuthenticatedUser,
    mcp_headers::SESSION_HEADER,
    reply::{Rejection, json_response},
    sse_event::{event_end, event_message},
};

/// Largest accepted call body.
const MAX_CALL_BODY: usize = 1024 * 1024;
/// The protocol version berth's own session speaks.
const PROTOCOL_VERSION: &str = "2025-11-25";

/// What the body asks for.
#[derive(Debug, PartialEq)]
struct Call {
    tool: String,
    arguments: Value,
}

fn bad_request(message: impl Into<String>) -> Response<ResponseBody> {
    Rejection::new(StatusCode::BAD_REQUEST, "invalid_call", message).into_response()
}

/// `{"tool": "...", "arguments": {...}}` (`arguments` optional).
fn parse_call(body: &[u8]) -> Result<Call, String> {
    let value: Value = serde_json::from_slice(body).map_err(|error| format!("the body is not JSON: {error}"))?;
    let Value::Object(mut object) = value else { return Err("the body must be a JSON object".into()) };
    let tool = match object.remove("tool") {
        Some(Value::String(tool)) if !tool.is_empty() => tool,
        _ => return Err("`tool` must be a non-empty string".into()),
    };
    let arguments = match object.remove("arguments") {
        None | Some(Value::Null) => json!({}),
        Some(arguments @ Value::Object(_)) => arguments,
        Some(_) => return Err("`arguments` must be an object".into()),
    };
    if let Some(key) = object.keys().next() {
        return Err(format!("unknown field `{key}`: only `tool` and `arguments`"));
    }
    Ok(Call { tool, arguments })
}

/// Calls the tool the admin's `request` names on `backend`.
pub(crate) async fn call(backend: Arc<Backend>, request: Request<RequestBody>) -> Response<ResponseBody> {
    let user = request.extensions().get::<AuthenticatedUser>().cloned();
    let body = match Limited::new(request.into_body(), MAX_CALL_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Rejection::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "the call body is larger than 1 MiB")
                .into_response();
        }
    };
    let call = match parse_call(&body) {
        Ok(call) => call,
        Err(message) => return bad_request(message),
    };
    let session = Session { backend: &backend, user, id: None };
    session.run(&call).await
}

/// berth's own session on the backend.
struct Session<'a> {
    backend: &'a Backend,
    user: Option<AuthenticatedUser>,
    id: Option<String>,
}

/// A backend's answer to one message: the HTTP status, the session id it gave, and the
/// JSON-RPC response (from a JSON or an SSE body).
struct Answer {
    status: StatusCode,
    session: Option<String>,
    message: Option<Value>,
    body: Bytes,
}

impl Session<'_> {
    async fn run(mut self, call: &Call) -> Response<ResponseBody> {
        let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
            "clientInfo": {"name": "berth-admin", "version": env!("CARGO_PKG_VERSION")}}});
        let answer = self.send(Method::POST, Some(&initialize)).await;
        if answer.status != StatusCode::OK || answer.message.as_ref().is_none_or(|m| m.get("result").is_none()) {
            return self.failed(answer, "initialize");
        }
        self.id = answer.session;
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let answer = self.send(Method::POST, Some(&initialized)).await;
        if !answer.status.is_success() {
            return self.end(self.failed(answer, "notifications/initialized")).await;
        }
        let request = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": call.tool, "arguments": call.arguments}});
        let answer = self.send(Method::POST, Some(&request)).await;
        let response = match answer.message.as_ref().map(|m| (m.get("result"), m.get("error"))) {
            Some((Some(result), _)) if answer.status == StatusCode::OK => json_response(
                StatusCode::OK,
                &json!({"backend": self.backend.name(), "tool": call.tool, "result": result}),
            ),
            // The backend refused the call itself (an unknown tool, invalid arguments).
            Some((_, Some(error))) => json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({"error": "tool_error", "message": error["message"], "jsonrpc_error": error}),
            ),
            _ => self.failed(answer, "tools/call"),
        };
        self.end(response).await
    }

    /// Ends berth's session, then answers `response`.
    async fn end(&self, response: Response<ResponseBody>) -> Response<ResponseBody> {
        if self.id.is_some() {
            let _ = self.send(Method::DELETE, None).await;
        }
        response
    }

    /// The backend refused or broke a step: its status when it is an error (a stopped or
    /// unready backend's 503, say), else 502, with what it said.
    fn failed(&self, answer: Answer, step: &str) -> Response<ResponseBody> {
        let status = if answer.status.is_client_error() || answer.status.is_server_error() {
            answer.status
        } else {
            StatusCode::BAD_GATEWAY
        };
        let said = answer
            .message
            .as_ref()
            .and_then(|m| m.pointer("/error/message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&answer.body[..answer.body.len().min(512)]).into_owned());
        let message = format!("backend `{}` answered {step} with {}: {said}", self.backend.name(), answer.status);
        Rejection::new(status, "backend_failed", message).into_response()
    }

    async fn send(&self, method: Method, message: Option<&Value>) -> Answer {
        let body = message.map(|m| Bytes::from(m.to_string())).unwrap_or_default();
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("/{}/mcp", self.backend.name()))
            // rmcp (native backends) wants a Host, as every HTTP/1.1 request has.
            .header(header::HOST, "localhost")
            .header(header::ACCEPT, "application/json, text/event-stream")
            .header(header::CONTENT_TYPE, "application/json")
            .header("mcp-protocol-version", PROTOCOL_VERSION);
        if let Some(id) = &self.id {
            builder = builder.header(SESSION_HEADER, id);
        }
        let Ok(mut request) = builder.body(request_body(body)) else {
            return Answer {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                session: None,
                message: None,
                body: Bytes::new(),
            };
        };
        if let Some(user) = &self.user {
            request.extensions_mut().insert(user.clone());
        }
        let response = self.backend.handle(request).await;
        let status = response.status();
        let session = response.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let sse = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        let body = response.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        let id = message.and_then(|m| m.get("id")).cloned();
        let message = if sse { response_event(&body, id.as_ref()) } else { serde_json::from_slice(&body).ok() };
        Answer { status, session, message, body }
    }
}

/// The response to request `id` among the events of an SSE body (notifications and server
/// requests before it are skipped).
fn response_event(body: &[u8], id: Option<&Value>) -> Option<Value> {
    let mut from = 0;
    let mut start = 0;
    while let Some((end, next)) = event_end(body, from) {
        if let Some(message) = event_message(&body[start..end])
            && message.get("method").is_none()
            && message.get("id") == id
        {
            return Some(message);
        }
        (start, from) = (next, next);
    }
    // The last event may end without a blank line.
    event_message(&body[start..]).filter(|message| message.get("id") == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_body_is_a_tool_and_optional_arguments() {
        assert_eq!(
            parse_call(br#"{"tool":"echo","arguments":{"text":"hi"}}"#).unwrap().arguments,
            json!({"text": "hi"})
        );
        assert_eq!(parse_call(br#"{"tool":"pid"}"#).unwrap(), Call { tool: "pid".into(), arguments: json!({}) });
        for (body, said) in [
            (&b"nope"[..], "not JSON"),
            (b"[1]", "JSON object"),
            (br#"{"tool":""}"#, "non-empty string"),
            (br#"{"tool":3}"#, "non-empty string"),
            (br#"{"tool":"a","arguments":[1]}"#, "must be an object"),
            (br#"{"tool":"a","args":{}}"#, "unknown field `args`"),
        ] {
            let error = parse_call(body).unwrap_err();
            assert!(error.contains(said), "{error}");
        }
    }

    #[test]
    fn the_response_is_found_among_the_events() {
        let body = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n\
                     data: {\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"sampling/createMessage\"}\n\n\
                     data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"ok\":true}}\n\n";
        assert_eq!(response_event(body, Some(&json!(2))).unwrap()["result"]["ok"], true);
        assert_eq!(response_event(body, Some(&json!(3))), None);
        let unterminated = b"data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}";
        assert!(response_event(unterminated, Some(&json!(2))).is_some());
    }
}
