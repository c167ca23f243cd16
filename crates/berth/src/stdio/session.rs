//! Client sessions of a stdio backend: what each client declared, its streams (resumable), the
//! server requests it owes an answer to, and its resource subscriptions.
//!
//! A session's mutable state sits behind one mutex; sessions live in memory behind
//! [`SessionTable`], the one place to change when sessions must survive a restart or be shared
//! between replicas.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use tokio::{sync::mpsc, time::Instant};

use super::log_level::AtomicLevel;
use super::{
    instance::Instance,
    outbox::{Delivery, Event, Outbox, Replay, ReplayLimits},
    relay::Relay,
};
use crate::jsonrpc::{IdKey, Message};

/// Ended POST streams a session keeps for resumption (their messages live in the replay ring).
const KEPT_STREAMS: usize = 16;

/// What a client declared in its `initialize` capabilities.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ClientCaps {
    sampling: bool,
    elicitation: bool,
    roots: bool,
}

impl ClientCaps {
    /// Reads the `capabilities` of an initialize request's `params` (raw JSON).
    pub(crate) fn from_initialize(message: &Message) -> Self {
        let has = |name: &str| message.find(&["params", "capabilities", name]).is_some();
        Self { sampling: has("sampling"), elicitation: has("elicitation"), roots: has("roots") }
    }
}

/// The instance behind a session.
pub(crate) enum Backing {
    /// The backend's shared instance, serving every session.
    Shared(Arc<Instance>),
    /// An instance of the session's own, stopped with the session.
    Own(Arc<Instance>),
}

/// A server request forwarded to this session's client, awaiting its answer.
struct ServerRequest {
    /// The id the server gave it, as written.
    server_id: Bytes,
    /// The stream it was sent on.
    stream: Arc<Outbox>,
}

#[derive(Default)]
struct State {
    last_seen: Option<Instant>,
    /// Forwarded server requests by the id berth gave them (`berth-N`).
    server_requests: HashMap<Box<str>, ServerRequest>,
    next_server_request: u64,
    subscriptions: HashSet<String>,
    /// POST streams that may still be resumed, by stream number.
    streams: BTreeMap<u64, Arc<Outbox>>,
    next_stream: u64,
}

/// The most task ids a session of a shared instance remembers (the oldest are forgotten, and
/// their tasks become invisible to it).
const MAX_TASKS: usize = 1024;

/// One client session.
pub(crate) struct Session {
    id: String,
    backing: Backing,
    capabilities: ClientCaps,
    protocol_version: Box<str>,
    /// The identity that initialized it (`None` with `auth = "none"`): the only one that may use it.
    owner: Option<Arc<str>>,
    /// The client's `clientInfo` name and version, as it declared them (bounded).
    client: (Box<str>, Box<str>),
    /// When it was created, by the clock and monotonically (`last_seen` is shown from both).
    created: (SystemTime, Instant),
    /// Its own `logging/setLevel`, on a shared instance.
    log_level: AtomicLevel,
    /// The tasks its requests created, on a shared instance (at most [`MAX_TASKS`]).
    tasks: Mutex<VecDeque<Box<str>>>,
    replay: Arc<Replay>,
    get_stream: Arc<Outbox>,
    /// Requests of this session that the relay has pending.
    in_flight: AtomicUsize,
    state: Mutex<State>,
}

/// A session as `GET /api/sessions` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct SessionInfo {
    /// The `Mcp-Session-Id`.
    pub(crate) id: String,
    /// Its backend.
    pub(crate) backend: String,
    /// The identity that opened it.
    pub(crate) user: Option<String>,
    /// The client's `clientInfo`.
    pub(crate) client: ClientInfo,
    /// The negotiated protocol version.
    pub(crate) protocol_version: String,
    /// `shared` (the backend's shared instance) or `own` (a per-session instance).
    pub(crate) instance: &'static str,
    /// When it was created (RFC 3339).
    pub(crate) created: String,
    /// Its latest request (RFC 3339).
    pub(crate) last_seen: String,
    /// Its requests pending now.
    pub(crate) in_flight: usize,
}

/// A client's `clientInfo`.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ClientInfo {
    /// Its name (empty when it gave none).
    pub(crate) name: String,
    /// Its version (empty when it gave none).
    pub(crate) version: String,
}

/// Longest `clientInfo` name or version kept, in characters.
const CLIENT_INFO_CHARS: usize = 128;

/// The `clientInfo` name and version of an `initialize` message, bounded.
pub(crate) fn client_info(message: &Message) -> (String, String) {
    let field = |key: &str| {
        message
            .find_str(&["params", "clientInfo", key])
            .map(|v| v.chars().take(CLIENT_INFO_CHARS).collect())
            .unwrap_or_default()
    };
    (field("name"), field("version"))
}

/// A session's facts, given when it is created.
pub(crate) struct SessionSpec {
    /// What the client declared.
    pub(crate) capabilities: ClientCaps,
    /// The protocol version negotiated at initialize.
    pub(crate) protocol_version: String,
    /// The limits of its replay ring.
    pub(crate) replay: ReplayLimits,
    /// The identity that initialized it.
    pub(crate) owner: Option<Arc<str>>,
    /// The client's `clientInfo` name and version.
    pub(crate) client: (String, String),
}

impl Session {
    /// A session on the shared instance.
    pub(crate) fn shared(instance: Arc<Instance>, spec: SessionSpec) -> Arc<Self> {
        Arc::new(Self::with_backing(Backing::Shared(instance), spec))
    }

    /// A session with an instance of its own, built by `instance` from the session's weak
    /// reference (the relay of that instance delivers to this one session).
    pub(crate) fn own(spec: SessionSpec, instance: impl FnOnce(Weak<Session>) -> Arc<Instance>) -> Arc<Self> {
        Arc::new_cyclic(|weak| Self::with_backing(Backing::Own(instance(weak.clone())), spec))
    }

    fn with_backing(backing: Backing, spec: SessionSpec) -> Self {
        let replay = Replay::new(spec.replay);
        Self {
            id: uuid::Uuid::new_v4().simple().to_string(),
            backing,
            capabilities: spec.capabilities,
            protocol_version: spec.protocol_version.into(),
            owner: spec.owner,
            client: (spec.client.0.into(), spec.client.1.into()),
            created: (SystemTime::now(), Instant::now()),
            log_level: AtomicLevel::default(),
            tasks: Mutex::new(VecDeque::new()),
            get_stream: Outbox::get(Arc::clone(&replay)),
            replay,
            in_flight: AtomicUsize::new(0),
            state: Mutex::new(State { last_seen: Some(Instant::now()), next_stream: 1, ..State::default() }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `Mcp-Session-Id`.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The instance serving this session.
    pub(crate) fn instance(&self) -> &Arc<Instance> {
        match &self.backing {
            Backing::Shared(instance) | Backing::Own(instance) => instance,
        }
    }

    /// Whether the session has an instance of its own.
    pub(crate) fn owns_instance(&self) -> bool {
        matches!(self.backing, Backing::Own(_))
    }

    /// The relay of the instance serving this session.
    pub(crate) fn relay(&self) -> &Arc<Relay> {
        self.instance().relay()
    }

    /// Whether it shares its instance with other sessions.
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self.backing, Backing::Shared(_))
    }

    /// The log level it asked for, on a shared instance.
    pub(crate) fn log_level(&self) -> &AtomicLevel {
        &self.log_level
    }

    /// Records that one of its requests created task `id`.
    pub(crate) fn own_task(&self, id: &str) {
        let mut tasks = self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if tasks.len() >= MAX_TASKS {
            tasks.pop_front();
        }
        tasks.push_back(id.into());
    }

    /// Whether one of its requests created task `id`.
    pub(crate) fn owns_task(&self, id: &str) -> bool {
        self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().any(|task| &**task == id)
    }

    /// Whether `identity` may use this session: only the one that initialized it may.
    pub(crate) fn belongs_to(&self, identity: Option<&str>) -> bool {
        self.owner.as_deref() == identity
    }

    /// The protocol version negotiated at initialize.
    pub(crate) fn protocol_version(&self) -> &str {
        &self.protocol_version
    }

    /// The session's replay ring.
    pub(crate) fn replay(&self) -> &Arc<Replay> {
        &self.replay
    }

    /// What the admin API shows of it.
    pub(crate) fn info(&self, backend: &str) -> SessionInfo {
        let (created_at, created) = self.created;
        let seen = self.lock().last_seen.unwrap_or(created);
        SessionInfo {
            id: self.id.clone(),
            backend: backend.to_string(),
            user: self.owner.as_deref().map(str::to_owned),
            client: ClientInfo { name: self.client.0.to_string(), version: self.client.1.to_string() },
            protocol_version: self.protocol_version.to_string(),
            instance: if self.owns_instance() { "own" } else { "shared" },
            created: crate::audit::rfc3339(created_at),
            last_seen: crate::audit::rfc3339(created_at + seen.saturating_duration_since(created)),
            in_flight: self.in_flight(),
        }
    }

    /// Records activity.
    pub(crate) fn touch(&self) {
        self.lock().last_seen = Some(Instant::now());
    }

    /// One more of this session's requests is pending in the relay.
    pub(crate) fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// One of this session's requests is no longer pending.
    pub(crate) fn request_ended(&self) {
        let _ = self.in_flight.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Requests of this session pending now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether the session has been idle for at least `idle`: nothing in flight, no stream
    /// being read, and no request for that long.
    pub(crate) fn is_idle(&self, idle: Duration) -> bool {
        if self.in_flight() > 0 || self.get_stream.is_attached() {
            return false;
        }
        let state = self.lock();
        !state.streams.values().any(|stream| stream.is_attached())
            && state.last_seen.is_none_or(|seen| seen.elapsed() >= idle)
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

    /// Opens the stream of one POST that owes `owed` responses.
    pub(crate) fn open_post_stream(&self, owed: usize) -> (Arc<Outbox>, mpsc::Receiver<Event>) {
        let mut state = self.lock();
        let stream = state.next_stream;
        state.next_stream += 1;
        let (outbox, reader) = Outbox::post(stream, owed, Some(Arc::clone(&self.replay)));
        state.streams.insert(stream, Arc::clone(&outbox));
        // Pruned in bursts, not on every POST: once more than twice the kept number of streams
        // are held, the oldest ended ones go until KEPT_STREAMS ended remain (no allocation, and
        // the map is walked once per KEPT_STREAMS posts rather than on each).
        if state.streams.len() > 2 * KEPT_STREAMS {
            let ended = state.streams.values().filter(|s| s.is_ended()).count();
            let mut excess = ended.saturating_sub(KEPT_STREAMS);
            state.streams.retain(|_, s| {
                let drop = excess > 0 && s.is_ended();
                excess -= usize::from(drop);
                !drop
            });
        }
        (outbox, reader)
    }

    /// The stream numbered `stream` (0: the GET stream), for resumption.
    pub(crate) fn stream(&self, stream: u64) -> Option<Arc<Outbox>> {
        if stream == 0 {
            return Some(Arc::clone(&self.get_stream));
        }
        self.lock().streams.get(&stream).cloned()
    }

    /// The GET stream.
    pub(crate) fn get_stream(&self) -> &Arc<Outbox> {
        &self.get_stream
    }

    /// Delivers an unsolicited message on the GET stream; it is lost when the client does not
    /// listen (and never listened: a client that did may resume and get it).
    pub(crate) fn push(&self, message: Bytes) -> Delivery {
        let delivery = self.get_stream.deliver(message, false, None);
        if delivery == Delivery::Dropped {
            tracing::debug!(session = %self.id, "an unsolicited message was dropped: no room on the GET stream");
        }
        delivery
    }

    /// Records a server request forwarded to this client on `stream` (the server's id as
    /// written); answers the id berth gives it (`berth-N`).
    pub(crate) fn register_server_request(&self, server_id: Bytes, stream: &Arc<Outbox>) -> Box<str> {
        let mut state = self.lock();
        state.next_server_request += 1;
        let id: Box<str> = format!("berth-{}", state.next_server_request).into();
        state.server_requests.insert(id.clone(), ServerRequest { server_id, stream: Arc::clone(stream) });
        id
    }

    /// Maps a client's response to a forwarded server request back to the server's id.
    pub(crate) fn take_server_request(&self, client_id: &str) -> Option<Bytes> {
        let Some(IdKey::Str(key)) = IdKey::of(client_id) else { return None };
        self.lock().server_requests.remove(&key).map(|request| request.server_id)
    }

    /// The id under which this client knows a server request the server now cancels, and the
    /// stream it went on.
    pub(crate) fn server_request_cancelled(&self, server_id: &str) -> Option<(Box<str>, Arc<Outbox>)> {
        let wanted = IdKey::of(server_id)?;
        let mut state = self.lock();
        let key = state
            .server_requests
            .iter()
            .find(|(_, request)| {
                std::str::from_utf8(&request.server_id).ok().and_then(IdKey::of).as_ref() == Some(&wanted)
            })
            .map(|(key, _)| key.clone())?;
        state.server_requests.remove(&key).map(|request| (key, request.stream))
    }

    /// Whether the session subscribed to `uri`.
    pub(crate) fn is_subscribed(&self, uri: &str) -> bool {
        self.lock().subscriptions.contains(uri)
    }

    /// Records a subscription; false if it already existed.
    pub(crate) fn subscribe(&self, uri: &str) -> bool {
        self.lock().subscriptions.insert(uri.to_string())
    }

    /// Drops a subscription; false if there was none.
    pub(crate) fn unsubscribe(&self, uri: &str) -> bool {
        self.lock().subscriptions.remove(uri)
    }

    /// Every subscription, emptied (at session end).
    pub(crate) fn take_subscriptions(&self) -> Vec<String> {
        self.lock().subscriptions.drain().collect()
    }

    /// Ends every stream of the session (session end, shutdown); answers the POST streams that
    /// still owed responses, whose requests the caller gives up.
    pub(crate) fn close_streams(&self) -> Vec<Arc<Outbox>> {
        self.get_stream.end();
        let streams: Vec<Arc<Outbox>> = std::mem::take(&mut self.lock().streams).into_values().collect();
        streams.into_iter().filter(|stream| !stream.is_ended()).collect()
    }
}

/// The sessions of one backend.
#[derive(Default)]
pub(crate) struct SessionTable {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

impl SessionTable {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a session.
    pub(crate) fn insert(&self, session: Arc<Session>) {
        self.lock().insert(session.id.clone(), session);
    }

    /// Finds a session.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.lock().get(id).cloned()
    }

    /// Removes a session.
    pub(crate) fn remove(&self, id: &str) -> Option<Arc<Session>> {
        self.lock().remove(id)
    }

    /// Every session.
    pub(crate) fn all(&self) -> Vec<Arc<Session>> {
        self.lock().values().cloned().collect()
    }

    /// Removes and returns the sessions idle for at least `idle`.
    pub(crate) fn take_idle(&self, idle: Duration) -> Vec<Arc<Session>> {
        let mut sessions = self.lock();
        let ids: Vec<String> = sessions.values().filter(|s| s.is_idle(idle)).map(|s| s.id.clone()).collect();
        ids.iter().filter_map(|id| sessions.remove(id)).collect()
    }

    /// Removes every session.
    pub(crate) fn drain(&self) -> Vec<Arc<Session>> {
        self.lock().drain().map(|(_, s)| s).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stdio::{
        relay::Audience,
        testing::{instance, message, ready_relay},
    };

    fn session(capabilities: &str) -> Arc<Session> {
        let (relay, _stdin, _writer) = ready_relay(Audience::Nobody);
        let init = message(&format!(
            r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"capabilities":{capabilities}}}}}"#
        ));
        let spec = SessionSpec {
            capabilities: ClientCaps::from_initialize(&init),
            protocol_version: "2025-11-25".into(),
            replay: ReplayLimits { events: 64, bytes: 1 << 16 },
            owner: None,
            client: Default::default(),
        };
        Session::shared(instance(&relay), spec)
    }

    #[test]
    fn capabilities_decide_which_server_requests_a_client_can_answer() {
        let table = [
            (r#"{"sampling":{}}"#, "sampling/createMessage", true),
            (r#"{}"#, "sampling/createMessage", false),
            (r#"{"elicitation":{}}"#, "elicitation/create", true),
            (r#"{"sampling":{}}"#, "elicitation/create", false),
            (r#"{"roots":{"listChanged":true}}"#, "roots/list", true),
            (r#"{}"#, "x/unknown", true),
        ];
        for (capabilities, method, expected) in table {
            assert_eq!(session(capabilities).can_answer(method), expected, "{capabilities} {method}");
        }
    }

    #[test]
    fn server_requests_are_recorded_under_berths_id_and_mapped_back() {
        let session = session("{}");
        let (post, _reader) = session.open_post_stream(1);
        let first = session.register_server_request(Bytes::from_static(b"\"srv-7\""), &post);
        let second = session.register_server_request(Bytes::from_static(b"9"), &post);
        assert!(first.starts_with("berth-") && first != second, "{first} {second}");
        // The server withdraws the first: the client learns berth's id, and the stream it went on.
        let (client_id, stream) = session.server_request_cancelled("\"\\u0073rv-7\"").unwrap();
        assert_eq!(client_id, first);
        assert!(Arc::ptr_eq(&stream, &post));
        assert!(session.take_server_request(&format!("\"{first}\"")).is_none(), "withdrawn: nothing to answer");
        // The second is answered once: the server's own id comes back, as written.
        let quoted = format!("\"{second}\"");
        assert_eq!(session.take_server_request(&quoted).as_deref(), Some(&b"9"[..]));
        assert!(session.take_server_request(&quoted).is_none(), "answered once");
        assert!(session.take_server_request("42").is_none(), "only berth's string ids map back");
    }

    #[test]
    fn a_session_is_idle_only_with_nothing_in_flight_and_no_stream_read() {
        let session = session("{}");
        assert!(session.is_idle(Duration::ZERO));
        session.request_started();
        assert!(!session.is_idle(Duration::ZERO), "a request in flight");
        session.request_ended();
        session.request_ended();
        assert_eq!(session.in_flight(), 0, "never below zero");
        let (_post, reader) = session.open_post_stream(1);
        assert!(!session.is_idle(Duration::ZERO), "a POST stream being read");
        drop(reader);
        assert!(session.is_idle(Duration::ZERO));
        let (_reader, _, _) = session.get_stream().attach(0);
        assert!(!session.is_idle(Duration::ZERO), "a GET stream being read");
        assert!(!session.is_idle(Duration::from_secs(3600)));
    }

    #[test]
    fn ended_streams_are_kept_for_resumption_within_a_bound() {
        let session = session("{}");
        // Stream 1 stays open (its answer is still owed): it is never pruned.
        let (_open, _open_reader) = session.open_post_stream(1);
        for _ in 0..100 {
            let (outbox, _reader) = session.open_post_stream(1);
            outbox.deliver(Bytes::from_static(b"{}"), true, None);
        }
        let kept = session.lock().streams.len();
        assert!((KEPT_STREAMS + 1..=2 * KEPT_STREAMS + 1).contains(&kept), "{kept} streams kept");
        for newest in 101 - KEPT_STREAMS as u64..=101 {
            assert!(session.stream(newest).is_some(), "stream {newest}, among the newest ended, is kept");
        }
        assert!(session.stream(1).is_some(), "the open stream is kept");
        assert!(session.stream(2).is_none(), "the oldest ended is gone");
        assert!(session.stream(0).is_some(), "the GET stream always is");
    }

    #[test]
    fn subscriptions() {
        let session = session("{}");
        assert!(session.subscribe("a://1"));
        assert!(!session.subscribe("a://1"));
        assert!(session.is_subscribed("a://1"));
        assert!(session.unsubscribe("a://1"));
        assert!(!session.unsubscribe("a://1"));
        session.subscribe("a://2");
        assert_eq!(session.take_subscriptions(), ["a://2"]);
        assert!(!session.is_subscribed("a://2"));
    }
}
