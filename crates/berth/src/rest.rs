//! The REST face of every backend: `GET /<name>/openapi.json` and `POST /<name>/tools/<tool>`,
//! for scripts and tools that speak OpenAPI rather than MCP.
//!
//! A REST request is translated into MCP requests that go down the rest of the MCP stack (the
//! transport rules, the observer, the allow list, the rate limit, visibility, the `Mcp-Param`
//! checks, the backend), with the caller's identity: the same access rules, metrics and audit
//! apply to it as to an MCP client, and a tool hidden from the caller is absent from their
//! document and refused on call.
//!
//! **Sessions.** berth keeps one MCP session per backend and caller identity
//! ([`RestSessions`], held by the [`Backend`], bounded), opened on the caller's first request
//! and re-opened once when the backend answers that it ended (404), so that a call costs one
//! `tools/call` rather than a full handshake. On a shared stdio backend the handshake is
//! answered from the instance's cached initialize result anyway; on a per-session one the kept
//! session holds an instance until the backend's idle expiry ends it.
//!
//! **Answers**, always JSON: `200` with the tool's `structuredContent` when present, else its
//! `content` list; `422 tool_error` for a result with `isError: true` (the tool ran and
//! failed: the caller's request, not the gateway, is what did not work), with the whole result;
//! `404 unknown_tool`, `400 invalid_arguments`, `405` with `Allow`, `413`, `415`; berth's own
//! refusals (`401`, `403`, `429`, ...) as on the MCP route; `502`/`503`/`504` when the backend
//! failed, was not ready or timed out.

mod arguments;
mod openapi;

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use http::{HeaderValue, Method, Request, Response, StatusCode, header, request::Parts};
use serde_json::{Value, json};
use tower::{Layer, Service};

use crate::{
    backend::Backend,
    body::{RequestBody, ResponseBody},
    extensions::{AuthenticatedUser, Rest, Target},
    jsonrpc::{INVALID_PARAMS, METHOD_NOT_FOUND, TIMEOUT},
    mcp_params::Epoch,
    own_session::{Addressed, Answer, Endpoint, OwnSession, Refused},
    reply::{Rejection, json_response},
    streamable::{is_json, read_bounded, too_large},
};

/// The most caller identities whose sessions a backend keeps; beyond, one is forgotten (the
/// backend's idle expiry ends it).
const MAX_KEPT: usize = 1024;
/// The `clientInfo.name` of the sessions berth opens for REST callers.
const CLIENT_NAME: &str = "berth-rest";
/// How long a caller's tool list is used without asking again, when no `list_changed` said
/// it changed: a native backend's notification is seen only on a stream that passes through
/// berth, so a list is not trusted forever.
const MAX_LIST_AGE: Duration = Duration::from_secs(30);

/// Counts the stacks built, so that a list read under an older configuration (other groups,
/// other visibility) is read again.
static GENERATIONS: AtomicU64 = AtomicU64::new(0);

/// What the REST face needs to know about the MCP port.
#[derive(Debug, Clone)]
pub(crate) struct RestSettings {
    /// Largest accepted body (`server.max_body_bytes`), as on the MCP route.
    pub(crate) max_body_bytes: usize,
    /// Whether the port serves TLS: the scheme of the document's `servers` URL unless a trusted
    /// proxy says otherwise (`X-Forwarded-Proto`).
    pub(crate) tls: bool,
    /// Whether callers authenticate (the document then names Basic and bearer schemes).
    pub(crate) authenticated: bool,
    /// Which stack this is (see [`RestSettings::generation`]).
    generation: u64,
}

impl RestSettings {
    /// The settings of a newly built stack.
    pub(crate) fn new(max_body_bytes: usize, tls: bool, authenticated: bool) -> Self {
        Self { max_body_bytes, tls, authenticated, generation: GENERATIONS.fetch_add(1, Ordering::Relaxed) }
    }
}

/// The sessions one backend keeps for REST callers, by identity.
#[derive(Debug, Default)]
pub(crate) struct RestSessions(Mutex<HashMap<Arc<str>, Slot>>);

/// One identity's kept session, if open; locked while it is opened, so that one caller's
/// concurrent first requests open one session.
type Slot = Arc<tokio::sync::Mutex<Option<Kept>>>;

/// A session kept open: its id (none if the backend gave none), its initialize result, and
/// the tools it was last listed.
#[derive(Debug, Clone)]
struct Kept {
    id: Option<String>,
    init: Arc<Value>,
    listed: Option<Listed>,
}

/// A caller's tool list, and when it was read: under which epoch of the backend's
/// [`ToolSchemas`](crate::mcp_params::ToolSchemas) (a `list_changed` moves it on), which
/// stack, and at what time.
#[derive(Debug, Clone)]
struct Listed {
    epoch: Epoch,
    generation: u64,
    at: Instant,
    tools: Arc<Vec<Value>>,
}

/// A kept session as a caller uses it.
struct Opened<S> {
    session: OwnSession<S>,
    init: Arc<Value>,
    listed: Option<Listed>,
}

impl RestSessions {
    /// The slot of `identity`, made if new (forgetting another when full).
    fn slot(&self, identity: &str) -> Slot {
        let mut slots = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get(identity) {
            return Arc::clone(slot);
        }
        if slots.len() >= MAX_KEPT
            && let Some(other) = slots.keys().next().cloned()
        {
            slots.remove(&other);
        }
        let slot = Arc::default();
        slots.insert(Arc::from(identity), Arc::clone(&slot));
        slot
    }

    /// The kept session of `identity`, opened first if there is none.
    async fn open<S: Endpoint>(&self, identity: &str, service: &S, addressed: &Addressed) -> Result<Opened<S>, Answer> {
        let slot = self.slot(identity);
        let mut kept = slot.lock().await;
        if let Some(kept) = &*kept {
            let session = OwnSession::resumed(service.clone(), addressed.clone(), kept.id.clone());
            return Ok(Opened { session, init: Arc::clone(&kept.init), listed: kept.listed.clone() });
        }
        let mut session = OwnSession::new(service.clone(), addressed.clone());
        let init = Arc::new(session.open(CLIENT_NAME).await.map_err(|Refused(answer)| answer)?);
        *kept = Some(Kept { id: session.id().map(str::to_owned), init: Arc::clone(&init), listed: None });
        Ok(Opened { session, init, listed: None })
    }

    /// Remembers the tools `identity`'s session `id` was listed.
    async fn remember(&self, identity: &str, id: Option<&str>, listed: Listed) {
        let slot = self.slot(identity);
        let mut kept = slot.lock().await;
        if let Some(kept) = kept.as_mut().filter(|kept| kept.id.as_deref() == id) {
            kept.listed = Some(listed);
        }
    }

    /// Forgets `identity`'s session `id`, which the backend no longer knows.
    async fn forget(&self, identity: &str, id: Option<&str>) {
        let slot = self.slot(identity);
        let mut kept = slot.lock().await;
        if kept.as_ref().is_some_and(|kept| kept.id.as_deref() == id) {
            *kept = None;
        }
    }
}

/// Whether `answer` says the session it was sent on is gone (the backend restarted, or the
/// session expired): MCP's 404 for a session id.
fn session_gone(session: Option<&str>, answer: &Answer) -> bool {
    session.is_some() && answer.status == StatusCode::NOT_FOUND
}

/// The layer of the REST face.
#[derive(Debug, Clone)]
pub(crate) struct RestLayer(pub(crate) Arc<RestSettings>);

impl<S> Layer<S> for RestLayer {
    type Service = RestFace<S>;

    fn layer(&self, inner: S) -> RestFace<S> {
        RestFace { inner, settings: Arc::clone(&self.0) }
    }
}

/// Answers the REST face's requests through `inner`; passes MCP requests to it.
#[derive(Debug, Clone)]
pub(crate) struct RestFace<S> {
    inner: S,
    settings: Arc<RestSettings>,
}

impl<S: Endpoint> Service<Request<RequestBody>> for RestFace<S> {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<ResponseBody>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let (Some(rest), Some(Target(backend))) =
            (request.extensions().get::<Rest>().cloned(), request.extensions().get::<Target>().cloned())
        else {
            return Box::pin(inner.call(request));
        };
        let settings = Arc::clone(&self.settings);
        Box::pin(async move { Ok(handle(inner, &settings, backend, rest, request).await) })
    }
}

/// `405` with the methods the route takes.
fn method_not_allowed(allow: &'static str) -> Response<ResponseBody> {
    let mut response =
        Rejection::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("this route takes {allow}"))
            .into_response();
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

async fn handle<S: Endpoint>(
    inner: S,
    settings: &RestSettings,
    backend: Arc<Backend>,
    rest: Rest,
    request: Request<RequestBody>,
) -> Response<ResponseBody> {
    let (parts, body) = request.into_parts();
    let caller = Caller::new(inner, &backend, &parts, settings.generation);
    match rest {
        Rest::Document { prefix } => {
            if parts.method != Method::GET && parts.method != Method::HEAD {
                return method_not_allowed("GET, HEAD");
            }
            caller.document(&server_url(settings, &parts, &prefix), settings).await
        }
        Rest::Tool(tool) => {
            if parts.method != Method::POST {
                return method_not_allowed("POST");
            }
            let typed = parts.headers.contains_key(header::CONTENT_TYPE);
            if typed && !is_json(&parts.headers) {
                return unsupported_media_type();
            }
            let declared = parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<u64>().ok());
            if declared.is_some_and(|length| length > settings.max_body_bytes as u64) {
                return too_large(settings.max_body_bytes).into_response();
            }
            let bytes = match read_bounded(body, settings.max_body_bytes).await {
                Ok(bytes) => bytes,
                Err(rejection) => return rejection.into_response(),
            };
            let arguments = if bytes.iter().all(u8::is_ascii_whitespace) {
                json!({})
            } else if !typed {
                return unsupported_media_type();
            } else {
                match serde_json::from_slice::<Value>(&bytes) {
                    Ok(arguments @ Value::Object(_)) => arguments,
                    Ok(_) => return invalid_arguments("the body must be a JSON object: the tool's arguments"),
                    Err(error) => return invalid_arguments(&format!("the body is not JSON: {error}")),
                }
            };
            caller.call(&tool, &arguments).await
        }
    }
}

fn unsupported_media_type() -> Response<ResponseBody> {
    Rejection::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "the body must be application/json: the tool's arguments as an object",
    )
    .into_response()
}

fn invalid_arguments(message: &str) -> Response<ResponseBody> {
    Rejection::new(StatusCode::BAD_REQUEST, "invalid_arguments", message).into_response()
}

/// The base URL of the backend's REST routes as the client addressed them: the scheme (a
/// trusted proxy's `X-Forwarded-Proto`, which `forwarded.rs` removes from anyone else), the
/// `Host` (a trusted proxy's `X-Forwarded-Host` already replaced it), and the prefix.
fn server_url(settings: &RestSettings, parts: &Parts, prefix: &str) -> String {
    let forwarded = parts
        .headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .map(|value| value.trim().to_ascii_lowercase())
        .filter(|value| value == "http" || value == "https");
    let scheme = forwarded
        .or_else(|| parts.uri.scheme_str().map(str::to_owned))
        .unwrap_or_else(|| if settings.tls { "https" } else { "http" }.to_string());
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| parts.uri.authority().map(|authority| authority.as_str()))
        .unwrap_or("localhost");
    format!("{scheme}://{host}{prefix}")
}

/// One REST caller on one backend: their kept session, through the stack below.
struct Caller<S> {
    inner: S,
    backend: Arc<Backend>,
    identity: Arc<str>,
    addressed: Addressed,
    generation: u64,
}

impl<S: Endpoint> Caller<S> {
    fn new(inner: S, backend: &Arc<Backend>, parts: &Parts, generation: u64) -> Self {
        let identity = parts.extensions.get::<AuthenticatedUser>().map_or_else(|| Arc::from(""), |user| user.0.clone());
        let mut extensions = parts.extensions.clone();
        // Below, the requests are MCP ones.
        extensions.remove::<Rest>();
        let addressed = Addressed {
            path: format!("/{}/mcp", backend.name()),
            host: parts.headers.get(header::HOST).cloned().unwrap_or_else(|| HeaderValue::from_static("localhost")),
            extensions,
        };
        Self { inner, backend: Arc::clone(backend), identity, addressed, generation }
    }

    /// The kept session, and its initialize result.
    async fn session(&self) -> Result<Opened<S>, Response<ResponseBody>> {
        let sessions = self.backend.rest_sessions();
        sessions.open(&self.identity, &self.inner, &self.addressed).await.map_err(|answer| failed(&answer))
    }

    /// The tools this caller sees: the list their session was last given, unless the backend
    /// said it changed (or the configuration did, or it is old), else listed again; the session
    /// is re-opened once if it ended.
    async fn tools(&self) -> Result<(Arc<Vec<Value>>, Arc<Value>), Response<ResponseBody>> {
        let sessions = self.backend.rest_sessions();
        for retry in [true, false] {
            let Opened { session, init, listed } = self.session().await?;
            let epoch = self.backend.tool_schemas().epoch();
            if let Some(listed) = listed.filter(|listed| {
                listed.epoch == epoch && listed.generation == self.generation && listed.at.elapsed() < MAX_LIST_AGE
            }) {
                return Ok((listed.tools, init));
            }
            match session.list_tools().await {
                Ok(tools) => {
                    let tools = Arc::new(tools);
                    let listed =
                        Listed { epoch, generation: self.generation, at: Instant::now(), tools: Arc::clone(&tools) };
                    sessions.remember(&self.identity, session.id(), listed).await;
                    return Ok((tools, init));
                }
                Err(answer) if retry && session_gone(session.id(), &answer) => {
                    sessions.forget(&self.identity, session.id()).await;
                }
                Err(answer) => return Err(failed(&answer)),
            }
        }
        unreachable!("the second attempt returns")
    }

    /// `GET /<name>/openapi.json`.
    async fn document(&self, server: &str, settings: &RestSettings) -> Response<ResponseBody> {
        match self.tools().await {
            Ok((tools, init)) => {
                json_response(StatusCode::OK, &openapi::document(self.backend.name(), server, &init, &tools, settings))
            }
            Err(response) => response,
        }
    }

    /// `POST /<name>/tools/<tool>`: refused here when the caller's list has no such tool or
    /// the arguments break its schema, else called.
    async fn call(&self, tool: &str, arguments: &Value) -> Response<ResponseBody> {
        let tools = match self.tools().await {
            Ok((tools, _)) => tools,
            Err(response) => return response,
        };
        let Some(listed) = tools.iter().find(|listed| listed.get("name").and_then(Value::as_str) == Some(tool)) else {
            return unknown_tool(self.backend.name(), tool);
        };
        if !callable(listed) {
            return Rejection::new(
                StatusCode::NOT_FOUND,
                "unknown_tool",
                format!("tool `{tool}` must run as an MCP task, which the REST face does not offer: use /<name>/mcp"),
            )
            .into_response();
        }
        if let Err(reasons) = arguments::check(listed.get("inputSchema").unwrap_or(&Value::Null), arguments) {
            return invalid_arguments(&reasons);
        }
        for retry in [true, false] {
            let session = match self.session().await {
                Ok(opened) => opened.session,
                Err(response) => return response,
            };
            let answer = session.call_tool(tool, arguments).await;
            if retry && session_gone(session.id(), &answer) {
                self.backend.rest_sessions().forget(&self.identity, session.id()).await;
                continue;
            }
            return self.answer(tool, &answer);
        }
        unreachable!("the second attempt returns")
    }

    /// The REST answer to a `tools/call`'s `answer`.
    fn answer(&self, tool: &str, answer: &Answer) -> Response<ResponseBody> {
        if let Some(result) = answer.result() {
            return tool_result(result);
        }
        let code = answer.error().filter(|_| answer.status.is_success()).and_then(|error| error["code"].as_i64());
        match code {
            // The tool was listed a moment ago: the server refused the arguments.
            Some(INVALID_PARAMS) => invalid_arguments(&answer.said()),
            // A server without tools.
            Some(METHOD_NOT_FOUND) => unknown_tool(self.backend.name(), tool),
            Some(TIMEOUT) => Rejection::new(StatusCode::GATEWAY_TIMEOUT, "timeout", answer.said()).into_response(),
            Some(_) => Rejection::new(StatusCode::BAD_GATEWAY, "backend_error", answer.said()).into_response(),
            None => failed(answer),
        }
    }
}

/// Whether a tool can be called without task augmentation (`execution.taskSupport` is not
/// `"required"`): only those are REST operations.
pub(crate) fn callable(tool: &Value) -> bool {
    tool.pointer("/execution/taskSupport").and_then(Value::as_str) != Some("required")
}

fn unknown_tool(backend: &str, tool: &str) -> Response<ResponseBody> {
    Rejection::new(StatusCode::NOT_FOUND, "unknown_tool", format!("backend `{backend}` has no tool `{tool}`"))
        .into_response()
}

/// The answer to a tool's result: its structured content or its content list, or `422` when
/// the tool reported a failure.
fn tool_result(result: &Value) -> Response<ResponseBody> {
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        let said = result
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find_map(|block| block.get("text").and_then(Value::as_str))
            .unwrap_or("the tool reported an error");
        return json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({"error": "tool_error", "message": said, "result": result}),
        );
    }
    match result.get("structuredContent") {
        Some(structured) => json_response(StatusCode::OK, structured),
        None => json_response(StatusCode::OK, result.get("content").unwrap_or(&json!([]))),
    }
}

/// A step that failed before a result: berth's own refusal (`403`, `429`, `503` of a stopped
/// backend, ...) as the same status and slug in the REST shape, a backend's failure as
/// itself when it is an error status, else `502`.
fn failed(answer: &Answer) -> Response<ResponseBody> {
    let status = match answer.status {
        // A session that is gone again right after it was opened: the backend is not keeping
        // its sessions.
        StatusCode::NOT_FOUND => StatusCode::BAD_GATEWAY,
        status if status.is_client_error() || status.is_server_error() => status,
        _ => StatusCode::BAD_GATEWAY,
    };
    let slug = match answer.slug() {
        Some(slug) if status == answer.status => slug_of(slug),
        _ if status.is_server_error() => "backend_failed",
        _ => "refused",
    };
    let mut response = Rejection::new(status, slug, answer.said()).into_response();
    if let Some(retry_after) = answer.retry_after.clone().filter(|_| status == answer.status) {
        response.headers_mut().insert(header::RETRY_AFTER, retry_after);
    }
    response
}

/// A refusal's slug as one of berth's (a `&'static str`), so that a backend's text never
/// becomes one.
fn slug_of(slug: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "forbidden_backend",
        "forbidden_address",
        "rate_limited",
        "backend_stopped",
        "backend_error",
        "payload_too_large",
        "request_timeout",
        "not_found",
        "bad_request",
        "unauthorized",
    ];
    KNOWN.iter().find(|known| **known == slug).copied().unwrap_or("backend_failed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::BodyExt;

    async fn body(response: Response<ResponseBody>) -> (StatusCode, Value) {
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn results_become_answers() {
        let table = [
            (json!({"content": [{"type": "text", "text": "hi"}]}), 200, json!([{"type": "text", "text": "hi"}])),
            (json!({"content": [], "structuredContent": {"sum": 3}}), 200, json!({"sum": 3})),
            (json!({}), 200, json!([])),
        ];
        for (result, status, expected) in table {
            assert_eq!(body(tool_result(&result)).await, (StatusCode::from_u16(status).unwrap(), expected));
        }
        let failed = json!({"isError": true, "content": [{"type": "text", "text": "no such file"}]});
        let (status, answer) = body(tool_result(&failed)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!((answer["error"].as_str(), answer["message"].as_str()), (Some("tool_error"), Some("no such file")));
        assert_eq!(answer["result"], failed);
    }

    #[tokio::test]
    async fn failures_keep_berths_slugs_and_never_a_backends_text() {
        let answer = |status: u16, text: &str| Answer {
            status: StatusCode::from_u16(status).unwrap(),
            session: None,
            message: serde_json::from_str(text).ok(),
            body: Bytes::copy_from_slice(text.as_bytes()),
            retry_after: None,
        };
        let table = [
            (
                answer(
                    403,
                    r#"{"jsonrpc":"2.0","id":2,"error":{"code":-32600,"message":"not for you","data":{"error":"forbidden_backend"}}}"#,
                ),
                403,
                "forbidden_backend",
            ),
            (
                answer(
                    429,
                    r#"{"jsonrpc":"2.0","id":2,"error":{"code":-32600,"message":"slow down","data":{"error":"rate_limited"}}}"#,
                ),
                429,
                "rate_limited",
            ),
            (
                answer(503, r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"starting"}}"#),
                503,
                "backend_failed",
            ),
            (answer(400, r#"{"error":"<script>","message":"x"}"#), 400, "backend_failed"),
            (answer(404, r#"{"error":"not_found","message":"session"}"#), 502, "backend_failed"),
            (answer(200, "not json"), 502, "backend_failed"),
        ];
        for (answer, status, slug) in table {
            let (got, json) = body(failed(&answer)).await;
            assert_eq!((got.as_u16(), json["error"].as_str()), (status, Some(slug)), "{answer:?}");
            assert!(json["message"].is_string());
        }
    }

    #[test]
    fn the_server_url_is_the_one_the_client_used() {
        let settings = |tls| RestSettings::new(1, tls, true);
        let parts = |headers: &[(&str, &str)]| {
            let mut builder = Request::builder().uri("/fs/openapi.json");
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            builder.body(()).unwrap().into_parts().0
        };
        let table = [
            (false, vec![("host", "127.0.0.1:8080")], "/fs", "http://127.0.0.1:8080/fs"),
            (true, vec![("host", "mcp.example.com")], "/fs", "https://mcp.example.com/fs"),
            (
                false,
                vec![("host", "fs.mcp.example.com"), ("x-forwarded-proto", "HTTPS")],
                "",
                "https://fs.mcp.example.com",
            ),
            (false, vec![("host", "a"), ("x-forwarded-proto", "gopher")], "/fs", "http://a/fs"),
        ];
        for (tls, headers, prefix, expected) in table {
            assert_eq!(server_url(&settings(tls), &parts(&headers), prefix), expected);
        }
    }
}
