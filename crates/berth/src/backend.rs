//! Backends: what answers behind `/<name>/mcp`.
//!
//! A closed enum rather than trait objects: every kind is known to the gateway, and a new kind
//! is a new variant whose lifecycle (readiness, shutdown) the compiler makes us handle.

use std::{
    collections::HashSet,
    convert::Infallible,
    pin::Pin,
    sync::{
        Arc, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, SystemTime},
};

use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::Notify;
use tower::ServiceExt;

use crate::{
    access::Allow,
    allow_ips::AllowIps,
    body::{RequestBody, ResponseBody},
    config::AccessSpec,
    extensions::ParsedBody,
    jsonrpc,
    mcp_params::ToolSchemas,
    native::NativeService,
    rate_limit::CallLimiter,
    remote::RemoteBackend,
    reply::Rejection,
    rest::RestSessions,
    stdio::StdioBackend,
    visibility::Visibility,
};

/// One configured backend.
#[derive(Debug)]
pub(crate) struct Backend {
    name: String,
    /// The name again, shared by every metric label set of this backend.
    label: Arc<str>,
    required: bool,
    kind: BackendKind,
    tool_schemas: Arc<ToolSchemas>,
    tool_names: Arc<ToolNames>,
    /// `allow_ips` and `allow`: who may use it.
    access: AccessSpec,
    /// The buckets of its `rate_limit`.
    rate_limit: Option<Arc<CallLimiter>>,
    /// Its POST requests in flight, until their answers end (shared by every [`Backend`] that
    /// [`Backend::with_new_access`] made of the same running backend).
    in_flight: Arc<Drain>,
    /// Stopped by an admin (`POST /api/backends/{name}/stop`): nothing runs, every request is
    /// refused with `503 backend_stopped` until it is started again.
    stopped: bool,
    /// The MCP sessions berth keeps for the callers of its REST face (`rest.rs`).
    rest_sessions: Arc<RestSessions>,
}

/// The states an instance is counted in (`berth_instances{state}`).
pub(crate) const INSTANCE_STATES: &[&str] = &["starting", "ready", "down"];

/// One running instance of a stdio backend, as the admin API and metrics see it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct InstanceStatus {
    /// What it serves: `shared`, `stateless` or `session`.
    pub(crate) role: &'static str,
    /// `starting`, `ready` or `down` (one of [`INSTANCE_STATES`]).
    pub(crate) state: &'static str,
    /// Why it is down, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// The process id of its current run (process backends).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pid: Option<u32>,
    /// The container id of its current run (docker backends).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) container: Option<String>,
    /// When its current run was launched (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) started_at: Option<String>,
    /// Its runs that failed (each followed by a restart).
    pub(crate) restarts: u64,
    /// How its latest failed run ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_exit: Option<String>,
}

/// What a backend is doing now: the state behind `/api/backends` and the gauges of
/// `/metrics`, read at the moment it is asked for.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct BackendStatus {
    /// `native`, `process`, `docker`, `docker-exec` or `http`.
    pub(crate) kind: &'static str,
    /// `running`, or `stopped` by an admin.
    pub(crate) state: &'static str,
    /// Whether it can serve now.
    pub(crate) ready: bool,
    /// Whether `/readyz` waits for it.
    pub(crate) required: bool,
    /// Open sessions, when berth keeps them (stdio backends) or maps their ids (http backends);
    /// rmcp keeps native sessions.
    pub(crate) sessions: Option<usize>,
    /// Its started instances.
    pub(crate) instances: Vec<InstanceStatus>,
    /// Runs ended in failure since berth started.
    pub(crate) restarts: u64,
    /// The latest failure of an instance, and when (RFC 3339).
    pub(crate) last_error: Option<LastError>,
    /// Why it cannot start instances now, when berth knows: the Docker engine does not answer,
    /// a docker-exec backend's container is missing or stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) unavailable: Option<String>,
}

/// A failure and its time.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct LastError {
    /// What happened.
    pub(crate) message: String,
    /// When, RFC 3339 UTC.
    pub(crate) at: String,
}

impl LastError {
    pub(crate) fn new(message: String, at: SystemTime) -> Self {
        Self { message, at: crate::audit::rfc3339(at) }
    }
}

/// The tool names a backend listed in its `tools/list` answers: the only names that become
/// `tool` label values, so that clients calling invented names cannot grow the label space.
#[derive(Debug, Default)]
pub(crate) struct ToolNames(RwLock<HashSet<Arc<str>>>);

/// The most tool names remembered per backend; names beyond are counted as `other`.
const MAX_TOOL_NAMES: usize = 512;
/// Longer names are never labels.
const MAX_TOOL_NAME_LEN: usize = 128;

impl ToolNames {
    /// The label for a call of `name`: the listed name, or `other`.
    pub(crate) fn label(&self, name: Option<&str>) -> Arc<str> {
        let names = self.0.read().unwrap_or_else(|e| e.into_inner());
        name.and_then(|name| names.get(name).cloned()).unwrap_or_else(|| Arc::from("other"))
    }

    /// Learns the names of a `tools/list` answer.
    pub(crate) fn learn<'a>(&self, listed: impl IntoIterator<Item = &'a str>) {
        let mut names = self.0.write().unwrap_or_else(|e| e.into_inner());
        for name in listed {
            if names.len() >= MAX_TOOL_NAMES {
                break;
            }
            if name.len() <= MAX_TOOL_NAME_LEN && name != "other" && !names.contains(name) {
                names.insert(name.into());
            }
        }
    }
}

/// How a backend runs.
#[derive(Clone)]
pub(crate) enum BackendKind {
    /// An rmcp service served in-process.
    Native(NativeService),
    /// A stdio server run as processes or containers.
    Stdio(Arc<StdioBackend>),
    /// A remote MCP server over HTTP.
    Http(Arc<RemoteBackend>),
}

impl std::fmt::Debug for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Native(_) => f.write_str("Native"),
            Self::Stdio(_) => f.write_str("Stdio"),
            Self::Http(_) => f.write_str("Http"),
        }
    }
}

/// rmcp answers some refusals (an unknown session, a wrong method) in plain text; berth
/// answers every refusal in JSON, so those are rewrapped, keeping status and headers.
async fn json_errors(response: Response<ResponseBody>) -> Response<ResponseBody> {
    let status = response.status();
    let plain = !response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json") || t.starts_with("text/event-stream"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match http_body_util::BodyExt::collect(body).await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).trim().to_string(),
        Err(never) => match never {},
    };
    let slug = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::NOT_ACCEPTABLE => "not_acceptable",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ if status.is_server_error() => "backend_error",
        _ => "rejected",
    };
    let rewrapped = Rejection::new(status, slug, text).into_response();
    parts.headers.remove(http::header::CONTENT_LENGTH);
    parts.headers.extend(rewrapped.headers().clone());
    Response::from_parts(parts, rewrapped.into_body())
}

/// Makes an rmcp-style server's answer berth's: plain-text refusals become JSON
/// ([`json_errors`]); a `415` for a POST whose media type berth checked means the params did
/// not match the method's schema (400 `-32602` with the request id, `parsed`); and a session
/// DELETE answered `202` answers `200`.
async fn berths_refusals(
    response: Response<ResponseBody>,
    parsed: Option<bytes::Bytes>,
    delete: bool,
) -> Response<ResponseBody> {
    // rmcp answers 415 when a valid JSON-RPC message does not match the schema of its
    // method (a string where a number belongs, say). The media type was right (berth
    // checked it): the params were not, as a stdio server would say with -32602.
    if let Some(id) = parsed
        && response.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE
    {
        let text = http_body_util::BodyExt::collect(response.into_body())
            .await
            .map(|collected| String::from_utf8_lossy(&collected.to_bytes()).trim().to_string())
            .unwrap_or_default();
        return Rejection::new(StatusCode::BAD_REQUEST, "invalid_params", text)
            .with_raw_id(id)
            .with_code(jsonrpc::INVALID_PARAMS)
            .into_response();
    }
    let mut response = json_errors(response).await;
    // rmcp answers a session DELETE with 202; clients (the Python SDK among them)
    // expect 200 or 204, as stdio backends answer, and warn otherwise.
    if delete && response.status() == StatusCode::ACCEPTED {
        *response.status_mut() = StatusCode::OK;
    }
    response
}

impl Backend {
    /// A backend named `name`, whose tool annotations are cached in `tool_schemas` (shared
    /// with whatever else sees the backend's `list_changed` notifications).
    pub(crate) fn new(
        name: impl Into<String>,
        required: bool,
        kind: BackendKind,
        tool_schemas: Arc<ToolSchemas>,
    ) -> Self {
        let name = name.into();
        Self {
            label: name.as_str().into(),
            name,
            required,
            kind,
            tool_schemas,
            tool_names: Arc::default(),
            access: AccessSpec::default(),
            rate_limit: None,
            in_flight: Arc::default(),
            stopped: false,
            rest_sessions: Arc::default(),
        }
    }

    /// The same backend, usable only by the addresses and identities `access` admits, as often
    /// as its rate limit allows.
    pub(crate) fn with_access(mut self, access: AccessSpec) -> Self {
        self.rate_limit = access.rate_limit.map(|rate| Arc::new(CallLimiter::new(rate)));
        self.access = access;
        self
    }

    /// The same running backend (server, sessions, learnt tools, requests in flight) under a
    /// reloaded configuration's `required` and access rules; its rate-limit buckets are kept
    /// when the rate did not change, so that a reload never hands out fresh bursts.
    pub(crate) fn with_new_access(&self, required: bool, access: AccessSpec) -> Self {
        let rate_limit = match (&self.rate_limit, access.rate_limit) {
            (Some(limiter), Some(rate)) if self.access.rate_limit == Some(rate) => Some(Arc::clone(limiter)),
            (_, rate) => rate.map(|rate| Arc::new(CallLimiter::new(rate))),
        };
        Self {
            name: self.name.clone(),
            label: Arc::clone(&self.label),
            required,
            kind: self.kind.clone(),
            tool_schemas: Arc::clone(&self.tool_schemas),
            tool_names: Arc::clone(&self.tool_names),
            access,
            rate_limit,
            in_flight: Arc::clone(&self.in_flight),
            stopped: self.stopped,
            rest_sessions: Arc::clone(&self.rest_sessions),
        }
    }

    /// The same (unstarted) backend, stopped: it refuses every request and starts nothing.
    pub(crate) fn into_stopped(mut self) -> Self {
        self.stopped = true;
        self
    }

    /// Whether an admin stopped it.
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// The buckets of its `rate_limit`, when it has one.
    pub(crate) fn rate_limit(&self) -> Option<&CallLimiter> {
        self.rate_limit.as_deref()
    }

    /// The client addresses that may use it, when restricted.
    pub(crate) fn allow_ips(&self) -> Option<&AllowIps> {
        self.access.allow_ips.as_ref()
    }

    /// Which tools, prompts and resources each identity sees, when restricted.
    pub(crate) fn visibility(&self) -> Option<&Arc<Visibility>> {
        self.access.visibility.as_ref()
    }

    /// The identities that may use it, when restricted.
    pub(crate) fn allow(&self) -> Option<&Allow> {
        self.access.allow.as_ref()
    }

    /// The name as a metric label.
    pub(crate) fn label(&self) -> &Arc<str> {
        &self.label
    }

    /// The sessions kept for REST callers.
    pub(crate) fn rest_sessions(&self) -> &RestSessions {
        &self.rest_sessions
    }

    /// The tool names the backend listed.
    pub(crate) fn tool_names(&self) -> &ToolNames {
        &self.tool_names
    }

    /// What the backend is doing now.
    pub(crate) fn status(&self) -> BackendStatus {
        let mut status = self.kind_status();
        if self.stopped {
            status.state = "stopped";
            status.ready = false;
        }
        status
    }

    fn kind_status(&self) -> BackendStatus {
        match &self.kind {
            BackendKind::Native(_) => BackendStatus {
                kind: "native",
                state: "running",
                ready: true,
                required: self.required,
                sessions: None,
                instances: Vec::new(),
                restarts: 0,
                last_error: None,
                unavailable: None,
            },
            BackendKind::Stdio(stdio) => {
                let mut status = stdio.status();
                status.required = self.required;
                status
            }
            BackendKind::Http(remote) => {
                let mut status = remote.status();
                status.required = self.required;
                status
            }
        }
    }

    /// Its open sessions; `None` for a native backend, whose sessions rmcp keeps, and an http
    /// backend, whose sessions the upstream keeps (berth only maps their ids).
    pub(crate) fn sessions(&self) -> Option<Vec<crate::stdio::SessionInfo>> {
        match &self.kind {
            BackendKind::Native(_) | BackendKind::Http(_) => None,
            BackendKind::Stdio(stdio) => Some(stdio.sessions()),
        }
    }

    /// Ends its session `id`, whoever owns it; whether it had one.
    pub(crate) fn end_session(&self, id: &str) -> bool {
        match &self.kind {
            BackendKind::Native(_) | BackendKind::Http(_) => false,
            BackendKind::Stdio(stdio) => stdio.end(id),
        }
    }

    /// The last stderr lines of its servers, oldest first; `None` for a native or http
    /// backend, which has no stderr berth can read.
    pub(crate) fn logs(&self) -> Option<Vec<crate::stdio::LogLine>> {
        match &self.kind {
            BackendKind::Native(_) | BackendKind::Http(_) => None,
            BackendKind::Stdio(stdio) => Some(stdio.logs()),
        }
    }

    /// The backend's name (its URL segment).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The cached `x-mcp-header` annotations of the backend's tools (`mcp_params.rs`).
    pub(crate) fn tool_schemas(&self) -> &Arc<ToolSchemas> {
        &self.tool_schemas
    }

    /// Whether `/readyz` waits for this backend.
    pub(crate) fn required(&self) -> bool {
        self.required
    }

    /// Whether the backend can serve requests now.
    pub(crate) fn is_ready(&self) -> bool {
        if self.stopped {
            return false;
        }
        match &self.kind {
            BackendKind::Native(_) => true,
            BackendKind::Stdio(stdio) => stdio.is_ready(),
            BackendKind::Http(remote) => remote.is_ready(),
        }
    }

    /// What a shared instance's server declares, when the backend has one (`berth check
    /// --probe`): the names of its capabilities that keep per-user state, or why it did not
    /// start.
    pub(crate) async fn probe_shared(&self) -> Option<Result<Vec<String>, String>> {
        let BackendKind::Stdio(stdio) = &self.kind else { return None };
        let outcome = stdio.probe_shared().await?;
        Some(outcome.map_err(|error| error.to_string()).map(|init| {
            ["tasks", "logging"]
                .into_iter()
                .filter(|capability| init.find(&["result", "capabilities", capability]).is_some())
                .map(str::to_owned)
                .collect()
        }))
    }

    /// Serves one HTTP request of the MCP endpoint. A POST counts as in flight until its
    /// answer ends, so that a backend a reload removes can drain first ([`Backend::retire`]);
    /// GET streams do not, since they last as long as the client wants.
    pub(crate) async fn handle(&self, request: Request<RequestBody>) -> Response<ResponseBody> {
        if self.stopped {
            let message = format!(
                "backend `{}` was stopped by an admin (POST /api/backends/{}/start starts it)",
                self.name, self.name
            );
            // A JSON-RPC error with the request's id (null for a GET, a DELETE or a batch).
            let id = request
                .extensions()
                .get::<ParsedBody>()
                .filter(|ParsedBody(body)| !body.is_batch())
                .and_then(|ParsedBody(body)| body.messages().first().and_then(jsonrpc::Message::id_bytes));
            return Rejection::new(StatusCode::SERVICE_UNAVAILABLE, "backend_stopped", message)
                .with_raw_id(id.unwrap_or_else(|| bytes::Bytes::from_static(b"null")))
                .with_code(jsonrpc::BACKEND_ERROR)
                .into_response();
        }
        if request.method() != http::Method::POST {
            return self.serve(request).await;
        }
        let guard = self.in_flight.begin();
        self.serve(request).await.map(|body| InFlightBody { body, _guard: guard }.boxed())
    }

    async fn serve(&self, request: Request<RequestBody>) -> Response<ResponseBody> {
        match &self.kind {
            BackendKind::Native(service) => {
                // The body was parsed and checked by the Streamable-HTTP layer (POST only).
                let parsed = request.extensions().get::<ParsedBody>().map(|ParsedBody(body)| {
                    let id = body.messages().first().and_then(jsonrpc::Message::id_bytes);
                    (body.is_batch(), id.unwrap_or_else(|| bytes::Bytes::from_static(b"null")))
                });
                // rmcp answers a batch with 415; berth answers it as every other refusal, with
                // the JSON-RPC error of a request it will not take.
                if let Some((true, id)) = &parsed {
                    let rejection = Rejection::new(
                        StatusCode::BAD_REQUEST,
                        "batch_refused",
                        format!(
                            "backend `{}` (native) does not accept JSON-RPC batches: send one message per POST",
                            self.name
                        ),
                    );
                    return rejection.with_raw_id(id.clone()).into_response();
                }
                let delete = request.method() == http::Method::DELETE;
                let result: Result<_, Infallible> = service.clone().oneshot(request).await;
                let response = match result {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                berths_refusals(response, parsed.map(|(_, id)| id), delete).await
            }
            BackendKind::Stdio(stdio) => stdio.handle(request).await,
            // An MCP server over HTTP answers as rmcp does (the conformance server behind an
            // http backend is rmcp): its refusals are made berth's the same way.
            BackendKind::Http(remote) => {
                let parsed = request.extensions().get::<ParsedBody>().map(|ParsedBody(body)| {
                    body.messages()
                        .first()
                        .and_then(jsonrpc::Message::id_bytes)
                        .filter(|_| !body.is_batch())
                        .unwrap_or_else(|| bytes::Bytes::from_static(b"null"))
                });
                let delete = request.method() == http::Method::DELETE;
                berths_refusals(remote.handle(request).await, parsed, delete).await
            }
        }
    }

    /// Starts what must run before the first request (eager and required instances, the
    /// probe of a required per-session backend, reapers).
    pub(crate) fn start(&self) {
        if self.stopped {
            return;
        }
        match &self.kind {
            BackendKind::Native(_) => {}
            BackendKind::Stdio(stdio) => stdio.start(self.required),
            BackendKind::Http(remote) => remote.start(),
        }
    }

    /// Takes a backend a reload removed or replaced out of service: waits up to `grace` for
    /// the requests in flight to be answered, then stops it.
    pub(crate) async fn retire(&self, grace: Duration) {
        let waited = tokio::time::timeout(grace, self.in_flight.idle()).await;
        if waited.is_err() {
            tracing::warn!(
                backend = self.name,
                in_flight = self.in_flight.count(),
                "grace period over: stopping the backend with requests in flight"
            );
        }
        self.shutdown().await;
    }

    /// Stops the backend; native services end with the shutdown token, stdio backends stop
    /// every process and container they run.
    pub(crate) async fn shutdown(&self) {
        match &self.kind {
            BackendKind::Native(_) => {}
            BackendKind::Stdio(stdio) => stdio.shutdown().await,
            BackendKind::Http(remote) => remote.shutdown().await,
        }
    }
}

/// The requests in flight on a backend, and a wake-up for whoever waits for none.
#[derive(Debug, Default)]
struct Drain {
    count: AtomicUsize,
    idle: Notify,
}

impl Drain {
    fn begin(self: &Arc<Self>) -> DrainGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        DrainGuard(Arc::clone(self))
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Completes when nothing is in flight.
    async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One request in flight; dropped when its answer ended or was abandoned.
#[derive(Debug)]
struct DrainGuard(Arc<Drain>);

impl Drop for DrainGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// An answer that keeps its request counted in flight until it ends.
struct InFlightBody {
    body: ResponseBody,
    _guard: DrainGuard,
}

impl Body for InFlightBody {
    type Data = bytes::Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
