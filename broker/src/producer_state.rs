//! Idempotent producers: per partition, each producer's epoch and its last five batches'
//! sequence ranges with the offsets they got (Kafka keeps five, matching
//! `max.in.flight.requests.per.connection` 5).
//!
//! A batch equal to a remembered one is a duplicate: it is answered with its original
//! offset and not appended again. A gap is OUT_OF_ORDER_SEQUENCE_NUMBER; an older epoch
//! is INVALID_PRODUCER_EPOCH. After a restart the state is rebuilt from the batch headers
//! of the active segment (producer id, epoch, base sequence and count are all there). A
//! producer with no state left (idle longer than a segment) is accepted at any sequence,
//! as Kafka does after KIP-360.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use fjord_protocol::record_batch::BatchHeader;

/// Batches remembered per producer.
const REMEMBERED: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Appended {
    first_seq: i32,
    last_seq: i32,
    first_offset: u64,
}

#[derive(Debug)]
struct Producer {
    epoch: i16,
    recent: VecDeque<Appended>,
    last_seen: Instant,
    /// Max timestamp of its last batch (what DescribeProducers reports).
    last_timestamp: i64,
    /// The first offset of its transaction under way here, if one is.
    txn_start: Option<u64>,
}

impl Default for Producer {
    fn default() -> Self {
        Self {
            epoch: 0,
            recent: VecDeque::new(),
            last_seen: Instant::now(),
            last_timestamp: -1,
            txn_start: None,
        }
    }
}

/// One producer with state in a partition, as DescribeProducers (API 61) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    /// Its producer id.
    pub producer_id: i64,
    /// Its current epoch.
    pub epoch: i16,
    /// The sequence of its last record appended here (-1 if none is remembered).
    pub last_sequence: i32,
    /// The max timestamp of its last batch here.
    pub last_timestamp: i64,
    /// The first offset of its open transaction here (-1: none).
    pub txn_start_offset: i64,
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Not idempotent, or the next in sequence: append it.
    Append,
    /// Seen before: answer with this offset, append nothing.
    Duplicate {
        /// Offset the original got.
        first_offset: u64,
    },
    /// Sequence gap.
    OutOfOrder,
    /// Epoch older than the producer's current one.
    StaleEpoch,
}

/// Producer state of one partition.
#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<i64, Producer>,
    /// Transactions open here, as (first offset, producer id): the lowest first offset
    /// is the last stable offset.
    open_txns: BTreeSet<(u64, i64)>,
}

/// Sequence of the last record of a batch (sequences wrap at `i32::MAX`).
fn last_seq(header: &BatchHeader) -> i32 {
    let last = i64::from(header.base_sequence) + i64::from(header.last_offset_delta);
    (last % (i64::from(i32::MAX) + 1)) as i32
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerStates {
    /// Decides about a batch before it is appended.
    pub fn check(&self, header: &BatchHeader) -> Check {
        if header.producer_id < 0 {
            return Check::Append;
        }
        let Some(p) = self.producers.get(&header.producer_id) else {
            return Check::Append;
        };
        if header.producer_epoch < p.epoch {
            return Check::StaleEpoch;
        }
        if header.producer_epoch > p.epoch {
            // A new epoch starts its sequences over.
            return if header.base_sequence == 0 {
                Check::Append
            } else {
                Check::OutOfOrder
            };
        }
        let (first, last) = (header.base_sequence, last_seq(header));
        if let Some(dup) = p
            .recent
            .iter()
            .find(|a| a.first_seq == first && a.last_seq == last)
        {
            return Check::Duplicate {
                first_offset: dup.first_offset,
            };
        }
        match p.recent.back() {
            Some(prev) if first != next_seq(prev.last_seq) => Check::OutOfOrder,
            _ => Check::Append,
        }
    }

    /// Records a batch that was appended (or found in the log at startup) at `first_offset`.
    /// A transaction marker ends the producer's transaction here and may carry a newer
    /// epoch (the coordinator fenced the producer); it has no sequence.
    pub fn record(&mut self, header: &BatchHeader, first_offset: u64) {
        if header.producer_id < 0 {
            return;
        }
        let p = self.producers.entry(header.producer_id).or_default();
        if header.is_control() {
            if header.producer_epoch > p.epoch {
                p.epoch = header.producer_epoch;
                p.recent.clear();
            }
            if let Some(start) = p.txn_start.take() {
                self.open_txns.remove(&(start, header.producer_id));
            }
            p.last_seen = Instant::now();
            return;
        }
        if header.is_transactional() && p.txn_start.is_none() {
            p.txn_start = Some(first_offset);
            self.open_txns.insert((first_offset, header.producer_id));
        }
        if header.producer_epoch != p.epoch {
            p.epoch = header.producer_epoch;
            p.recent.clear();
        }
        p.last_seen = Instant::now();
        p.last_timestamp = header.max_timestamp;
        if p.recent.len() == REMEMBERED {
            p.recent.pop_front();
        }
        p.recent.push_back(Appended {
            first_seq: header.base_sequence,
            last_seq: last_seq(header),
            first_offset,
        });
    }
}

impl ProducerStates {
    /// The last stable offset: the first offset of the oldest transaction open here, or
    /// `log_end` when none is (what read_committed consumers may read up to), never
    /// below `log_start` (as Kafka's: records deleted past an open transaction's start
    /// by retention or DeleteRecords take the transaction's start with them, and the
    /// transaction stays open).
    pub fn last_stable_offset(&self, log_start: u64, log_end: u64) -> u64 {
        self.stable_offset_without(None, log_start, log_end)
    }

    /// The last stable offset once `producer_id`'s open transaction has ended with a
    /// marker that makes the log end `log_end` (what the aborted index records with the
    /// marker, written before it).
    pub fn last_stable_offset_after(&self, producer_id: i64, log_start: u64, log_end: u64) -> u64 {
        self.stable_offset_without(Some(producer_id), log_start, log_end)
    }

    /// The last stable offset, not counting `ended`'s open transaction.
    fn stable_offset_without(&self, ended: Option<i64>, log_start: u64, log_end: u64) -> u64 {
        self.open_txns
            .iter()
            .find(|(_, p)| Some(*p) != ended)
            .map_or(log_end, |(first, _)| (*first).max(log_start).min(log_end))
    }

    /// `producer_id`'s current epoch here, if it has state here.
    pub fn epoch(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|p| p.epoch)
    }

    /// The first offset of `producer_id`'s transaction open here, if one is.
    pub fn txn_start(&self, producer_id: i64) -> Option<u64> {
        self.producers.get(&producer_id)?.txn_start
    }

    /// Transactions open here.
    pub fn open_transactions(&self) -> usize {
        self.open_txns.len()
    }

    /// Sets where `producer_id`'s open transaction began when it is older than what the
    /// startup scan of the active segment saw (the transaction began in an earlier
    /// segment; the coordinator says it is still open).
    pub fn restore_txn_start(&mut self, producer_id: i64, first_offset: u64) {
        let p = self.producers.entry(producer_id).or_default();
        if let Some(old) = p.txn_start.replace(first_offset) {
            self.open_txns.remove(&(old, producer_id));
        }
        self.open_txns.insert((first_offset, producer_id));
    }

    /// The producers with state here, by producer id.
    pub fn active(&self) -> Vec<ActiveProducer> {
        let mut out: Vec<ActiveProducer> = self
            .producers
            .iter()
            .map(|(&producer_id, p)| ActiveProducer {
                producer_id,
                epoch: p.epoch,
                last_sequence: p.recent.back().map_or(-1, |a| a.last_seq),
                last_timestamp: p.last_timestamp,
                txn_start_offset: p.txn_start.map_or(-1, |o| o as i64),
            })
            .collect();
        out.sort_by_key(|a| a.producer_id);
        out
    }

    /// Forgets producers not seen for `idle` (Kafka's `producer.id.expiration.ms`), so
    /// the map does not grow with every producer id ever used. Returns how many went.
    pub fn expire(&mut self, idle: Duration) -> usize {
        let before = self.producers.len();
        // A producer with a transaction open here stays: its marker is still to come.
        self.producers
            .retain(|_, p| p.txn_start.is_some() || p.last_seen.elapsed() < idle);
        before - self.producers.len()
    }
}

#[cfg(test)]
mod txn_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_protocol::compression::Compression;
    use fjord_protocol::record_batch::{BatchBuilder, RecordSpec};

    fn header(pid: i64, epoch: i16, seq: i32, records: usize) -> BatchHeader {
        let mut b = BatchBuilder::new(Compression::None, 0).with_producer(pid, epoch, seq);
        for _ in 0..records {
            b.push(RecordSpec::value("v"));
        }
        BatchHeader::parse(&b.build().expect("batch")).expect("header")
    }

    #[test]
    fn in_sequence_duplicate_gap_and_stale_epoch() {
        let mut s = ProducerStates::default();
        let a = header(7, 0, 0, 3);
        assert_eq!(s.check(&a), Check::Append);
        s.record(&a, 100);
        assert_eq!(s.check(&a), Check::Duplicate { first_offset: 100 });
        let b = header(7, 0, 3, 2);
        assert_eq!(s.check(&b), Check::Append);
        s.record(&b, 103);
        assert_eq!(
            s.check(&a),
            Check::Duplicate { first_offset: 100 },
            "older duplicates too"
        );
        assert_eq!(s.check(&header(7, 0, 9, 1)), Check::OutOfOrder);
        assert_eq!(s.check(&header(7, 0, 5, 1)), Check::Append);
        assert_eq!(
            s.check(&header(7, 1, 3, 1)),
            Check::OutOfOrder,
            "new epoch must start at 0"
        );
        s.record(&header(7, 1, 0, 1), 105);
        assert_eq!(s.check(&header(7, 0, 6, 1)), Check::StaleEpoch);
        assert_eq!(
            s.check(&header(8, 0, 42, 1)),
            Check::Append,
            "unknown producer"
        );
        assert_eq!(
            s.check(&header(-1, -1, -1, 1)),
            Check::Append,
            "not idempotent"
        );
    }

    #[test]
    fn idle_producers_expire() {
        let mut s = ProducerStates::default();
        s.record(&header(3, 0, 0, 1), 0);
        assert_eq!(s.expire(Duration::from_secs(60)), 0);
        assert_eq!(s.expire(Duration::ZERO), 1);
        assert_eq!(
            s.check(&header(3, 0, 0, 1)),
            Check::Append,
            "forgotten: accepted as new"
        );
    }

    #[test]
    fn only_five_batches_are_remembered_and_sequences_wrap() {
        let mut s = ProducerStates::default();
        for i in 0..6 {
            s.record(&header(1, 0, i, 1), i as u64);
        }
        assert_eq!(
            s.check(&header(1, 0, 0, 1)),
            Check::OutOfOrder,
            "forgotten batch is a gap"
        );
        assert_eq!(
            s.check(&header(1, 0, 1, 1)),
            Check::Duplicate { first_offset: 1 }
        );
        let mut w = ProducerStates::default();
        w.record(&header(2, 0, i32::MAX - 1, 2), 0);
        assert_eq!(w.check(&header(2, 0, 0, 1)), Check::Append);
    }

    #[test]
    fn active_producers_report_epoch_last_sequence_and_timestamp() {
        let mut states = ProducerStates::default();
        assert!(states.active().is_empty());
        states.record(&header(9, 1, 0, 3), 0);
        states.record(&header(9, 1, 3, 2), 3);
        states.record(&header(4, 0, 0, 1), 5);
        states.record(&header(-1, -1, -1, 1), 6); // not idempotent: no state
        let active = states.active();
        assert_eq!(active.len(), 2);
        assert_eq!(
            (
                active[0].producer_id,
                active[0].epoch,
                active[0].last_sequence
            ),
            (4, 0, 0)
        );
        assert_eq!(
            (
                active[1].producer_id,
                active[1].epoch,
                active[1].last_sequence
            ),
            (9, 1, 4)
        );
        assert_eq!(active[1].last_timestamp, header(9, 1, 3, 2).max_timestamp);
    }
}
