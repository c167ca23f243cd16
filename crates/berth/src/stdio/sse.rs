//! Answers in the two forms Streamable HTTP allows: one JSON body, or an SSE stream; and what
//! happens when the client stops reading a stream before it ended.
//!
//! A POST whose answer is one response that comes quickly gets a plain JSON body, the cheapest
//! form. Otherwise (several messages, or no answer within [`PRIME_AFTER`]) the answer is an SSE
//! stream; on a session's stream berth first sends a priming event with an event id and a
//! `retry` delay, as the 2025-11-25 transport recommends, so that a client whose connection
//! drops can resume with `Last-Event-ID` even before the first message arrives.

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::{BufMut, Bytes, BytesMut};
use futures::stream;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::mpsc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    outbox::{Event, Outbox, event_id},
    relay::Relay,
};
use crate::{
    body::{ResponseBody, response_body},
    jsonrpc::{self, Message},
    mcp_headers::SESSION_HEADER,
};

/// How long a POST waits for its first message before it switches to an SSE stream.
pub(crate) const PRIME_AFTER: Duration = Duration::from_millis(500);
/// The reconnection delay berth asks clients for (the SSE `retry` field).
const RETRY: Duration = Duration::from_secs(1);

/// A JSON response carrying one message.
pub(crate) fn json(status: StatusCode, message: Bytes, session: Option<&str>) -> Response<ResponseBody> {
    let mut response = Response::new(response_body(message));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(session) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        response.headers_mut().insert(SESSION_HEADER, session);
    }
    response
}

/// `202 Accepted` for a POST that held no request.
pub(crate) fn accepted() -> Response<ResponseBody> {
    let mut response = Response::new(response_body(""));
    *response.status_mut() = StatusCode::ACCEPTED;
    response
}

fn event(event: &Event) -> Bytes {
    let mut out = BytesMut::with_capacity(event.data.len() + 48);
    if event.kept {
        out.put_slice(b"id: ");
        out.put_slice(event_id(event.stream, event.seq).as_bytes());
        out.put_slice(b"\n");
    }
    out.put_slice(b"event: message\ndata: ");
    out.put_slice(&event.data);
    out.put_slice(b"\n\n");
    out.freeze()
}

/// The priming event: an id to resume from, the reconnection delay, no data.
fn priming(id: &str) -> Bytes {
    Bytes::from(format!("id: {id}\nretry: {}\ndata: \n\n", RETRY.as_millis()))
}

const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// What to do with a stream's requests when its reader goes away before the stream ended.
#[derive(Clone)]
pub(crate) struct Abandonment {
    /// The relay that has the stream's requests.
    pub(crate) relay: Arc<Relay>,
    /// How long the client has to resume; `None`: no resumption (stateless requests, for which
    /// closing the stream is the cancellation).
    pub(crate) window: Option<Duration>,
    /// The owner of the task that waits out the window.
    pub(crate) tasks: TaskTracker,
    /// Cancelled at shutdown.
    pub(crate) stop: CancellationToken,
}

impl Abandonment {
    fn schedule(&self, outbox: Arc<Outbox>) {
        let (relay, window, stop) = (Arc::clone(&self.relay), self.window, self.stop.clone());
        self.tasks.spawn(async move {
            if let Some(window) = window {
                tokio::select! {
                    () = tokio::time::sleep(window) => {}
                    () = stop.cancelled() => return,
                }
                if !outbox.abandoned(window) {
                    return;
                }
            }
            relay.abandon(&outbox, None).await;
        });
    }
}

/// The reader of a stream: when it is dropped (the response ended, or the client went away),
/// the stream is detached, and given up after its window if it still owes responses.
pub(crate) struct ReaderGuard {
    outbox: Arc<Outbox>,
    generation: u64,
    abandonment: Abandonment,
}

impl ReaderGuard {
    /// The guard of `outbox`'s reader of `generation`.
    pub(crate) fn new(outbox: Arc<Outbox>, generation: u64, abandonment: Abandonment) -> Self {
        Self { outbox, generation, abandonment }
    }
}

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        if self.outbox.detach(self.generation) {
            self.abandonment.schedule(Arc::clone(&self.outbox));
        }
    }
}

struct StreamState {
    /// Frames to send before reading the channel: priming, the first or replayed messages.
    queued: std::collections::VecDeque<Bytes>,
    reader: mpsc::Receiver<Event>,
    ticker: tokio::time::Interval,
    /// Set for GET streams, which end when the gateway starts draining.
    shutdown: Option<CancellationToken>,
    _guard: ReaderGuard,
}

/// An SSE response that sends `queued` frames, then what `reader` receives, until the stream
/// ends (its channel closes) or, for GET streams, shutdown; with a keep-alive comment every
/// `keep_alive` so that proxies do not time the stream out.
fn sse(
    queued: std::collections::VecDeque<Bytes>,
    reader: mpsc::Receiver<Event>,
    guard: ReaderGuard,
    keep_alive: Duration,
    shutdown: Option<CancellationToken>,
) -> Response<ResponseBody> {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = StreamState { queued, reader, ticker, shutdown, _guard: guard };
    let body = stream::unfold(state, |mut state| async move {
        if let Some(frame) = state.queued.pop_front() {
            return Some((Ok::<_, Infallible>(Frame::data(frame)), state));
        }
        let cancelled = async {
            match &state.shutdown {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = state.reader.recv() => {
                let message = message?;
                Some((Ok(Frame::data(event(&message))), state))
            }
            _ = state.ticker.tick() => Some((Ok(Frame::data(Bytes::from_static(KEEP_ALIVE))), state)),
            () = cancelled => None,
        }
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(body)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx-style proxies not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// A GET stream (or a resumed stream): `replayed` first, then live messages; `prime` is the
/// event id of a priming event to send first, if any.
pub(crate) fn stream(
    replayed: Vec<Event>,
    reader: mpsc::Receiver<Event>,
    guard: ReaderGuard,
    keep_alive: Duration,
    shutdown: Option<CancellationToken>,
    prime: Option<String>,
) -> Response<ResponseBody> {
    let mut queued: std::collections::VecDeque<Bytes> = prime.iter().map(|id| priming(id)).collect();
    queued.extend(replayed.iter().map(event));
    sse(queued, reader, guard, keep_alive, shutdown)
}

/// The HTTP status of a stateless (2026-07-28) request's error: the generation maps protocol
/// errors to statuses so that intermediaries see them without reading bodies.
fn stateless_status(message: &Bytes) -> StatusCode {
    let code = Message::parse(message.clone())
        .ok()
        .and_then(|message| message.find(&["error", "code"]).and_then(|span| message.raw(&span).parse::<i64>().ok()));
    match code {
        Some(jsonrpc::UNSUPPORTED_PROTOCOL_VERSION..=jsonrpc::HEADER_MISMATCH) => StatusCode::BAD_REQUEST,
        Some(jsonrpc::METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        _ => StatusCode::OK,
    }
}

/// The answer to a POST holding `expected` requests. It is not cut short at shutdown: the relay
/// answers every request (a result, a timeout, or an error when the instance stops after the
/// drain).
pub(crate) async fn answer(
    mut reader: mpsc::Receiver<Event>,
    guard: ReaderGuard,
    expected: usize,
    stateless: bool,
    keep_alive: Duration,
) -> Response<ResponseBody> {
    let outbox = Arc::clone(&guard.outbox);
    let first = tokio::select! {
        first = reader.recv() => Some(first),
        () = tokio::time::sleep(PRIME_AFTER) => None,
    };
    let first = match first {
        Some(first) => first,
        // Nothing yet: switch to a stream, unless a message arrived just now.
        None if outbox.prime() => {
            let mut queued = std::collections::VecDeque::new();
            if outbox.resumable() {
                queued.push_back(priming(&event_id(outbox.stream(), 0)));
            }
            return sse(queued, reader, guard, keep_alive, None);
        }
        None => reader.recv().await,
    };
    let Some(first) = first else {
        // The stream ended without a message: its only request was cancelled by the client.
        return sse(Default::default(), reader, guard, keep_alive, None);
    };
    if expected == 1 && first.response && !first.kept {
        let status = first.status.unwrap_or(if stateless { stateless_status(&first.data) } else { StatusCode::OK });
        return json(status, first.data, None);
    }
    let mut queued = std::collections::VecDeque::new();
    if outbox.resumable() {
        queued.push_back(priming(&event_id(outbox.stream(), 0)));
    }
    queued.push_back(event(&first));
    sse(queued, reader, guard, keep_alive, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stdio::{
        error::StdioError,
        outbox::{Replay, ReplayLimits},
        relay::Audience,
        testing::ready_relay,
    };

    fn abandonment() -> Abandonment {
        let (relay, _stdin, _writer) = ready_relay(Audience::Nobody);
        Abandonment {
            relay,
            window: Some(Duration::from_secs(5)),
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
        }
    }

    async fn body_text(response: Response<ResponseBody>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn replay() -> Option<Arc<Replay>> {
        Some(Replay::new(ReplayLimits { events: 64, bytes: 1 << 16 }))
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_quick_response_is_plain_json_with_the_status_of_berths_own_errors() {
        let table: &[(Option<StatusCode>, bool, &str, u16)] = &[
            (None, false, r#"{"jsonrpc":"2.0","id":1,"result":{}}"#, 200),
            (None, true, r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"m"}}"#, 404),
            (None, true, r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32020,"message":"m"}}"#, 400),
            (None, false, r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"m"}}"#, 200),
            (
                Some(StatusCode::GATEWAY_TIMEOUT),
                false,
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"m"}}"#,
                504,
            ),
        ];
        for (status, stateless, text, expected) in table {
            let (outbox, reader) = Outbox::post(1, 1, replay());
            outbox.deliver(Bytes::from_static(text.as_bytes()), true, *status);
            let guard = ReaderGuard::new(Arc::clone(&outbox), 1, abandonment());
            let response = answer(reader, guard, 1, *stateless, Duration::from_secs(15)).await;
            assert_eq!(response.status().as_u16(), *expected, "{text}");
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
            assert_eq!(body_text(response).await, *text, "the message as it came");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_answer_becomes_a_primed_stream_whose_events_have_ids() {
        let (outbox, reader) = Outbox::post(4, 1, replay());
        let guard = ReaderGuard::new(Arc::clone(&outbox), 1, abandonment());
        let pending = tokio::spawn(answer(reader, guard, 1, false, Duration::from_secs(15)));
        tokio::time::sleep(PRIME_AFTER * 2).await;
        outbox.deliver(Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#), true, None);
        let response = pending.await.unwrap();
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/event-stream");
        let text = body_text(response).await;
        assert!(text.starts_with("id: 4-0\nretry: 1000\ndata: \n\n"), "{text}");
        assert!(
            text.contains("id: 4-1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n"),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn progress_first_makes_a_stream_and_a_stateless_stream_has_no_ids() {
        for (resumable, prefix) in [(true, "id: 2-0\n"), (false, "event: message\n")] {
            let (outbox, reader) = Outbox::post(2, 1, if resumable { replay() } else { None });
            outbox.deliver(
                Bytes::from_static(
                    br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}"#,
                ),
                false,
                None,
            );
            outbox.deliver(Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#), true, None);
            let guard = ReaderGuard::new(Arc::clone(&outbox), 1, abandonment());
            let text = body_text(answer(reader, guard, 1, !resumable, Duration::from_secs(15)).await).await;
            assert!(text.starts_with(prefix), "{text}");
            assert_eq!(text.matches("event: message").count(), 2, "{text}");
            assert_eq!(text.contains("id: "), resumable, "{text}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_the_client_cancelled_ends_its_stream_empty() {
        let (outbox, reader) = Outbox::post(1, 1, replay());
        outbox.forgo_response();
        let guard = ReaderGuard::new(Arc::clone(&outbox), 1, abandonment());
        let response = answer(reader, guard, 1, false, Duration::from_secs(15)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body_text(response).await, "");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_gone_for_longer_than_the_window_gives_its_stream_up() {
        let (outbox, reader) = Outbox::post(1, 1, replay());
        let abandonment = abandonment();
        let tasks = abandonment.tasks.clone();
        drop(ReaderGuard::new(Arc::clone(&outbox), 1, abandonment));
        drop(reader);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!outbox.is_ended(), "still within the window: the client may resume");
        let (_resumed, _, generation) = outbox.attach(0);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!outbox.is_ended(), "resumed in time");
        drop(ReaderGuard::new(Arc::clone(&outbox), generation, self::abandonment()));
        tokio::time::sleep(Duration::from_secs(10)).await;
        tasks.close();
        assert!(outbox.is_ended(), "given up after the window");
        let error = StdioError::Stopped("fx".into());
        assert_eq!(outbox.deliver(error.answer(b"1"), true, None), crate::stdio::outbox::Delivery::Dropped);
    }
}
