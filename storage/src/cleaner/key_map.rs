//! The cleaner's key map: for each key in the dirty section, the offset of its latest
//! record, within a memory budget (`log.cleaner.dedupe.buffer.size`). As Kafka's
//! `SkimpyOffsetMap`, keys are kept as 128-bit hashes (two independent 64-bit SipHash
//! keys, fresh for each map), accounted at 24 bytes an entry and filled to 90%; a pass
//! whose dirty section holds more distinct keys cleans the prefix that fits.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

/// Bytes Kafka accounts per entry: a 16-byte hash and an 8-byte offset.
pub const BYTES_PER_ENTRY: usize = 24;

/// The share of the budget filled before the map counts as full (Kafka's 0.9).
const LOAD_FACTOR: f64 = 0.9;

/// Key hash to latest offset, bounded.
#[derive(Debug)]
pub struct KeyMap {
    hashers: (RandomState, RandomState),
    latest: HashMap<(u64, u64), i64>,
    capacity: usize,
    /// The highest offset put in the map.
    last_offset: i64,
    /// Where the section the map was built over ends (exclusive): a record at or past
    /// it may have a later record of its key the map never saw.
    end: i64,
}

impl KeyMap {
    /// A map within `budget_bytes` (at least one entry).
    pub fn with_budget(budget_bytes: usize) -> Self {
        let slots = budget_bytes / BYTES_PER_ENTRY;
        let capacity = ((slots as f64 * LOAD_FACTOR) as usize).max(1);
        Self {
            hashers: (RandomState::new(), RandomState::new()),
            latest: HashMap::new(),
            capacity,
            last_offset: -1,
            end: i64::MAX,
        }
    }

    fn hash(&self, key: &[u8]) -> (u64, u64) {
        (self.hashers.0.hash_one(key), self.hashers.1.hash_one(key))
    }

    /// Whether a key not in the map yet would not fit.
    pub fn is_full(&self) -> bool {
        self.latest.len() >= self.capacity
    }

    /// Notes that `key`'s latest record so far is at `offset` (offsets come in order).
    /// `false` if the key is new and the map is full: nothing changed.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        let h = self.hash(key);
        if self.is_full() && !self.latest.contains_key(&h) {
            return false;
        }
        self.latest.insert(h, offset);
        self.last_offset = self.last_offset.max(offset);
        true
    }

    /// The offset of `key`'s latest record, if the map has it.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        self.latest.get(&self.hash(key)).copied()
    }

    /// The highest offset put in the map (-1 for none).
    pub fn last_offset(&self) -> i64 {
        self.last_offset
    }

    /// Notes that the map covers the dirty section up to `end` (exclusive), where its
    /// building stopped (the budget, the compaction lag, the last stable offset).
    pub fn set_end(&mut self, end: i64) {
        self.end = end;
    }

    /// Whether a record at `offset` was within the map's reach, so the key rules may
    /// judge it; one past it stays as it is (Kafka's `pastLatestOffset`): a tombstone
    /// there must outlive the older values it will shadow once a pass maps it.
    pub fn covers(&self, offset: i64) -> bool {
        offset < self.end
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.latest.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// How many keys it can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_offset_wins_and_the_budget_bounds_new_keys() {
        let mut m = KeyMap::with_budget(BYTES_PER_ENTRY * 10);
        assert_eq!(m.capacity(), 9);
        assert!(m.put(b"a", 1));
        assert!(m.put(b"b", 2));
        assert!(m.put(b"a", 3));
        assert_eq!(m.get(b"a"), Some(3));
        assert_eq!(m.get(b"b"), Some(2));
        assert_eq!(m.get(b"c"), None);
        for i in 0..7u8 {
            assert!(m.put(&[b'k', i], 10 + i64::from(i)));
        }
        assert!(m.is_full());
        assert!(!m.put(b"new", 100), "a new key does not fit");
        assert!(m.put(b"a", 101), "a known key still updates");
        assert_eq!(m.get(b"a"), Some(101));
        assert_eq!(m.last_offset(), 101);
        assert_eq!(m.len(), 9);
    }

    #[test]
    fn a_tiny_budget_still_holds_one_key() {
        let mut m = KeyMap::with_budget(0);
        assert!(m.put(b"x", 5));
        assert!(!m.put(b"y", 6));
    }
}
