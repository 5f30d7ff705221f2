//! Choosing a partition: murmur2 of the key exactly as the Java client computes it (so a
//! key lands where Java's and librdkafka's `murmur2_random` put it), and the sticky
//! partitioner for records without a key (KIP-480/KIP-794: fill a batch on one partition,
//! then move on).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Chooses the partition of a record that does not name one.
pub trait Partitioner: Send + Sync + std::fmt::Debug {
    /// The partition (0..`partitions`) for a record of `topic` with `key` and a value of
    /// `value_len` bytes.
    fn partition(&self, topic: &str, key: Option<&[u8]>, value_len: usize, partitions: i32) -> i32;
}

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), bit for bit.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Java's default partitioner gives a key.
pub fn murmur2_partition(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions.max(1)).max(0)
}

/// A small, fast generator for spreading sticky partitions (not for anything secret).
#[derive(Debug)]
struct Rng(AtomicU64);

impl Rng {
    fn seeded() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x2545_f491_4f6c_dd1d, |d| d.as_nanos() as u64)
            | 1;
        Self(AtomicU64::new(seed))
    }

    fn below(&self, n: i32) -> i32 {
        let mut x = self.0.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0.store(x, Ordering::Relaxed);
        (x % n.max(1) as u64) as i32
    }
}

/// The default: murmur2 for keyed records, sticky for the rest.
#[derive(Debug)]
pub struct DefaultPartitioner {
    batch_size: usize,
    sticky: Mutex<HashMap<String, (i32, usize)>>,
    rng: Rng,
    keyed: bool,
    unkeyed_round_robin: bool,
}

impl DefaultPartitioner {
    /// Sticky batches of about `batch_size` bytes for unkeyed records.
    pub fn new(batch_size: usize) -> Self {
        Self {
            batch_size: batch_size.max(1),
            sticky: Mutex::new(HashMap::new()),
            rng: Rng::seeded(),
            keyed: true,
            unkeyed_round_robin: false,
        }
    }

    /// Every record sticky, keys ignored (`partitioner=sticky`).
    pub fn sticky_only(batch_size: usize) -> Self {
        Self {
            keyed: false,
            ..Self::new(batch_size)
        }
    }

    /// Every record to the next partition in turn (`partitioner=round_robin`).
    pub fn round_robin() -> Self {
        Self {
            keyed: false,
            unkeyed_round_robin: true,
            ..Self::new(1)
        }
    }
}

impl Partitioner for DefaultPartitioner {
    fn partition(&self, topic: &str, key: Option<&[u8]>, value_len: usize, partitions: i32) -> i32 {
        if let (true, Some(key)) = (self.keyed, key) {
            return murmur2_partition(key, partitions);
        }
        let mut sticky = self
            .sticky
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((partition, bytes)) = sticky.get_mut(topic) {
            let full = *bytes >= self.batch_size || self.unkeyed_round_robin;
            if *partition < partitions && !full {
                *bytes += value_len + key.map_or(0, <[u8]>::len);
                return *partition;
            }
            let next = if self.unkeyed_round_robin {
                (*partition + 1) % partitions.max(1)
            } else if partitions > 1 {
                // Another partition than the last one.
                (*partition + 1 + self.rng.below(partitions - 1)) % partitions
            } else {
                0
            };
            *partition = next;
            *bytes = value_len;
            return next;
        }
        let first = self.rng.below(partitions);
        sticky.insert(topic.to_string(), (first, value_len));
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Kafka's UtilsTest.testMurmur2 vectors.
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (data, expected) in cases {
            assert_eq!(
                murmur2(data),
                *expected,
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn unkeyed_records_stick_to_one_partition_for_about_a_batch() {
        let p = DefaultPartitioner::new(1000);
        let first = p.partition("t", None, 100, 8);
        for _ in 0..9 {
            assert_eq!(p.partition("t", None, 100, 8), first);
        }
        assert_ne!(
            p.partition("t", None, 100, 8),
            first,
            "moved on after a batch"
        );
    }

    #[test]
    fn keyed_records_follow_murmur2_and_round_robin_cycles() {
        let p = DefaultPartitioner::new(1000);
        assert_eq!(
            p.partition("t", Some(b"foobar"), 1, 7),
            murmur2_partition(b"foobar", 7)
        );
        let rr = DefaultPartitioner::round_robin();
        let seen: Vec<i32> = (0..6)
            .map(|_| rr.partition("t", Some(b"k"), 1, 3))
            .collect();
        assert_eq!(
            seen[0..3]
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            3
        );
        assert_eq!(seen[0], seen[3]);
    }
}
