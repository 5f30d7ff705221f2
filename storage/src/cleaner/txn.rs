//! What a cleaning pass knows of transactions as it reads the log in offset order
//! (Kafka's `CleanedTransactionMetadata`): which data batches belong to an aborted
//! transaction (dropped, and never put in the key map, where they would hide a
//! committed value), and which markers no longer guard anything.
//!
//! - A transactional batch of producer P belongs to an aborted transaction when an
//!   entry of the aborted index for P spans its offset (from the transaction's first
//!   offset to its ABORT marker: a producer has one transaction open per partition at a
//!   time). That needs no marker read, so a pass may start anywhere (the key map's
//!   starts at the dirty section).
//! - An ABORT marker whose transaction still had batches in this pass stays, and so
//!   does its entry: a read_committed reader needs both until the batches are gone
//!   (they go in this pass; the next pass sees none). A marker with none left may go,
//!   and its entry with it.
//! - A COMMIT marker may go when none of its transaction's batches was read in this
//!   pass (all cleaned away before).
//!
//! A marker that may go first gets a delete horizon, as a tombstone does, and goes in a
//! pass after it (`record_batch::filter_marker`). Entries are dropped as soon as their
//! marker may go: a reader that finds the marker without an entry skips it, while an
//! entry whose marker is gone would hide the producer's later transactions.

use std::collections::{HashMap, HashSet, VecDeque};

use fjord_protocol::record_batch::BatchHeader;

use crate::log::AbortedTxn;

/// A transaction aborted in the log, as the pass meets it.
#[derive(Debug, Clone, Copy)]
struct OpenAbort {
    entry: AbortedTxn,
    /// Whether one of its batches was read in this pass.
    seen_batch: bool,
}

/// The pass's transaction state (see the module doc).
#[derive(Debug, Default)]
pub struct TxnTracker {
    /// Every entry the pass started with.
    all: Vec<AbortedTxn>,
    /// Entries not reached yet, by first offset.
    pending: VecDeque<AbortedTxn>,
    /// Aborted transactions reached whose marker is not read yet, by producer.
    aborted: HashMap<i64, OpenAbort>,
    /// Producers with a batch read since their last marker, not aborted.
    committed: HashSet<i64>,
    /// Entries whose markers stay, in marker order.
    kept: Vec<AbortedTxn>,
}

/// What the pass does with a batch, by its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnFate {
    /// Not decided by transactions: the key rules apply.
    Keys,
    /// A batch of an aborted transaction: every record goes.
    Aborted,
    /// A marker still guarding batches: it stays as it is.
    KeepMarker,
    /// A marker with nothing left to guard: a horizon, then gone.
    DiscardableMarker,
}

impl TxnTracker {
    /// A tracker over the aborted index's `entries` (any order).
    pub fn new(mut entries: Vec<AbortedTxn>) -> Self {
        entries.sort_by_key(|e| (e.first_offset, e.last_offset));
        Self {
            all: entries.clone(),
            pending: entries.into(),
            ..Self::default()
        }
    }

    /// The fate of the next batch in offset order; `abort` says whether a control
    /// batch is an ABORT marker (`None`: not a marker Fjord knows, or emptied).
    pub fn on_batch(&mut self, header: &BatchHeader, abort: Option<bool>) -> TxnFate {
        self.reach(header.last_offset());
        let producer = header.producer_id;
        if header.is_control() {
            return self.on_marker(producer, abort);
        }
        if !header.is_transactional() || producer < 0 {
            return TxnFate::Keys;
        }
        let offset = u64::try_from(header.base_offset).unwrap_or(0);
        match self.aborted.get_mut(&producer) {
            Some(open) if offset <= open.entry.last_offset => {
                open.seen_batch = true;
                return TxnFate::Aborted;
            }
            // Past a marker this pass did not read (it started later).
            Some(_) => {
                self.aborted.remove(&producer);
            }
            None => {}
        }
        self.committed.insert(producer);
        TxnFate::Keys
    }

    fn on_marker(&mut self, producer: i64, abort: Option<bool>) -> TxnFate {
        match abort {
            Some(true) => {
                self.committed.remove(&producer);
                match self.aborted.remove(&producer) {
                    Some(open) if open.seen_batch => {
                        self.kept.push(open.entry);
                        TxnFate::KeepMarker
                    }
                    _ => TxnFate::DiscardableMarker,
                }
            }
            Some(false) if self.committed.remove(&producer) => TxnFate::KeepMarker,
            Some(false) => TxnFate::DiscardableMarker,
            // An emptied marker (a header kept for its producer): nothing to guard.
            None => TxnFate::DiscardableMarker,
        }
    }

    /// Opens the aborted transactions that start at or before `offset`.
    fn reach(&mut self, offset: i64) {
        while let Some(next) = self.pending.front() {
            if i64::try_from(next.first_offset).unwrap_or(i64::MAX) > offset {
                break;
            }
            let entry = *next;
            self.pending.pop_front();
            self.aborted.insert(
                entry.producer_id,
                OpenAbort {
                    entry,
                    seen_batch: false,
                },
            );
        }
    }

    /// A cleaned group's aborted index once the pass has read `[from, to)`: the
    /// entries with markers there that stay, or `None` if the range had no entry.
    pub fn decided_between(&self, from: u64, to: u64) -> Option<Vec<AbortedTxn>> {
        let in_range = |e: &AbortedTxn| (from..to).contains(&e.last_offset);
        self.all
            .iter()
            .any(in_range)
            .then(|| self.kept_between(from, to))
    }

    /// The entries whose markers stay, with markers in `[from, to)`.
    fn kept_between(&self, from: u64, to: u64) -> Vec<AbortedTxn> {
        let in_range = |e: &&AbortedTxn| (from..to).contains(&e.last_offset);
        self.kept.iter().filter(in_range).copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(offset: i64, producer: i64, transactional: bool, control: bool) -> BatchHeader {
        let mut attributes = 0;
        if transactional {
            attributes |= 0x10;
        }
        if control {
            attributes |= 0x20;
        }
        BatchHeader {
            base_offset: offset,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes,
            last_offset_delta: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: producer,
            producer_epoch: 0,
            base_sequence: 0,
            records_count: 1,
        }
    }

    fn entry(producer: i64, first: u64, last: u64) -> AbortedTxn {
        AbortedTxn {
            producer_id: producer,
            first_offset: first,
            last_offset: last,
            last_stable_offset: last + 1,
        }
    }

    #[test]
    fn aborted_batches_go_and_their_marker_stays_until_a_pass_finds_none() {
        // P1 aborts [0, 3] while P2 commits [1, 4] and P3 writes plainly at 2.
        let entries = vec![entry(1, 0, 3)];
        let mut t = TxnTracker::new(entries.clone());
        assert_eq!(
            t.on_batch(&header(0, 1, true, false), None),
            TxnFate::Aborted
        );
        assert_eq!(t.on_batch(&header(1, 2, true, false), None), TxnFate::Keys);
        assert_eq!(t.on_batch(&header(2, 3, false, false), None), TxnFate::Keys);
        assert_eq!(
            t.on_batch(&header(3, 1, true, true), Some(true)),
            TxnFate::KeepMarker
        );
        assert_eq!(
            t.on_batch(&header(4, 2, true, true), Some(false)),
            TxnFate::KeepMarker
        );
        // After P1's marker its next transaction's batches are not aborted.
        assert_eq!(t.on_batch(&header(5, 1, true, false), None), TxnFate::Keys);
        assert_eq!(t.kept_between(0, 4), entries);
        assert_eq!(t.decided_between(0, 4), Some(entries.clone()));
        assert!(t.kept_between(4, 10).is_empty());
        assert_eq!(t.decided_between(4, 10), None, "no entry there to replace");

        // The next pass: the aborted and committed batches were cleaned away.
        let mut t = TxnTracker::new(entries);
        assert_eq!(t.on_batch(&header(2, 3, false, false), None), TxnFate::Keys);
        let abort = t.on_batch(&header(3, 1, true, true), Some(true));
        assert_eq!(abort, TxnFate::DiscardableMarker);
        let commit = t.on_batch(&header(4, 2, true, true), Some(false));
        assert_eq!(commit, TxnFate::DiscardableMarker);
        let index = t.decided_between(0, 10);
        assert_eq!(index, Some(Vec::new()), "the entry goes with its marker");
    }

    #[test]
    fn an_abort_without_an_entry_and_an_emptied_marker_guard_nothing() {
        let mut t = TxnTracker::new(Vec::new());
        // No entry (lost): the batch is not known aborted, so it stays.
        assert_eq!(t.on_batch(&header(0, 1, true, false), None), TxnFate::Keys);
        let abort = t.on_batch(&header(1, 1, true, true), Some(true));
        assert_eq!(abort, TxnFate::DiscardableMarker);
        assert_eq!(
            t.on_batch(&header(2, 1, true, true), None),
            TxnFate::DiscardableMarker
        );
        // An idempotent (non-transactional) producer's batches are never aborted.
        let mut t = TxnTracker::new(vec![entry(4, 0, 9)]);
        assert_eq!(t.on_batch(&header(0, 4, false, false), None), TxnFate::Keys);
    }

    #[test]
    fn a_pass_starting_after_a_marker_does_not_take_later_batches_for_aborted() {
        // P1 aborted [0, 3]; the pass starts at 5 (its marker unread), P1 writes again.
        let mut t = TxnTracker::new(vec![entry(1, 0, 3), entry(1, 8, 9)]);
        assert_eq!(t.on_batch(&header(5, 1, true, false), None), TxnFate::Keys);
        assert_eq!(
            t.on_batch(&header(6, 1, true, true), Some(false)),
            TxnFate::KeepMarker
        );
        assert_eq!(
            t.on_batch(&header(8, 1, true, false), None),
            TxnFate::Aborted
        );
    }
}
