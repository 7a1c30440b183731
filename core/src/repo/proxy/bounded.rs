//! A map with a size bound and a time-to-live, for the proxy's caches of remote answers.
//!
//! Their keys come from clients (image names, digests, tags), so an unbounded map is a memory
//! leak anyone can drive (audit). Each entry expires after the map's TTL; when the map is full,
//! expired entries are dropped first and then the oldest ones.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A bounded, expiring map behind a lock (held only for map operations, never across I/O).
pub struct BoundedMap<K, V> {
    ttl: Duration,
    max: usize,
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Hash + Eq + Clone, V: Clone> BoundedMap<K, V> {
    pub fn new(max: usize, ttl: Duration) -> Self {
        BoundedMap {
            ttl,
            max: max.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, Instant)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value, if present and younger than the TTL.
    pub fn get(&self, key: &K) -> Option<V> {
        self.get_younger(key, self.ttl)
    }

    /// The value, if present and younger than `age` (at most the TTL).
    pub fn get_younger(&self, key: &K, age: Duration) -> Option<V> {
        let mut m = self.lock();
        match m.get(key) {
            Some((v, at)) if at.elapsed() < age.min(self.ttl) => Some(v.clone()),
            Some((_, at)) if at.elapsed() >= self.ttl => {
                m.remove(key);
                None
            }
            _ => None,
        }
    }

    pub fn insert(&self, key: K, value: V) {
        let mut m = self.lock();
        if m.len() >= self.max && !m.contains_key(&key) {
            let ttl = self.ttl;
            m.retain(|_, (_, at)| at.elapsed() < ttl);
            // Still full of live entries: drop the oldest tenth in one go, so a steady stream
            // of new keys does not pay for a scan on every insert.
            if m.len() >= self.max {
                let mut ages: Vec<(K, Instant)> =
                    m.iter().map(|(k, (_, at))| (k.clone(), *at)).collect();
                ages.sort_by_key(|(_, at)| *at);
                for (k, _) in ages.into_iter().take((self.max / 10).max(1)) {
                    m.remove(&k);
                }
            }
        }
        m.insert(key, (value, Instant::now()));
    }

    pub fn remove(&self, key: &K) {
        self.lock().remove(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_in_size_and_time() {
        let m = BoundedMap::new(10, Duration::from_millis(50));
        for i in 0..1000 {
            m.insert(i, i);
            assert!(m.len() <= 10);
        }
        assert_eq!(m.get(&999), Some(999));
        assert_eq!(m.get(&0), None, "the oldest went first");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(m.get(&999), None, "expired");
        m.insert(1, 1);
        assert_eq!(m.get_younger(&1, Duration::from_secs(10)), Some(1));
        assert_eq!(m.get_younger(&1, Duration::ZERO), None);
    }
}
