//! The relay of one server instance: the only place that routes and rewrites messages between
//! client sessions and a stdio server, in both directions, and times requests out.
//!
//! Many client sessions share one pipe, so every request berth writes gets a fresh numeric id
//! (and, when it asks for progress, a fresh progress token, the same number); the pending
//! table maps both back to the client's own id, token and stream. A client's cancellation, and
//! its answers to the server's own requests, are mapped the other way. Everything else in a
//! message passes through as written (see `jsonrpc::Message`).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};

use super::log_level::{self, LogLevel};
use super::tasks;
use super::{
    error::StdioError,
    log_limit::LogLimit,
    outbox::{Delivery, Outbox},
    session::{Session, SessionTable},
};
use crate::{
    jsonrpc::{self, IdKey, Kind, Message},
    metrics::StdioStats,
};

/// The state of the pipe to the current process or container of this instance.
#[derive(Debug, Clone)]
pub(crate) enum LinkState {
    /// Not started yet (lazy start).
    Idle,
    /// Starting, or restarting after a crash.
    Starting,
    /// Started; only berth's own handshake may use it.
    Handshaking(mpsc::Sender<Bytes>),
    /// Ready for client requests.
    Ready(mpsc::Sender<Bytes>),
    /// Down after a crash or a failed start, waiting to restart; says why.
    Down(String),
    /// Stopped for good.
    Stopped,
}

/// Where the answer to one request goes.
struct Pending {
    /// The client's id, as written.
    client_id: Bytes,
    /// The client's progress token, as written.
    progress: Option<Bytes>,
    outbox: Arc<Outbox>,
    session: Option<Weak<Session>>,
    deadline: Instant,
    method: Box<str>,
}

/// The "timeout" of requests that are meant to stay open (a year).
const LONG_LIVED: Duration = Duration::from_secs(365 * 24 * 3600);
/// Where 2026-07-28 servers tag notifications with the listen request they belong to.
const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// Who receives messages the server sends on its own.
pub(crate) enum Audience {
    /// Every session of a shared instance.
    Shared(Arc<SessionTable>),
    /// The one session of a per-session instance.
    One(Weak<Session>),
    /// Nobody: the instance serving stateless clients, which have no session.
    Nobody,
}

/// The routing state of one instance; it outlives restarts of the process behind it.
pub(crate) struct Relay {
    backend: Arc<str>,
    next_id: AtomicU64,
    link: watch::Sender<LinkState>,
    pending: Mutex<HashMap<u64, Pending>>,
    audience: Audience,
    request_timeout: Duration,
    /// Startup timeout: how long a request waits for a starting instance.
    startup_timeout: Duration,
    logs: LogLimit,
    on_tools_changed: Option<Arc<dyn Fn() + Send + Sync>>,
    stats: Arc<StdioStats>,
    /// See [`RelaySpec::roots`].
    roots: Option<Arc<str>>,
    /// The instance's runs, as the admin API shows them.
    runs: Mutex<RunRecord>,
}

/// What one instance's runs were: the current process or container, when it started, how
/// many runs failed and how the latest failure ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RunRecord {
    /// The process id of the current run (its process group leader).
    pub(crate) pid: Option<u32>,
    /// The container id of the current run (12 characters, as `docker ps` shows it).
    pub(crate) container: Option<String>,
    /// When the current run was launched.
    pub(crate) started_at: Option<std::time::SystemTime>,
    /// Runs of this instance that failed.
    pub(crate) restarts: u64,
    /// How the latest failed run ended.
    pub(crate) last_exit: Option<String>,
}

/// A relay's fixed settings.
pub(crate) struct RelaySpec {
    /// The backend's name.
    pub(crate) backend: Arc<str>,
    /// How long a request may wait for its answer.
    pub(crate) request_timeout: Duration,
    /// How long a request may wait for the instance to start.
    pub(crate) startup_timeout: Duration,
    /// Called when the server says its tool list changed.
    pub(crate) on_tools_changed: Option<Arc<dyn Fn() + Send + Sync>>,
    /// What the backend's instances count (metrics, last error).
    pub(crate) stats: Arc<StdioStats>,
    /// The `roots/list` result berth gives a shared instance's server itself, so that no
    /// user's roots reach the others; `None` forwards the request to the client.
    pub(crate) roots: Option<Arc<str>>,
}

/// One message berth writes to the server, as a line.
fn line(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(message.len() + 1);
    out.extend_from_slice(message);
    out.extend_from_slice(b"\n");
    out.freeze()
}

impl Relay {
    /// A relay delivering unsolicited messages to `audience`.
    pub(crate) fn new(spec: RelaySpec, audience: Audience) -> Arc<Self> {
        Arc::new(Self {
            backend: spec.backend,
            next_id: AtomicU64::new(1),
            link: watch::Sender::new(LinkState::Idle),
            pending: Mutex::new(HashMap::new()),
            audience,
            request_timeout: spec.request_timeout,
            startup_timeout: spec.startup_timeout,
            logs: LogLimit::new(Duration::from_secs(60), 1),
            on_tools_changed: spec.on_tools_changed,
            stats: spec.stats,
            roots: spec.roots,
            runs: Mutex::default(),
        })
    }

    /// The instance's runs so far.
    pub(crate) fn runs(&self) -> RunRecord {
        self.runs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A run was launched, as process `pid` or container `container`.
    pub(crate) fn run_started(&self, pid: Option<u32>, container: Option<String>) {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        (runs.pid, runs.container, runs.started_at) = (pid, container, Some(std::time::SystemTime::now()));
    }

    /// The current run failed, as `reason` says.
    pub(crate) fn run_failed(&self, reason: &str) {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.restarts += 1;
        runs.last_exit = Some(reason.to_string());
        (runs.pid, runs.container) = (None, None);
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<u64, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the backend's instances count.
    pub(crate) fn stats(&self) -> &Arc<StdioStats> {
        &self.stats
    }

    /// The state of a started instance for status reports (`starting`, `ready`, `down` with
    /// its reason); `None` before the start and after the stop.
    pub(crate) fn link_status(&self) -> Option<(&'static str, Option<String>)> {
        match &*self.link.borrow() {
            LinkState::Idle | LinkState::Stopped => None,
            LinkState::Starting | LinkState::Handshaking(_) => Some(("starting", None)),
            LinkState::Ready(_) => Some(("ready", None)),
            LinkState::Down(reason) => Some(("down", Some(reason.clone()))),
        }
    }

    /// The backend's name.
    pub(crate) fn backend(&self) -> &str {
        &self.backend
    }

    /// Replaces the link state.
    pub(crate) fn set_link(&self, state: LinkState) {
        self.link.send_replace(state);
    }

    /// Whether client requests flow now.
    pub(crate) fn is_ready(&self) -> bool {
        matches!(*self.link.borrow(), LinkState::Ready(_))
    }

    /// Whether the link was ever asked to start.
    pub(crate) fn is_idle(&self) -> bool {
        matches!(*self.link.borrow(), LinkState::Idle)
    }

    /// How many requests wait for an answer.
    #[cfg(test)]
    pub(crate) fn pending_count(&self) -> usize {
        self.pending().len()
    }

    /// The writer to use, waiting (bounded) through a start or restart.
    async fn writer(&self, internal: bool) -> Result<mpsc::Sender<Bytes>, StdioError> {
        // The common case, on every request: the link is ready. Answer without subscribing to
        // the watch or arming a timer (a timer-wheel registration per request, found by
        // profiling berth-bench).
        if let LinkState::Ready(writer) = &*self.link.borrow() {
            return Ok(writer.clone());
        }
        let mut link = self.link.subscribe();
        let wait = link.wait_for(|state| match state {
            LinkState::Ready(_) | LinkState::Stopped => true,
            LinkState::Handshaking(_) => internal,
            _ => false,
        });
        let state = match tokio::time::timeout(self.startup_timeout, wait).await {
            Ok(Ok(state)) => state.clone(),
            Ok(Err(_)) => LinkState::Stopped,
            Err(_) => {
                return Err(match &*self.link.borrow() {
                    LinkState::Down(reason) => {
                        StdioError::NotReady { backend: self.backend.to_string(), reason: reason.clone() }
                    }
                    _ => StdioError::Starting { backend: self.backend.to_string(), within: self.startup_timeout },
                });
            }
        };
        match state {
            LinkState::Ready(writer) | LinkState::Handshaking(writer) => Ok(writer),
            _ => Err(StdioError::Stopped(self.backend.to_string())),
        }
    }

    fn gone(&self) -> StdioError {
        StdioError::Crashed { backend: self.backend.to_string(), reason: "its stdin closed".to_string() }
    }

    /// Writes one message of berth's own to the server, if the link is up; best effort
    /// (answers to server requests, cancellations). It never waits for room in the stdin
    /// queue: it is called from the task reading the server's stdout, and waiting there for
    /// the server to read its stdin could deadlock a server blocked on writing its stdout.
    async fn write_own(&self, message: &[u8]) {
        let writer = match &*self.link.borrow() {
            LinkState::Ready(writer) | LinkState::Handshaking(writer) => writer.clone(),
            _ => return,
        };
        if let Err(mpsc::error::TrySendError::Full(line)) = writer.try_send(line(message)) {
            tokio::spawn(async move {
                let _ = writer.send(line).await;
            });
        }
    }

    /// Writes berth's own notification during the handshake.
    pub(crate) async fn notify_internal(&self, message: &[u8]) -> Result<(), StdioError> {
        let writer = self.writer(true).await?;
        writer.send(line(message)).await.map_err(|_| self.gone())
    }

    /// Sends a client request; its answer (and its progress notifications and related server
    /// requests) arrive on `outbox` with the client's own id and token restored.
    pub(crate) async fn request(
        &self,
        message: &Message,
        outbox: &Arc<Outbox>,
        session: Option<&Arc<Session>>,
    ) -> Result<(), StdioError> {
        let writer = self.writer(false).await?;
        self.send_request(&writer, message, outbox, session).await
    }

    async fn send_request(
        &self,
        writer: &mpsc::Sender<Bytes>,
        message: &Message,
        outbox: &Arc<Outbox>,
        session: Option<&Arc<Session>>,
    ) -> Result<(), StdioError> {
        let (Some(id_span), Some(client_id)) = (message.id_span(), message.id_bytes()) else {
            return Err(StdioError::BadAnswer { backend: self.backend.to_string(), reason: "no id".into() });
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let upstream = id.to_string();
        let token = message.find(&["params", "_meta", "progressToken"]);
        let progress = token.clone().map(|span| message.bytes().slice(span));
        let mut edits = vec![(id_span, upstream.as_bytes())];
        if let Some(span) = token {
            edits.push((span, upstream.as_bytes()));
        }
        let mut rewritten = BytesMut::from(&message.splice(&mut edits)[..]);
        rewritten.extend_from_slice(b"\n");
        let method: Box<str> = message.method().unwrap_or_default().into();
        // A listen request stays open for as long as the client listens: no timeout.
        let timeout = if &*method == "subscriptions/listen" { LONG_LIVED } else { self.request_timeout };
        if let Some(session) = session {
            session.request_started();
        }
        self.pending().insert(
            id,
            Pending {
                client_id,
                progress,
                outbox: Arc::clone(outbox),
                session: session.map(Arc::downgrade),
                deadline: deadline(timeout),
                method,
            },
        );
        if writer.send(rewritten.freeze()).await.is_err() {
            self.remove(id);
            return Err(self.gone());
        }
        Ok(())
    }

    /// Sends berth's own request (the handshake's initialize, re-subscriptions), allowed before
    /// the link is ready, and waits for its answer within `timeout`.
    pub(crate) async fn request_internal(
        &self,
        method: &str,
        params: &str,
        timeout: Duration,
    ) -> Result<Message, StdioError> {
        let writer = self.writer(true).await?;
        let (outbox, mut answer) = Outbox::post(0, 1, None);
        let request = Message::parse(jsonrpc::request(0, method, params)).map_err(|error| StdioError::Launch {
            backend: self.backend.to_string(),
            reason: format!("berth's own {method} is invalid: {error}"),
        })?;
        self.send_request(&writer, &request, &outbox, None).await?;
        let event = tokio::time::timeout(timeout, answer.recv())
            .await
            .map_err(|_| StdioError::Launch {
                backend: self.backend.to_string(),
                reason: format!("no answer to {method} within {timeout:?}"),
            })?
            .ok_or_else(|| self.gone())?;
        Message::parse(event.data)
            .map_err(|error| StdioError::BadAnswer { backend: self.backend.to_string(), reason: error.to_string() })
    }

    /// Writes a client's notification. A cancellation names the client's id of the request:
    /// it is mapped to berth's, and the request is forgotten (the server will not answer it).
    pub(crate) async fn notify(&self, message: &Message, session: Option<&Arc<Session>>) -> Result<(), StdioError> {
        let writer = self.writer(false).await?;
        if message.method().as_deref() != Some("notifications/cancelled") {
            return writer.send(line(message.bytes())).await.map_err(|_| self.gone());
        }
        let Some(span) = message.find(&["params", "requestId"]) else {
            // Nothing berth can map: the server could not match it either.
            return Ok(());
        };
        let Some(key) = IdKey::of(message.raw(&span)) else { return Ok(()) };
        let found = {
            let pending = self.pending();
            pending
                .iter()
                .find(|(_, p)| {
                    std::str::from_utf8(&p.client_id).ok().and_then(IdKey::of).as_ref() == Some(&key)
                        && same_session(p.session.as_ref(), session)
                })
                .map(|(id, _)| *id)
        };
        let Some(upstream) = found else { return Ok(()) };
        if let Some(pending) = self.remove(upstream) {
            pending.outbox.forgo_response();
        }
        let upstream = upstream.to_string();
        let rewritten = message.splice(&mut [(span, upstream.as_bytes())]);
        writer.send(line(&rewritten)).await.map_err(|_| self.gone())
    }

    /// Writes a client's answer to a server request, under the server's own id.
    pub(crate) async fn respond(&self, message: &Message, session: &Session) {
        let (Some(span), Some(id)) = (message.id_span(), message.id()) else { return };
        match session.take_server_request(id) {
            Some(server_id) => self.write_own(&message.splice(&mut [(span, &server_id)])).await,
            None => tracing::debug!(backend = &*self.backend, "a response to no pending server request; ignored"),
        }
    }

    fn remove(&self, id: u64) -> Option<Pending> {
        let pending = self.pending().remove(&id)?;
        if let Some(session) = pending.session.as_ref().and_then(Weak::upgrade) {
            session.request_ended();
        }
        Some(pending)
    }

    /// Answers every pending request with `error` (the server exited or is stopping).
    pub(crate) fn fail_all(&self, error: &StdioError) {
        let drained: Vec<Pending> = self.pending().drain().map(|(_, p)| p).collect();
        for pending in drained {
            if let Some(session) = pending.session.as_ref().and_then(Weak::upgrade) {
                session.request_ended();
            }
            pending.outbox.deliver(error.answer(&pending.client_id), true, Some(error.status()));
        }
    }

    /// Times out requests past their deadline and tells the server; answers how many.
    pub(crate) async fn expire(&self) -> usize {
        let now = Instant::now();
        let ids: Vec<u64> = self.pending().iter().filter(|(_, p)| p.deadline <= now).map(|(id, _)| *id).collect();
        let mut expired = 0;
        for id in ids {
            let Some(pending) = self.remove(id) else { continue };
            expired += 1;
            let error = StdioError::Timeout {
                backend: self.backend.to_string(),
                method: pending.method.to_string(),
                after: self.request_timeout,
            };
            pending.outbox.deliver(error.answer(&pending.client_id), true, Some(error.status()));
            self.cancel_upstream(id, "timed out in berth").await;
        }
        expired
    }

    async fn cancel_upstream(&self, id: u64, reason: &str) {
        let params = format!("{{\"requestId\":{id},\"reason\":{}}}", serde_json::Value::from(reason));
        self.write_own(&jsonrpc::notification("notifications/cancelled", &params)).await;
    }

    /// Gives up the requests of a stream: the client went away and did not resume in time, or
    /// closed a stateless request's stream (nobody to answer), or its session ended (`answer`
    /// says why, to a reader that may still be there). The server is told to cancel them.
    pub(crate) async fn abandon(&self, outbox: &Arc<Outbox>, answer: Option<&StdioError>) {
        let ids: Vec<u64> =
            self.pending().iter().filter(|(_, p)| Arc::ptr_eq(&p.outbox, outbox)).map(|(id, _)| *id).collect();
        for id in ids {
            if let Some(pending) = self.remove(id) {
                if let Some(error) = answer {
                    pending.outbox.deliver(error.answer(&pending.client_id), true, Some(error.status()));
                }
                tracing::debug!(
                    backend = &*self.backend,
                    method = &*pending.method,
                    "the client went away: cancelling"
                );
                self.cancel_upstream(id, "the client went away").await;
            }
        }
        outbox.end();
    }

    fn log_junk(&self, cause: &'static str, detail: &str) {
        if let Some(suppressed) = self.logs.admit(cause) {
            tracing::warn!(backend = &*self.backend, suppressed, "{cause}: {detail}");
        }
    }

    /// Routes one line the server wrote.
    pub(crate) async fn dispatch(&self, line: Bytes) {
        let message = match Message::parse(line) {
            Ok(message) => message,
            Err(invalid) => {
                // An answer to one of berth's requests that is broken fails that request at
                // once rather than leaving the client to wait for its timeout.
                let id = invalid.id.as_ref().and_then(|id| std::str::from_utf8(id).ok()?.parse::<u64>().ok());
                if let Some(pending) = id.and_then(|id| self.remove(id)) {
                    let error =
                        StdioError::BadAnswer { backend: self.backend.to_string(), reason: invalid.reason.to_string() };
                    pending.outbox.deliver(error.answer(&pending.client_id), true, Some(error.status()));
                }
                let cause = if invalid.not_json {
                    "the server wrote a line on stdout that is not JSON; ignored"
                } else {
                    "the server wrote a message on stdout that is not valid JSON-RPC; ignored"
                };
                self.log_junk(cause, &invalid.reason);
                return;
            }
        };
        match message.kind() {
            Kind::Response => self.on_response(&message),
            Kind::Notification => self.on_notification(&message).await,
            Kind::Request => self.on_server_request(&message).await,
        }
    }

    fn on_response(&self, message: &Message) {
        let Some(pending) = message.id_u64().and_then(|id| self.remove(id)) else {
            self.log_junk(
                "a response to no request of berth's (unknown or already answered); ignored",
                message.id().unwrap_or("-"),
            );
            return;
        };
        let Some(span) = message.id_span() else { return };
        let owner = match &self.audience {
            Audience::Shared(_) => pending.session.as_ref().and_then(Weak::upgrade),
            _ => None,
        };
        let answer = match owner {
            Some(session) => tasks::answer_for(&session, &pending.method, message, span, &pending.client_id),
            None => message.splice(&mut [(span, &pending.client_id)]),
        };
        pending.outbox.deliver(answer, true, None);
    }

    async fn on_notification(&self, message: &Message) {
        match message.method().as_deref() {
            Some("notifications/progress") => self.on_progress(message),
            Some("notifications/resources/updated") => {
                let uri = message.find_str(&["params", "uri"]).unwrap_or_default();
                for session in self.sessions() {
                    if session.is_subscribed(&uri) {
                        session.push(message.bytes().clone());
                    }
                }
            }
            Some("notifications/message") if matches!(self.audience, Audience::Shared(_)) => self.on_log(message),
            Some("notifications/tasks/status") if matches!(self.audience, Audience::Shared(_)) => {
                // A task's status goes to the session that created it, and to nobody else.
                let task = message.find_str(&["params", "taskId"]).unwrap_or_default();
                for session in self.sessions().into_iter().filter(|session| session.owns_task(&task)) {
                    session.push(message.bytes().clone());
                }
            }
            Some("notifications/cancelled") => {
                // The server withdrew one of its own requests to a client.
                let Some(span) = message.find(&["params", "requestId"]) else { return };
                for session in self.sessions() {
                    if let Some((client_id, stream)) = session.server_request_cancelled(message.raw(&span)) {
                        let quoted = format!("\"{client_id}\"");
                        stream.deliver(message.splice(&mut [(span.clone(), quoted.as_bytes())]), false, None);
                    }
                }
            }
            method => {
                if method == Some("notifications/tools/list_changed")
                    && let Some(changed) = &self.on_tools_changed
                {
                    changed();
                }
                if self.to_subscription(message) {
                    return;
                }
                for session in self.sessions() {
                    session.push(message.bytes().clone());
                }
            }
        }
    }

    /// A log message of a shared instance: to the one session with requests in flight when
    /// there is exactly one (the only possible cause), else to every session; in both cases
    /// only to sessions whose level it reaches (`log_level.rs`).
    fn on_log(&self, message: &Message) {
        let level = message.find_str(&["params", "level"]).and_then(|level| LogLevel::parse(&level));
        let sessions = self.sessions();
        let causes: Vec<Arc<Session>> = {
            let pending = self.pending();
            let mut causes: Vec<Arc<Session>> = Vec::new();
            for session in pending.values().filter_map(|p| p.session.as_ref()?.upgrade()) {
                if !causes.iter().any(|known| Arc::ptr_eq(known, &session)) {
                    causes.push(session);
                }
            }
            causes
        };
        let targets = if causes.len() == 1 { causes } else { sessions.clone() };
        let any_set = sessions.iter().any(|session| session.log_level().get().is_some());
        for session in targets {
            // A message without a known level is delivered as a direct connection would.
            if level.is_none_or(|level| log_level::wants(session.log_level().get(), level, any_set)) {
                session.push(message.bytes().clone());
            }
        }
    }

    fn on_progress(&self, message: &Message) {
        let Some(span) = message.find(&["params", "progressToken"]) else { return };
        let Ok(token) = message.raw(&span).parse::<u64>() else { return };
        let target = {
            let mut pending = self.pending();
            pending.get_mut(&token).and_then(|entry| {
                // Progress proves the server is working: restart the request's clock.
                entry.deadline = deadline(self.request_timeout);
                Some((entry.progress.clone()?, Arc::clone(&entry.outbox)))
            })
        };
        if let Some((client_token, outbox)) = target {
            outbox.deliver(message.splice(&mut [(span, &client_token)]), false, None);
        }
    }

    /// Delivers a notification tagged with a `subscriptions/listen` request to that request's
    /// stream, with the client's id restored; true if it was one.
    fn to_subscription(&self, message: &Message) -> bool {
        let Some(span) = message.find(&["params", "_meta", SUBSCRIPTION_ID]) else { return false };
        let Ok(id) = message.raw(&span).parse::<u64>() else { return false };
        let target = self.pending().get(&id).map(|p| (p.client_id.clone(), Arc::clone(&p.outbox)));
        let Some((client_id, outbox)) = target else { return false };
        outbox.deliver(message.splice(&mut [(span, &client_id)]), false, None);
        true
    }

    fn sessions(&self) -> Vec<Arc<Session>> {
        match &self.audience {
            Audience::Shared(table) => table.all(),
            Audience::One(session) => session.upgrade().into_iter().collect(),
            Audience::Nobody => Vec::new(),
        }
    }

    /// A request from the server to a client (sampling, elicitation, roots, ping, or one berth
    /// does not know).
    async fn on_server_request(&self, message: &Message) {
        let id = message.id().unwrap_or("null").as_bytes().to_vec();
        let method = message.method().unwrap_or_default().into_owned();
        if method == "ping" {
            // berth is the server's client: it answers for itself.
            self.write_own(&jsonrpc::result(&id, "{}")).await;
            return;
        }
        if method == "roots/list"
            && let Some(roots) = &self.roots
        {
            // A shared instance: one user's roots must not become every user's.
            self.write_own(&jsonrpc::result(&id, roots)).await;
            return;
        }
        let Some((session, stream)) = self.pick_session(&method) else {
            let reason = format!(
                "no single client session of backend `{}` can answer `{method}`: none declared it, or several could have caused it",
                self.backend
            );
            self.write_own(&jsonrpc::error(&id, jsonrpc::METHOD_NOT_FOUND, &reason)).await;
            return;
        };
        if let Err(reason) = self.forward_server_request(&session, message, stream) {
            self.write_own(&jsonrpc::error(&id, jsonrpc::METHOD_NOT_FOUND, reason)).await;
        }
    }

    /// Forwards a server request to `session`'s client under an id of berth's, on `stream` (the
    /// related request's stream) or, while the client listens, the GET stream. A request kept
    /// for a client that may never come back would leave the server waiting; a POST stream
    /// without a reader is within its resume window (or about to be given up, which cancels the
    /// request that caused this one).
    fn forward_server_request(
        &self,
        session: &Session,
        message: &Message,
        stream: Option<Arc<Outbox>>,
    ) -> Result<(), &'static str> {
        let (Some(span), Some(server_id)) = (message.id_span(), message.id_bytes()) else {
            return Err("the server request has no id");
        };
        let stream = match stream {
            Some(stream) => stream,
            None if session.get_stream().is_attached() => Arc::clone(session.get_stream()),
            None => return Err("the client has no open stream to receive the request"),
        };
        let berth_id = format!("\"{}\"", session.register_server_request(server_id, &stream));
        let forwarded = message.splice(&mut [(span, berth_id.as_bytes())]);
        if stream.deliver(forwarded, false, None) == Delivery::Dropped {
            session.take_server_request(&berth_id);
            return Err("the client's stream has no room for the request");
        }
        Ok(())
    }

    /// stdio carries no link between a server request and the client request that caused it.
    /// berth forwards it only when one session can be its cause: the session with requests in
    /// flight, if there is exactly one and it declared what the request needs (on the stream of
    /// its most recent request, where the spec wants related messages); or, with nothing in
    /// flight, the one capable session there is (on its GET stream). When several could be the
    /// cause, or the only possible cause cannot answer, guessing would hand one user's request,
    /// and its content, to another user's client: berth refuses instead. Every session with
    /// requests in flight counts, capable or not: the one that caused the request may be one
    /// that cannot answer it.
    fn pick_session(&self, method: &str) -> Option<(Arc<Session>, Option<Arc<Outbox>>)> {
        let mut in_flight: Vec<(u64, Arc<Session>, Arc<Outbox>)> = {
            let pending = self.pending();
            pending
                .iter()
                .filter_map(|(id, p)| Some((*id, p.session.as_ref()?.upgrade()?, Arc::clone(&p.outbox))))
                .collect()
        };
        in_flight.sort_by_key(|(id, _, _)| *id);
        if let Some((_, newest, _)) = in_flight.last() {
            if in_flight.iter().any(|(_, session, _)| !Arc::ptr_eq(session, newest)) || !newest.can_answer(method) {
                return None;
            }
            return in_flight.pop().map(|(_, session, stream)| (session, Some(stream)));
        }
        let mut idle: Vec<Arc<Session>> =
            self.sessions().into_iter().filter(|session| session.can_answer(method)).collect();
        (idle.len() == 1).then(|| (idle.remove(0), None))
    }
}

#[cfg(test)]
mod tests;

/// `timeout` from now, or the far future when that is beyond what the clock can represent.
fn deadline(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout).or_else(|| now.checked_add(LONG_LIVED)).unwrap_or(now)
}

fn same_session(pending: Option<&Weak<Session>>, session: Option<&Arc<Session>>) -> bool {
    match (pending.and_then(Weak::upgrade), session) {
        (Some(a), Some(b)) => Arc::ptr_eq(&a, b),
        (None, None) => true,
        _ => false,
    }
}
