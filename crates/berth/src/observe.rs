//! The observation of every MCP exchange: metrics and one audit line, when its answer ends.
//!
//! The layer sits below the Streamable-HTTP checks, so that it sees the parsed body (method,
//! tool, prompt or resource), the backend and the user, and right above the `Mcp-Param-*`
//! checks, whose refusals count as `refused`. It wraps the answer's body: an SSE stream is
//! observed to its end, frame by frame. A frame is parsed only when it can matter (it holds
//! `"error"`, a `tools/call`'s `"isError"`, or a `tools/list` answer whose tool names become the
//! backend's `tool` label values), so the common answer costs a substring search.
//!
//! Requests refused by the layers above (transport rules, authentication, routing) count in
//! `berth_http_requests_total` only; refused logins also in `berth_auth_failures_total` and the
//! audit log, through [`Observer`]'s [`LoginReport`].

use std::{
    borrow::Cow,
    net::IpAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Instant, SystemTime},
};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderValue, Method, Request, Response};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use tower::{Layer, Service};

use crate::{
    audit::{AuditEvent, AuditLog, Facts, rfc3339},
    auth::{LoginReport, Refusal},
    backend::Backend,
    body::{RequestBody, ResponseBody},
    extensions::{AuthenticatedUser, ClientAddr, ParsedBody, Target},
    jsonrpc::{Kind, Message},
    mcp_headers::SESSION_HEADER,
    metrics::{Listener, Metrics, method_label},
    recent::{Failure, Recent},
};

/// Where observations go: the metrics, and the audit log when one is configured.
#[derive(Debug, Clone)]
pub(crate) struct Observer {
    metrics: Arc<Metrics>,
    audit: Option<Arc<AuditLog>>,
    recent: Arc<Recent>,
}

impl Observer {
    /// Observations into `metrics` and `audit` (and the last minutes, for the status page).
    pub(crate) fn new(metrics: Arc<Metrics>, audit: Option<Arc<AuditLog>>) -> Self {
        Self { metrics, audit, recent: Arc::default() }
    }

    /// The last minutes, for the status page.
    pub(crate) fn recent(&self) -> &Arc<Recent> {
        &self.recent
    }

    /// The metrics.
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The audit log, if any.
    pub(crate) fn audit(&self) -> Option<&Arc<AuditLog>> {
        self.audit.as_ref()
    }
}

impl LoginReport for Observer {
    fn refused(&self, refusal: &Refusal<'_>) {
        self.metrics.auth_failure(refusal.reason);
        // A request without credentials is how every client starts (it learns the challenge);
        // only attempts that gave credentials are refused logins.
        if refusal.reason == "missing" {
            return;
        }
        if let Some(audit) = &self.audit {
            audit.record(&AuditEvent {
                ts: rfc3339(SystemTime::now()),
                event: "login_refused",
                user: refusal.user,
                client_addr: refusal.client.map(|ip| ip.to_string()),
                method: Some(refusal.method),
                name: Some(refusal.path),
                outcome: "refused",
                status: refusal.status,
                listener: Some(refusal.listener),
                ..AuditEvent::default()
            });
        }
    }
}

/// The layer for [`Observe`].
#[derive(Debug, Clone)]
pub(crate) struct ObserveLayer(pub(crate) Observer);

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe { inner, observer: self.0.clone() }
    }
}

/// Observes each exchange of `inner` (see the module's doc).
#[derive(Debug, Clone)]
pub(crate) struct Observe<S> {
    inner: S,
    observer: Observer,
}

/// Longest method or name written to an audit line; a client's invented ones are cut there.
const MAX_AUDIT_TEXT: usize = 512;

fn bounded(text: &str) -> &str {
    match text.char_indices().nth(MAX_AUDIT_TEXT) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// What an audit line names as the method.
#[derive(Debug, Clone, Copy)]
enum AuditMethod {
    /// The `method` of the request's first message.
    Message,
    /// Something else: `batch`, or the HTTP method of a `GET` or `DELETE`.
    Other(&'static str),
    /// Nothing (an answer the client sent).
    None,
}

/// What the request says about the exchange.
struct Exchange {
    observer: Observer,
    backend: Arc<Backend>,
    started: Instant,
    ts: SystemTime,
    label: &'static str,
    method: AuditMethod,
    /// The request's first message, whose method, name and arguments are read when needed
    /// (a shared buffer, not a copy).
    first: Option<Message>,
    user: Option<Arc<str>>,
    client: Option<IpAddr>,
    session: Option<HeaderValue>,
    request_bytes: u64,
    post: bool,
    status: u16,
    sse: bool,
    response_bytes: u64,
    error: bool,
    tool_error: bool,
}

impl Exchange {
    fn of(request: &Request<RequestBody>, backend: Arc<Backend>, observer: Observer) -> Self {
        let post = request.method() == Method::POST;
        let parsed = request.extensions().get::<ParsedBody>().map(|ParsedBody(body)| body);
        let messages = parsed.map(|body| body.messages()).unwrap_or_default();
        let first = messages.first();
        let (label, method) = match (request.method(), parsed) {
            (_, Some(body)) if body.is_batch() => ("batch", AuditMethod::Other("batch")),
            (_, Some(_)) => match first.and_then(Message::method) {
                Some(method) => (method_label(&method), AuditMethod::Message),
                None => ("response", AuditMethod::None),
            },
            (&Method::GET, _) => ("GET", AuditMethod::Other("GET")),
            (&Method::DELETE, _) => ("DELETE", AuditMethod::Other("DELETE")),
            _ => ("other", AuditMethod::None),
        };
        let request_bytes = if parsed.is_some() { messages.iter().map(|m| m.bytes().len() as u64).sum() } else { 0 };
        Self {
            observer,
            backend,
            started: Instant::now(),
            ts: SystemTime::now(),
            label,
            method,
            first: first.cloned(),
            user: request.extensions().get::<AuthenticatedUser>().map(|u| Arc::clone(&u.0)),
            client: request.extensions().get::<ClientAddr>().map(|c| c.0.ip()),
            session: request.headers().get(SESSION_HEADER).cloned(),
            request_bytes,
            post,
            status: 0,
            sse: false,
            response_bytes: 0,
            error: false,
            tool_error: false,
        }
    }

    /// Whether a frame must be parsed to learn what it says.
    fn wants(&self, json: &[u8]) -> bool {
        let finder = |needle: &[u8]| memchr::memmem::find(json, needle).is_some();
        self.label == "tools/list" || finder(b"\"error\"") || (self.label == "tools/call" && finder(b"\"isError\""))
    }

    /// Reads one JSON-RPC message of the answer.
    fn read(&mut self, json: &[u8]) {
        if !self.wants(json) {
            return;
        }
        let Ok(message) = Message::parse(Bytes::copy_from_slice(json)) else { return };
        if message.kind() != Kind::Response {
            return;
        }
        if message.find(&["error"]).is_some() {
            self.error = true;
        }
        if self.label == "tools/call" && message.find(&["result", "isError"]).is_some_and(|s| message.raw(&s) == "true")
        {
            self.tool_error = true;
        }
        if self.label == "tools/list"
            && let Some(span) = message.find(&["result", "tools"])
        {
            #[derive(serde::Deserialize)]
            struct Named<'a> {
                #[serde(borrow)]
                name: Option<std::borrow::Cow<'a, str>>,
            }
            if let Ok(tools) = serde_json::from_str::<Vec<Named<'_>>>(message.raw(&span)) {
                self.backend.tool_names().learn(tools.iter().filter_map(|t| t.name.as_deref()));
            }
        }
    }

    /// Reads a frame of the answer: the whole JSON body, or SSE events' `data:` lines.
    fn frame(&mut self, data: &[u8]) {
        self.response_bytes += data.len() as u64;
        if !self.sse {
            self.read(data);
            return;
        }
        for line in data.split(|b| *b == b'\n') {
            if let Some(json) = line.strip_prefix(b"data:") {
                let json = json.strip_prefix(b" ").unwrap_or(json);
                if !json.is_empty() {
                    self.read(json);
                }
            }
        }
    }

    fn outcome(&self) -> &'static str {
        if self.status >= 400 {
            "refused"
        } else if self.error {
            "error"
        } else {
            "ok"
        }
    }

    /// The answer ended (or was dropped): count it and write its audit line.
    fn finish(self) {
        let outcome = self.outcome();
        let elapsed = self.started.elapsed();
        let metrics = &self.observer.metrics;
        // A GET stream lasts as long as the client reads it: its length is no latency.
        let seconds = self.post.then_some(elapsed.as_secs_f64());
        metrics.mcp_request(self.backend.label(), self.label, outcome, seconds);
        if self.post {
            self.observer.recent.record(self.backend.label(), elapsed, outcome);
        }
        if outcome != "ok" {
            self.observer.recent.failed(Failure {
                at: rfc3339(self.ts),
                backend: self.backend.name().to_string(),
                method: self.label,
                outcome,
                status: self.status,
            });
        }
        if self.label == "tools/call" {
            let name = self.first.as_ref().and_then(|m| m.find_str(&["params", "name"]));
            let tool = self.backend.tool_names().label(name.as_deref());
            let tool_outcome = if outcome == "ok" && self.tool_error { "error" } else { outcome };
            metrics.tool_call(self.backend.label(), tool, tool_outcome);
        }
        let Some(audit) = &self.observer.audit else { return };
        audit.defer(Box::new(McpFacts {
            arguments: audit.with_arguments() && self.label == "tools/call",
            ts: self.ts,
            user: self.user,
            client: self.client,
            backend: Arc::clone(self.backend.label()),
            session: self.session,
            method: self.method,
            first: self.first,
            outcome,
            status: self.status,
            duration_ms: elapsed.as_millis() as u64,
            request_bytes: self.request_bytes,
            response_bytes: self.response_bytes,
        }));
    }
}

/// An MCP exchange's audit line, as facts: the audit writer reads the method, name and
/// arguments out of the request's message and serializes the line, off the request's path.
struct McpFacts {
    ts: SystemTime,
    user: Option<Arc<str>>,
    client: Option<IpAddr>,
    backend: Arc<str>,
    session: Option<HeaderValue>,
    method: AuditMethod,
    first: Option<Message>,
    /// Whether the line carries the `tools/call` arguments.
    arguments: bool,
    outcome: &'static str,
    status: u16,
    duration_ms: u64,
    request_bytes: u64,
    response_bytes: u64,
}

impl Facts for McpFacts {
    fn write_json(&self, out: &mut Vec<u8>) {
        let first = self.first.as_ref();
        let method = match self.method {
            AuditMethod::Message => first.and_then(Message::method),
            AuditMethod::Other(method) => Some(Cow::Borrowed(method)),
            AuditMethod::None => None,
        };
        let name = first.and_then(|m| m.find_str(&["params", "name"]).or_else(|| m.find_str(&["params", "uri"])));
        let arguments = first
            .filter(|_| self.arguments)
            .and_then(|m| m.find(&["params", "arguments"]).map(|span| m.raw(&span)))
            .and_then(|raw| serde_json::from_str(raw).ok());
        let event = AuditEvent {
            ts: rfc3339(self.ts),
            event: "mcp_request",
            user: self.user.as_deref(),
            client_addr: self.client.map(|ip| ip.to_string()),
            backend: Some(&self.backend),
            session: self.session.as_ref().and_then(|v| v.to_str().ok()).map(bounded),
            method: method.as_deref().map(bounded),
            name: name.as_deref().map(bounded),
            outcome: self.outcome,
            status: self.status,
            duration_ms: Some(self.duration_ms),
            request_bytes: Some(self.request_bytes),
            response_bytes: Some(self.response_bytes),
            arguments,
            listener: None,
        };
        // A derived `Serialize` of strings and numbers into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *out, &event);
    }
}

impl<S> Service<Request<RequestBody>> for Observe<S>
where
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        let exchange = request
            .extensions()
            .get::<Target>()
            .map(|Target(backend)| Exchange::of(&request, Arc::clone(backend), self.observer.clone()));
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            let Some(mut exchange) = exchange else { return Ok(response) };
            exchange.status = response.status().as_u16();
            exchange.sse = response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
            if exchange.session.is_none() {
                exchange.session = response.headers().get(SESSION_HEADER).cloned();
            }
            Ok(response.map(|body| Observed { inner: body, exchange: Some(exchange) }.boxed()))
        })
    }
}

/// An answer body that reports its exchange when it ends or is dropped.
struct Observed {
    inner: ResponseBody,
    exchange: Option<Exchange>,
}

impl http_body::Body for Observed {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(exchange)) = (frame.data_ref(), self.exchange.as_mut()) {
                    exchange.frame(data);
                }
            }
            Poll::Ready(None) => {
                if let Some(exchange) = self.exchange.take() {
                    exchange.finish();
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        if let Some(exchange) = self.exchange.take() {
            exchange.finish();
        }
    }
}

/// Counts every answer of `listener` by status (`berth_http_requests_total`).
pub(crate) fn count_statuses<B>(
    metrics: Arc<Metrics>,
    listener: Listener,
) -> impl Fn(Response<B>) -> Response<B> + Clone + Send + Sync + 'static {
    move |response: Response<B>| {
        metrics.http_request(listener, response.status().as_u16());
        response
    }
}
