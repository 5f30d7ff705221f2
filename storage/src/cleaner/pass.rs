//! One cleaning pass over batches, with no I/O: the key map over the dirty section,
//! then the filter every batch of the segments being rewritten goes through. The driver
//! reads the segments and writes what [`clean_batches`] emits into the new files.
//!
//! The rules (Kafka's `LogCleaner`): a record stays unless a later record with its key
//! lies in the mapped range, it has no key (a compacted topic refuses those; older
//! ones are dropped), or it is a tombstone whose batch's delete horizon has passed
//! (KIP-534: the horizon is stored the first time a tombstone is cleaned, so it lives
//! `delete.retention.ms` from then). A batch that loses every record stays as a header
//! if it is a producer's last batch, so the producer's sequence survives.
//!
//! Transactions (`txn.rs`): a batch of an aborted transaction loses every record and is
//! never mapped; a marker goes (after its own delete horizon) once its transaction has
//! nothing left in the log. A control batch of a type Fjord does not know stays.
//!
//! A map that fills up stops at a record: the mapped range ends there, and since only
//! records older than a mapped offset are dropped, a cut anywhere is safe; the rest is
//! cleaned by the next pass. Records at or past the cut (where the budget, the
//! compaction lag or the last stable offset stopped the map) stay as they are, as
//! Kafka's `pastLatestOffset`: a tombstone there must not expire before a pass has
//! mapped it and dropped the older values it shadows.

use fjord_protocol::record_batch::{
    delete_horizon, filter_batch, filter_marker, read_end_txn_marker, stored_batches, BatchHeader,
    Candidate, FilterOptions, Filtered, RecordIter, BATCH_HEADER_LEN,
};

use super::key_map::KeyMap;
use super::txn::{TxnFate, TxnTracker};

/// The settings and clock one pass cleans by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// The pass's clock (ms since the epoch).
    pub now_ms: i64,
    /// `delete.retention.ms`: how long a tombstone lives once cleaned.
    pub delete_retention_ms: i64,
    /// Largest decompressed batch accepted.
    pub max_decompressed: usize,
}

/// What a pass read and kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassStats {
    /// Batches read.
    pub batches_read: u64,
    /// Records read.
    pub records_read: u64,
    /// Records kept.
    pub records_kept: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Bytes emitted.
    pub bytes_written: u64,
}

impl PassStats {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &PassStats) {
        self.batches_read += other.batches_read;
        self.records_read += other.records_read;
        self.records_kept += other.records_kept;
        self.bytes_read += other.bytes_read;
        self.bytes_written += other.bytes_written;
    }
}

/// Puts the keys of `log` (whole batches, in offset order) at offsets in
/// `[from, until)` into `map`, but none of an aborted transaction's (`txns` says
/// which). Returns the offset the map covers up to (exclusive): `until`, or the first
/// record whose new key did not fit.
pub fn build_map(
    log: &[u8],
    from: i64,
    until: i64,
    map: &mut KeyMap,
    txns: &mut TxnTracker,
    max_decompressed: usize,
) -> fjord_protocol::error::Result<i64> {
    for batch in stored_batches(log) {
        let (header, bytes) = batch?;
        if header.last_offset() < from || header.is_control() {
            continue;
        }
        if header.base_offset >= until {
            break;
        }
        if txns.on_batch(&header, None) == TxnFate::Aborted {
            continue;
        }
        let codec = header.compression()?;
        let stored = &bytes[BATCH_HEADER_LEN..];
        let payload = match codec {
            fjord_protocol::compression::Compression::None => std::borrow::Cow::Borrowed(stored),
            c => std::borrow::Cow::Owned(c.decompress(stored, max_decompressed)?),
        };
        let count = usize::try_from(header.records_count).unwrap_or(0);
        for record in RecordIter::new(&payload, count) {
            let record = record?;
            let offset = header.base_offset + i64::from(record.offset_delta);
            if offset < from || offset >= until {
                continue;
            }
            if let Some(key) = record.key {
                if !map.put(key, offset) {
                    return Ok(offset);
                }
            }
        }
    }
    Ok(until)
}

/// Whether the record stays, by the rules (see the module doc).
fn keeps(c: &Candidate<'_>, map: &KeyMap, horizon: Option<i64>, now_ms: i64) -> bool {
    if !map.covers(c.offset) {
        return true;
    }
    let Some(key) = c.key else {
        return false;
    };
    if map.get(key).is_some_and(|latest| c.offset < latest) {
        return false;
    }
    c.value.is_some() || horizon.is_none_or(|h| now_ms < h)
}

/// Cleans every batch of `log` (whole batches, in offset order, the pass's reading
/// order: `txns` follows it), calling `emit` with each batch that stays.
/// `last_of_producer` says whether a batch is its producer's last (kept as a header if
/// it empties).
pub fn clean_batches(
    log: &[u8],
    map: &KeyMap,
    rules: &Rules,
    txns: &mut TxnTracker,
    last_of_producer: impl Fn(&BatchHeader) -> bool,
    mut emit: impl FnMut(&[u8]),
) -> fjord_protocol::error::Result<PassStats> {
    let mut stats = PassStats::default();
    for batch in stored_batches(log) {
        let (header, bytes) = batch?;
        stats.batches_read += 1;
        stats.bytes_read += bytes.len() as u64;
        let horizon = delete_horizon(&header);
        let options = FilterOptions {
            retain_empty: header.producer_id >= 0 && last_of_producer(&header),
            new_delete_horizon: rules.now_ms.saturating_add(rules.delete_retention_ms),
            max_decompressed: rules.max_decompressed,
        };
        let records = usize::try_from(header.records_count).unwrap_or(0);
        let filtered = if header.is_control() {
            stats.records_read += records as u64;
            let filtered = clean_marker(&header, bytes, &options, rules.now_ms, txns)?;
            if matches!(filtered, Filtered::Unchanged | Filtered::Rewritten(_)) {
                stats.records_kept += records as u64;
            }
            filtered
        } else {
            let aborted = txns.on_batch(&header, None) == TxnFate::Aborted;
            let (filtered, counts) = filter_batch(bytes, &options, |c| {
                !aborted && keeps(c, map, horizon, rules.now_ms)
            })?;
            stats.records_read += counts.read as u64;
            stats.records_kept += counts.kept as u64;
            filtered
        };
        let out: &[u8] = match &filtered {
            Filtered::Unchanged => bytes,
            Filtered::Rewritten(b) | Filtered::Empty(b) => b,
            Filtered::Dropped => continue,
        };
        stats.bytes_written += out.len() as u64;
        emit(out);
    }
    Ok(stats)
}

/// A control batch's fate: a marker still guarding its transaction's batches stays, one
/// guarding none goes by its delete horizon, one of an unknown type stays.
fn clean_marker(
    header: &BatchHeader,
    bytes: &[u8],
    options: &FilterOptions,
    now_ms: i64,
    txns: &mut TxnTracker,
) -> fjord_protocol::error::Result<Filtered> {
    let abort = if header.records_count == 0 {
        None
    } else if let Some(marker) = read_end_txn_marker(bytes) {
        Some(!marker.commit)
    } else {
        return Ok(Filtered::Unchanged);
    };
    match txns.on_batch(header, abort) {
        TxnFate::DiscardableMarker => filter_marker(bytes, options, now_ms),
        _ => Ok(Filtered::Unchanged),
    }
}

#[cfg(test)]
#[path = "pass_tests.rs"]
mod tests;
