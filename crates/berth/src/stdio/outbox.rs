//! The streams of a session, and what makes them resumable.
//!
//! Every message berth sends a client travels on a stream: the answers to one POST (stream
//! 1, 2, …) or the session's GET stream (stream 0). An [`Outbox`] is one such stream: the relay
//! delivers into it, and the HTTP response currently reading it (if any) receives the messages
//! through a bounded channel. Messages of a session's streams are also kept, in delivery order,
//! in the session's [`Replay`] ring (bounded in events and bytes), under an SSE event id
//! `<stream>-<seq>`: a client whose connection dropped sends `GET` with `Last-Event-ID`, and the
//! stream resumes with what it missed. A stream whose reader is gone keeps collecting messages
//! for as long as it owes responses; if nobody resumes it within the backend's `resume_window`,
//! the relay cancels its requests upstream.
//!
//! Messages are never parsed here: they are the bytes the relay wrote.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use http::StatusCode;
use tokio::{sync::mpsc, time::Instant};

/// Messages a stream's channel holds beyond the responses it still owes; progress and log
/// notifications beyond this are dropped when the client does not read (responses never are).
const LOSSY_ROOM: usize = 64;

/// One message on a stream.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    /// Its place in the session's sequence (0 for streams that are not resumable).
    pub(crate) seq: u64,
    /// The stream it belongs to.
    pub(crate) stream: u64,
    /// The JSON-RPC message.
    pub(crate) data: Bytes,
    /// Whether it is a response (one of those the stream owes).
    pub(crate) response: bool,
    /// The HTTP status to answer with when this response is a POST's whole answer, for errors
    /// berth produced itself (502/503/504); `None` for the server's own messages.
    pub(crate) status: Option<StatusCode>,
    /// Whether it was kept for replay (it has an event id).
    pub(crate) kept: bool,
}

/// How a delivery went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// A reader has it, or will have it on resumption.
    Delivered,
    /// Nobody can receive it (no reader and not resumable, or the channel is full of messages
    /// that may be dropped, or the stream ended).
    Dropped,
}

/// The limits of a session's replay ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplayLimits {
    /// Most messages kept.
    pub(crate) events: usize,
    /// Most bytes kept.
    pub(crate) bytes: usize,
}

/// The messages of a session's streams, kept for replay, oldest first.
#[derive(Debug)]
pub(crate) struct Replay {
    next_seq: AtomicU64,
    limits: ReplayLimits,
    ring: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    events: VecDeque<(u64, u64, Bytes)>,
    bytes: usize,
}

impl Replay {
    /// An empty ring.
    pub(crate) fn new(limits: ReplayLimits) -> Arc<Self> {
        Arc::new(Self { next_seq: AtomicU64::new(1), limits, ring: Mutex::new(Ring::default()) })
    }

    /// The sequence number of the last message kept so far (0 before the first).
    pub(crate) fn current_seq(&self) -> u64 {
        self.next_seq.load(Ordering::Relaxed) - 1
    }

    fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Keeps a message; false when it cannot be kept at all (larger than the ring, or a ring
    /// of no events), in which case it has no event id and cannot be replayed.
    fn keep(&self, stream: u64, seq: u64, data: &Bytes) -> bool {
        if self.limits.events == 0 || data.len() > self.limits.bytes {
            return false;
        }
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.events.push_back((stream, seq, data.clone()));
        ring.bytes += data.len();
        while ring.events.len() > self.limits.events || ring.bytes > self.limits.bytes {
            match ring.events.pop_front() {
                Some((_, _, old)) => ring.bytes -= old.len(),
                None => break,
            }
        }
        true
    }

    /// The kept messages of `stream` after `seq`, in order.
    fn after(&self, stream: u64, seq: u64) -> Vec<(u64, Bytes)> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.events.iter().filter(|(s, q, _)| *s == stream && *q > seq).map(|(_, q, data)| (*q, data.clone())).collect()
    }

    /// Messages and bytes kept now.
    #[cfg(test)]
    pub(crate) fn usage(&self) -> (usize, usize) {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        (ring.events.len(), ring.bytes)
    }
}

/// The SSE event id of a kept message.
pub(crate) fn event_id(stream: u64, seq: u64) -> String {
    format!("{stream}-{seq}")
}

/// Reads a `Last-Event-ID` of berth's: `(stream, seq)`.
pub(crate) fn parse_event_id(text: &str) -> Option<(u64, u64)> {
    let (stream, seq) = text.trim().split_once('-')?;
    Some((stream.parse().ok()?, seq.parse().ok()?))
}

/// One stream of a session (or the answer stream of a stateless request).
#[derive(Debug)]
pub(crate) struct Outbox {
    stream: u64,
    replay: Option<Arc<Replay>>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    live: Option<mpsc::Sender<Event>>,
    generation: u64,
    /// Responses still to come; `usize::MAX` for a GET stream, which never completes.
    owed: usize,
    /// Set until the first message arrives on a POST stream: a lone response arriving first
    /// becomes a plain JSON answer, which has no event id, so it is not kept for replay.
    json_candidate: bool,
    /// Whether a reader ever attached (a GET stream keeps messages for replay only then).
    ever_attached: bool,
    detached_since: Option<Instant>,
    ended: bool,
}

impl Outbox {
    /// The stream of one POST that owes `owed` responses, with its reader attached. `replay` is
    /// the session's ring (`None` for stateless requests, which cannot resume).
    pub(crate) fn post(stream: u64, owed: usize, replay: Option<Arc<Replay>>) -> (Arc<Self>, mpsc::Receiver<Event>) {
        let (live, reader) = mpsc::channel(LOSSY_ROOM + owed.max(1));
        let state = State {
            live: Some(live),
            generation: 1,
            owed,
            json_candidate: true,
            ever_attached: true,
            detached_since: None,
            ended: owed == 0,
        };
        (Arc::new(Self { stream, replay, state: Mutex::new(state) }), reader)
    }

    /// A session's GET stream (stream 0), with no reader yet.
    pub(crate) fn get(replay: Arc<Replay>) -> Arc<Self> {
        let state = State {
            live: None,
            generation: 0,
            owed: usize::MAX,
            json_candidate: false,
            ever_attached: false,
            detached_since: None,
            ended: false,
        };
        Arc::new(Self { stream: 0, replay: Some(replay), state: Mutex::new(state) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stream's number within its session.
    pub(crate) fn stream(&self) -> u64 {
        self.stream
    }

    /// Whether the stream can be resumed (it belongs to a session).
    pub(crate) fn resumable(&self) -> bool {
        self.replay.is_some()
    }

    /// Delivers a message. A response counts against what the stream owes and is never dropped
    /// while the stream is open: the channel keeps room for every response still owed, and other
    /// messages give way when the reader does not keep up (`Dropped`, so that a server request
    /// that could not be delivered is answered with an error).
    pub(crate) fn deliver(&self, data: Bytes, response: bool, status: Option<StatusCode>) -> Delivery {
        let mut state = self.lock();
        if state.ended {
            return Delivery::Dropped;
        }
        let json_candidate = std::mem::take(&mut state.json_candidate);
        let keep = match &self.replay {
            None => false,
            Some(_) if self.stream == 0 => state.ever_attached,
            Some(_) => !(json_candidate && response && state.owed == 1),
        };
        let (seq, keep) = match (&self.replay, keep) {
            (Some(replay), true) => {
                let seq = replay.next_seq();
                (seq, replay.keep(self.stream, seq, &data))
            }
            _ => (0, false),
        };
        let event = Event { seq, stream: self.stream, data, response, status, kept: keep };
        if response && state.owed != usize::MAX {
            state.owed = state.owed.saturating_sub(1);
        }
        // Room kept free in the channel for the responses still owed.
        let reserved = if state.owed == usize::MAX { 0 } else { state.owed };
        let delivered = match &state.live {
            Some(live) if !response && reserved > 0 && live.capacity() <= reserved => Delivery::Dropped,
            Some(live) => match live.try_send(event) {
                Ok(()) => Delivery::Delivered,
                Err(mpsc::error::TrySendError::Full(_)) => Delivery::Dropped,
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    state.live = None;
                    state.detached_since.get_or_insert_with(Instant::now);
                    if keep { Delivery::Delivered } else { Delivery::Dropped }
                }
            },
            None if keep => Delivery::Delivered,
            None => Delivery::Dropped,
        };
        if state.owed == 0 {
            // Everything owed is delivered: the reader ends after the last message.
            state.ended = true;
            state.live = None;
        }
        delivered
    }

    /// Attaches a new reader that first receives the kept messages after `after` (a
    /// `Last-Event-ID`'s sequence number), then everything delivered from now on; an earlier
    /// reader is cut off. Answers the reader (closed at once when the stream has ended), the
    /// replayed messages and the reader's generation.
    pub(crate) fn attach(&self, after: u64) -> (mpsc::Receiver<Event>, Vec<Event>, u64) {
        let mut state = self.lock();
        let replayed: Vec<Event> = self
            .replay
            .iter()
            .flat_map(|replay| replay.after(self.stream, after))
            .map(|(seq, data)| Event { seq, stream: self.stream, response: false, status: None, kept: true, data })
            .collect();
        let capacity = if state.owed == usize::MAX { LOSSY_ROOM * 4 } else { LOSSY_ROOM + state.owed };
        let (live, reader) = mpsc::channel(capacity.max(1));
        state.generation += 1;
        state.ever_attached = true;
        state.detached_since = None;
        state.live = if state.ended { None } else { Some(live) };
        (reader, replayed, state.generation)
    }

    /// Gives up answering with plain JSON: from now on every message is kept for replay. True if
    /// nothing was delivered yet; false if a message just was (it is in the reader's channel).
    pub(crate) fn prime(&self) -> bool {
        std::mem::take(&mut self.lock().json_candidate)
    }

    /// The reader of `generation` is gone. Answers whether the stream still owes responses, so
    /// that the caller can give it up if nobody resumes it.
    pub(crate) fn detach(&self, generation: u64) -> bool {
        let mut state = self.lock();
        if state.generation != generation {
            return false;
        }
        state.live = None;
        if state.ended {
            return false;
        }
        state.detached_since = Some(Instant::now());
        state.owed != usize::MAX
    }

    /// Whether the stream owes responses and has had no reader for at least `window`.
    pub(crate) fn abandoned(&self, window: std::time::Duration) -> bool {
        let state = self.lock();
        !state.ended && state.owed != usize::MAX && state.detached_since.is_some_and(|since| since.elapsed() >= window)
    }

    /// Whether a reader is attached now.
    pub(crate) fn is_attached(&self) -> bool {
        self.lock().live.as_ref().is_some_and(|live| !live.is_closed())
    }

    /// Whether the stream delivered everything it owed (or was given up).
    pub(crate) fn is_ended(&self) -> bool {
        self.lock().ended
    }

    /// One response the stream owed will not come (the client cancelled its request); the
    /// stream ends if it owed nothing else.
    pub(crate) fn forgo_response(&self) {
        let mut state = self.lock();
        if state.owed != usize::MAX {
            state.owed = state.owed.saturating_sub(1);
            if state.owed == 0 {
                state.ended = true;
                state.live = None;
            }
        }
    }

    /// Ends the stream: its requests were cancelled, or the session ended.
    pub(crate) fn end(&self) {
        let mut state = self.lock();
        state.ended = true;
        state.live = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    #[test]
    fn a_lone_first_response_is_not_kept_everything_else_is() {
        let replay = Replay::new(ReplayLimits { events: 16, bytes: 1 << 20 });
        let (lone, mut reader) = Outbox::post(1, 1, Some(Arc::clone(&replay)));
        assert_eq!(lone.deliver(bytes("r"), true, None), Delivery::Delivered);
        let event = reader.try_recv().unwrap();
        assert!(!event.kept && event.response);
        assert!(lone.is_ended());
        assert_eq!(replay.usage().0, 0);
        let (streamed, mut reader) = Outbox::post(2, 1, Some(Arc::clone(&replay)));
        streamed.deliver(bytes("progress"), false, None);
        streamed.deliver(bytes("answer"), true, None);
        let seqs: Vec<(u64, bool)> = std::iter::from_fn(|| reader.try_recv().ok()).map(|e| (e.seq, e.kept)).collect();
        assert_eq!(seqs, [(1, true), (2, true)]);
        assert_eq!(replay.usage().0, 2);
        // The stream ended: later messages (a late progress) go nowhere.
        assert_eq!(streamed.deliver(bytes("late"), false, None), Delivery::Dropped);
    }

    #[test]
    fn a_detached_stream_keeps_collecting_and_resumes_where_the_client_stopped() {
        let replay = Replay::new(ReplayLimits { events: 16, bytes: 1 << 20 });
        let (outbox, reader) = Outbox::post(3, 1, Some(Arc::clone(&replay)));
        outbox.deliver(bytes("p1"), false, None);
        outbox.deliver(bytes("p2"), false, None);
        drop(reader);
        assert!(outbox.detach(1), "it still owes its response");
        outbox.deliver(bytes("p3"), false, None);
        assert_eq!(outbox.deliver(bytes("done"), true, None), Delivery::Delivered);
        // The client saw p1 (seq 1) only.
        let (mut reader, replayed, _) = outbox.attach(1);
        let data: Vec<Bytes> = replayed.iter().map(|e| e.data.clone()).collect();
        assert_eq!(data, [bytes("p2"), bytes("p3"), bytes("done")]);
        assert!(reader.try_recv().is_err(), "the stream ended: nothing more comes live");
        assert!(!outbox.abandoned(std::time::Duration::ZERO));
    }

    #[test]
    fn only_a_stream_that_owes_and_has_no_reader_is_abandoned() {
        let (outbox, reader) = Outbox::post(1, 2, None);
        assert!(!outbox.abandoned(std::time::Duration::ZERO));
        drop(reader);
        assert!(outbox.detach(1));
        assert!(outbox.abandoned(std::time::Duration::ZERO));
        assert!(!outbox.abandoned(std::time::Duration::from_secs(3600)));
        outbox.end();
        assert!(!outbox.abandoned(std::time::Duration::ZERO));
        // A stale reader's detach does not touch a newer reader.
        let (outbox, _reader) = Outbox::post(1, 1, None);
        let (_second, _, generation) = outbox.attach(0);
        assert!(!outbox.detach(generation - 1));
        assert!(outbox.is_attached());
    }

    #[test]
    fn responses_are_never_crowded_out_by_progress() {
        let (outbox, mut reader) = Outbox::post(1, 3, None);
        let mut dropped = 0;
        for _ in 0..10_000 {
            if outbox.deliver(bytes("progress"), false, None) == Delivery::Dropped {
                dropped += 1;
            }
        }
        assert!(dropped > 0);
        for _ in 0..3 {
            assert_eq!(outbox.deliver(bytes("answer"), true, None), Delivery::Delivered);
        }
        let answers = std::iter::from_fn(|| reader.try_recv().ok()).filter(|e| e.response).count();
        assert_eq!(answers, 3);
    }

    #[test]
    fn a_message_larger_than_the_ring_has_no_id_and_is_not_claimed_delivered_without_a_reader() {
        let replay = Replay::new(ReplayLimits { events: 16, bytes: 12 });
        let (outbox, reader) = Outbox::post(1, 2, Some(Arc::clone(&replay)));
        outbox.deliver(bytes("small"), false, None);
        drop(reader);
        outbox.detach(1);
        assert_eq!(outbox.deliver(bytes("far too large to keep"), false, None), Delivery::Dropped);
        assert_eq!(outbox.deliver(bytes("fits"), true, None), Delivery::Delivered);
        let (_reader, replayed, _) = outbox.attach(0);
        let data: Vec<Bytes> = replayed.iter().map(|e| e.data.clone()).collect();
        assert_eq!(data, [bytes("small"), bytes("fits")]);
    }

    #[test]
    fn the_ring_stays_within_its_limits() {
        let replay = Replay::new(ReplayLimits { events: 4, bytes: 10 });
        let outbox = Outbox::get(Arc::clone(&replay));
        let (_reader, _, _) = outbox.attach(0);
        for n in 0..100 {
            outbox.deliver(bytes(&format!("{n:03}")), false, None);
            let (events, size) = replay.usage();
            assert!(events <= 4 && size <= 10, "{events} {size}");
        }
        let kept: Vec<u64> = replay.after(0, 0).iter().map(|(seq, _)| *seq).collect();
        assert_eq!(kept, [98, 99, 100]);
    }

    #[test]
    fn event_ids_round_trip() {
        assert_eq!(parse_event_id(&event_id(3, 42)), Some((3, 42)));
        for bad in ["", "3", "x-1", "1-y", "-1", "1--2"] {
            assert_eq!(parse_event_id(bad), None, "{bad}");
        }
    }
}
