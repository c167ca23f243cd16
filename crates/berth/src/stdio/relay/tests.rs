//! Tests of the relay, driven directly (no processes): a table of hostile server lines, then
//! property tests over random interleavings of client and server traffic.
//!
//! The harness plays the server: it reads what the relay writes to stdin (a channel) and feeds
//! lines to `Relay::dispatch`; the clients are sessions of a `SessionTable` with their GET
//! streams attached, each request with a POST stream of its own.

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Audience, LinkState, Relay, RelaySpec};
use crate::{
    config::{LaunchSpec, ProcessSpec, Sharing, StartMode, StdioSpec},
    jsonrpc::{IdKey, Kind, Message},
    stdio::{
        error::StdioError,
        instance::Instance,
        launch::Launcher,
        outbox::{Event, Outbox, ReplayLimits},
        session::{ClientCaps, Session, SessionSpec, SessionTable},
    },
};

const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn spec() -> Arc<StdioSpec> {
    Arc::new(StdioSpec {
        launch: LaunchSpec::Process(ProcessSpec {
            command: "true".into(),
            args: vec![],
            cwd: None,
            inherit_env: false,
        }),
        env: vec![],
        secret_env: vec![],
        sharing: Sharing::Shared,
        start: StartMode::Lazy,
        request_timeout: TIMEOUT,
        startup_timeout: TIMEOUT,
        idle_timeout: TIMEOUT,
        max_instances: 8,
        max_message_bytes: 1 << 20,
        stop_grace: TIMEOUT,
        resume_window: TIMEOUT,
        replay_events: 256,
        replay_bytes: 1 << 20,
    })
}

fn message(text: &str) -> Message {
    Message::parse(Bytes::copy_from_slice(text.as_bytes())).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// A relay with `n` sessions (even ones declare sampling) whose GET streams are attached.
struct Harness {
    relay: Arc<Relay>,
    sessions: Vec<Arc<Session>>,
    gets: Vec<mpsc::Receiver<Event>>,
    stdin: mpsc::Receiver<Bytes>,
    _writer: mpsc::Sender<Bytes>,
}

impl Harness {
    fn new(n: usize) -> Self {
        let table = Arc::new(SessionTable::default());
        let relay = Relay::new(
            RelaySpec {
                backend: "fx".into(),
                request_timeout: TIMEOUT,
                startup_timeout: TIMEOUT,
                on_tools_changed: None,
            },
            Audience::Shared(Arc::clone(&table)),
        );
        let (writer, stdin) = mpsc::channel(1 << 16);
        relay.set_link(LinkState::Ready(writer.clone()));
        let spec = spec();
        let launcher = Arc::new(Launcher::new("fx", Arc::clone(&spec), None));
        let instance =
            Instance::new(Arc::clone(&relay), launcher, spec, Some("{}".into()), &CancellationToken::new(), None);
        let mut sessions = Vec::new();
        let mut gets = Vec::new();
        for index in 0..n {
            let capabilities = if index.is_multiple_of(2) { r#"{"sampling":{}}"# } else { "{}" };
            let init = message(&format!(
                r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"capabilities":{capabilities}}}}}"#
            ));
            let spec = SessionSpec {
                capabilities: ClientCaps::from_initialize(&init),
                protocol_version: "2025-11-25".into(),
                replay: ReplayLimits { events: 256, bytes: 1 << 20 },
            };
            let session = Session::shared(Arc::clone(&instance), spec);
            table.insert(Arc::clone(&session));
            gets.push(session.get_stream().attach(0).0);
            sessions.push(session);
        }
        Self { relay, sessions, gets, stdin, _writer: writer }
    }

    /// Every line the relay wrote to the server since the last call.
    fn written(&mut self) -> Vec<Message> {
        std::iter::from_fn(|| self.stdin.try_recv().ok())
            .map(|line| {
                assert_eq!(line.last(), Some(&b'\n'), "every write is one line");
                assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1, "one line per write");
                Message::parse(line.slice(..line.len() - 1)).expect("berth writes valid JSON-RPC")
            })
            .collect()
    }
}

#[tokio::test]
async fn hostile_server_lines_never_break_the_relay() {
    let mut harness = Harness::new(2);
    let session = Arc::clone(&harness.sessions[0]);
    let (outbox, mut reader) = session.open_post_stream(1);
    let request = message(r#"{"jsonrpc":"2.0","id":"mine","method":"tools/call","params":{"name":"x"}}"#);
    harness.relay.request(&request, &outbox, Some(&session)).await.unwrap();
    let upstream = harness.written()[0].id_u64().unwrap();
    let hostile = [
        "not json at all",
        "\u{0}\u{1}binary",
        r#"{"jsonrpc":"2.0","id":null,"method":"sampling/createMessage","params":{}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":"oops"}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":{"deep":1}}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":[1]}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/progress","params":"x"}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":7}}"#,
        r#"{"jsonrpc":"2.0","id":{"a":1},"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":1.5,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":18446744073709551615,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":999999,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":"1","result":{}}"#,
        r#"{"jsonrpc":"2.0","method":"x","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":{"x":1}}}}"#,
        r#"[{"jsonrpc":"2.0","id":1,"result":{}}]"#,
        r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#,
    ];
    for line in hostile {
        harness.relay.dispatch(Bytes::copy_from_slice(line.as_bytes())).await;
    }
    // Invalid UTF-8 too.
    harness.relay.dispatch(Bytes::from_static(b"{\"jsonrpc\":\"2.0\",\"id\":\xff}")).await;
    // The relay still routes: the server's answer to the real request reaches its client.
    let answer = format!(r#"{{"jsonrpc":"2.0","id":{upstream},"result":{{"ok":true}}}}"#);
    harness.relay.dispatch(Bytes::from(answer)).await;
    let event = reader.recv().await.expect("the answer");
    let answer = Message::parse(event.data).unwrap();
    assert_eq!(answer.id(), Some("\"mine\""));
    assert_eq!(harness.relay.pending_count(), 0);
    // The ping was answered by berth; nothing else was written.
    let written = harness.written();
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(written[0].id(), Some("7"));
}

#[tokio::test]
async fn a_broken_answer_fails_its_request_at_once() {
    let mut harness = Harness::new(1);
    let session = Arc::clone(&harness.sessions[0]);
    let (outbox, mut reader) = session.open_post_stream(1);
    let request = message(r#"{"jsonrpc":"2.0","id":42,"method":"tools/call"}"#);
    harness.relay.request(&request, &outbox, Some(&session)).await.unwrap();
    let upstream = harness.written()[0].id_u64().unwrap();
    let broken = format!(r#"{{"jsonrpc":"2.0","id":{upstream},"result":{{}},"error":{{"code":1,"message":"x"}}}}"#);
    harness.relay.dispatch(Bytes::from(broken)).await;
    let event = reader.recv().await.unwrap();
    assert_eq!(event.status, Some(http::StatusCode::BAD_GATEWAY));
    let answer = Message::parse(event.data).unwrap();
    assert_eq!(answer.id(), Some("42"));
    assert!(answer.find(&["error"]).is_some());
}

/// Client ids the property tests use: duplicates, huge integers, floats, strings with escapes.
const IDS: &[&str] = &["1", "1", "\"a\"", "\"\\u0061\"", "9223372036854775807", "-9223372036854775808", "-0", "0"];
/// Ids a server gives its own requests (some invalid).
const SERVER_IDS: &[&str] = &["null", "1", "\"s\"", "{\"o\":1}", "2.5"];
/// The params of cancellations a server sends after its request (some invalid).
const CANCEL_PARAMS: &[&str] = &["\"oops\"", "[1]", "{\"requestId\":{\"x\":1}}", "{}", "{\"requestId\":SID}"];
/// Lines of junk.
const JUNK: &[&str] = &[
    "junk",
    "{\"jsonrpc\":\"2.0\",\"id\":999999999,\"result\":{}}",
    "{\"jsonrpc\":\"2.0\",\"id\":{\"a\":1},\"result\":{}}",
    "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":{\"x\":1}}}",
    "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":999999999}}",
    "[]",
    "{\"jsonrpc\":\"2.0\"}",
];

#[derive(Debug, Clone)]
enum Op {
    Request { session: usize, id: usize, progress: bool },
    Answer { pick: usize, broken: bool, twice: bool },
    Progress { pick: usize },
    Broadcast,
    ServerRequest { id: usize, cancel: Option<usize> },
    Junk(usize),
    Cancel { pick: usize },
    HostileCancel { session: usize, params: usize },
    Disconnect { pick: usize },
    Expire,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4usize, 0..IDS.len(), any::<bool>()).prop_map(|(session, id, progress)| Op::Request { session, id, progress }),
        3 => (any::<usize>(), prop::bool::weighted(0.1), prop::bool::weighted(0.1)).prop_map(|(pick, broken, twice)| Op::Answer { pick, broken, twice }),
        2 => any::<usize>().prop_map(|pick| Op::Progress { pick }),
        1 => Just(Op::Broadcast),
        1 => (0..SERVER_IDS.len(), prop::option::of(0..CANCEL_PARAMS.len())).prop_map(|(id, cancel)| Op::ServerRequest { id, cancel }),
        1 => (0..JUNK.len()).prop_map(Op::Junk),
        1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        1 => (0..4usize, 0..3usize).prop_map(|(session, params)| Op::HostileCancel { session, params }),
        1 => any::<usize>().prop_map(|pick| Op::Disconnect { pick }),
        1 => Just(Op::Expire),
        1 => Just(Op::Crash),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Waiting for its answer.
    Open,
    /// Answered (by the server, or with berth's error).
    Answered,
    /// Withdrawn by the client, or given up when the client went away: no answer expected.
    Silent,
}

struct Request {
    session: usize,
    client_id: &'static str,
    upstream: u64,
    progress: bool,
    outbox: Arc<Outbox>,
    reader: Option<mpsc::Receiver<Event>>,
    fate: Fate,
    answers: Vec<Event>,
    progress_seen: usize,
}

impl Request {
    fn drain(&mut self) {
        if let Some(reader) = self.reader.as_mut() {
            while let Ok(event) = reader.try_recv() {
                let message = Message::parse(event.data.clone()).expect("berth delivers valid JSON-RPC");
                match message.kind() {
                    Kind::Response => {
                        assert_eq!(message.id(), Some(self.client_id), "an answer carries its request's own id");
                        self.answers.push(event);
                    }
                    Kind::Notification if message.method().as_deref() == Some("notifications/cancelled") => {
                        // The server withdrew a request it had sent this session, on this stream.
                        let id = message.find_str(&["params", "requestId"]).unwrap_or_default();
                        assert!(id.starts_with("berth-") && self.session.is_multiple_of(2), "{}", message.text());
                    }
                    Kind::Notification => {
                        assert_eq!(message.method().as_deref(), Some("notifications/progress"));
                        assert!(self.progress, "progress only for requests that asked for it");
                        let token = message.find(&["params", "progressToken"]).unwrap();
                        assert_eq!(message.raw(&token), format!("\"t-{}\"", self.session));
                        self.progress_seen += 1;
                    }
                    Kind::Request => {
                        // A forwarded server request, on the stream of this session's request.
                        assert!(self.session.is_multiple_of(2), "only sessions that declared sampling get it");
                    }
                }
            }
        }
    }
}

struct Model {
    harness: Harness,
    requests: Vec<Request>,
    broadcasts: usize,
}

impl Model {
    fn open(&self) -> Vec<usize> {
        (0..self.requests.len()).filter(|i| self.requests[*i].fate == Fate::Open).collect()
    }

    fn pick_open(&self, pick: usize) -> Option<usize> {
        let open = self.open();
        (!open.is_empty()).then(|| open[pick % open.len()])
    }

    /// Reads what the relay wrote: cancellations silence their requests.
    fn read_stdin(&mut self) {
        for written in self.harness.written() {
            let timed_out = written.find_str(&["params", "reason"]).as_deref() == Some("timed out in berth");
            if written.method().as_deref() == Some("notifications/cancelled") && !timed_out {
                let span = written.find(&["params", "requestId"]).expect("berth's cancellations name a request");
                let upstream: u64 = written.raw(&span).parse().expect("berth cancels by its own ids");
                for request in self.requests.iter_mut().filter(|r| r.upstream == upstream) {
                    assert_ne!(request.fate, Fate::Answered, "a cancelled request was answered");
                    request.fate = Fate::Silent;
                }
            }
        }
    }

    async fn apply(&mut self, op: &Op) {
        match op.clone() {
            Op::Request { session, id, progress } => {
                let session_index = session % self.harness.sessions.len();
                let session = Arc::clone(&self.harness.sessions[session_index]);
                let client_id = IDS[id];
                let meta = if progress {
                    format!(r#","_meta":{{"progressToken":"t-{session_index}"}}"#)
                } else {
                    String::new()
                };
                let text = format!(
                    r#"{{"jsonrpc":"2.0","id":{client_id},"method":"tools/call","params":{{"name":"x"{meta}}}}}"#
                );
                let (outbox, reader) = session.open_post_stream(1);
                self.harness.relay.request(&message(&text), &outbox, Some(&session)).await.unwrap();
                let written = self.harness.written();
                assert_eq!(written.len(), 1);
                let upstream = written[0].id_u64().expect("berth's ids are integers");
                if progress {
                    let token = written[0].find(&["params", "_meta", "progressToken"]).unwrap();
                    assert_eq!(written[0].raw(&token), upstream.to_string(), "the token is rewritten to the id");
                }
                assert!(self.requests.iter().all(|r| r.upstream != upstream), "upstream ids are unique");
                self.requests.push(Request {
                    session: session_index,
                    client_id,
                    upstream,
                    progress,
                    outbox,
                    reader: Some(reader),
                    fate: Fate::Open,
                    answers: Vec::new(),
                    progress_seen: 0,
                });
            }
            Op::Answer { pick, broken, twice } => {
                let Some(index) = self.pick_open(pick) else { return };
                let upstream = self.requests[index].upstream;
                let line = if broken {
                    format!(r#"{{"jsonrpc":"2.0","id":{upstream},"result":{{}},"error":{{"code":1,"message":"m"}}}}"#)
                } else {
                    format!(r#"{{"jsonrpc":"2.0","id":{upstream},"result":{{"n":{upstream}}},"x-extra":[1]}}"#)
                };
                for _ in 0..if twice { 2 } else { 1 } {
                    self.harness.relay.dispatch(Bytes::from(line.clone())).await;
                }
                self.requests[index].fate = Fate::Answered;
            }
            Op::Progress { pick } => {
                let Some(index) = self.pick_open(pick) else { return };
                let upstream = self.requests[index].upstream;
                let line = format!(
                    r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":{upstream},"progress":1}}}}"#
                );
                self.harness.relay.dispatch(Bytes::from(line)).await;
            }
            Op::Broadcast => {
                let line = r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
                self.harness.relay.dispatch(Bytes::from_static(line.as_bytes())).await;
                self.broadcasts += 1;
            }
            Op::ServerRequest { id, cancel } => {
                let sid = SERVER_IDS[id];
                let line = format!(r#"{{"jsonrpc":"2.0","id":{sid},"method":"sampling/createMessage","params":{{}}}}"#);
                self.harness.relay.dispatch(Bytes::from(line)).await;
                if let Some(cancel) = cancel {
                    let params = CANCEL_PARAMS[cancel].replace("SID", sid);
                    let line = format!(r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{params}}}"#);
                    self.harness.relay.dispatch(Bytes::from(line)).await;
                }
            }
            Op::Junk(which) => self.harness.relay.dispatch(Bytes::from_static(JUNK[which].as_bytes())).await,
            Op::Cancel { pick } => {
                let Some(index) = self.pick_open(pick) else { return };
                let (session, client_id) = (self.requests[index].session, self.requests[index].client_id);
                let text = format!(
                    r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{client_id},"reason":"r"}}}}"#
                );
                let session = Arc::clone(&self.harness.sessions[session]);
                self.harness.relay.notify(&message(&text), Some(&session)).await.unwrap();
            }
            Op::HostileCancel { session, params } => {
                let params = [r#"{"requestId":[1]}"#, r#"{"requestId":null}"#, r#"{"requestId":{"a":[1]}}"#][params];
                let text = format!(r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{params}}}"#);
                let session = Arc::clone(&self.harness.sessions[session % self.harness.sessions.len()]);
                self.harness.relay.notify(&message(&text), Some(&session)).await.unwrap();
            }
            Op::Disconnect { pick } => {
                let Some(index) = self.pick_open(pick) else { return };
                self.requests[index].reader = None;
                let outbox = Arc::clone(&self.requests[index].outbox);
                self.harness.relay.abandon(&outbox, None).await;
            }
            Op::Expire => {
                tokio::time::advance(TIMEOUT + std::time::Duration::from_secs(1)).await;
                let expired = self.harness.relay.expire().await;
                let open = self.open();
                assert_eq!(expired, open.len(), "every open request expires");
                for index in open {
                    self.requests[index].fate = Fate::Answered;
                }
            }
            Op::Crash => {
                let error = StdioError::Crashed { backend: "fx".into(), reason: "test".into() };
                self.harness.relay.fail_all(&error);
                for index in self.open() {
                    self.requests[index].fate = Fate::Answered;
                }
            }
        }
        self.read_stdin();
        for request in &mut self.requests {
            request.drain();
        }
    }

    fn check_end(&mut self) {
        let error = StdioError::Stopped("fx".into());
        self.harness.relay.fail_all(&error);
        for index in self.open() {
            self.requests[index].fate = Fate::Answered;
        }
        assert_eq!(self.harness.relay.pending_count(), 0, "the pending table is empty when every request ended");
        for session in &self.harness.sessions {
            assert_eq!(session.in_flight(), 0, "no request of a session is left in flight");
        }
        for request in &mut self.requests {
            request.drain();
            let expected = match request.fate {
                Fate::Answered => 1,
                Fate::Silent | Fate::Open => 0,
            };
            if request.reader.is_some() {
                assert_eq!(request.answers.len(), expected, "request {} ({:?})", request.client_id, request.fate);
            }
        }
        for get in &mut self.harness.gets {
            let mut broadcasts = 0;
            while let Ok(event) = get.try_recv() {
                let message = Message::parse(event.data).unwrap();
                match message.kind() {
                    Kind::Notification => {
                        let method = message.method().unwrap_or_default().into_owned();
                        assert!(
                            method == "notifications/tools/list_changed" || method == "notifications/cancelled",
                            "only broadcasts and withdrawals reach a GET stream: {method}"
                        );
                        if method.ends_with("list_changed") {
                            broadcasts += 1;
                        }
                    }
                    Kind::Request => {
                        let id = message.id().unwrap();
                        assert!(matches!(IdKey::of(id), Some(IdKey::Str(s)) if s.starts_with("berth-")), "{id}");
                    }
                    Kind::Response => panic!("a response on a GET stream"),
                }
            }
            assert!(broadcasts <= self.broadcasts);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random interleavings of client and server traffic: no panic; every request gets exactly
    /// one answer with its own id unless it was withdrawn; progress reaches only the request
    /// that asked; only sessions that can have caused a server request see it; the pending
    /// table ends empty.
    #[test]
    fn any_interleaving_keeps_the_relays_promises(sessions in 1..4usize, ops in prop::collection::vec(op(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        runtime.block_on(async {
            let mut model = Model { harness: Harness::new(sessions), requests: Vec::new(), broadcasts: 0 };
            for op in &ops {
                model.apply(op).await;
            }
            model.check_end();
        });
    }
}
