//! The session map of an http backend: berth's session ids, handed to clients, and the
//! upstream's, which never leave berth.
//!
//! Behind the small [`SessionStore`] interface so that a later store can persist the map (a
//! restarted berth would then keep its clients' sessions with the upstream).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use http::HeaderValue;

/// One mapped session.
#[derive(Debug, Clone)]
pub(crate) struct MappedSession {
    /// The upstream's `Mcp-Session-Id`.
    pub(crate) upstream: HeaderValue,
    /// The identity that initialized it, the only one that may use it.
    pub(crate) owner: Option<Arc<str>>,
}

/// Where an http backend keeps its session map.
pub(crate) trait SessionStore: Send + Sync + std::fmt::Debug {
    /// Records that berth's session `id` is the upstream's `session.upstream`.
    fn insert(&self, id: String, session: MappedSession);
    /// The session `id`, when there is one.
    fn get(&self, id: &str) -> Option<MappedSession>;
    /// Forgets session `id`.
    fn remove(&self, id: &str);
    /// The sessions mapped.
    fn len(&self) -> usize;
}

/// The in-memory store: a map bounded at `capacity`, which forgets the session used least
/// recently when full (its client gets `404` and initializes again, as after an expiry).
#[derive(Debug)]
pub(crate) struct MemorySessions {
    capacity: usize,
    map: Mutex<HashMap<String, (MappedSession, Instant)>>,
}

impl MemorySessions {
    /// An empty store of at most `capacity` sessions.
    pub(crate) fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), map: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (MappedSession, Instant)>> {
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl SessionStore for MemorySessions {
    fn insert(&self, id: String, session: MappedSession) {
        let mut map = self.lock();
        if map.len() >= self.capacity && !map.contains_key(&id) {
            // A linear scan, only when full: rare, and cheaper than keeping an order.
            let oldest = map.iter().min_by_key(|(_, (_, used))| *used).map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                map.remove(&oldest);
            }
        }
        map.insert(id, (session, Instant::now()));
    }

    fn get(&self, id: &str) -> Option<MappedSession> {
        let mut map = self.lock();
        let (session, used) = map.get_mut(id)?;
        *used = Instant::now();
        Some(session.clone())
    }

    fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(upstream: &'static str) -> MappedSession {
        MappedSession { upstream: HeaderValue::from_static(upstream), owner: Some("alice".into()) }
    }

    #[test]
    fn maps_and_forgets() {
        let store = MemorySessions::new(8);
        store.insert("a".into(), session("up-a"));
        assert_eq!(store.get("a").unwrap().upstream, "up-a");
        assert!(store.get("b").is_none());
        store.remove("a");
        assert!(store.get("a").is_none());
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn a_full_store_forgets_the_session_used_least_recently() {
        let store = MemorySessions::new(2);
        store.insert("a".into(), session("up-a"));
        std::thread::sleep(std::time::Duration::from_millis(2));
        store.insert("b".into(), session("up-b"));
        std::thread::sleep(std::time::Duration::from_millis(2));
        // Using `a` makes `b` the least recently used.
        store.get("a");
        store.insert("c".into(), session("up-c"));
        assert_eq!(store.len(), 2);
        assert!(store.get("a").is_some() && store.get("c").is_some() && store.get("b").is_none());
    }
}
