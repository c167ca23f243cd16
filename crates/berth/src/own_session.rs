//! berth's own MCP session on a backend: initialize, requests, end; what the admin API's
//! `POST /api/backends/{name}/call` and the REST face (`rest.rs`) both speak.
//!
//! The session is spoken to a service, not to a connection: the admin call gives it
//! [`Backend::handle`](crate::backend::Backend::handle) directly, the REST face the rest of the
//! MCP stack below it (transport rules, observer, access, rate limit, visibility), so that
//! every kind of backend is called through the code the MCP route uses. Each request carries
//! the extensions of the caller (identity, routed backend, client address), so the session
//! belongs to whoever asked.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Extensions, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde_json::{Value, json};
use tower::{Service, ServiceExt};

use crate::{
    body::{RequestBody, ResponseBody, request_body},
    mcp_headers::SESSION_HEADER,
    sse_event::{event_end, event_message},
};

/// The protocol version berth's own sessions speak.
pub(crate) const PROTOCOL_VERSION: &str = "2025-11-25";
/// The most bytes of one answer berth reads: a larger one is a failure of the backend.
const MAX_ANSWER_BYTES: usize = 16 << 20;
/// The most pages of a `tools/list` berth follows.
const MAX_PAGES: usize = 32;

/// What berth's own requests go through: an MCP endpoint as a service.
pub(crate) trait Endpoint:
    Service<Request<RequestBody>, Response = Response<ResponseBody>, Error = Infallible, Future: Send>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> Endpoint for S where
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>, Error = Infallible, Future: Send>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// A backend's answer to one message: the HTTP status, the session id it gave, the JSON-RPC
/// response (from a JSON or an SSE body), and the body as it came.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) session: Option<String>,
    pub(crate) message: Option<Value>,
    pub(crate) body: Bytes,
    /// The `Retry-After` of a refusal (a rate limit's 429), to pass on.
    pub(crate) retry_after: Option<HeaderValue>,
}

impl Answer {
    /// An answer berth makes up when it could not even ask.
    fn broken(status: StatusCode, text: &str) -> Self {
        Self { status, session: None, message: None, body: Bytes::copy_from_slice(text.as_bytes()), retry_after: None }
    }

    /// The JSON-RPC `result`, when the exchange succeeded.
    pub(crate) fn result(&self) -> Option<&Value> {
        self.message.as_ref().filter(|_| self.status.is_success())?.get("result")
    }

    /// The JSON-RPC `error` object, when the backend (or berth) answered with one.
    pub(crate) fn error(&self) -> Option<&Value> {
        self.message.as_ref()?.get("error")
    }

    /// What went wrong, for a human: the JSON-RPC error's message, a plain refusal's message,
    /// or the start of the body.
    pub(crate) fn said(&self) -> String {
        let message = self.message.as_ref();
        message
            .and_then(|m| m.pointer("/error/message").or_else(|| m.get("message")))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body[..self.body.len().min(512)]).into_owned())
    }

    /// The slug of a refusal berth answered itself (`forbidden_backend`, `rate_limited`, ...),
    /// from a JSON-RPC error's `data.error` or a plain refusal's `error`.
    pub(crate) fn slug(&self) -> Option<&str> {
        let message = self.message.as_ref()?;
        message.pointer("/error/data/error").or_else(|| message.get("error")).and_then(Value::as_str)
    }
}

/// How berth's requests are addressed: the route, the `Host`, and the caller's extensions.
#[derive(Debug, Clone)]
pub(crate) struct Addressed {
    /// `/<backend>/mcp`.
    pub(crate) path: String,
    /// The caller's `Host` (rmcp wants one, as every HTTP/1.1 request has).
    pub(crate) host: HeaderValue,
    /// The caller's extensions: identity, routed backend, client address.
    pub(crate) extensions: Extensions,
}

/// One session of berth's own, open or not yet.
#[derive(Debug, Clone)]
pub(crate) struct OwnSession<S> {
    service: S,
    addressed: Addressed,
    id: Option<String>,
}

/// An initialize that did not give a session.
#[derive(Debug)]
pub(crate) struct Refused(pub(crate) Answer);

impl<S: Endpoint> OwnSession<S> {
    /// A session not yet opened, through `service`.
    pub(crate) fn new(service: S, addressed: Addressed) -> Self {
        Self { service, addressed, id: None }
    }

    /// A session already open under `id` (one that berth keeps between calls).
    pub(crate) fn resumed(service: S, addressed: Addressed, id: Option<String>) -> Self {
        Self { service, addressed, id }
    }

    /// The session id the backend gave, if any.
    pub(crate) fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Initializes (`initialize`, then `notifications/initialized`) as `client`; the
    /// initialize result on success.
    pub(crate) async fn open(&mut self, client: &str) -> Result<Value, Refused> {
        let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
            "clientInfo": {"name": client, "version": env!("CARGO_PKG_VERSION")}}});
        let answer = self.send(Method::POST, Some(&initialize)).await;
        let Some(result) = answer.result().filter(|_| answer.status == StatusCode::OK).cloned() else {
            return Err(Refused(answer));
        };
        self.id = answer.session.clone();
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let answer = self.send(Method::POST, Some(&initialized)).await;
        if !answer.status.is_success() {
            self.end().await;
            return Err(Refused(answer));
        }
        Ok(result)
    }

    /// Calls `tool` with `arguments`.
    pub(crate) async fn call_tool(&self, tool: &str, arguments: &Value) -> Answer {
        let request = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}});
        self.send(Method::POST, Some(&request)).await
    }

    /// Every tool the backend lists to this session, page by page; the answer that failed
    /// otherwise.
    pub(crate) async fn list_tools(&self) -> Result<Vec<Value>, Answer> {
        let mut tools = Vec::new();
        let mut cursor = None;
        for page in 0..MAX_PAGES {
            let mut request = json!({"jsonrpc": "2.0", "id": 3 + page, "method": "tools/list", "params": {}});
            if let Some(cursor) = cursor.take() {
                request["params"]["cursor"] = cursor;
            }
            let answer = self.send(Method::POST, Some(&request)).await;
            let Some(result) = answer.result() else { return Err(answer) };
            tools.extend(result.get("tools").and_then(Value::as_array).into_iter().flatten().cloned());
            match result.get("nextCursor").filter(|next| !next.is_null()) {
                Some(next) => cursor = Some(next.clone()),
                None => return Ok(tools),
            }
        }
        Err(Answer::broken(StatusCode::BAD_GATEWAY, &format!("the tool list has more than {MAX_PAGES} pages")))
    }

    /// Ends the session (DELETE), if the backend gave one.
    pub(crate) async fn end(&mut self) {
        if self.id.is_some() {
            let _ = self.send(Method::DELETE, None).await;
            self.id = None;
        }
    }

    /// Sends one message (or a DELETE) and reads the answer.
    pub(crate) async fn send(&self, method: Method, message: Option<&Value>) -> Answer {
        let body = message.map(|m| Bytes::from(m.to_string())).unwrap_or_default();
        let mut builder = Request::builder()
            .method(method)
            .uri(&self.addressed.path)
            .header(header::HOST, self.addressed.host.clone())
            .header(header::ACCEPT, "application/json, text/event-stream")
            .header(header::CONTENT_TYPE, "application/json")
            .header("mcp-protocol-version", PROTOCOL_VERSION);
        if let Some(id) = &self.id {
            builder = builder.header(SESSION_HEADER, id);
        }
        let Ok(mut request) = builder.body(request_body(body)) else {
            return Answer::broken(StatusCode::INTERNAL_SERVER_ERROR, "could not build a request");
        };
        *request.extensions_mut() = self.addressed.extensions.clone();
        let Ok(response) = self.service.clone().oneshot(request).await;
        let status = response.status();
        let session = response.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
        let sse = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        let Ok(collected) = Limited::new(response.into_body(), MAX_ANSWER_BYTES).collect().await else {
            return Answer::broken(
                StatusCode::BAD_GATEWAY,
                &format!("the backend's answer is larger than {} MiB", MAX_ANSWER_BYTES >> 20),
            );
        };
        let body = collected.to_bytes();
        let id = message.and_then(|m| m.get("id")).cloned();
        let message = if sse { response_event(&body, id.as_ref()) } else { serde_json::from_slice(&body).ok() };
        Answer { status, session, message, body, retry_after }
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
    fn the_response_is_found_among_the_events() {
        let body = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n\
                     data: {\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"sampling/createMessage\"}\n\n\
                     data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"ok\":true}}\n\n";
        assert_eq!(response_event(body, Some(&json!(2))).unwrap()["result"]["ok"], true);
        assert_eq!(response_event(body, Some(&json!(3))), None);
        let unterminated = b"data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}";
        assert!(response_event(unterminated, Some(&json!(2))).is_some());
    }

    #[test]
    fn an_answer_tells_its_refusal() {
        let answer = |status, text: &str| Answer {
            status,
            session: None,
            message: serde_json::from_str(text).ok(),
            body: Bytes::copy_from_slice(text.as_bytes()),
            retry_after: None,
        };
        let refused = answer(
            StatusCode::FORBIDDEN,
            r#"{"jsonrpc":"2.0","id":2,"error":{"code":-32600,"message":"no","data":{"error":"forbidden_backend"}}}"#,
        );
        assert_eq!((refused.slug(), refused.said().as_str()), (Some("forbidden_backend"), "no"));
        assert!(refused.result().is_none() && refused.error().is_some());
        let plain = answer(StatusCode::NOT_FOUND, r#"{"error":"not_found","message":"gone"}"#);
        assert_eq!((plain.slug(), plain.said().as_str()), (Some("not_found"), "gone"));
        let ok = answer(StatusCode::OK, r#"{"jsonrpc":"2.0","id":2,"result":{"content":[]}}"#);
        assert!(ok.result().is_some());
        assert_eq!(answer(StatusCode::BAD_GATEWAY, "nope").said(), "nope");
    }
}
