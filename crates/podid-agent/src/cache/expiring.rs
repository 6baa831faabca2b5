//! A bounded map whose entries expire: each value is kept until its own
//! time, and when full the oldest inserted goes first. Pure: no clock, no lock.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::time::SystemTime;

struct Slot<V> {
    value: V,
    until: SystemTime,
    /// Which insertion of its key this is (older queue items are stale).
    generation: u64,
}

/// At most `capacity` keys, each until its time.
pub(crate) struct ExpiringMap<K, V, S> {
    slots: HashMap<K, Slot<V>, S>,
    /// Keys in insertion order, with the generation inserted.
    order: VecDeque<(K, u64)>,
    next_generation: u64,
    capacity: usize,
}

impl<K: Hash + Eq + Copy, V, S: BuildHasher + Default> ExpiringMap<K, V, S> {
    /// An empty map of at most `capacity` keys (0: it keeps nothing).
    pub(crate) fn new(capacity: usize) -> Self {
        ExpiringMap {
            slots: HashMap::default(),
            order: VecDeque::new(),
            next_generation: 0,
            capacity,
        }
    }

    /// Keys held (some may have expired and not been dropped yet).
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The value of `key` if it has not expired at `now`; an expired one is dropped.
    pub(crate) fn get(&mut self, key: &K, now: SystemTime) -> Option<&V> {
        if self.slots.get(key).is_some_and(|s| now >= s.until) {
            self.slots.remove(key);
            return None;
        }
        self.slots.get(key).map(|s| &s.value)
    }

    /// Keeps `value` under `key` until `until` (replacing what was there),
    /// dropping expired keys from the old end and, when full, the oldest
    /// inserted. Returns how many unexpired keys made room.
    pub(crate) fn insert(&mut self, key: K, value: V, until: SystemTime, now: SystemTime) -> usize {
        if self.capacity == 0 || until <= now {
            return 0;
        }
        self.drop_expired_front(now);
        let mut evicted = 0;
        if !self.slots.contains_key(&key) {
            while self.slots.len() >= self.capacity {
                let Some((old, generation)) = self.order.pop_front() else {
                    break;
                };
                if self.is_current(&old, generation)
                    && self.slots.remove(&old).is_some_and(|s| now < s.until)
                {
                    evicted += 1;
                }
            }
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        self.slots.insert(
            key,
            Slot {
                value,
                until,
                generation,
            },
        );
        self.order.push_back((key, generation));
        // Replaced keys leave stale queue items: keep the queue bounded too.
        if self.order.len() > 2 * self.capacity {
            let slots = &self.slots;
            self.order
                .retain(|(k, g)| slots.get(k).is_some_and(|s| s.generation == *g));
        }
        evicted
    }

    fn is_current(&self, key: &K, generation: u64) -> bool {
        self.slots
            .get(key)
            .is_some_and(|s| s.generation == generation)
    }

    /// Pops stale and expired items from the old end, up to the first live one.
    fn drop_expired_front(&mut self, now: SystemTime) {
        while let Some((key, generation)) = self.order.front().copied() {
            match self.slots.get(&key) {
                Some(slot) if slot.generation == generation => {
                    if now < slot.until {
                        return;
                    }
                    self.slots.remove(&key);
                }
                _ => {}
            }
            self.order.pop_front();
        }
    }

    /// Forgets every key.
    pub(crate) fn clear(&mut self) {
        self.slots.clear();
        self.order.clear();
    }

    /// Items in the insertion queue (live and stale).
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::RandomState;
    use std::time::Duration;

    use super::*;

    type Map = ExpiringMap<u32, &'static str, RandomState>;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    #[test]
    fn a_value_lives_until_its_time() {
        let mut m = Map::new(4);
        assert_eq!(m.insert(1, "a", t(30), t(0)), 0);
        assert_eq!(m.get(&1, t(0)), Some(&"a"));
        assert_eq!(m.get(&1, t(29)), Some(&"a"));
        assert_eq!(m.get(&1, t(30)), None, "gone at its time");
        assert_eq!(m.len(), 0, "and dropped");
        assert_eq!(m.get(&2, t(0)), None);
    }

    #[test]
    fn nothing_is_kept_past_its_time_or_without_capacity() {
        let mut m = Map::new(4);
        m.insert(1, "a", t(0), t(0));
        assert_eq!(m.len(), 0);
        let mut none = Map::new(0);
        none.insert(1, "a", t(30), t(0));
        assert_eq!(none.get(&1, t(0)), None);
    }

    #[test]
    fn when_full_the_oldest_inserted_goes_first() {
        let mut m = Map::new(3);
        for k in 1..=3 {
            assert_eq!(m.insert(k, "v", t(30), t(0)), 0);
        }
        assert_eq!(m.insert(4, "v", t(30), t(1)), 1);
        assert_eq!(m.get(&1, t(1)), None);
        assert!([2, 3, 4].iter().all(|k| m.get(k, t(1)).is_some()));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn expired_keys_make_room_before_live_ones() {
        let mut m = Map::new(3);
        m.insert(1, "v", t(10), t(0));
        m.insert(2, "v", t(30), t(0));
        m.insert(3, "v", t(30), t(0));
        assert_eq!(
            m.insert(4, "v", t(40), t(10)),
            0,
            "1 expired: no live key evicted"
        );
        assert!([2, 3, 4].iter().all(|k| m.get(k, t(10)).is_some()));
    }

    #[test]
    fn a_replaced_key_takes_its_new_place_and_time() {
        let mut m = Map::new(2);
        m.insert(1, "old", t(10), t(0));
        m.insert(2, "v", t(30), t(0));
        assert_eq!(
            m.insert(1, "new", t(40), t(5)),
            0,
            "a key already held needs no room"
        );
        assert_eq!(m.get(&1, t(20)), Some(&"new"));
        // 1 was re-inserted after 2: 2 is now the oldest.
        assert_eq!(m.insert(3, "v", t(40), t(20)), 1);
        assert_eq!(m.get(&2, t(20)), None);
        assert_eq!(m.get(&1, t(20)), Some(&"new"));
    }

    #[test]
    fn the_queue_stays_bounded_under_repeated_replacement() {
        let mut m = Map::new(2);
        for i in 0..1_000u64 {
            m.insert(7, "v", t(i + 30), t(i));
        }
        assert_eq!(m.len(), 1);
        assert!(m.queued() <= 2 * 2 + 1, "{}", m.queued());
    }
}
