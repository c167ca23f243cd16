//! The Streamable-HTTP endpoint of a stdio backend: sessions, the initialize handshake, and
//! the routing of each POST, GET and DELETE onto the right instance.
//!
//! - Sessions of legacy clients (2025-03-26 … 2025-11-25) are created by `initialize`. In
//!   `shared` mode berth initialized the one instance itself and answers from its cached
//!   result; in `per-session` mode the client's initialize starts an instance of its own.
//! - Stateless clients (2026-07-28: no initialize, no session) go to a separate shared
//!   instance that berth never initializes: a stdio connection's lifecycle is fixed by its first
//!   message, so one pipe cannot serve both generations.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    instance::Instance,
    launch::Launcher,
    relay::{Audience, Relay},
    session::{ClientCaps, Session, SessionTable},
    sse,
};
use crate::{
    body::{RequestBody, ResponseBody},
    config::{Sharing, StartMode, StdioSpec},
    jsonrpc::{self, INVALID_REQUEST, Kind},
    mcp_headers::{PROTOCOL_VERSION_HEADER, SESSION_HEADER, is_stateless_version},
};

/// Capacity of the stream of one POST's answers.
const POST_STREAM: usize = 64;
/// Capacity of a session's GET stream.
const GET_STREAM: usize = 256;
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
    keep_alive: Duration,
    /// Cancelled when the gateway starts draining: ends GET streams (nothing is in flight on
    /// them), never a POST's answer.
    streams: CancellationToken,
    /// Cancelled by [`StdioBackend::shutdown`], after the drain: stops every instance.
    shutdown: CancellationToken,
    /// Sessions being ended in the background (DELETE, idle expiry): shutdown waits for them, so
    /// that no per-session instance is still stopping when berth exits.
    endings: TaskTracker,
}

fn berth_init_params() -> Value {
    json!({
        "protocolVersion": SHARED_PROTOCOL_VERSION,
        // berth forwards these server requests to the client sessions that declared them.
        "capabilities": {"sampling": {}, "elicitation": {}, "roots": {"listChanged": true}},
        "clientInfo": {"name": "berth", "version": env!("CARGO_PKG_VERSION")},
    })
}

fn rejection(status: StatusCode, id: Value, code: i64, message: impl Into<String>) -> Response<ResponseBody> {
    sse::json(status, &jsonrpc::error(id, code, message), None)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether a session-less request comes from a stateless (2026-07-28) client.
fn is_stateless(headers: &HeaderMap, messages: &[Value]) -> bool {
    header_str(headers, PROTOCOL_VERSION_HEADER).is_some_and(is_stateless_version)
        || messages.iter().any(|m| {
            jsonrpc::method(m) == Some("server/discover")
                || m.pointer("/params/_meta/io.modelcontextprotocol~1protocolVersion").is_some()
        })
}

/// A stateless request carries its lifecycle in `_meta`; without it the server could not know
/// the client's version or capabilities, so berth refuses it as rmcp would (400, -32602).
fn missing_request_meta(messages: &[Value]) -> Option<Response<ResponseBody>> {
    for message in messages.iter().filter(|m| jsonrpc::kind(m) == Some(Kind::Request)) {
        let meta = message.pointer("/params/_meta");
        let field = |key: &str| meta.and_then(|m| m.get(key));
        let mut missing = Vec::new();
        if !field("io.modelcontextprotocol/protocolVersion").is_some_and(Value::is_string) {
            missing.push("io.modelcontextprotocol/protocolVersion");
        }
        if !field("io.modelcontextprotocol/clientCapabilities").is_some_and(Value::is_object) {
            missing.push("io.modelcontextprotocol/clientCapabilities");
        }
        if !missing.is_empty() {
            let reason = format!("request _meta is missing or has malformed required fields: {}", missing.join(", "));
            return Some(rejection(StatusCode::BAD_REQUEST, message["id"].clone(), jsonrpc::INVALID_PARAMS, reason));
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

impl StdioBackend {
    /// A backend named `name`; nothing starts until [`StdioBackend::start`] or first use.
    pub(crate) fn new(
        name: &str,
        spec: Arc<StdioSpec>,
        launcher: Arc<Launcher>,
        keep_alive: Duration,
        shutdown: &CancellationToken,
    ) -> Self {
        let name: Arc<str> = name.into();
        let sessions = Arc::new(SessionTable::default());
        let streams = shutdown.child_token();
        // Instances outlive the start of the drain: in-flight calls must still be answered.
        let shutdown = CancellationToken::new();
        let instance = |init: Option<Value>| {
            let relay = Relay::new(Arc::clone(&name), spec.request_timeout);
            Instance::new(relay, Arc::clone(&launcher), Arc::clone(&spec), init, &shutdown)
        };
        let shared = (spec.sharing == Sharing::Shared).then(|| {
            let shared = instance(Some(berth_init_params()));
            shared.relay().set_audience(Audience::Shared(Arc::clone(&sessions)));
            shared
        });
        let stateless = instance(None);
        Self {
            name,
            spec,
            launcher,
            sessions,
            shared,
            stateless,
            keep_alive,
            streams,
            shutdown,
            endings: TaskTracker::new(),
        }
    }

    /// Starts what `start = "eager"` asks for, and the idle-session reaper.
    pub(crate) fn start(self: &Arc<Self>) {
        if self.spec.start == StartMode::Eager
            && let Some(shared) = &self.shared
        {
            shared.ensure_started();
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

    /// Whether the backend can serve: its engine answers and its shared instance is up (or
    /// not started yet: it starts on demand).
    pub(crate) fn is_ready(&self) -> bool {
        self.launcher.is_available() && self.shared.as_ref().is_none_or(|shared| shared.is_ready())
    }

    /// Stops every instance and ends every session.
    pub(crate) async fn shutdown(&self) {
        self.shutdown.cancel();
        let mut stops = Vec::new();
        for session in self.sessions.drain() {
            session.close_stream();
            if let Some(instance) = session.instance().cloned() {
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

    /// Serves one HTTP request of `/<name>/mcp`.
    pub(crate) async fn handle(self: &Arc<Self>, request: Request<RequestBody>) -> Response<ResponseBody> {
        let (parts, body) = request.into_parts();
        let session_id = header_str(&parts.headers, SESSION_HEADER).map(str::to_owned);
        match parts.method {
            Method::POST => {
                let bytes: Bytes = match body.collect().await {
                    Ok(collected) => collected.to_bytes(),
                    Err(_) => {
                        return rejection(StatusCode::BAD_REQUEST, Value::Null, INVALID_REQUEST, "unreadable body");
                    }
                };
                self.post(&parts.headers, session_id, &bytes).await
            }
            Method::GET => self.get(&parts.headers, session_id),
            Method::DELETE => self.delete(session_id).await,
            _ => rejection(StatusCode::METHOD_NOT_ALLOWED, Value::Null, INVALID_REQUEST, "use GET, POST or DELETE"),
        }
    }

    #[allow(clippy::result_large_err)] // The error is the answer itself, built once per refusal.
    fn session(&self, id: Option<String>, first_id: &Value) -> Result<Arc<Session>, Response<ResponseBody>> {
        let Some(id) = id else {
            return Err(rejection(
                StatusCode::BAD_REQUEST,
                first_id.clone(),
                INVALID_REQUEST,
                "Mcp-Session-Id header required: initialize first",
            ));
        };
        self.sessions.get(&id).ok_or_else(|| {
            rejection(
                StatusCode::NOT_FOUND,
                first_id.clone(),
                INVALID_REQUEST,
                "session not found: it ended or expired; initialize again",
            )
        })
    }

    async fn post(
        self: &Arc<Self>,
        headers: &HeaderMap,
        session_id: Option<String>,
        body: &[u8],
    ) -> Response<ResponseBody> {
        let parsed: Value = match serde_json::from_slice(body) {
            Ok(parsed) => parsed,
            Err(_) => {
                return rejection(
                    StatusCode::BAD_REQUEST,
                    Value::Null,
                    jsonrpc::INVALID_REQUEST,
                    "the body is not JSON",
                );
            }
        };
        let messages = match parsed {
            Value::Array(batch) if !batch.is_empty() => batch,
            Value::Array(_) => return rejection(StatusCode::BAD_REQUEST, Value::Null, INVALID_REQUEST, "empty batch"),
            single => vec![single],
        };
        let first_id = messages[0].get("id").cloned().unwrap_or(Value::Null);
        if let Some(init) = messages.iter().find(|m| jsonrpc::method(m) == Some("initialize")) {
            if header_str(headers, PROTOCOL_VERSION_HEADER).is_some_and(is_stateless_version) {
                // The stateless generation removed initialize. berth answers for the server:
                // forwarding it would fix the stateless instance's pipe to the old lifecycle.
                return rejection(
                    StatusCode::NOT_FOUND,
                    first_id,
                    jsonrpc::METHOD_NOT_FOUND,
                    "initialize does not exist in protocol version 2026-07-28; use server/discover",
                );
            }
            if messages.len() != 1 || session_id.is_some() {
                return rejection(
                    StatusCode::BAD_REQUEST,
                    first_id,
                    INVALID_REQUEST,
                    "initialize must be sent alone and without a session",
                );
            }
            return self.initialize(init.clone()).await;
        }
        match session_id {
            None if is_stateless(headers, &messages) => {
                if let Some(response) = missing_request_meta(&messages) {
                    return response;
                }
                let instance = Arc::clone(&self.stateless);
                instance.ensure_started();
                self.relay_messages(instance.relay(), None, None, messages).await
            }
            id => match self.session(id, &first_id) {
                Ok(session) => {
                    session.touch();
                    let instance = session.instance().cloned().or_else(|| self.shared.clone());
                    self.relay_messages(session.relay(), Some(&session), instance.as_ref(), messages).await
                }
                Err(response) => response,
            },
        }
    }

    async fn initialize(self: &Arc<Self>, message: Value) -> Response<ResponseBody> {
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        let params = message.get("params").cloned().unwrap_or_else(|| json!({}));
        let capabilities = ClientCaps::from_initialize(&params);
        let (session, result) = match &self.shared {
            Some(shared) => match shared.ready().await {
                Ok(mut result) => {
                    let instance_version =
                        result["protocolVersion"].as_str().unwrap_or(SHARED_PROTOCOL_VERSION).to_string();
                    result["protocolVersion"] =
                        Value::from(negotiate(params["protocolVersion"].as_str(), &instance_version));
                    (Session::new(Arc::clone(shared.relay()), None, capabilities), result)
                }
                Err(reason) => return rejection(StatusCode::SERVICE_UNAVAILABLE, id, jsonrpc::BACKEND_ERROR, reason),
            },
            None => {
                let live = self.sessions.all().iter().filter(|s| s.instance().is_some()).count();
                if live >= self.spec.max_instances {
                    return rejection(
                        StatusCode::SERVICE_UNAVAILABLE,
                        id,
                        jsonrpc::BACKEND_ERROR,
                        format!(
                            "backend `{}` runs its maximum of {} instances (max_instances); try again later",
                            self.name, self.spec.max_instances
                        ),
                    );
                }
                let relay = Relay::new(Arc::clone(&self.name), self.spec.request_timeout);
                let instance = Instance::new(
                    relay,
                    Arc::clone(&self.launcher),
                    Arc::clone(&self.spec),
                    Some(params),
                    &self.shutdown,
                );
                let session = Session::new(Arc::clone(instance.relay()), Some(Arc::clone(&instance)), capabilities);
                instance.relay().set_audience(Audience::One(Arc::downgrade(&session)));
                match instance.ready().await {
                    Ok(result) => (session, result),
                    Err(reason) => {
                        instance.stop().await;
                        return rejection(StatusCode::SERVICE_UNAVAILABLE, id, jsonrpc::BACKEND_ERROR, reason);
                    }
                }
            }
        };
        self.sessions.insert(Arc::clone(&session));
        tracing::debug!(backend = &*self.name, session = session.id(), "session created");
        sse::json(StatusCode::OK, &jsonrpc::result(id, result), Some(session.id()))
    }

    /// Relays the messages of one POST and answers with what comes back for its requests.
    async fn relay_messages(
        &self,
        relay: &Arc<Relay>,
        session: Option<&Arc<Session>>,
        instance: Option<&Arc<Instance>>,
        messages: Vec<Value>,
    ) -> Response<ResponseBody> {
        let (reply, answers) = mpsc::channel(POST_STREAM);
        let weak: Option<Weak<Session>> = session.map(Arc::downgrade);
        let mut expected = 0;
        for message in messages {
            match jsonrpc::kind(&message) {
                Some(Kind::Request) => {
                    expected += 1;
                    let id = message["id"].clone();
                    let local = match (session, instance) {
                        (Some(session), Some(instance)) => subscription_shortcut(session, instance, &message),
                        _ => None,
                    };
                    let outcome = match local {
                        Some(answer) => {
                            let _ = reply.try_send(answer);
                            Ok(())
                        }
                        None => relay.request(message, reply.clone(), weak.clone()).await,
                    };
                    if let Err(reason) = outcome {
                        let _ = reply.try_send(jsonrpc::error(id, jsonrpc::BACKEND_ERROR, reason));
                    }
                }
                Some(Kind::Notification) => self.notification(relay, session, message).await,
                Some(Kind::Response) => match session {
                    Some(session) => {
                        let mut message = message;
                        match session.take_server_request(&message["id"]) {
                            Some(server_id) => {
                                message["id"] = server_id;
                                let _ = relay.write(&message).await;
                            }
                            None => tracing::debug!(
                                backend = &*self.name,
                                "a response to no pending server request; ignored"
                            ),
                        }
                    }
                    None => tracing::debug!(backend = &*self.name, "a response without a session; ignored"),
                },
                None => {
                    expected += 1;
                    let _ = reply.try_send(jsonrpc::error(Value::Null, INVALID_REQUEST, "not a JSON-RPC 2.0 message"));
                }
            }
        }
        drop(reply);
        if expected == 0 {
            return sse::accepted();
        }
        sse::answer(answers, expected, session.is_none(), self.keep_alive).await
    }

    async fn notification(&self, relay: &Arc<Relay>, session: Option<&Arc<Session>>, mut message: Value) {
        match (jsonrpc::method(&message), session) {
            // berth completed the handshake with the server itself.
            (Some("notifications/initialized"), Some(_)) => {}
            (Some("notifications/cancelled"), Some(session)) => {
                let client_id = message.pointer("/params/requestId").cloned().unwrap_or(Value::Null);
                if let Some(upstream) = relay.upstream_id(session, &client_id) {
                    message["params"]["requestId"] = Value::from(upstream);
                    let _ = relay.write(&message).await;
                }
            }
            _ => {
                let _ = relay.write(&message).await;
            }
        }
    }

    fn get(&self, headers: &HeaderMap, session_id: Option<String>) -> Response<ResponseBody> {
        if session_id.is_none() && is_stateless(headers, &[]) {
            let mut response = rejection(
                StatusCode::METHOD_NOT_ALLOWED,
                Value::Null,
                INVALID_REQUEST,
                "stateless clients have no GET stream",
            );
            response.headers_mut().insert(header::ALLOW, http::HeaderValue::from_static("POST"));
            return response;
        }
        let session = match self.session(session_id, &Value::Null) {
            Ok(session) => session,
            Err(response) => return response,
        };
        session.touch();
        match session.open_stream(GET_STREAM) {
            Some(messages) => sse::sse(None, messages, None, self.keep_alive, self.streams.clone()),
            None => rejection(
                StatusCode::CONFLICT,
                Value::Null,
                INVALID_REQUEST,
                "this session already has an open GET stream",
            ),
        }
    }

    async fn delete(self: &Arc<Self>, session_id: Option<String>) -> Response<ResponseBody> {
        let Some(id) = session_id else {
            return rejection(StatusCode::BAD_REQUEST, Value::Null, INVALID_REQUEST, "Mcp-Session-Id header required");
        };
        let Some(session) = self.sessions.remove(&id) else {
            return rejection(StatusCode::NOT_FOUND, Value::Null, INVALID_REQUEST, "session not found");
        };
        // Stopping a per-session instance takes up to its grace period: do it in the
        // background and answer at once.
        let backend = Arc::clone(self);
        self.endings.spawn(async move { backend.end_session(session).await });
        let mut response = Response::new(crate::body::response_body(""));
        *response.status_mut() = StatusCode::OK;
        response
    }

    /// Releases what a session held: its subscriptions, its stream, its own instance.
    async fn end_session(&self, session: Arc<Session>) {
        session.close_stream();
        let instance = session.instance().cloned().or_else(|| self.shared.clone());
        if let Some(instance) = &instance {
            for uri in session.take_subscriptions() {
                if instance.remove_subscription(&uri) && session.instance().is_none() {
                    let (reply, _) = mpsc::channel(1);
                    let request =
                        json!({"jsonrpc": "2.0", "id": 0, "method": "resources/unsubscribe", "params": {"uri": uri}});
                    let _ = instance.relay().request(request, reply, None).await;
                }
            }
        }
        if let Some(own) = session.instance() {
            own.stop().await;
        }
        tracing::debug!(backend = &*self.name, session = session.id(), "session ended");
    }
}

/// Reference-counts resource subscriptions of sessions sharing one instance: the server sees
/// one subscribe per URI and one unsubscribe when the last session lets go. Answers locally
/// when the server need not be told.
fn subscription_shortcut(session: &Arc<Session>, instance: &Arc<Instance>, message: &Value) -> Option<Value> {
    let method = jsonrpc::method(message)?;
    let uri = message.pointer("/params/uri").and_then(Value::as_str)?;
    let id = message["id"].clone();
    let must_forward = match method {
        "resources/subscribe" => session.subscribe(uri) && instance.add_subscription(uri),
        "resources/unsubscribe" => session.unsubscribe(uri) && instance.remove_subscription(uri),
        _ => return None,
    };
    (!must_forward).then(|| jsonrpc::result(id, json!({})))
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

    #[test]
    fn stateless_detection() {
        let mut headers = HeaderMap::new();
        assert!(!is_stateless(&headers, &[json!({"method": "tools/list", "id": 1})]));
        assert!(is_stateless(&headers, &[json!({"method": "server/discover", "id": 1})]));
        let with_meta = json!({"method": "tools/list", "id": 1,
            "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
        assert!(is_stateless(&headers, &[with_meta]));
        headers.insert("mcp-protocol-version", "2026-07-28".parse().unwrap());
        assert!(is_stateless(&headers, &[]));
    }
}
