//! `kind = "http"`: a remote MCP server reached over Streamable HTTP, relayed at the level of
//! HTTP messages.
//!
//! The client's POST, GET and DELETE go to the backend's `url` with the headers the transport
//! needs (an allow-list: `Accept`, `Content-Type`, `MCP-Protocol-Version`, `Last-Event-ID`,
//! `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`) plus the configured credentials; never the client's
//! own `Authorization`, cookies or hop-by-hop headers. The answer's body streams back frame by
//! frame, so SSE streams (progress, server requests, resumed streams) pass through unbuffered,
//! and everything the upstream writes reaches the client unchanged but for the session id:
//! berth hands each client an id of its own and keeps the upstream's in a [`SessionStore`].
//!
//! Readiness is a probe every `probe_interval`: a `GET` of the URL with the credentials (see
//! [`alive`] for what counts as alive). A request that cannot connect marks the backend down
//! at once; any answer of the upstream marks it ready again.

mod client;
mod error;
mod legacy;
mod sessions;

use std::{
    convert::Infallible,
    pin::Pin,
    sync::{Arc, Mutex, Weak},
    task::{Context, Poll},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::{
    client::UpstreamClient,
    sessions::{MappedSession, MemorySessions, SessionStore},
};
pub(crate) use self::{
    error::RemoteError,
    legacy::{LegacySse, SseRun},
};
use crate::{
    backend::{BackendStatus, InstanceStatus, LastError},
    body::{RequestBody, ResponseBody},
    config::HttpSpec,
    extensions::{AuthenticatedUser, ParsedBody},
    jsonrpc::Message,
    mcp_headers::{PROTOCOL_VERSION_HEADER, SESSION_HEADER},
    reply::{self, Rejection},
};

/// The client headers relayed to the upstream, besides `Mcp-Session-Id` (translated) and
/// `Mcp-Param-*`.
const RELAYED: [&str; 6] =
    ["accept", "content-type", PROTOCOL_VERSION_HEADER, "last-event-id", "mcp-method", "mcp-name"];

/// Most sessions mapped per backend; beyond it the one used least recently is forgotten.
const MAX_SESSIONS: usize = 65_536;

/// The longest a probe waits for the upstream's answer (less when `request_timeout` is).
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether berth sets header `name` itself, so that a backend's `headers` cannot: the relayed
/// transport headers, the session id and what HTTP itself manages.
pub(crate) fn is_managed(name: &HeaderName) -> bool {
    let name = name.as_str();
    RELAYED.contains(&name)
        || name.starts_with("mcp-param-")
        || [
            SESSION_HEADER,
            "host",
            "content-length",
            "transfer-encoding",
            "connection",
            "keep-alive",
            "te",
            "trailer",
            "upgrade",
            "proxy-connection",
        ]
        .contains(&name)
}

/// Headers of an answer that belong to its connection, not to the message (RFC 9110 §7.6.1).
fn is_hop_by_hop(name: &HeaderName, connection: &HeaderMap) -> bool {
    let listed = connection
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case(name.as_str()));
    listed
        || [
            "connection",
            "keep-alive",
            "proxy-connection",
            "proxy-authenticate",
            "proxy-authorization",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
        ]
        .contains(&name.as_str())
}

/// The probe's verdict on an answer: alive unless the upstream says it is failing (5xx) or
/// refuses berth's credentials (401 or 403 with a `WWW-Authenticate` challenge, as an auth
/// middleware answers). Any other answer, `400`, `404` or `405` included, comes from a server
/// that is up: an MCP endpoint owes a session-less `GET` no stream.
fn alive(status: StatusCode, headers: &HeaderMap) -> Result<(), String> {
    if status.is_server_error() {
        return Err(format!("the upstream answers {status}"));
    }
    let challenged = headers.contains_key(header::WWW_AUTHENTICATE);
    if challenged && matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        return Err(format!("the upstream refuses berth's credentials ({status})"));
    }
    Ok(())
}

/// What the probe and the requests last found.
#[derive(Debug, Default)]
struct Health {
    /// Whether the upstream answered last time.
    ready: bool,
    /// Whether it was ever asked.
    probed: bool,
    /// Why it is down.
    reason: Option<String>,
    /// The latest failure.
    last_error: Option<LastError>,
}

/// An http backend.
pub(crate) struct RemoteBackend {
    name: String,
    spec: Arc<HttpSpec>,
    client: UpstreamClient,
    sessions: Arc<dyn SessionStore>,
    health: Mutex<Health>,
    stop: CancellationToken,
    probe: Mutex<Option<JoinHandle<()>>>,
    user_agent: HeaderValue,
}

impl std::fmt::Debug for RemoteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteBackend").field("name", &self.name).field("url", &self.spec.url).finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RemoteBackend {
    /// The backend `name` of `spec`, stopped with `shutdown` at the latest; an error says why
    /// its TLS roots cannot be loaded.
    pub(crate) fn new(name: &str, spec: Arc<HttpSpec>, shutdown: &CancellationToken) -> Result<Self, String> {
        let tls = spec.url.scheme_str() == Some("https");
        let client = client::client(tls, spec.ca_file.as_deref(), spec.connect_timeout)?;
        Ok(Self {
            name: name.to_string(),
            spec,
            client,
            sessions: Arc::new(MemorySessions::new(MAX_SESSIONS)),
            health: Mutex::default(),
            stop: shutdown.child_token(),
            probe: Mutex::new(None),
            user_agent: HeaderValue::from_static(concat!("berth/", env!("CARGO_PKG_VERSION"))),
        })
    }

    /// Starts the readiness probe (once).
    pub(crate) fn start(self: &Arc<Self>) {
        let mut probe = lock(&self.probe);
        if probe.is_some() || self.stop.is_cancelled() {
            return;
        }
        // A weak reference: the task must not keep a backend nobody routes to alive.
        let weak: Weak<Self> = Arc::downgrade(self);
        let stop = self.stop.clone();
        *probe = Some(tokio::spawn(async move {
            loop {
                let Some(backend) = weak.upgrade() else { return };
                let outcome = tokio::select! {
                    outcome = backend.probe_once() => outcome,
                    () = stop.cancelled() => return,
                };
                backend.record(outcome);
                let interval = backend.spec.probe_interval;
                drop(backend);
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = stop.cancelled() => return,
                }
            }
        }));
    }

    /// Stops the probe.
    pub(crate) async fn shutdown(&self) {
        self.stop.cancel();
        let probe = lock(&self.probe).take();
        if let Some(probe) = probe {
            let _ = probe.await;
        }
    }

    /// Whether the upstream answered the latest probe or request.
    pub(crate) fn is_ready(&self) -> bool {
        lock(&self.health).ready
    }

    /// What the admin API and the gauges show.
    pub(crate) fn status(&self) -> BackendStatus {
        let health = lock(&self.health);
        let state = match (health.ready, health.probed) {
            (true, _) => "ready",
            (false, false) => "starting",
            (false, true) => "down",
        };
        BackendStatus {
            kind: "http",
            state: "running",
            ready: health.ready,
            required: false,
            sessions: Some(self.sessions.len()),
            instances: vec![InstanceStatus {
                role: "upstream",
                state,
                reason: health.reason.clone(),
                pid: None,
                container: None,
                started_at: None,
                restarts: 0,
                last_exit: None,
            }],
            restarts: 0,
            last_error: health.last_error.clone(),
            unavailable: (!health.ready).then(|| health.reason.clone()).flatten(),
        }
    }

    /// Records the outcome of a probe or a request, logging changes of state.
    fn record(&self, outcome: Result<(), String>) {
        let mut health = lock(&self.health);
        let was = (health.probed, health.ready);
        health.probed = true;
        match outcome {
            Ok(()) => {
                health.ready = true;
                health.reason = None;
                if was != (true, true) {
                    tracing::info!(backend = self.name, url = %self.spec.url, "upstream answers");
                }
            }
            Err(reason) => {
                if was != (true, false) {
                    tracing::warn!(backend = self.name, url = %self.spec.url, reason, "upstream down");
                }
                health.ready = false;
                health.last_error = Some(LastError::new(reason.clone(), SystemTime::now()));
                health.reason = Some(reason);
            }
        }
    }

    /// The configured headers (credentials) and berth's `User-Agent`, added to `headers`.
    fn add_own_headers(&self, headers: &mut HeaderMap) {
        headers.insert(header::USER_AGENT, self.user_agent.clone());
        for (name, value) in &self.spec.headers {
            headers.insert(name.clone(), value.clone());
        }
    }

    async fn probe_once(&self) -> Result<(), String> {
        let mut request = Request::new(Full::default());
        *request.uri_mut() = self.spec.url.clone();
        request.headers_mut().insert(header::ACCEPT, HeaderValue::from_static("text/event-stream"));
        self.add_own_headers(request.headers_mut());
        let within = self.spec.request_timeout.min(PROBE_TIMEOUT) + self.spec.connect_timeout;
        match tokio::time::timeout(within, self.client.request(request)).await {
            Err(_) => Err(format!("no answer to berth's probe within {within:?}")),
            Ok(Err(error)) => Err(self.failure(&error).to_string()),
            // The answer is dropped unread: a stream the upstream opened ends with it.
            Ok(Ok(response)) => alive(response.status(), response.headers()),
        }
    }

    /// What a failed exchange with the upstream was, from hyper-util's error and its causes.
    fn failure(&self, error: &hyper_util::client::legacy::Error) -> RemoteError {
        let mut reason = String::new();
        let mut timed_out = false;
        let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
        while let Some(error) = cause {
            if let Some(io) = error.downcast_ref::<std::io::Error>() {
                timed_out |= io.kind() == std::io::ErrorKind::TimedOut;
            }
            let text = error.to_string();
            if !reason.contains(&text) {
                if !reason.is_empty() {
                    reason.push_str(": ");
                }
                reason.push_str(&text);
            }
            cause = error.source();
        }
        if reason.is_empty() {
            reason = error.to_string();
        }
        let backend = self.name.clone();
        match (error.is_connect(), timed_out) {
            (true, true) => {
                RemoteError::Timeout { backend, after: self.spec.connect_timeout, setting: "connect_timeout" }
            }
            (true, false) => RemoteError::Unreachable { backend, reason },
            (false, _) => RemoteError::Failed { backend, reason },
        }
    }

    /// Relays one request of the MCP endpoint to the upstream and its answer back.
    pub(crate) async fn handle(&self, request: Request<RequestBody>) -> Response<ResponseBody> {
        // The JSON-RPC id of berth's own refusals: the request's, when there is exactly one.
        let id = request
            .extensions()
            .get::<ParsedBody>()
            .filter(|ParsedBody(body)| !body.is_batch())
            .and_then(|ParsedBody(body)| body.messages().first().and_then(Message::id_bytes))
            .unwrap_or_else(|| Bytes::from_static(b"null"));
        let owner = request.extensions().get::<AuthenticatedUser>().map(|AuthenticatedUser(name)| Arc::clone(name));
        let (parts, body) = request.into_parts();
        // A session id berth never handed out, or handed to another identity, is refused here
        // like one that ended: the upstream never sees it.
        let session = match parts.headers.get(SESSION_HEADER) {
            None => None,
            Some(value) => {
                let known = value.to_str().ok().and_then(|berth| Some((berth.to_string(), self.sessions.get(berth)?)));
                match known {
                    Some((berth, mapped)) if mapped.owner == owner => Some((berth, mapped.upstream)),
                    Some((berth, _)) => {
                        tracing::warn!(
                            session = berth.as_str(),
                            user = owner.as_deref().unwrap_or("-"),
                            "refused another identity's session: answered as unknown"
                        );
                        return reply::unknown_session(Some(id));
                    }
                    None => return reply::unknown_session(Some(id)),
                }
            }
        };
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                return Rejection::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("unreadable request body: {error}"),
                )
                .into_response();
            }
        };
        let mut upstream = Request::new(Full::new(body));
        *upstream.method_mut() = parts.method.clone();
        *upstream.uri_mut() = self.spec.url.clone();
        let headers = upstream.headers_mut();
        for (name, value) in &parts.headers {
            if RELAYED.contains(&name.as_str()) || name.as_str().starts_with("mcp-param-") {
                headers.append(name.clone(), value.clone());
            }
        }
        if let Some((_, upstream_id)) = &session {
            headers.insert(SESSION_HEADER, upstream_id.clone());
        }
        self.add_own_headers(headers);

        let outcome = match tokio::time::timeout(self.spec.request_timeout, self.client.request(upstream)).await {
            Err(_) => Err(RemoteError::Timeout {
                backend: self.name.clone(),
                after: self.spec.request_timeout,
                setting: "request_timeout",
            }),
            Ok(result) => result.map_err(|error| self.failure(&error)),
        };
        let response = match outcome {
            Ok(response) => response,
            Err(error) => {
                if error.is_down() {
                    self.record(Err(error.to_string()));
                }
                tracing::warn!(backend = self.name, %error, "upstream request failed");
                return Rejection::new(error.status(), error.slug(), error.to_string())
                    .with_raw_id(id)
                    .with_code(error.code())
                    .into_response();
            }
        };
        self.record(Ok(()));
        let (mut head, incoming) = response.into_parts();
        let connection = head.headers.clone();
        let names: Vec<HeaderName> = head.headers.keys().cloned().collect();
        for name in names {
            if is_hop_by_hop(&name, &connection) {
                head.headers.remove(&name);
            }
        }
        self.map_session(&parts.method, session.as_ref().map(|(berth, _)| berth.as_str()), owner, &mut head);
        Response::from_parts(head, UpstreamBody { inner: incoming, backend: Arc::from(self.name.as_str()) }.boxed())
    }

    /// Translates the answer's `Mcp-Session-Id` into berth's, recording a new session (an
    /// `initialize` answered with an id) and forgetting one the upstream ended (`404`) or the
    /// client deleted.
    fn map_session(
        &self,
        method: &Method,
        berth: Option<&str>,
        owner: Option<Arc<str>>,
        head: &mut http::response::Parts,
    ) {
        let upstream = head.headers.remove(SESSION_HEADER);
        match (berth, upstream) {
            (None, Some(upstream)) if head.status.is_success() => {
                let berth = uuid::Uuid::new_v4().simple().to_string();
                self.sessions.insert(berth.clone(), MappedSession { upstream, owner });
                head.headers.insert(SESSION_HEADER, HeaderValue::from_str(&berth).expect("hex digits"));
            }
            (Some(berth), upstream) => {
                let ended =
                    head.status == StatusCode::NOT_FOUND || (method == Method::DELETE && head.status.is_success());
                if ended {
                    self.sessions.remove(berth);
                } else if let Some(upstream) = upstream {
                    // The upstream may repeat its id on every answer; berth's stands for it.
                    if self.sessions.get(berth).is_some_and(|mapped| mapped.upstream != upstream) {
                        self.sessions.insert(berth.to_string(), MappedSession { upstream, owner });
                    }
                    head.headers.insert(SESSION_HEADER, HeaderValue::from_str(berth).expect("was a header"));
                }
            }
            // An id on a failed answer opens nothing; it is not passed on.
            (None, _) => {}
        }
    }
}

/// The upstream's answer body, frame by frame. A body that breaks ends the stream (berth's
/// bodies cannot fail): the client sees the stream close, as when a stdio server dies, and
/// resumes with `Last-Event-ID` if it wants.
struct UpstreamBody {
    inner: Incoming,
    backend: Arc<str>,
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(error))) => {
                tracing::info!(backend = %self.backend, %error, "upstream answer body broke off");
                Poll::Ready(None)
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_probe_counts_as_alive() {
        let challenge = {
            let mut headers = HeaderMap::new();
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"mcp\""));
            headers
        };
        let none = HeaderMap::new();
        let table = [
            (StatusCode::OK, &none, true),
            (StatusCode::BAD_REQUEST, &none, true),
            (StatusCode::METHOD_NOT_ALLOWED, &none, true),
            (StatusCode::NOT_FOUND, &none, true),
            // rmcp refuses a GET without a session with a bare 401: the server is up.
            (StatusCode::UNAUTHORIZED, &none, true),
            (StatusCode::UNAUTHORIZED, &challenge, false),
            (StatusCode::FORBIDDEN, &challenge, false),
            (StatusCode::BAD_GATEWAY, &none, false),
            (StatusCode::SERVICE_UNAVAILABLE, &none, false),
        ];
        for (status, headers, expected) in table {
            assert_eq!(alive(status, headers).is_ok(), expected, "{status}");
        }
    }

    #[test]
    fn hop_by_hop_headers_include_those_connection_names() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-private"));
        for (name, expected) in [("x-private", true), ("transfer-encoding", true), ("content-type", false)] {
            assert_eq!(is_hop_by_hop(&HeaderName::from_static(name), &headers), expected, "{name}");
        }
    }

    #[test]
    fn managed_headers_cannot_be_configured() {
        for (name, managed) in [("host", true), ("mcp-session-id", true), ("mcp-param-x", true), ("x-api-key", false)] {
            assert_eq!(is_managed(&HeaderName::from_static(name)), managed, "{name}");
        }
        assert!(!is_managed(&header::AUTHORIZATION), "credentials are what headers are for");
    }
}
