//! A map of bounded size that forgets its oldest entry first: the verified-credential cache and
//! the throttle's remembered logins, which an attacker must not be able to grow without end.

use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
};

/// At most `capacity` entries; inserting into a full map evicts the oldest.
#[derive(Debug)]
pub(crate) struct Bounded<K, V> {
    capacity: usize,
    entries: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K: Hash + Eq + Clone, V: Clone> Bounded<K, V> {
    /// An empty map holding at most `capacity` entries (none at all for 0).
    pub(crate) fn new(capacity: usize) -> Self {
        Self { capacity, entries: HashMap::new(), order: VecDeque::new() }
    }

    /// The value of `key`, if it is held.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.entries.get(key).cloned()
    }

    /// Holds `key`; a key already held keeps its place and its value.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        if self.capacity == 0 || self.entries.contains_key(&key) {
            return;
        }
        if self.entries.len() >= self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.entries.remove(&oldest);
        }
        self.entries.insert(key.clone(), value);
        self.order.push_back(key);
    }

    /// Forgets `key` (linear in the size: it is rare, a remembered login that failed).
    pub(crate) fn remove(&mut self, key: &K) {
        if self.entries.remove(key).is_some() {
            self.order.retain(|k| k != key);
        }
    }

    /// How many entries it holds at most.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many entries are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_entry_goes_first_and_the_size_stays_bounded() {
        let mut map = Bounded::new(3);
        for key in 0..10 {
            map.insert(key, key * 10);
        }
        assert_eq!(map.len(), 3);
        assert_eq!(map.get(&6), None);
        assert_eq!(map.get(&9), Some(90));
        map.insert(9, 0);
        assert_eq!(map.get(&9), Some(90), "a held key keeps its value");
        map.remove(&9);
        assert_eq!(map.get(&9), None);
        map.insert(10, 100);
        map.insert(11, 110);
        assert_eq!(map.len(), 3);
        assert_eq!(map.order.len(), 3, "the order forgets what the map forgets");
        assert_eq!(map.get(&7), None, "7 was the oldest left");
        assert_eq!(Bounded::<u8, u8>::new(0).get(&1), None);
    }
}
