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

use super::{Audience, Relay};
use crate::{
    jsonrpc::{IdKey, Kind, Message},
    stdio::{
        error::StdioError,
        log_level::LogLevel,
        outbox::{Event, Outbox, ReplayLimits},
        session::{ClientCaps, Session, SessionSpec, SessionTable},
        testing::{TIMEOUT, instance, message, ready_relay_with_roots},
    },
};

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
        Self::with_roots(n, None)
    }

    /// [`Harness::new`], with berth answering `roots/list` itself when `roots` is given.
    fn with_roots(n: usize, roots: Option<&str>) -> Self {
        let table = Arc::new(SessionTable::default());
        let (relay, stdin, writer) = ready_relay_with_roots(Audience::Shared(Arc::clone(&table)), roots);
        let instance = instance(&relay);
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
                owner: None,
                client: Default::default(),
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

#[tokio::test]
async fn a_server_request_goes_only_to_the_session_that_can_have_caused_it() {
    // Session 0 declared sampling, session 1 did not. (who has a request in flight, is session
    // 0's GET stream read, where the request must go: Some(session) or refused)
    let table: &[(&[usize], bool, Option<usize>)] = &[
        (&[], true, Some(0)),
        (&[], false, None),
        (&[0], false, Some(0)),
        (&[1], true, None),
        (&[0, 1], true, None),
        (&[0, 0], true, Some(0)),
    ];
    for (in_flight, listening, expected) in table {
        let mut harness = Harness::new(2);
        if !listening {
            harness.gets[0] = harness.sessions[0].get_stream().attach(0).0;
            drop(std::mem::replace(&mut harness.gets[0], mpsc::channel(1).1));
        }
        let mut readers = Vec::new();
        for (n, session) in in_flight.iter().enumerate() {
            let session = Arc::clone(&harness.sessions[*session]);
            let (outbox, reader) = session.open_post_stream(1);
            let request = message(&format!(r#"{{"jsonrpc":"2.0","id":{n},"method":"tools/call"}}"#));
            harness.relay.request(&request, &outbox, Some(&session)).await.unwrap();
            readers.push(reader);
        }
        harness.written();
        let line = r#"{"jsonrpc":"2.0","id":"q","method":"sampling/createMessage","params":{}}"#;
        harness.relay.dispatch(Bytes::from_static(line.as_bytes())).await;
        let refused = harness.written().iter().any(|m| m.kind() == Kind::Response && m.find(&["error"]).is_some());
        let on_posts = readers.iter_mut().map(|r| r.try_recv().is_ok()).filter(|got| *got).count();
        let on_get = harness.gets[0].try_recv().is_ok();
        let case = format!("in flight {in_flight:?}, listening {listening}");
        match expected {
            None => assert!(refused && on_posts == 0 && !on_get, "{case}: refused"),
            Some(_) if in_flight.is_empty() => assert!(on_get && !refused, "{case}: on the GET stream"),
            Some(_) => assert!(on_posts == 1 && !refused && !on_get, "{case}: on the newest request's stream"),
        }
        assert!(harness.gets[1].try_recv().is_err(), "{case}: never to the session that cannot answer");
    }
}

#[tokio::test]
async fn a_shared_instance_asking_for_roots_is_answered_by_berth_not_by_a_client() {
    let roots = r#"{"roots":[{"uri":"file:///data","name":"data"}]}"#;
    let mut harness = Harness::with_roots(2, Some(roots));
    // Session 0 has a request in flight, and even declares roots: it still is not asked.
    let session = Arc::clone(&harness.sessions[0]);
    let (outbox, mut reader) = session.open_post_stream(1);
    harness
        .relay
        .request(&message(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#), &outbox, Some(&session))
        .await
        .unwrap();
    harness.written();
    harness.relay.dispatch(Bytes::from_static(br#"{"jsonrpc":"2.0","id":"r","method":"roots/list"}"#)).await;
    let written = harness.written();
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(written[0].id(), Some("\"r\""));
    assert!(String::from_utf8_lossy(written[0].bytes()).contains("file:///data"), "{:?}", written[0]);
    assert!(
        reader.try_recv().is_err() && harness.gets.iter_mut().all(|get| get.try_recv().is_err()),
        "no client asked"
    );
}

#[tokio::test]
async fn log_messages_of_a_shared_instance_follow_each_sessions_level_and_their_cause() {
    let log = |level: &str| {
        Bytes::from(format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"level":"{level}","data":"x"}}}}"#
        ))
    };
    let mut harness = Harness::new(2);
    // Nobody set a level: everything reaches everybody, as on a direct connection.
    harness.relay.dispatch(log("debug")).await;
    assert!(harness.gets.iter_mut().all(|get| get.try_recv().is_ok()));
    // Session 0 asks for warnings: it gets no info; session 1, which set none, gets info, not debug.
    harness.sessions[0].log_level().set(LogLevel::parse("warning").unwrap());
    harness.relay.dispatch(log("info")).await;
    assert!(harness.gets[0].try_recv().is_err() && harness.gets[1].try_recv().is_ok());
    harness.relay.dispatch(log("debug")).await;
    assert!(harness.gets.iter_mut().all(|get| get.try_recv().is_err()));
    // With only session 1 in flight, its cause is known: session 0 does not get its error.
    let session = Arc::clone(&harness.sessions[1]);
    let (outbox, _reader) = session.open_post_stream(1);
    harness
        .relay
        .request(&message(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#), &outbox, Some(&session))
        .await
        .unwrap();
    harness.relay.dispatch(log("error")).await;
    assert!(harness.gets[0].try_recv().is_err() && harness.gets[1].try_recv().is_ok());
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
    /// Server requests forwarded on this request's stream.
    server_requests: usize,
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
                        self.server_requests += 1;
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
    /// Per session: broadcasts and server requests seen on its GET stream.
    get_broadcasts: Vec<usize>,
    get_server_requests: Vec<usize>,
    /// Server requests berth refused on the server's behalf (it wrote the error itself).
    refusals: usize,
}

/// Where a server request must go, by the rule of `Relay::pick_session`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Destination {
    /// The stream of this request.
    Post(usize),
    /// The GET stream of this session.
    Get(usize),
    /// Nowhere: berth answers the server with an error.
    Refused,
}

impl Model {
    fn open(&self) -> Vec<usize> {
        (0..self.requests.len()).filter(|i| self.requests[*i].fate == Fate::Open).collect()
    }

    fn pick_open(&self, pick: usize) -> Option<usize> {
        let open = self.open();
        (!open.is_empty()).then(|| open[pick % open.len()])
    }

    /// Where the rule sends a server request now: the one session with requests in flight if
    /// it can answer, else (nothing in flight) the one capable session, else nowhere.
    fn destination(&self) -> Destination {
        let open = self.open();
        let sessions: std::collections::BTreeSet<usize> = open.iter().map(|i| self.requests[*i].session).collect();
        match sessions.len() {
            0 => {
                let capable: Vec<usize> = (0..self.harness.sessions.len()).filter(|s| s.is_multiple_of(2)).collect();
                if capable.len() == 1 { Destination::Get(capable[0]) } else { Destination::Refused }
            }
            1 => {
                let session = *sessions.first().unwrap();
                if !session.is_multiple_of(2) {
                    return Destination::Refused;
                }
                let newest = open.iter().copied().max_by_key(|i| self.requests[*i].upstream).unwrap();
                Destination::Post(newest)
            }
            _ => Destination::Refused,
        }
    }

    /// Reads the GET streams: broadcasts, forwarded server requests and their withdrawals.
    fn drain_gets(&mut self) {
        for (index, get) in self.harness.gets.iter_mut().enumerate() {
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
                            self.get_broadcasts[index] += 1;
                        }
                    }
                    Kind::Request => {
                        let id = message.id().unwrap();
                        assert!(matches!(IdKey::of(id), Some(IdKey::Str(s)) if s.starts_with("berth-")), "{id}");
                        self.get_server_requests[index] += 1;
                    }
                    Kind::Response => panic!("a response on a GET stream"),
                }
            }
        }
    }

    /// How many server requests went where, so far.
    fn forwarded(&self) -> (usize, Vec<usize>, Vec<usize>) {
        (self.refusals, self.requests.iter().map(|r| r.server_requests).collect(), self.get_server_requests.clone())
    }

    /// Reads what the relay wrote: cancellations silence their requests.
    fn read_stdin(&mut self) {
        for written in self.harness.written() {
            if written.kind() == Kind::Response {
                // berth answering a server request itself: a refusal (pings are not sent here).
                assert!(written.find(&["error"]).is_some(), "{}", written.text());
                self.refusals += 1;
                continue;
            }
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
                    server_requests: 0,
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
                // Only string and integer ids make a valid request; the others are junk.
                let valid = IdKey::of(sid).is_some() && !sid.contains('.');
                let destination = self.destination();
                self.drain_all();
                let before = self.forwarded();
                let line = format!(r#"{{"jsonrpc":"2.0","id":{sid},"method":"sampling/createMessage","params":{{}}}}"#);
                self.harness.relay.dispatch(Bytes::from(line)).await;
                self.drain_all();
                let (refusals, posts, gets) = self.forwarded();
                let mut expected = (before.0, before.1.clone(), before.2.clone());
                if valid {
                    match destination {
                        Destination::Refused => expected.0 += 1,
                        Destination::Post(index) => expected.1[index] += 1,
                        Destination::Get(session) => expected.2[session] += 1,
                    }
                }
                assert_eq!((refusals, posts, gets), expected, "server request {sid} to {destination:?}");
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
        self.drain_all();
    }

    fn drain_all(&mut self) {
        self.read_stdin();
        for request in &mut self.requests {
            request.drain();
        }
        self.drain_gets();
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
        self.drain_gets();
        for broadcasts in &self.get_broadcasts {
            assert!(*broadcasts <= self.broadcasts);
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
            let mut model = Model {
                harness: Harness::new(sessions),
                requests: Vec::new(),
                broadcasts: 0,
                get_broadcasts: vec![0; sessions],
                get_server_requests: vec![0; sessions],
                refusals: 0,
            };
            for op in &ops {
                model.apply(op).await;
            }
            model.check_end();
        });
    }
}
