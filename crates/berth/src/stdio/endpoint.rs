//! The Streamable-HTTP endpoint of a stdio backend: sessions, the initialize handshake, and
//! the routing of each POST, GET and DELETE onto the right instance and stream.
//!
//! - Sessions of legacy clients (2025-03-26 … 2025-11-25) are created by `initialize`. In
//!   `shared` mode berth initialized the one instance itself and answers from its cached
//!   result; in `per-session` mode the client's initialize starts an instance of its own.
//! - Stateless clients (2026-07-28: no initialize, no session) go to a separate shared
//!   instance that berth never initializes: a stdio connection's lifecycle is fixed by its first
//!   message, so one pipe cannot serve both generations.
//! - A GET with `Last-Event-ID` resumes the stream that event belongs to (see `outbox.rs`).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::log_level::LogLevel;
use super::tasks;
use super::{
    error::StdioError,
    instance::Instance,
    launch::Launcher,
    outbox::{Outbox, ReplayLimits, event_id, parse_event_id},
    relay::{Audience, Relay, RelaySpec},
    session::{ClientCaps, Session, SessionSpec, SessionTable},
    sse::{self, Abandonment, ReaderGuard},
};
use crate::{
    backend::{BackendStatus, InstanceStatus, LastError},
    body::{RequestBody, ResponseBody},
    config::{Sharing, StartMode, StdioSpec},
    extensions::{AuthenticatedUser, ParsedBody},
    jsonrpc::{self, Body, INVALID_REQUEST, Kind, Message},
    mcp_headers::{self, SESSION_HEADER, is_stateless_version},
    metrics::StdioStats,
    reply::{self, Rejection},
};

/// Keeps a session's `logging/setLevel` on a shared instance (see `log_level.rs`): the server
/// is told only a level more verbose than it was told before; otherwise berth answers itself.
fn log_level_shortcut(session: &Session, message: &Message) -> Option<Bytes> {
    if !session.is_shared() || message.method().as_deref() != Some("logging/setLevel") {
        return None;
    }
    // A level berth does not know goes to the server, whose error the client should see.
    let level = LogLevel::parse(&message.find_str(&["params", "level"])?)?;
    session.log_level().set(level);
    let must_forward = session.instance().log_level().lower_to(level);
    (!must_forward).then(|| jsonrpc::result(message.id().unwrap_or("null").as_bytes(), "{}"))
}

/// The protocol version berth asks for when it initializes a shared instance itself.
const SHARED_PROTOCOL_VERSION: &str = "2025-11-25";

/// A stdio backend (`kind = "process"` or `"docker"`).
pub(crate) struct StdioBackend {
    name: Arc<str>,
    spec: Arc<StdioSpec>,
    launcher: Arc<Launcher>,
    sessions: Arc<SessionTable>,
    /// The instance shared by legacy sessions (shared mode).
    shared: Option<Arc<Instance>>,
    /// The instance serving stateless clients, started on first use.
    stateless: Arc<Instance>,
    /// Slots of per-session instances (`max_instances`), taken before an instance starts.
    slots: Arc<Semaphore>,
    /// False while a required per-session backend has not yet shown, with an instance started
    /// at boot, that one can start and answer initialize (see [`StdioBackend::start`]).
    probed: Arc<AtomicBool>,
    keep_alive: Duration,
    on_tools_changed: Option<Arc<dyn Fn() + Send + Sync>>,
    /// What the instances count (metrics, last error).
    stats: Arc<StdioStats>,
    /// Cancelled when the gateway starts draining: ends GET streams (nothing is in flight on
    /// them), never a POST's answer.
    streams: CancellationToken,
    /// Cancelled by [`StdioBackend::shutdown`], after the drain: stops every instance.
    shutdown: CancellationToken,
    /// Sessions being ended in the background (DELETE, idle expiry) and streams waiting out their
    /// resume window: shutdown waits for them, so that no per-session instance is still
    /// stopping when berth exits.
    endings: TaskTracker,
}

/// Stops a per-session instance whose initialize was abandoned before its session existed.
struct StopUnclaimed {
    instance: Option<Arc<Instance>>,
    tasks: TaskTracker,
}

impl Drop for StopUnclaimed {
    fn drop(&mut self) {
        if let Some(instance) = self.instance.take() {
            self.tasks.spawn(async move { instance.stop().await });
        }
    }
}

/// berth's own initialize parameters for the shared instance.
fn berth_init_params() -> String {
    serde_json::json!({
        "protocolVersion": SHARED_PROTOCOL_VERSION,
        // berth forwards sampling and elicitation to the client session that declared them (when
        // it can tell which one caused them), and answers roots itself from the backend's
        // `roots`, which do not change while it runs.
        "capabilities": {"sampling": {}, "elicitation": {}, "roots": {}},
        "clientInfo": {"name": "berth", "version": env!("CARGO_PKG_VERSION")},
    })
    .to_string()
}

/// A refusal berth answers itself, carrying the request's id when it is known.
fn refuse(status: StatusCode, id: Option<Bytes>, code: i64, message: impl Into<String>) -> Response<ResponseBody> {
    let slug = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::CONFLICT => "conflict",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        _ if status.is_server_error() => "backend_error",
        _ => "bad_request",
    };
    // The id as the client wrote it, never re-serialized.
    let id = id.unwrap_or_else(|| Bytes::from_static(b"null"));
    Rejection::new(status, slug, message).with_raw_id(id).with_code(code).into_response()
}

fn refuse_with(error: &StdioError, id: Option<Bytes>) -> Response<ResponseBody> {
    refuse(error.status(), id, error.code(), error.to_string())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether a session-less request comes from a stateless (2026-07-28) client.
fn is_stateless(headers: &HeaderMap, messages: &[Message]) -> bool {
    mcp_headers::protocol_version(headers).is_some_and(is_stateless_version)
        || messages.iter().any(|m| {
            m.method().as_deref() == Some("server/discover")
                || m.find(&["params", "_meta", "io.modelcontextprotocol/protocolVersion"]).is_some()
        })
}

/// A stateless request carries its lifecycle in `_meta`; without it the server could not know
/// the client's version or capabilities, so berth refuses it as rmcp would (400, -32602).
fn missing_request_meta(messages: &[Message]) -> Option<Response<ResponseBody>> {
    for message in messages.iter().filter(|m| m.kind() == Kind::Request) {
        let field = |key: &str| message.find(&["params", "_meta", key]).map(|span| message.raw(&span).to_string());
        let mut missing = Vec::new();
        if !field("io.modelcontextprotocol/protocolVersion").is_some_and(|v| v.starts_with('"')) {
            missing.push("io.modelcontextprotocol/protocolVersion");
        }
        if !field("io.modelcontextprotocol/clientCapabilities").is_some_and(|v| v.starts_with('{')) {
            missing.push("io.modelcontextprotocol/clientCapabilities");
        }
        if !missing.is_empty() {
            let reason = format!("request _meta is missing or has malformed required fields: {}", missing.join(", "));
            return Some(refuse(StatusCode::BAD_REQUEST, message.id_bytes(), jsonrpc::INVALID_PARAMS, reason));
        }
    }
    None
}

/// The version to answer a client's initialize with, given what the shared instance speaks.
fn negotiate(requested: Option<&str>, instance: &str) -> String {
    match requested {
        Some(requested)
            if requested <= instance
                && rmcp::model::ProtocolVersion::KNOWN_VERSIONS.iter().any(|v| v.as_str() == requested) =>
        {
            requested.to_string()
        }
        _ => instance.to_string(),
    }
}

/// The answer to a client's initialize: the server's initialize result under the client's id,
/// with `protocolVersion` replaced by `version` when given.
fn initialize_answer(init: &Message, id: &[u8], version: Option<&str>) -> Bytes {
    let Some(result) = init.find(&["result"]) else { return jsonrpc::result(id, "{}") };
    let text = init.text();
    match (version, init.find(&["result", "protocolVersion"])) {
        (Some(version), Some(span)) => {
            let version = serde_json::Value::from(version).to_string();
            let spliced = format!("{}{version}{}", &text[result.start..span.start], &text[span.end..result.end]);
            jsonrpc::result(id, &spliced)
        }
        _ => jsonrpc::result(id, init.raw(&result)),
    }
}

impl StdioBackend {
    /// A backend named `name`; nothing starts until [`StdioBackend::start`] or first use.
    /// `on_tools_changed` is called when a server says its tool list changed.
    pub(crate) fn new(
        name: &str,
        spec: Arc<StdioSpec>,
        launcher: Arc<Launcher>,
        keep_alive: Duration,
        shutdown: &CancellationToken,
        on_tools_changed: Option<Arc<dyn Fn() + Send + Sync>>,
        stats: Arc<StdioStats>,
    ) -> Self {
        let name: Arc<str> = name.into();
        let sessions = Arc::new(SessionTable::default());
        let streams = shutdown.child_token();
        // Instances outlive the start of the drain: in-flight calls must still be answered.
        let shutdown = CancellationToken::new();
        let relay_spec = |name: &Arc<str>| RelaySpec {
            backend: Arc::clone(name),
            request_timeout: spec.request_timeout,
            startup_timeout: spec.startup_timeout,
            on_tools_changed: on_tools_changed.clone(),
            stats: Arc::clone(&stats),
            roots: None,
        };
        let shared = (spec.sharing == Sharing::Shared).then(|| {
            let shared_spec = RelaySpec { roots: Some(Arc::from(spec.roots_result.as_str())), ..relay_spec(&name) };
            let relay = Relay::new(shared_spec, Audience::Shared(Arc::clone(&sessions)));
            Instance::new(relay, Arc::clone(&launcher), Arc::clone(&spec), Some(berth_init_params()), &shutdown, None)
        });
        let stateless = Instance::new(
            Relay::new(relay_spec(&name), Audience::Nobody),
            Arc::clone(&launcher),
            Arc::clone(&spec),
            None,
            &shutdown,
            None,
        );
        Self {
            slots: Arc::new(Semaphore::new(spec.max_instances)),
            probed: Arc::new(AtomicBool::new(true)),
            name,
            spec,
            launcher,
            sessions,
            shared,
            stateless,
            keep_alive,
            on_tools_changed,
            stats,
            streams,
            shutdown,
            endings: TaskTracker::new(),
        }
    }

    /// Starts what `start = "eager"` and `required` ask for, and the idle-session reaper.
    ///
    /// A `required` backend must be ready for `/readyz` to say so: its shared instance starts
    /// now, as with `start = "eager"`; a per-session backend has no instance until a client
    /// comes, so one is started now, initialized and stopped again (retried with backoff until
    /// it works), and the backend is not ready until one did.
    pub(crate) fn start(self: &Arc<Self>, required: bool) {
        match &self.shared {
            Some(shared) if required || self.spec.start == StartMode::Eager => shared.ensure_started(),
            Some(_) => {}
            None if required => self.probe(),
            None => {}
        }
        if let Some(watch) = self.launcher.watch(&self.name, self.shutdown.clone()) {
            self.endings.spawn(watch);
        }
        let backend = Arc::downgrade(self);
        let tick = (self.spec.idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        let shutdown = self.shutdown.clone();
        self.endings.spawn(async move {
            let mut ticker = tokio::time::interval(tick);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                let Some(backend) = backend.upgrade() else { return };
                for session in backend.sessions.take_idle(backend.spec.idle_timeout) {
                    tracing::info!(backend = &*backend.name, session = session.id(), "session expired after idling");
                    backend.end_session(session).await;
                }
            }
        });
    }

    /// Whether the backend can serve: its engine answers, its shared instance is up (or not
    /// started yet: it starts on demand), and a required per-session one passed its probe.
    pub(crate) fn is_ready(&self) -> bool {
        self.launcher.is_available()
            && self.probed.load(Ordering::Relaxed)
            && self.shared.as_ref().is_none_or(|shared| shared.is_ready())
    }

    /// What the backend is doing now: its sessions and started instances.
    pub(crate) fn status(&self) -> BackendStatus {
        let kind = self.spec.launch.kind();
        let sessions = self.sessions.all();
        let roles = self.shared.iter().map(|i| ("shared", i)).chain([("stateless", &self.stateless)]);
        let owned = sessions.iter().filter(|s| s.owns_instance()).map(|s| ("session", s.instance()));
        let instances = roles
            .chain(owned)
            .filter_map(|(role, instance)| {
                let (state, reason) = instance.relay().link_status()?;
                let runs = instance.relay().runs();
                Some(InstanceStatus {
                    role,
                    state,
                    reason,
                    pid: runs.pid,
                    container: runs.container,
                    started_at: runs.started_at.map(crate::audit::rfc3339),
                    restarts: runs.restarts,
                    last_exit: runs.last_exit,
                })
            })
            .collect();
        BackendStatus {
            kind,
            state: "running",
            ready: self.is_ready(),
            required: false,
            sessions: Some(sessions.len()),
            instances,
            restarts: self.stats.restarts.get(),
            last_error: self.stats.last_error().map(|(message, at)| LastError::new(message, at)),
            unavailable: self.launcher.unavailable(),
        }
    }

    /// Its open sessions, as the admin API shows them.
    pub(crate) fn sessions(&self) -> Vec<super::session::SessionInfo> {
        self.sessions.all().iter().map(|session| session.info(&self.name)).collect()
    }

    /// Ends session `id` whoever owns it (an admin's `DELETE /api/sessions/{id}`), as a
    /// client's DELETE ends it; whether there was one.
    pub(crate) fn end(self: &Arc<Self>, id: &str) -> bool {
        let Some(session) = self.sessions.remove(id) else { return false };
        let backend = Arc::clone(self);
        self.endings.spawn(async move { backend.end_session(session).await });
        true
    }

    /// The last lines its servers wrote to stderr, oldest first.
    pub(crate) fn logs(&self) -> Vec<crate::stdio::LogLine> {
        self.stats.stderr.lines()
    }

    /// The probe of a required per-session backend: one instance, initialized as berth
    /// initializes a shared one, then stopped; retried with backoff (1 s to 30 s) until one
    /// answers or berth shuts down. It takes a `max_instances` slot while it runs.
    fn probe(&self) {
        self.probed.store(false, Ordering::Relaxed);
        let (launcher, spec, slots, probed) =
            (Arc::clone(&self.launcher), Arc::clone(&self.spec), Arc::clone(&self.slots), Arc::clone(&self.probed));
        let shutdown = self.shutdown.clone();
        let name = Arc::clone(&self.name);
        let stats = Arc::clone(&self.stats);
        self.endings.spawn(async move {
            let mut backoff = Duration::from_secs(1);
            loop {
                let slot = tokio::select! {
                    slot = Arc::clone(&slots).acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => return,
                    },
                    () = shutdown.cancelled() => return,
                };
                let relay_spec = RelaySpec {
                    backend: Arc::clone(&name),
                    request_timeout: spec.request_timeout,
                    startup_timeout: spec.startup_timeout,
                    on_tools_changed: None,
                    stats: Arc::clone(&stats),
                    roots: None,
                };
                let relay = Relay::new(relay_spec, Audience::Nobody);
                let instance = Instance::new(
                    relay,
                    Arc::clone(&launcher),
                    Arc::clone(&spec),
                    Some(berth_init_params()),
                    &shutdown,
                    Some(slot),
                );
                let outcome = instance.ready().await;
                instance.stop().await;
                match outcome {
                    Ok(_) => {
                        tracing::info!(backend = &*name, "an instance started and answered initialize: ready");
                        probed.store(true, Ordering::Relaxed);
                        return;
                    }
                    Err(error) => tracing::warn!(
                        backend = &*name,
                        %error,
                        retry_in = ?backoff,
                        "the required per-session backend's trial instance failed"
                    ),
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        });
    }

    /// Stops every instance and ends every session.
    pub(crate) async fn shutdown(&self) {
        self.shutdown.cancel();
        let mut stops = Vec::new();
        for session in self.sessions.drain() {
            // Requests still in flight are answered by the instances' stop (an error).
            let _ = session.close_streams();
            if session.owns_instance() {
                let instance = Arc::clone(session.instance());
                stops.push(tokio::spawn(async move { instance.stop().await }));
            }
        }
        if let Some(shared) = self.shared.clone() {
            stops.push(tokio::spawn(async move { shared.stop().await }));
        }
        let stateless = Arc::clone(&self.stateless);
        stops.push(tokio::spawn(async move { stateless.stop().await }));
        for stop in stops {
            let _ = stop.await;
        }
        self.endings.close();
        self.endings.wait().await;
    }

    /// Starts the shared instance, if there is one, waits for its handshake and stops it:
    /// answers the server's `initialize` result (`berth check --probe`).
    pub(crate) async fn probe_shared(&self) -> Option<Result<Message, super::error::StdioError>> {
        let shared = self.shared.as_ref()?;
        shared.ensure_started();
        let outcome = shared.ready().await;
        shared.stop().await;
        Some(outcome)
    }

    /// Serves one HTTP request of `/<name>/mcp`.
    pub(crate) async fn handle(self: &Arc<Self>, request: Request<RequestBody>) -> Response<ResponseBody> {
        let (mut parts, body) = request.into_parts();
        let session_id = header_str(&parts.headers, SESSION_HEADER).map(str::to_owned);
        let identity = parts.extensions.get::<AuthenticatedUser>().map(|user| Arc::clone(&user.0));
        let identity = identity.as_deref();
        match parts.method {
            Method::POST => {
                let body = match parts.extensions.remove::<ParsedBody>() {
                    Some(ParsedBody(body)) => Ok(body),
                    None => match body.collect().await {
                        Ok(collected) => Body::parse(collected.to_bytes()),
                        Err(_) => return refuse(StatusCode::BAD_REQUEST, None, INVALID_REQUEST, "unreadable body"),
                    },
                };
                match body {
                    Ok(body) => self.post(&parts.headers, session_id, identity, body).await,
                    Err(invalid) => {
                        let code = if invalid.not_json { jsonrpc::PARSE_ERROR } else { INVALID_REQUEST };
                        refuse(StatusCode::BAD_REQUEST, invalid.id, code, invalid.reason)
                    }
                }
            }
            Method::GET => self.get(&parts.headers, session_id, identity),
            Method::DELETE => self.delete(session_id, identity).await,
            _ => refuse(StatusCode::METHOD_NOT_ALLOWED, None, INVALID_REQUEST, "use GET, POST or DELETE"),
        }
    }

    #[allow(clippy::result_large_err)] // The error is the answer itself, built once per refusal.
    fn session(
        &self,
        id: Option<String>,
        identity: Option<&str>,
        first_id: Option<Bytes>,
    ) -> Result<Arc<Session>, Response<ResponseBody>> {
        let Some(id) = id else {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                first_id,
                INVALID_REQUEST,
                "Mcp-Session-Id header required: initialize first",
            ));
        };
        self.owned_session(&id, identity).ok_or_else(|| reply::unknown_session(first_id))
    }

    /// Session `id`, if it exists and belongs to `identity`; another identity's session is
    /// logged and treated as unknown, so that session ids cannot be probed.
    fn owned_session(&self, id: &str, identity: Option<&str>) -> Option<Arc<Session>> {
        let session = self.sessions.get(id)?;
        if session.belongs_to(identity) {
            return Some(session);
        }
        tracing::warn!(
            backend = &*self.name,
            session = id,
            user = identity.unwrap_or("-"),
            "refused another identity's session: answered as unknown"
        );
        None
    }

    async fn post(
        self: &Arc<Self>,
        headers: &HeaderMap,
        session_id: Option<String>,
        identity: Option<&str>,
        body: Body,
    ) -> Response<ResponseBody> {
        let batch = body.is_batch();
        let messages = body.into_messages();
        let first_id = messages.first().and_then(Message::id_bytes);
        if let Some(init) = messages.iter().find(|m| m.method().as_deref() == Some("initialize")) {
            if mcp_headers::protocol_version(headers).is_some_and(is_stateless_version) {
                // The stateless generation removed initialize. berth answers for the server:
                // forwarding it would fix the stateless instance's pipe to the old lifecycle.
                return refuse(
                    StatusCode::NOT_FOUND,
                    first_id,
                    jsonrpc::METHOD_NOT_FOUND,
                    "initialize does not exist in protocol version 2026-07-28; use server/discover",
                );
            }
            if batch || session_id.is_some() {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    first_id,
                    INVALID_REQUEST,
                    "initialize must be sent alone and without a session",
                );
            }
            return self.initialize(init, identity).await;
        }
        match session_id {
            None if is_stateless(headers, &messages) => {
                if batch {
                    return refuse(StatusCode::BAD_REQUEST, first_id, INVALID_REQUEST, mcp_headers::BATCH_REFUSED);
                }
                if let Some(response) = missing_request_meta(&messages) {
                    return response;
                }
                let instance = Arc::clone(&self.stateless);
                instance.ensure_started();
                self.relay_messages(instance.relay(), None, messages).await
            }
            id => match self.session(id, identity, first_id.clone()) {
                Ok(session) => {
                    if batch && !mcp_headers::allows_batches(session.protocol_version()) {
                        return refuse(StatusCode::BAD_REQUEST, first_id, INVALID_REQUEST, mcp_headers::BATCH_REFUSED);
                    }
                    session.touch();
                    let relay = Arc::clone(session.relay());
                    self.relay_messages(&relay, Some(&session), messages).await
                }
                Err(response) => response,
            },
        }
    }

    fn replay_limits(&self) -> ReplayLimits {
        ReplayLimits { events: self.spec.replay_events, bytes: self.spec.replay_bytes }
    }

    async fn initialize(self: &Arc<Self>, message: &Message, identity: Option<&str>) -> Response<ResponseBody> {
        let owner: Option<Arc<str>> = identity.map(Arc::from);
        let id = message.id_bytes().unwrap_or_else(|| Bytes::from_static(b"null"));
        let requested = message.find_str(&["params", "protocolVersion"]).map(|v| v.into_owned());
        let capabilities = ClientCaps::from_initialize(message);
        let client = super::session::client_info(message);
        let (session, answer) = match &self.shared {
            Some(shared) => {
                let init = match shared.ready().await {
                    Ok(init) => init,
                    Err(error) => return refuse_with(&error, Some(id)),
                };
                let instance_version = init.find_str(&["result", "protocolVersion"]);
                let version =
                    negotiate(requested.as_deref(), instance_version.as_deref().unwrap_or(SHARED_PROTOCOL_VERSION));
                let answer = initialize_answer(&init, &id, Some(&version));
                let spec = SessionSpec {
                    capabilities,
                    protocol_version: version,
                    replay: self.replay_limits(),
                    owner,
                    client,
                };
                (Session::shared(Arc::clone(shared), spec), answer)
            }
            None => {
                // The slot is taken before the instance starts, so that concurrent initializes
                // cannot all pass the check and exceed the cap.
                let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
                    let error = StdioError::Overloaded { backend: self.name.to_string(), max: self.spec.max_instances };
                    return refuse_with(&error, Some(id));
                };
                let params = message.params().unwrap_or("{}").to_string();
                let spec = SessionSpec {
                    capabilities,
                    protocol_version: requested.unwrap_or_else(|| SHARED_PROTOCOL_VERSION.to_string()),
                    replay: self.replay_limits(),
                    owner,
                    client,
                };
                let session = Session::own(spec, |session| {
                    let relay = Relay::new(
                        RelaySpec {
                            backend: Arc::clone(&self.name),
                            request_timeout: self.spec.request_timeout,
                            startup_timeout: self.spec.startup_timeout,
                            on_tools_changed: self.on_tools_changed.clone(),
                            stats: Arc::clone(&self.stats),
                            roots: None,
                        },
                        Audience::One(session),
                    );
                    Instance::new(
                        relay,
                        Arc::clone(&self.launcher),
                        Arc::clone(&self.spec),
                        Some(params),
                        &self.shutdown,
                        Some(slot),
                    )
                });
                // A client that goes away before the handshake ends must not leave the instance
                // running with no session to stop it.
                let mut unclaimed =
                    StopUnclaimed { instance: Some(Arc::clone(session.instance())), tasks: self.endings.clone() };
                match session.instance().ready().await {
                    Ok(init) => {
                        unclaimed.instance = None;
                        (Arc::clone(&session), initialize_answer(&init, &id, None))
                    }
                    Err(error) => {
                        unclaimed.instance = None;
                        session.instance().stop().await;
                        return refuse_with(&error, Some(id));
                    }
                }
            }
        };
        self.sessions.insert(Arc::clone(&session));
        tracing::debug!(backend = &*self.name, session = session.id(), "session created");
        sse::json(StatusCode::OK, answer, Some(session.id()))
    }

    fn abandonment(&self, relay: &Arc<Relay>, resumable: bool) -> Abandonment {
        Abandonment {
            relay: Arc::clone(relay),
            window: resumable.then_some(self.spec.resume_window),
            tasks: self.endings.clone(),
            stop: self.shutdown.clone(),
        }
    }

    /// Relays the messages of one POST and answers with what comes back for its requests.
    async fn relay_messages(
        &self,
        relay: &Arc<Relay>,
        session: Option<&Arc<Session>>,
        messages: Vec<Message>,
    ) -> Response<ResponseBody> {
        let requests = messages.iter().filter(|m| m.kind() == Kind::Request).count();
        if requests == 0 {
            for message in &messages {
                self.one_way(relay, session, message).await;
            }
            return sse::accepted();
        }
        let (outbox, reader) = match session {
            Some(session) => session.open_post_stream(requests),
            None => Outbox::post(0, requests, None),
        };
        let guard = ReaderGuard::new(Arc::clone(&outbox), 1, self.abandonment(relay, session.is_some()));
        for message in &messages {
            if message.kind() != Kind::Request {
                self.one_way(relay, session, message).await;
                continue;
            }
            let local = session.and_then(|session| {
                self.subscription_shortcut(session, message)
                    .or_else(|| log_level_shortcut(session, message))
                    .or_else(|| tasks::refusal(session, message))
            });
            let outcome = match local {
                Some(answer) => {
                    outbox.deliver(answer, true, None);
                    Ok(())
                }
                None => relay.request(message, &outbox, session).await,
            };
            if let Err(error) = outcome {
                let id = message.id().unwrap_or("null").as_bytes();
                outbox.deliver(error.answer(id), true, Some(error.status()));
            }
        }
        sse::answer(reader, guard, requests, session.is_none(), self.keep_alive).await
    }

    /// A notification or a response from the client.
    async fn one_way(&self, relay: &Arc<Relay>, session: Option<&Arc<Session>>, message: &Message) {
        match (message.kind(), session) {
            // berth completed the handshake with the server itself.
            (Kind::Notification, Some(_)) if message.method().as_deref() == Some("notifications/initialized") => {}
            (Kind::Notification, session) => {
                if let Err(error) = relay.notify(message, session).await {
                    tracing::debug!(backend = &*self.name, %error, "a client notification could not be delivered");
                }
            }
            (Kind::Response, Some(session)) => relay.respond(message, session).await,
            (Kind::Response, None) => tracing::debug!(backend = &*self.name, "a response without a session; ignored"),
            (Kind::Request, _) => {}
        }
    }

    /// Reference-counts resource subscriptions of sessions sharing one instance: the server sees
    /// one subscribe per URI and one unsubscribe when the last session lets go. Answers locally
    /// when the server need not be told.
    fn subscription_shortcut(&self, session: &Arc<Session>, message: &Message) -> Option<Bytes> {
        let method = message.method()?;
        let uri = message.find_str(&["params", "uri"])?;
        let instance = session.instance();
        let must_forward = match &*method {
            "resources/subscribe" => session.subscribe(&uri) && instance.add_subscription(&uri),
            "resources/unsubscribe" => session.unsubscribe(&uri) && instance.remove_subscription(&uri),
            _ => return None,
        };
        (!must_forward).then(|| jsonrpc::result(message.id().unwrap_or("null").as_bytes(), "{}"))
    }

    fn get(&self, headers: &HeaderMap, session_id: Option<String>, identity: Option<&str>) -> Response<ResponseBody> {
        if session_id.is_none() && is_stateless(headers, &[]) {
            let mut response =
                refuse(StatusCode::METHOD_NOT_ALLOWED, None, INVALID_REQUEST, "stateless clients have no GET stream");
            response.headers_mut().insert(header::ALLOW, http::HeaderValue::from_static("POST"));
            return response;
        }
        let session = match self.session(session_id, identity, None) {
            Ok(session) => session,
            Err(response) => return response,
        };
        session.touch();
        let abandonment = self.abandonment(session.relay(), true);
        match header_str(headers, "last-event-id") {
            Some(last) => {
                let Some((stream, seq)) = parse_event_id(last) else {
                    return refuse(
                        StatusCode::BAD_REQUEST,
                        None,
                        INVALID_REQUEST,
                        format!("Last-Event-ID `{last}` is not an event id of berth's"),
                    );
                };
                let Some(outbox) = session.stream(stream) else {
                    return refuse(
                        StatusCode::BAD_REQUEST,
                        None,
                        INVALID_REQUEST,
                        format!("stream {stream} cannot be resumed: it ended long ago or never existed"),
                    );
                };
                let (reader, replayed, generation) = outbox.attach(seq);
                tracing::debug!(
                    backend = &*self.name,
                    session = session.id(),
                    stream,
                    replayed = replayed.len(),
                    "stream resumed"
                );
                let shutdown = (stream == 0).then(|| self.streams.clone());
                let guard = ReaderGuard::new(outbox, generation, abandonment);
                sse::stream(replayed, reader, guard, self.keep_alive, shutdown, None)
            }
            None => {
                let outbox = Arc::clone(session.get_stream());
                if outbox.is_attached() {
                    return refuse(
                        StatusCode::CONFLICT,
                        None,
                        INVALID_REQUEST,
                        "this session already has an open GET stream",
                    );
                }
                let current = session.replay().current_seq();
                let (reader, _, generation) = outbox.attach(current);
                let guard = ReaderGuard::new(outbox, generation, abandonment);
                let prime = Some(event_id(0, current));
                sse::stream(Vec::new(), reader, guard, self.keep_alive, Some(self.streams.clone()), prime)
            }
        }
    }

    async fn delete(self: &Arc<Self>, session_id: Option<String>, identity: Option<&str>) -> Response<ResponseBody> {
        let Some(id) = session_id else {
            return refuse(StatusCode::BAD_REQUEST, None, INVALID_REQUEST, "Mcp-Session-Id header required");
        };
        if self.owned_session(&id, identity).is_none() {
            return reply::unknown_session(None);
        }
        let Some(session) = self.sessions.remove(&id) else {
            return reply::unknown_session(None);
        };
        // Stopping a per-session instance takes up to its grace period: do it in the
        // background and answer at once.
        let backend = Arc::clone(self);
        self.endings.spawn(async move { backend.end_session(session).await });
        let mut response = Response::new(crate::body::response_body(""));
        *response.status_mut() = StatusCode::OK;
        response
    }

    /// Releases what a session held: its requests still in flight (cancelled on a shared
    /// server; a session's own server stops anyway), its subscriptions, its streams, its own
    /// instance.
    async fn end_session(&self, session: Arc<Session>) {
        let instance = Arc::clone(session.instance());
        let ended = StdioError::SessionEnded;
        for stream in session.close_streams() {
            // A session's own instance answers them as it stops; on a shared one they are
            // answered and cancelled on the server.
            if !session.owns_instance() {
                instance.relay().abandon(&stream, Some(&ended)).await;
            }
        }
        for uri in session.take_subscriptions() {
            if instance.remove_subscription(&uri) && !session.owns_instance() {
                let params = serde_json::json!({ "uri": uri }).to_string();
                if let Err(error) =
                    instance.relay().request_internal("resources/unsubscribe", &params, self.spec.request_timeout).await
                {
                    tracing::debug!(backend = &*self.name, %error, "could not unsubscribe a session's resource");
                }
            }
        }
        if session.owns_instance() {
            instance.stop().await;
        }
        tracing::debug!(backend = &*self.name, session = session.id(), "session ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_negotiation() {
        let table = [
            (Some("2025-06-18"), "2025-11-25", "2025-06-18"),
            (Some("2025-11-25"), "2025-06-18", "2025-06-18"),
            (Some("1999-01-01"), "2025-11-25", "2025-11-25"),
            (None, "2025-03-26", "2025-03-26"),
        ];
        for (requested, instance, expected) in table {
            assert_eq!(negotiate(requested, instance), expected);
        }
    }

    fn message(text: &str) -> Message {
        Message::parse(Bytes::copy_from_slice(text.as_bytes())).unwrap()
    }

    #[test]
    fn stateless_detection() {
        let mut headers = HeaderMap::new();
        assert!(!is_stateless(&headers, &[message(r#"{"jsonrpc":"2.0","method":"tools/list","id":1}"#)]));
        assert!(is_stateless(&headers, &[message(r#"{"jsonrpc":"2.0","method":"server/discover","id":1}"#)]));
        let with_meta = message(
            r#"{"jsonrpc":"2.0","method":"tools/list","id":1,"params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        );
        assert!(is_stateless(&headers, &[with_meta]));
        headers.insert("mcp-protocol-version", "2026-07-28".parse().unwrap());
        assert!(is_stateless(&headers, &[]));
    }

    #[test]
    fn initialize_answers_keep_the_servers_result_and_negotiate_the_version() {
        let init = message(
            r#"{"jsonrpc":"2.0","id":5,"result":{"protocolVersion":"2025-11-25","x-extra":[1,{"a":"b"}],"capabilities":{}}}"#,
        );
        let answer = initialize_answer(&init, b"\"client\"", Some("2025-06-18"));
        let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["id"], "client");
        assert_eq!(answer["result"]["protocolVersion"], "2025-06-18");
        assert_eq!(answer["result"]["x-extra"], serde_json::json!([1, {"a": "b"}]));
        let untouched = initialize_answer(&init, b"1", None);
        assert!(std::str::from_utf8(&untouched).unwrap().contains(r#""protocolVersion":"2025-11-25""#));
    }
}
