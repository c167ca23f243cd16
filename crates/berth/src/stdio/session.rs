//! Client sessions of a stdio backend: what each client declared, its GET stream, the server
//! requests it owes an answer to, and its resource subscriptions.
//!
//! Sessions live in memory behind [`SessionTable`], the one place to change when sessions must
//! survive a restart or be shared between replicas.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use serde_json::Value;
use tokio::sync::mpsc;

use super::{instance::Instance, relay::Relay};

/// What a client declared in its `initialize` capabilities.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ClientCaps {
    sampling: bool,
    elicitation: bool,
    roots: bool,
}

impl ClientCaps {
    /// Reads `params.capabilities` of an initialize request.
    pub(crate) fn from_initialize(params: &Value) -> Self {
        let capabilities = &params["capabilities"];
        Self {
            sampling: capabilities.get("sampling").is_some(),
            elicitation: capabilities.get("elicitation").is_some(),
            roots: capabilities.get("roots").is_some(),
        }
    }
}

/// One client session.
pub(crate) struct Session {
    id: String,
    relay: Arc<Relay>,
    instance: Option<Arc<Instance>>,
    capabilities: ClientCaps,
    get_stream: Mutex<Option<mpsc::Sender<Value>>>,
    /// Server requests forwarded to this client: berth's id → the server's id.
    server_requests: Mutex<HashMap<String, Value>>,
    subscriptions: Mutex<HashSet<String>>,
    next_id: AtomicU64,
    last_seen: Mutex<Instant>,
}

impl Session {
    /// A session talking to `relay`; `instance` is its own instance in per-session mode.
    pub(crate) fn new(relay: Arc<Relay>, instance: Option<Arc<Instance>>, capabilities: ClientCaps) -> Arc<Self> {
        Arc::new(Self {
            id: uuid::Uuid::new_v4().simple().to_string(),
            relay,
            instance,
            capabilities,
            get_stream: Mutex::new(None),
            server_requests: Mutex::new(HashMap::new()),
            subscriptions: Mutex::new(HashSet::new()),
            next_id: AtomicU64::new(1),
            last_seen: Mutex::new(Instant::now()),
        })
    }

    /// The `Mcp-Session-Id`.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The relay of the instance serving this session.
    pub(crate) fn relay(&self) -> &Arc<Relay> {
        &self.relay
    }

    /// The session's own instance (per-session mode).
    pub(crate) fn instance(&self) -> Option<&Arc<Instance>> {
        self.instance.as_ref()
    }

    /// Records activity.
    pub(crate) fn touch(&self) {
        *self.last_seen.lock().expect("last_seen lock") = Instant::now();
    }

    /// Whether the session has been idle for at least `idle` with no open GET stream.
    pub(crate) fn is_idle(&self, idle: std::time::Duration) -> bool {
        let streaming = self.get_stream.lock().expect("stream lock").as_ref().is_some_and(|s| !s.is_closed());
        !streaming && self.last_seen.lock().expect("last_seen lock").elapsed() >= idle
    }

    /// Whether the client declared what `method` needs.
    pub(crate) fn can_answer(&self, method: &str) -> bool {
        match method {
            "sampling/createMessage" => self.capabilities.sampling,
            "elicitation/create" => self.capabilities.elicitation,
            "roots/list" => self.capabilities.roots,
            // A method berth does not know: any session may be able to answer it.
            _ => true,
        }
    }

    /// Opens the GET stream; `None` if one is already open (the spec allows one).
    pub(crate) fn open_stream(&self, capacity: usize) -> Option<mpsc::Receiver<Value>> {
        let mut slot = self.get_stream.lock().expect("stream lock");
        if slot.as_ref().is_some_and(|s| !s.is_closed()) {
            return None;
        }
        let (sender, receiver) = mpsc::channel(capacity);
        *slot = Some(sender);
        Some(receiver)
    }

    /// Delivers an unsolicited message on the GET stream; dropped when none is open (the
    /// client chose not to listen) or it is full.
    pub(crate) fn push(&self, message: Value) {
        if let Some(stream) = self.get_stream.lock().expect("stream lock").as_ref()
            && stream.try_send(message).is_err()
        {
            tracing::debug!(session = %self.id, "an unsolicited message was dropped: no room on the GET stream");
        }
    }

    /// Forwards a server request to this client, on `stream` (the related request's POST
    /// stream) or the GET stream, under an id of berth's.
    pub(crate) fn forward_server_request(
        &self,
        mut message: Value,
        stream: Option<mpsc::Sender<Value>>,
    ) -> Result<(), String> {
        let id = format!("berth-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let server_id = std::mem::replace(&mut message["id"], Value::from(id.clone()));
        self.server_requests.lock().expect("requests lock").insert(id.clone(), server_id);
        let stream = stream.or_else(|| self.get_stream.lock().expect("stream lock").clone());
        let sent = stream.is_some_and(|stream| stream.try_send(message).is_ok());
        if !sent {
            self.server_requests.lock().expect("requests lock").remove(&id);
            return Err("the client has no open stream to receive the request".to_string());
        }
        Ok(())
    }

    /// Maps a client's response to a forwarded server request back to the server's id.
    pub(crate) fn take_server_request(&self, client_id: &Value) -> Option<Value> {
        let key = client_id.as_str()?;
        self.server_requests.lock().expect("requests lock").remove(key)
    }

    /// The id under which this client knows a server request the server now cancels.
    pub(crate) fn server_request_cancelled(&self, server_id: &Value) -> Option<Value> {
        let mut requests = self.server_requests.lock().expect("requests lock");
        let key = requests.iter().find(|(_, id)| *id == server_id).map(|(key, _)| key.clone())?;
        requests.remove(&key);
        Some(Value::from(key))
    }

    /// Whether the session subscribed to `uri`.
    pub(crate) fn is_subscribed(&self, uri: &str) -> bool {
        self.subscriptions.lock().expect("subscriptions lock").contains(uri)
    }

    /// Records a subscription; false if it already existed.
    pub(crate) fn subscribe(&self, uri: &str) -> bool {
        self.subscriptions.lock().expect("subscriptions lock").insert(uri.to_string())
    }

    /// Drops a subscription; false if there was none.
    pub(crate) fn unsubscribe(&self, uri: &str) -> bool {
        self.subscriptions.lock().expect("subscriptions lock").remove(uri)
    }

    /// Every subscription, emptied (at session end).
    pub(crate) fn take_subscriptions(&self) -> Vec<String> {
        self.subscriptions.lock().expect("subscriptions lock").drain().collect()
    }

    /// Ends the GET stream.
    pub(crate) fn close_stream(&self) {
        self.get_stream.lock().expect("stream lock").take();
    }
}

/// The sessions of one backend.
#[derive(Default)]
pub(crate) struct SessionTable {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

impl SessionTable {
    /// Adds a session.
    pub(crate) fn insert(&self, session: Arc<Session>) {
        self.sessions.lock().expect("sessions lock").insert(session.id.clone(), session);
    }

    /// Finds a session.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions.lock().expect("sessions lock").get(id).cloned()
    }

    /// Removes a session.
    pub(crate) fn remove(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions.lock().expect("sessions lock").remove(id)
    }

    /// Every session.
    pub(crate) fn all(&self) -> Vec<Arc<Session>> {
        self.sessions.lock().expect("sessions lock").values().cloned().collect()
    }

    /// Removes and returns the sessions idle for at least `idle`.
    pub(crate) fn take_idle(&self, idle: std::time::Duration) -> Vec<Arc<Session>> {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        let ids: Vec<String> = sessions.values().filter(|s| s.is_idle(idle)).map(|s| s.id.clone()).collect();
        ids.iter().filter_map(|id| sessions.remove(id)).collect()
    }

    /// Removes every session.
    pub(crate) fn drain(&self) -> Vec<Arc<Session>> {
        self.sessions.lock().expect("sessions lock").drain().map(|(_, s)| s).collect()
    }
}
