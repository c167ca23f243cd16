//! The table of live connections: what each one is doing, when it must be closed, and which one
//! makes room when every slot is taken.
//!
//! A connection is *fresh* until a first request reaches the service, *active* while requests
//! are in flight (from the service call until the response body has ended or was dropped, so
//! that an SSE stream open for hours is active all along), and *idle* in between. Fresh and idle
//! connections have a deadline (`header_read_timeout`, `connection_idle_timeout`); active ones
//! have none, because the body deadline and HTTP/2 keep-alive pings watch them instead.
//!
//! Each connection's [`State`] sits in a `watch` channel: its task waits on it to re-arm its
//! deadline when the phase changes, and the registry reads it to choose whom to evict.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::{
    sync::{Notify, watch},
    time::Instant,
};

/// How long a connection that is being closed gracefully, with nothing in flight, may take to
/// finish its goodbye (HTTP/2 waits for the PING it sends after GOAWAY to be answered) before it
/// is dropped: a peer that never answers must not keep its slot.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The deadlines of the phases without a request in flight.
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadlines {
    /// From accept (after the TLS handshake) to the first request head.
    pub(super) first_request: Duration,
    /// From the end of the last request to the next one.
    pub(super) idle: Duration,
}

/// What a connection is doing, as far as deadlines and eviction are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// No request has reached the service yet.
    Fresh,
    /// At least one request is in flight.
    Active,
    /// It has served requests and none is in flight.
    Idle,
}

/// How a connection is being closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Closing {
    /// Say goodbye (HTTP/2 GOAWAY, HTTP/1 closes after the current response) and let requests
    /// in flight finish.
    Graceful,
    /// Drop the connection now.
    Abort,
}

/// The state of one connection.
#[derive(Debug, Clone, Copy)]
pub(super) struct State {
    /// Requests that reached the service and whose response body has neither ended nor been
    /// dropped.
    in_flight: usize,
    /// Whether a request ever reached the service.
    spoken: bool,
    /// When the current wait began: accept (or the end of the TLS handshake), the end of the
    /// last request in flight, or the start of a graceful close.
    since: Instant,
    /// Set once the connection is being closed; it is then no candidate for eviction.
    closing: Option<Closing>,
}

impl State {
    fn new(now: Instant) -> Self {
        Self { in_flight: 0, spoken: false, since: now, closing: None }
    }

    /// The phase the state is in.
    pub(super) fn phase(&self) -> Phase {
        match (self.in_flight, self.spoken) {
            (0, false) => Phase::Fresh,
            (0, true) => Phase::Idle,
            _ => Phase::Active,
        }
    }

    /// How the connection is being closed, if it is.
    pub(super) fn closing(&self) -> Option<Closing> {
        self.closing
    }

    /// When the connection's task must act: close a fresh or idle connection, or drop one whose
    /// graceful close takes too long. `None` while requests are in flight.
    pub(super) fn deadline(&self, deadlines: Deadlines) -> Option<Instant> {
        if self.in_flight > 0 {
            return None;
        }
        match (self.closing, self.spoken) {
            (Some(Closing::Abort), _) => Some(self.since),
            (Some(Closing::Graceful), _) => Some(self.since + CLOSE_GRACE),
            (None, false) => Some(self.since + deadlines.first_request),
            (None, true) => Some(self.since + deadlines.idle),
        }
    }

    /// Acts on a deadline that passed at `now`: a fresh or idle connection starts closing
    /// gracefully, a graceful close that took too long becomes an abort. Returns whether the
    /// state changed, which it always does when the deadline has passed.
    fn expire(&mut self, now: Instant, deadlines: Deadlines) -> bool {
        if self.deadline(deadlines).is_none_or(|deadline| deadline > now) {
            return false;
        }
        self.closing = match self.closing {
            None => Some(Closing::Graceful),
            Some(_) => Some(Closing::Abort),
        };
        self.since = now;
        true
    }

    /// Starts closing the connection unless it already is; an abort overrides a graceful close.
    fn close(&mut self, how: Closing, now: Instant) -> bool {
        match (self.closing, how) {
            (None, _) | (Some(Closing::Graceful), Closing::Abort) => {
                self.closing = Some(how);
                self.since = now;
                true
            }
            _ => false,
        }
    }

    /// Where this connection stands in the eviction order, lowest first, or `None` if it must
    /// not be evicted (requests in flight, or already closing). Connections that never spoke go
    /// first, then idle ones; within each group the one waiting longest.
    fn eviction_rank(&self) -> Option<(Phase, Instant)> {
        if self.closing.is_some() {
            return None;
        }
        match self.phase() {
            Phase::Active => None,
            phase => Some((phase, self.since)),
        }
    }
}

/// The connection to evict among `states`, by id, and how to close it. A connection that never
/// spoke is dropped: no request of its can be lost, a silent peer would not answer a goodbye
/// anyway, and the newcomer gets its slot at once. An idle one is closed gracefully, so that
/// its client learns (GOAWAY) that the connection is not to be reused.
fn victim<'a>(states: impl IntoIterator<Item = (u64, &'a State)>) -> Option<(u64, Closing)> {
    states
        .into_iter()
        // `false < true`: fresh connections sort before idle ones.
        .filter_map(|(id, state)| {
            state.eviction_rank().map(|(phase, since)| ((phase == Phase::Idle, since, id), phase))
        })
        .min_by_key(|(key, _)| *key)
        .map(|((_, _, id), phase)| (id, if phase == Phase::Fresh { Closing::Abort } else { Closing::Graceful }))
}

/// One registered connection.
#[derive(Debug)]
struct Entry {
    peer: SocketAddr,
    state: Arc<watch::Sender<State>>,
}

/// The live connections.
#[derive(Debug, Default)]
pub(super) struct Registry {
    entries: Mutex<Entries>,
    /// Signalled when a connection's last request ends (an eviction candidate appeared) or an
    /// evicted connection turned out to have a request in flight (another one must be chosen).
    /// `notify_one` keeps at most one wake-up for the accept loop, its only waiter.
    changed: Notify,
}

#[derive(Debug, Default)]
struct Entries {
    next_id: u64,
    by_id: HashMap<u64, Entry>,
}

impl Registry {
    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a fresh connection from `peer`; it leaves the table when the handle is dropped.
    pub(super) fn register(self: &Arc<Self>, peer: SocketAddr) -> Handle {
        let state = Arc::new(watch::Sender::new(State::new(Instant::now())));
        let mut entries = self.entries();
        let id = entries.next_id;
        entries.next_id += 1;
        entries.by_id.insert(id, Entry { peer, state: Arc::clone(&state) });
        Handle { id, state, registry: Arc::clone(self) }
    }

    /// How many connections are registered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries().by_id.len()
    }

    /// Makes room for a newcomer when every slot is taken. Returns `true` when a slot is about to
    /// be freed: a connection with nothing in flight is already closing (an earlier eviction or
    /// an expired deadline), or one was just chosen and told to close. Returns `false` when every
    /// connection has a request in flight: the newcomer must wait.
    pub(super) fn make_room(&self) -> bool {
        let entries = self.entries();
        let closing_soon = entries.by_id.values().any(|entry| {
            let state = entry.state.borrow();
            state.closing.is_some() && state.in_flight == 0
        });
        if closing_soon {
            return true;
        }
        loop {
            let chosen = {
                let states: Vec<(u64, State)> =
                    entries.by_id.iter().map(|(id, entry)| (*id, *entry.state.borrow())).collect();
                victim(states.iter().map(|(id, state)| (*id, state)))
            };
            let Some((id, how)) = chosen else {
                return false;
            };
            let entry = &entries.by_id[&id];
            // The state may have changed since it was read (a request arrived): evict only if
            // it is still a candidate, else choose again.
            let now = Instant::now();
            let evicted =
                entry.state.send_if_modified(|state| state.eviction_rank().is_some() && state.close(how, now));
            if evicted {
                tracing::debug!(peer = %entry.peer, ?how, "every connection slot is taken: closing the one idle longest");
                return true;
            }
        }
    }

    /// Waits until [`make_room`](Self::make_room) may find something new.
    pub(super) async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// A registered connection, held by its task.
#[derive(Debug)]
pub(super) struct Handle {
    id: u64,
    state: Arc<watch::Sender<State>>,
    registry: Arc<Registry>,
}

impl Handle {
    /// Counts this connection's requests in flight.
    pub(super) fn tracker(&self) -> Tracker {
        Tracker { state: Arc::clone(&self.state), registry: Arc::clone(&self.registry) }
    }

    /// The connection's state, to wait on.
    pub(super) fn subscribe(&self) -> watch::Receiver<State> {
        self.state.subscribe()
    }

    /// Starts the first-request deadline again, once the TLS handshake (which has its own
    /// timeout) is done.
    pub(super) fn handshake_done(&self) {
        let now = Instant::now();
        self.state.send_if_modified(|state| {
            let fresh = state.phase() == Phase::Fresh && state.closing.is_none();
            if fresh {
                state.since = now;
            }
            fresh
        });
    }

    /// Starts closing the connection (at shutdown).
    pub(super) fn close(&self, how: Closing) {
        let now = Instant::now();
        self.state.send_if_modified(|state| state.close(how, now));
    }

    /// Acts on a deadline that passed (see [`State::deadline`]); returns the phase it expired
    /// in, if it did.
    pub(super) fn expire(&self, now: Instant, deadlines: Deadlines) -> Option<(Phase, Option<Closing>)> {
        let mut expired = None;
        self.state.send_if_modified(|state| {
            let before = (state.phase(), state.closing);
            let changed = state.expire(now, deadlines);
            if changed {
                expired = Some(before);
            }
            changed
        });
        expired
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.registry.entries().by_id.remove(&self.id);
    }
}

/// Counts a connection's requests in flight; one per connection, cloned into its service.
#[derive(Debug, Clone)]
pub(super) struct Tracker {
    state: Arc<watch::Sender<State>>,
    registry: Arc<Registry>,
}

impl Tracker {
    /// A request reached the service; it is in flight until the guard is dropped.
    pub(super) fn begin(&self) -> InFlight {
        let mut raced_eviction = false;
        self.state.send_if_modified(|state| {
            state.in_flight += 1;
            state.spoken = true;
            raced_eviction = state.in_flight == 1 && state.closing.is_some();
            // The task only cares when the connection stops waiting: its deadline is disarmed.
            state.in_flight == 1
        });
        if raced_eviction {
            // This connection was told to close but a request got in first: its slot will not
            // be free soon, so a waiting newcomer must look for another one.
            self.registry.changed.notify_one();
        }
        InFlight { tracker: self.clone() }
    }
}

/// One request in flight; dropping it ends the request.
#[derive(Debug)]
pub(super) struct InFlight {
    tracker: Tracker,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = Instant::now();
        let idle = self.tracker.state.send_if_modified(|state| {
            state.in_flight -= 1;
            if state.in_flight == 0 {
                state.since = now;
            }
            state.in_flight == 0
        });
        if idle {
            // An eviction candidate appeared, or a closing connection is now about to go.
            self.tracker.registry.changed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINES: Deadlines = Deadlines { first_request: Duration::from_secs(10), idle: Duration::from_secs(120) };

    fn state(in_flight: usize, spoken: bool, since: Instant, closing: Option<Closing>) -> State {
        State { in_flight, spoken, since, closing }
    }

    #[test]
    fn eviction_takes_silent_connections_first_then_the_longest_idle_never_a_busy_one() {
        let t = Instant::now();
        let later = |secs| t + Duration::from_secs(secs);
        let fresh = |secs| state(0, false, later(secs), None);
        let idle = |secs| state(0, true, later(secs), None);
        let busy = |secs| state(1, true, later(secs), None);
        let closing = |secs| state(0, true, later(secs), Some(Closing::Graceful));
        let cases = [
            ("empty table", vec![], None),
            ("only busy connections", vec![busy(0), busy(1), state(3, true, t, None)], None),
            ("a silent one before an older idle one", vec![idle(0), fresh(5), busy(0)], Some((1, Closing::Abort))),
            ("the oldest silent one", vec![fresh(3), fresh(1), fresh(2)], Some((1, Closing::Abort))),
            ("the longest idle one, gracefully", vec![idle(3), busy(0), idle(1)], Some((2, Closing::Graceful))),
            ("ties go to the first registered", vec![idle(1), idle(1)], Some((0, Closing::Graceful))),
            ("never one already closing", vec![closing(0), busy(0)], None),
            ("a busy one that spoke long ago is still busy", vec![busy(0), idle(9)], Some((1, Closing::Graceful))),
        ];
        for (name, states, expected) in cases {
            let chosen = victim(states.iter().enumerate().map(|(id, state)| (id as u64, state)));
            assert_eq!(chosen, expected, "{name}");
        }
    }

    #[test]
    fn each_phase_has_its_deadline_and_expiry_escalates() {
        let t = Instant::now();
        let cases = [
            ("fresh", state(0, false, t, None), Some(t + DEADLINES.first_request)),
            ("idle", state(0, true, t, None), Some(t + DEADLINES.idle)),
            ("busy", state(2, true, t, None), None),
            ("busy while closing", state(1, true, t, Some(Closing::Graceful)), None),
            ("closing gracefully", state(0, true, t, Some(Closing::Graceful)), Some(t + CLOSE_GRACE)),
        ];
        for (name, state, expected) in cases {
            assert_eq!(state.deadline(DEADLINES), expected, "{name}");
        }

        let mut fresh = state(0, false, t, None);
        assert!(!fresh.expire(t + Duration::from_secs(9), DEADLINES), "not yet due");
        let due = t + DEADLINES.first_request;
        assert!(fresh.expire(due, DEADLINES));
        assert_eq!(fresh.closing(), Some(Closing::Graceful));
        assert_eq!(fresh.deadline(DEADLINES), Some(due + CLOSE_GRACE), "the goodbye is bounded");
        assert!(fresh.expire(due + CLOSE_GRACE, DEADLINES));
        assert_eq!(fresh.closing(), Some(Closing::Abort));
    }

    #[tokio::test]
    async fn make_room_closes_one_candidate_and_waits_for_it() {
        let registry = Arc::new(Registry::default());
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let (busy, idle) = (registry.register(peer), registry.register(peer));
        let request = busy.tracker().begin();
        drop(idle.tracker().begin());
        assert!(registry.make_room(), "the idle connection is closed");
        assert_eq!(idle.subscribe().borrow().closing(), Some(Closing::Graceful));
        assert_eq!(busy.subscribe().borrow().closing(), None);
        assert!(registry.make_room(), "its slot is about to be freed: nobody else is closed");
        assert_eq!(busy.subscribe().borrow().closing(), None);

        // The closing connection gets a request before it goes: its slot is not about to be
        // freed, and the only other connection is busy.
        let raced = idle.tracker().begin();
        assert!(!registry.make_room(), "every connection is busy");
        drop(request);
        assert!(registry.make_room(), "the connection whose request ended is closed");
        assert_eq!(busy.subscribe().borrow().closing(), Some(Closing::Graceful));
        drop(raced);
        drop((busy, idle));
        assert_eq!(registry.len(), 0, "handles leave the table");
    }
}
