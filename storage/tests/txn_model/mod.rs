//! A model of a log holding transactions, shared by the compaction tests: what was
//! written and the fate of every transaction; the writes that keep it; a read_committed
//! reader as Kafka's consumer filters; and what must hold of a log compacted at its
//! last stable offset.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashSet};

use crate::common::*;
use fjord_protocol::compression::Compression;
use fjord_protocol::record_batch::{
    end_txn_batch, read_end_txn_marker, BatchBuilder, BatchHeader, EndTxnMarker, RecordIter,
    RecordSpec, BATCH_HEADER_LEN,
};
use fjord_storage::{AbortedTxn, Log, LogConfig};
use proptest::prelude::*;

/// The clock's start.
pub const START: i64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Open,
    Committed,
    Aborted,
}

/// A record as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    key: u8,
    value: Option<Vec<u8>>,
    /// Its transaction, by index into `Model::txns`.
    txn: Option<usize>,
}

/// What was written, and the fate of every transaction.
#[derive(Debug, Default)]
pub struct Model {
    records: BTreeMap<u64, Written>,
    txns: Vec<Status>,
    /// Per producer: its open transaction and that transaction's first offset.
    open: BTreeMap<i64, (usize, u64)>,
    /// Per producer: the next sequence.
    sequences: BTreeMap<i64, i32>,
    /// Marker offsets, with their transactions.
    markers: BTreeMap<u64, usize>,
    /// Each transaction's producer and first offset.
    txn_starts: BTreeMap<usize, (i64, u64)>,
    /// Per producer: where its last data batch begins.
    last_data: BTreeMap<i64, u64>,
    /// The clock the writes and passes use.
    pub now: i64,
}

impl Model {
    /// Nothing written yet, the clock at [`START`].
    pub fn new() -> Self {
        Self {
            now: START,
            ..Self::default()
        }
    }

    /// Whether a reader may see `w`: written plainly, or in a committed transaction.
    pub fn valid(&self, w: &Written) -> bool {
        w.txn.is_none_or(|t| self.txns[t] == Status::Committed)
    }

    /// The last stable offset as the broker computes it.
    pub fn last_stable(&self, log: &Log) -> u64 {
        let oldest = self.open.values().map(|(_, first)| *first).min();
        oldest.map_or(log.log_end_offset(), |first| {
            first.max(log.log_start_offset())
        })
    }
}

pub fn producer_id(p: u8) -> i64 {
    i64::from(p) + 1
}

pub fn write(log: &mut Log, model: &mut Model, producer: Option<u8>, records: &[(u8, bool)]) {
    let first = log.log_end_offset();
    let mut builder = BatchBuilder::new(Compression::None, model.now);
    let mut txn = None;
    if let Some(p) = producer {
        let pid = producer_id(p);
        let seq = model.sequences.entry(pid).or_insert(0);
        builder = builder.with_producer(pid, 0, *seq).transactional();
        *seq += records.len() as i32;
        let (t, _) = *model.open.entry(pid).or_insert_with(|| {
            model.txns.push(Status::Open);
            (model.txns.len() - 1, first)
        });
        model.txn_starts.entry(t).or_insert((pid, first));
        model.last_data.insert(pid, first);
        txn = Some(t);
    }
    for (i, (key, tombstone)) in records.iter().enumerate() {
        let value = (!tombstone).then(|| format!("{first}-{i}").into_bytes());
        builder.push(RecordSpec {
            key: Some(vec![*key]),
            value: value.clone(),
            headers: Vec::new(),
            timestamp: Some(model.now),
        });
        let w = Written {
            key: *key,
            value,
            txn,
        };
        model.records.insert(first + i as u64, w);
    }
    log.append(&builder.build().expect("build"))
        .expect("append");
}

pub fn end(log: &mut Log, model: &mut Model, producer: u8, commit: bool) {
    let pid = producer_id(producer);
    let Some((txn, first)) = model.open.remove(&pid) else {
        return;
    };
    let marker = EndTxnMarker {
        commit,
        coordinator_epoch: 0,
    };
    let batch = end_txn_batch(pid, 0, marker, model.now).expect("marker");
    let at = if commit {
        log.append(&batch).expect("append marker").first_offset
    } else {
        // As the broker writes it: the entry first, then the marker.
        let start = log.log_start_offset();
        let oldest = model.open.values().map(|(_, first)| *first).min();
        let entry = |at: u64| AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: at,
            last_stable_offset: oldest.map_or(at + 1, |f| f.max(start)),
        };
        log.append_abort_marker(&batch, entry)
            .expect("append marker")
            .first_offset
    };
    model.markers.insert(at, txn);
    model.txns[txn] = if commit {
        Status::Committed
    } else {
        Status::Aborted
    };
}

pub fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 700,
        ..small_config()
    }
}

/// offset -> (key, value) of every record in a batch.
pub fn records_of(h: &BatchHeader, bytes: &[u8]) -> Vec<(u64, u8, Option<Vec<u8>>)> {
    let payload = &bytes[BATCH_HEADER_LEN..];
    RecordIter::new(payload, h.records_count as usize)
        .map(|r| {
            let r = r.expect("record");
            let offset = (h.base_offset + i64::from(r.offset_delta)) as u64;
            (
                offset,
                r.key.expect("keyed")[0],
                r.value.map(<[u8]>::to_vec),
            )
        })
        .collect()
}

/// What a read_committed consumer reads from the log start up to `last_stable`, as
/// Kafka's consumer filters it: batches of producers with an aborted transaction open
/// (an entry whose first offset was reached, until its ABORT marker) are skipped.
pub fn read_committed(log: &Log, last_stable: u64) -> BTreeMap<u64, (u8, Option<Vec<u8>>)> {
    let start = log.log_start_offset();
    let mut entries = log.aborted_between(start, last_stable);
    entries.sort_by_key(|e| e.first_offset);
    let mut entries = entries.into_iter().peekable();
    let mut aborting: HashSet<i64> = HashSet::new();
    let mut out = BTreeMap::new();
    for (h, bytes) in raw_batches(log) {
        // As a fetch cuts its read: before the batch holding the last stable offset
        // (which a log start moved past an open transaction's start may be inside).
        if h.last_offset() as u64 >= last_stable {
            break;
        }
        while let Some(e) = entries.next_if(|e| e.first_offset as i64 <= h.last_offset()) {
            aborting.insert(e.producer_id);
        }
        if h.is_control() {
            if read_end_txn_marker(&bytes).is_some_and(|m| !m.commit) {
                aborting.remove(&h.producer_id);
            }
            continue;
        }
        if h.is_transactional() && aborting.contains(&h.producer_id) {
            continue;
        }
        for (offset, key, value) in records_of(&h, &bytes) {
            if offset >= start {
                out.insert(offset, (key, value));
            }
        }
    }
    out
}

/// What must hold after any step (see the module doc).
pub fn check_reader(log: &Log, model: &Model) -> Result<(), TestCaseError> {
    let last_stable = model.last_stable(log);
    let start = log.log_start_offset();
    let seen = read_committed(log, last_stable);
    for (offset, (key, value)) in &seen {
        let w = &model.records[offset];
        prop_assert_eq!(
            (w.key, &w.value),
            (*key, value),
            "offset {} as written",
            offset
        );
        prop_assert!(
            model.valid(w),
            "offset {} is of a transaction not committed",
            offset
        );
    }
    let mut latest: BTreeMap<u8, (u64, &Written)> = BTreeMap::new();
    for (offset, w) in model.records.range(..last_stable) {
        if model.valid(w) {
            latest.insert(w.key, (*offset, w));
        }
    }
    for (key, (offset, w)) in latest {
        if offset >= start && w.value.is_some() {
            prop_assert!(
                seen.contains_key(&offset),
                "key {}'s latest committed value (offset {}) is read",
                key,
                offset
            );
        }
    }
    // A broker rebuilding its producer state scans the headers from the log start: a
    // transactional batch after its producer's last marker opens a transaction, so a
    // cleaner that dropped a marker but not its batches would reopen a decided one.
    let mut scanned: BTreeMap<i64, Option<u64>> = BTreeMap::new();
    let mut data_batches = HashSet::new();
    log.for_each_batch_header(start, |h| {
        if !h.is_control() {
            data_batches.insert((h.producer_id, h.base_offset as u64));
        }
        let open = scanned.entry(h.producer_id).or_default();
        if h.is_control() {
            *open = None;
        } else if h.is_transactional() && open.is_none() {
            *open = Some(h.base_offset as u64);
        }
    })
    .expect("scan");
    for (producer, open) in scanned {
        match model.open.get(&producer) {
            None => prop_assert_eq!(open, None, "producer {} has no open transaction", producer),
            Some((_, first)) => prop_assert!(
                open == Some(*first) || *first < start,
                "producer {}'s transaction began at {}, not {:?}",
                producer,
                first,
                open
            ),
        }
    }
    // Each producer's last data batch stays, if only as a header: it holds the
    // sequence an idempotent producer's retry is checked against.
    for (producer, last) in &model.last_data {
        prop_assert!(
            data_batches.contains(&(*producer, *last)) || *last < start,
            "producer {}'s last data batch, at {}, stays",
            producer,
            last
        );
    }
    // An entry without its marker would hide its producer's later transactions.
    let markers: HashSet<(i64, u64)> = raw_batches(log)
        .iter()
        .filter(|(h, _)| h.is_control())
        .map(|(h, _)| (h.producer_id, h.base_offset as u64))
        .collect();
    for e in log.aborted_between(start, log.log_end_offset()) {
        if e.last_offset >= start {
            prop_assert!(
                markers.contains(&(e.producer_id, e.last_offset)),
                "entry {:?} has its marker",
                e
            );
        }
    }
    Ok(())
}

/// Once every transaction is decided and passes ran past the horizons: below the
/// active segment, the latest committed value of each key and nothing else; no
/// aborted record; a marker only where its transaction still has a batch (or, emptied,
/// as its producer's last batch).
pub fn check_cleaned(log: &Log, model: &Model) -> Result<(), TestCaseError> {
    let active = log.active_segment_base();
    let start = log.log_start_offset();
    let mut latest: BTreeMap<u8, u64> = BTreeMap::new();
    for (offset, w) in model.records.range(..active) {
        if model.valid(w) {
            latest.insert(w.key, *offset);
        }
    }
    let mut want: BTreeMap<u64, (u8, Option<Vec<u8>>)> = latest
        .values()
        .filter(|o| **o >= start && model.records[o].value.is_some())
        .map(|o| (*o, (model.records[o].key, model.records[o].value.clone())))
        .collect();
    for (offset, w) in model.records.range(active.max(start)..) {
        if model.valid(w) {
            want.insert(*offset, (w.key, w.value.clone()));
        }
    }
    prop_assert_eq!(read_committed(log, log.log_end_offset()), want);
    let batches = raw_batches(log);
    let data: Vec<&BatchHeader> = batches
        .iter()
        .map(|(h, _)| h)
        .filter(|h| !h.is_control())
        .collect();
    for (h, bytes) in &batches {
        if h.base_offset as u64 >= active {
            break;
        }
        if !h.is_control() {
            for (offset, _, _) in records_of(h, bytes) {
                let w = &model.records[&offset];
                prop_assert!(model.valid(w), "aborted record at {} left", offset);
            }
            continue;
        }
        let txn = model.markers[&(h.base_offset as u64)];
        let (pid, first) = model.txn_starts[&txn];
        let guards = data.iter().any(|d| {
            d.producer_id == pid
                && d.is_transactional()
                && d.base_offset as u64 >= first
                && d.base_offset < h.base_offset
        });
        // A producer's last batch stays, emptied, for its epoch (Kafka's `LastRecord`).
        let last_of_producer = !batches
            .iter()
            .any(|(d, _)| d.producer_id == pid && d.base_offset > h.base_offset);
        // Batches below the log start may still lie in its segment, unreadable here.
        let below_start = first < start;
        prop_assert!(
            guards || below_start || (h.records_count == 0 && last_of_producer),
            "marker at {} guards nothing: {:?}",
            h.base_offset,
            h
        );
    }
    Ok(())
}

/// A pass at the model's last stable offset, `later` past one more delete horizon.
pub fn compact(log: &mut Log, model: &mut Model, later: bool) -> fjord_storage::Result<()> {
    if later {
        model.now += RETENTION + 1;
    }
    let lso = model.last_stable(log);
    log.compact(&compact_options(model.now), lso).map(|_| ())
}

/// Decides every open transaction, pushes the records out of the active segment (with
/// plain records of keys of their own) and runs passes past every horizon.
pub fn decide_and_clean(log: &mut Log, model: &mut Model) {
    for p in 0..3 {
        end(log, model, p, p % 2 == 0);
    }
    let written_end = log.log_end_offset();
    let mut filler = 100u8;
    while log.active_segment_base() < written_end {
        write(log, model, None, &[(filler, false)]);
        filler += 1;
    }
    for _ in 0..4 {
        compact(log, model, true).expect("compact");
    }
}
