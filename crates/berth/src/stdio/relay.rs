//! The relay of one server instance: the only place that frames, routes and times out
//! messages between client sessions and a stdio server.
//!
//! Many client sessions share one pipe, so every request berth writes gets a fresh numeric id
//! (and, when it asks for progress, a fresh progress token, the same number); the pending
//! table maps both back to the client's own id, token and response stream. Everything else in
//! a message is passed through untouched, so fields and methods berth does not know still reach
//! the other side.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};

use super::session::{Session, SessionTable};
use crate::jsonrpc::{self, BACKEND_ERROR, Kind, METHOD_NOT_FOUND, TIMEOUT};

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
    /// Down after a crash, waiting to restart.
    Down,
    /// Stopped for good.
    Stopped,
}

/// Where the answer to one request goes.
struct Pending {
    client_id: Value,
    progress: Option<Value>,
    reply: mpsc::Sender<Value>,
    session: Option<Weak<Session>>,
    deadline: Instant,
    seq: u64,
    method: String,
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
}

/// The routing state of one instance; it outlives restarts of the process behind it.
pub(crate) struct Relay {
    backend: Arc<str>,
    next_id: AtomicU64,
    link: watch::Sender<LinkState>,
    pending: Mutex<HashMap<u64, Pending>>,
    audience: OnceLock<Audience>,
    request_timeout: Duration,
}

/// Why a request could not be sent.
pub(crate) type SendError = String;

impl Relay {
    /// A relay for an instance of `backend`.
    pub(crate) fn new(backend: Arc<str>, request_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            backend,
            next_id: AtomicU64::new(1),
            link: watch::Sender::new(LinkState::Idle),
            pending: Mutex::new(HashMap::new()),
            audience: OnceLock::new(),
            request_timeout,
        })
    }

    /// Sets who receives unsolicited messages (once).
    pub(crate) fn set_audience(&self, audience: Audience) {
        let _ = self.audience.set(audience);
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

    /// The writer to use, waiting (bounded) through a start or restart.
    async fn writer(&self, internal: bool) -> Result<mpsc::Sender<Bytes>, SendError> {
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
        let state = match tokio::time::timeout(self.request_timeout, wait).await {
            Ok(Ok(state)) => state.clone(),
            Ok(Err(_)) => LinkState::Stopped,
            Err(_) => return Err(format!("backend `{}` did not become ready in time", self.backend)),
        };
        match state {
            LinkState::Ready(writer) | LinkState::Handshaking(writer) => Ok(writer),
            _ => Err(format!("backend `{}` is stopped", self.backend)),
        }
    }

    /// Writes one message to the server as it is.
    pub(crate) async fn write(&self, message: &Value) -> Result<(), SendError> {
        let writer = self.writer(false).await?;
        send_line(&writer, message).await.map_err(|()| self.gone())
    }

    /// Writes berth's own message during the handshake.
    pub(crate) async fn write_internal(&self, message: &Value) -> Result<(), SendError> {
        let writer = self.writer(true).await?;
        send_line(&writer, message).await.map_err(|()| self.gone())
    }

    fn gone(&self) -> SendError {
        format!("backend `{}` went away", self.backend)
    }

    /// Sends a request; its answer (and its progress notifications and related server
    /// requests) arrive on `reply` with the client's own id and token restored.
    pub(crate) async fn request(
        &self,
        message: Value,
        reply: mpsc::Sender<Value>,
        session: Option<Weak<Session>>,
    ) -> Result<(), SendError> {
        self.send_request(message, reply, session, false).await
    }

    /// Sends berth's own request (the initialize handshake), allowed before the link is ready.
    pub(crate) async fn request_internal(&self, message: Value, reply: mpsc::Sender<Value>) -> Result<(), SendError> {
        self.send_request(message, reply, None, true).await
    }

    async fn send_request(
        &self,
        mut message: Value,
        reply: mpsc::Sender<Value>,
        session: Option<Weak<Session>>,
        internal: bool,
    ) -> Result<(), SendError> {
        let writer = self.writer(internal).await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let client_id = std::mem::replace(&mut message["id"], json!(id));
        let progress = jsonrpc::progress_token(&message).cloned();
        if progress.is_some() {
            jsonrpc::set_progress_token(&mut message, json!(id));
        }
        let method = jsonrpc::method(&message).unwrap_or_default().to_string();
        // A listen request stays open for as long as the client listens: no timeout.
        let timeout = if method == "subscriptions/listen" { LONG_LIVED } else { self.request_timeout };
        self.pending.lock().expect("pending lock").insert(
            id,
            Pending { client_id, progress, reply, session, deadline: Instant::now() + timeout, seq: id, method },
        );
        if send_line(&writer, &message).await.is_err() {
            self.pending.lock().expect("pending lock").remove(&id);
            return Err(self.gone());
        }
        Ok(())
    }

    /// The upstream id of a session's in-flight request, for cancellation.
    pub(crate) fn upstream_id(&self, session: &Arc<Session>, client_id: &Value) -> Option<u64> {
        let pending = self.pending.lock().expect("pending lock");
        pending
            .iter()
            .find(|(_, p)| {
                &p.client_id == client_id
                    && p.session.as_ref().and_then(Weak::upgrade).is_some_and(|s| Arc::ptr_eq(&s, session))
            })
            .map(|(id, _)| *id)
    }

    /// Answers every pending request with an error (the server exited or is stopping).
    pub(crate) fn fail_all(&self, reason: &str) {
        let drained: Vec<Pending> = self.pending.lock().expect("pending lock").drain().map(|(_, p)| p).collect();
        for pending in drained {
            deliver(&pending.reply, jsonrpc::error(pending.client_id, BACKEND_ERROR, reason));
        }
    }

    /// Times out requests past their deadline; answers how many.
    pub(crate) async fn expire(&self) -> usize {
        let now = Instant::now();
        let expired: Vec<(u64, Pending)> = {
            let mut pending = self.pending.lock().expect("pending lock");
            let ids: Vec<u64> = pending.iter().filter(|(_, p)| p.deadline <= now).map(|(id, _)| *id).collect();
            ids.into_iter().filter_map(|id| pending.remove(&id).map(|p| (id, p))).collect()
        };
        for (id, pending) in &expired {
            let message = format!(
                "`{}` timed out after {:?} without an answer from backend `{}`",
                pending.method, self.request_timeout, self.backend
            );
            deliver(&pending.reply, jsonrpc::error(pending.client_id.clone(), TIMEOUT, message));
            let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": id, "reason": "timed out in berth"}});
            let _ = self.write(&cancel).await;
        }
        expired.len()
    }

    /// Routes one line the server wrote.
    pub(crate) async fn dispatch(&self, line: &[u8]) {
        let message: Value = match serde_json::from_slice(line) {
            Ok(message) => message,
            Err(_) => {
                tracing::warn!(backend = &*self.backend, "the server wrote a line that is not JSON on stdout; ignored");
                return;
            }
        };
        match jsonrpc::kind(&message) {
            Some(Kind::Response) => self.on_response(message),
            Some(Kind::Notification) => self.on_notification(message),
            Some(Kind::Request) => self.on_server_request(message).await,
            None => {
                tracing::warn!(backend = &*self.backend, "the server wrote a message that is not JSON-RPC; ignored")
            }
        }
    }

    fn on_response(&self, mut message: Value) {
        let Some(id) = message["id"].as_u64() else {
            tracing::warn!(backend = &*self.backend, id = %message["id"], "a response to no request of berth's; ignored");
            return;
        };
        let Some(pending) = self.pending.lock().expect("pending lock").remove(&id) else {
            tracing::debug!(backend = &*self.backend, id, "a response to a request that was already answered");
            return;
        };
        message["id"] = pending.client_id;
        deliver(&pending.reply, message);
    }

    fn on_notification(&self, mut message: Value) {
        match jsonrpc::method(&message) {
            Some("notifications/progress") => {
                let token = message.pointer("/params/progressToken").and_then(Value::as_u64);
                let target = token.and_then(|token| {
                    let mut pending = self.pending.lock().expect("pending lock");
                    let entry = pending.get_mut(&token)?;
                    // Progress proves the server is working: restart the request's clock.
                    entry.deadline = Instant::now() + self.request_timeout;
                    Some((entry.progress.clone()?, entry.reply.clone()))
                });
                if let Some((client_token, reply)) = target {
                    message["params"]["progressToken"] = client_token;
                    deliver_lossy(&reply, message);
                }
            }
            Some("notifications/resources/updated") => {
                let uri = message.pointer("/params/uri").and_then(Value::as_str).unwrap_or_default().to_string();
                for session in self.sessions() {
                    if session.is_subscribed(&uri) {
                        session.push(message.clone());
                    }
                }
            }
            Some("notifications/cancelled") => {
                // The server withdrew one of its own requests to a client.
                let id = message.pointer("/params/requestId").cloned().unwrap_or(Value::Null);
                for session in self.sessions() {
                    if let Some(client_id) = session.server_request_cancelled(&id) {
                        message["params"]["requestId"] = client_id;
                        session.push(message.clone());
                    }
                }
            }
            _ => {
                if self.to_subscription(&mut message) {
                    return;
                }
                for session in self.sessions() {
                    session.push(message.clone());
                }
            }
        }
    }

    /// Delivers a notification tagged with a `subscriptions/listen` request to that request's
    /// stream, with the client's id restored; true if it was one.
    fn to_subscription(&self, message: &mut Value) -> bool {
        let Some(meta) = message.pointer_mut("/params/_meta") else { return false };
        let Some(id) = meta.get(SUBSCRIPTION_ID).and_then(Value::as_u64) else { return false };
        let target = {
            let pending = self.pending.lock().expect("pending lock");
            pending.get(&id).map(|p| (p.client_id.clone(), p.reply.clone()))
        };
        let Some((client_id, reply)) = target else { return false };
        meta[SUBSCRIPTION_ID] = client_id;
        if let Err(mpsc::error::TrySendError::Closed(_)) = reply.try_send(message.take()) {
            // The client stopped listening: release the server's side of the subscription.
            self.pending.lock().expect("pending lock").remove(&id);
            let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": id, "reason": "the client closed the stream"}});
            let writer = self.link.borrow().clone();
            if let LinkState::Ready(writer) = writer {
                tokio::spawn(async move {
                    let _ = send_line(&writer, &cancel).await;
                });
            }
        }
        true
    }

    fn sessions(&self) -> Vec<Arc<Session>> {
        match self.audience.get() {
            Some(Audience::Shared(table)) => table.all(),
            Some(Audience::One(session)) => session.upgrade().into_iter().collect(),
            None => Vec::new(),
        }
    }

    /// A request from the server to a client (sampling, elicitation, roots, ping, or one berth
    /// does not know).
    async fn on_server_request(&self, message: Value) {
        let id = message["id"].clone();
        let method = jsonrpc::method(&message).unwrap_or_default().to_string();
        if method == "ping" {
            // berth is the server's client: it answers for itself.
            let _ = self.write(&jsonrpc::result(id, json!({}))).await;
            return;
        }
        let Some((session, stream)) = self.pick_session(&method) else {
            let reason = format!(
                "no single client session of backend `{}` can answer `{method}`: none declared it, or several could have caused it",
                self.backend
            );
            let _ = self.write(&jsonrpc::error(id, METHOD_NOT_FOUND, reason)).await;
            return;
        };
        if let Err(reason) = session.forward_server_request(message, stream) {
            let _ = self.write(&jsonrpc::error(id, METHOD_NOT_FOUND, reason)).await;
        }
    }

    /// stdio carries no link between a server request and the client request that caused it.
    /// berth forwards it only when one session can be its cause: the one capable session with
    /// requests in flight (on the stream of its most recent one, where the spec wants related
    /// messages), or, with nothing in flight, the one capable session there is (on its GET
    /// stream). When several could be, guessing would hand one user's request, and its content,
    /// to another user's client: berth refuses instead.
    fn pick_session(&self, method: &str) -> Option<(Arc<Session>, Option<mpsc::Sender<Value>>)> {
        let capable = |session: &Session| session.can_answer(method);
        let mut in_flight: Vec<(u64, Arc<Session>, mpsc::Sender<Value>)> = {
            let pending = self.pending.lock().expect("pending lock");
            pending
                .values()
                .filter_map(|p| Some((p.seq, p.session.as_ref()?.upgrade()?, p.reply.clone())))
                .filter(|(_, session, _)| capable(session))
                .collect()
        };
        in_flight.sort_by_key(|(seq, _, _)| *seq);
        if let Some((_, newest, _)) = in_flight.last() {
            if in_flight.iter().any(|(_, session, _)| !Arc::ptr_eq(session, newest)) {
                return None;
            }
            return in_flight.pop().map(|(_, session, stream)| (session, Some(stream)));
        }
        let mut idle: Vec<Arc<Session>> = self.sessions().into_iter().filter(|session| capable(session)).collect();
        (idle.len() == 1).then(|| (idle.remove(0), None))
    }
}

/// Serializes and sends one message as a line.
async fn send_line(writer: &mpsc::Sender<Bytes>, message: &Value) -> Result<(), ()> {
    let mut line = serde_json::to_vec(message).expect("a Value always serializes");
    line.push(b'\n');
    writer.send(Bytes::from(line)).await.map_err(|_| ())
}

/// Delivers a message that must not be lost (a final response): at once if the stream has
/// room, else from a task, so that one slow client never stalls the pipe for the others.
fn deliver(reply: &mpsc::Sender<Value>, message: Value) {
    match reply.try_send(message) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
        Err(mpsc::error::TrySendError::Full(message)) => {
            let reply = reply.clone();
            tokio::spawn(async move {
                let _ = reply.send(message).await;
            });
        }
    }
}

/// Delivers a message that may be dropped under back-pressure (progress, logs).
fn deliver_lossy(reply: &mpsc::Sender<Value>, message: Value) {
    if let Err(mpsc::error::TrySendError::Full(_)) = reply.try_send(message) {
        tracing::debug!("a client stream is full; a progress notification was dropped");
    }
}
