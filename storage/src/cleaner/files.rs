//! The cleaner's file side: sealed segments read batch by batch through their open
//! files (valid whatever the log does meanwhile), and each cleaned segment written next
//! to its original as `<base>.log.cleaned`, synced before the log swaps it in.

use std::fs::File;
use std::io::IoSlice;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fjord_protocol::record_batch::{peek_entry, BatchHeader, LOG_OVERHEAD};

use super::key_map::KeyMap;
use super::pass::{self, PassStats, Rules};
use super::txn::TxnTracker;
use crate::error::{IoContext, Result, StorageError};
use crate::io::{Io, OpenMode};
use crate::log::AbortedTxn;

/// Suffix of a cleaned segment not yet swapped in (removed at open).
pub const CLEANED_SUFFIX: &str = "log.cleaned";
/// Suffix of a cleaned segment being swapped in (the swap is finished at open).
pub const SWAP_SUFFIX: &str = "log.swap";

/// Bytes read from a segment at a time (more if one batch is larger).
const CHUNK: usize = 1 << 20;

/// A sealed segment as the cleaner reads it.
#[derive(Debug, Clone)]
pub struct SealedSegment {
    /// Its base offset.
    pub base: u64,
    /// The offset after its last batch.
    pub next_offset: u64,
    /// Bytes of valid batches.
    pub size: u64,
    /// Its largest timestamp (`None` if it has none).
    pub max_timestamp: Option<i64>,
    /// Its open `.log`.
    pub file: Arc<File>,
}

/// A group of sealed segments cleaned into one `.cleaned` file, ready to swap in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanedSegment {
    /// Its base offset: that of the first segment it replaces.
    pub base: u64,
    /// The offset after the last segment it replaces.
    pub end: u64,
    /// Its size.
    pub size: u64,
    /// (base, size) of each segment it replaces, as they were read: if any is gone or
    /// changed since, none is replaced.
    pub replaces: Vec<(u64, u64)>,
    /// The aborted-index entries of `[base, end)` it keeps, replacing that range's
    /// `.txnindex` files; `None` if the range had none (nothing to replace).
    pub aborted: Option<Vec<AbortedTxn>>,
}

/// The cleaner's I/O throttle (`log.cleaner.io.max.bytes.per.second`): bytes read and
/// written are paced so their total stays within the rate since the pass began.
#[derive(Debug)]
pub struct Throttle {
    rate: f64,
    started: std::time::Instant,
    /// Counted through `&self`, so the reads of a batch and the writes its cleaning
    /// causes pace against one throttle in the same loop.
    bytes: std::cell::Cell<f64>,
}

impl Throttle {
    /// A throttle at `bytes_per_second` (infinite or huge: no pause in practice).
    pub fn new(bytes_per_second: f64) -> Self {
        Self {
            rate: bytes_per_second,
            started: std::time::Instant::now(),
            bytes: std::cell::Cell::new(0.0),
        }
    }

    /// Counts `n` bytes, sleeping as long as the rate requires.
    pub fn pace(&self, n: usize) {
        let bytes = self.bytes.get() + n as f64;
        self.bytes.set(bytes);
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return;
        }
        let due = std::time::Duration::from_secs_f64((bytes / self.rate).min(1e9));
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

/// `<base>.<suffix>` in `dir`.
pub fn file_path(dir: &Path, base: u64, suffix: &str) -> PathBuf {
    dir.join(format!("{base:020}.{suffix}"))
}

fn corrupt(segment: &SealedSegment, position: u64, reason: String) -> StorageError {
    StorageError::Corrupt {
        path: PathBuf::from(format!("segment {:020}", segment.base)),
        position,
        reason,
    }
}

/// Calls `f` with each whole batch of `segment`, in order, reading `CHUNK` bytes at a
/// time; `f` returns whether to go on.
pub fn for_each_batch(
    segment: &SealedSegment,
    throttle: &Throttle,
    mut f: impl FnMut(&[u8]) -> Result<bool>,
) -> Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    // File position of buf[0].
    let mut at = 0u64;
    loop {
        let mut used = 0;
        while let Some((_, len)) = peek_entry(&buf[used..]) {
            let total = usize::try_from(len)
                .ok()
                .filter(|n| *n > 0)
                .map(|n| n + LOG_OVERHEAD)
                .ok_or_else(|| corrupt(segment, at + used as u64, format!("batch length {len}")))?;
            if used + total > buf.len() {
                break;
            }
            if !f(&buf[used..used + total])? {
                return Ok(());
            }
            used += total;
        }
        buf.drain(..used);
        at += used as u64;
        let read_at = at + buf.len() as u64;
        if read_at >= segment.size {
            if buf.is_empty() {
                return Ok(());
            }
            return Err(corrupt(
                segment,
                at,
                "a batch runs past the segment's end".into(),
            ));
        }
        let need = peek_entry(&buf)
            .and_then(|(_, len)| usize::try_from(len).ok())
            .map_or(CHUNK, |len| (len + LOG_OVERHEAD).max(CHUNK));
        let n = usize::try_from((segment.size - read_at).min(need as u64)).unwrap_or(CHUNK);
        let start = buf.len();
        buf.resize(start + n, 0);
        segment
            .file
            .read_exact_at(&mut buf[start..], read_at)
            .map_err(|source| StorageError::Io {
                op: "read segment for cleaning",
                path: PathBuf::from(format!("segment {:020}", segment.base)),
                source,
            })?;
        throttle.pace(n);
    }
}

/// Builds `map` over the records of `segments` at offsets in `[from, until)`; returns
/// the offset it covers up to (see [`pass::build_map`]).
pub fn map_segments(
    segments: &[SealedSegment],
    from: i64,
    until: i64,
    map: &mut KeyMap,
    txns: &mut TxnTracker,
    max_decompressed: usize,
    throttle: &Throttle,
) -> Result<i64> {
    let mut cut = until;
    for segment in segments {
        if i64::try_from(segment.next_offset).unwrap_or(i64::MAX) <= from {
            continue;
        }
        if i64::try_from(segment.base).unwrap_or(i64::MAX) >= until {
            break;
        }
        let mut full = false;
        for_each_batch(segment, throttle, |batch| {
            let reached = pass::build_map(batch, from, until, map, txns, max_decompressed)
                .map_err(|e| corrupt(segment, 0, e.to_string()))?;
            if reached < until {
                cut = reached;
                full = true;
            }
            Ok(!full)
        })?;
        if full {
            break;
        }
    }
    map.set_end(cut);
    Ok(cut)
}

/// Groups consecutive segments to be cleaned into one each, as Kafka's
/// `groupSegmentsBySize`: a group grows while the sizes of its segments as they are
/// (before cleaning, so the cleaned one fits too) add up to at most `max_bytes`, and
/// while its offsets fit a segment's 32-bit relative offsets.
pub fn group_by_size(segments: &[SealedSegment], max_bytes: u64) -> Vec<&[SealedSegment]> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < segments.len() {
        let base = segments[start].base;
        let mut bytes = segments[start].size;
        let mut end = start + 1;
        while let Some(next) = segments.get(end) {
            let span = next.next_offset.saturating_sub(1).saturating_sub(base);
            if bytes.saturating_add(next.size) > max_bytes || span > u64::from(u32::MAX) {
                break;
            }
            bytes += next.size;
            end += 1;
        }
        groups.push(&segments[start..end]);
        start = end;
    }
    groups
}

/// Cleans the segments of `group` into one `<base>.log.cleaned` in `dir` (synced), by
/// `map` and `rules`, `txns` following the pass's reading order; `base` is the first
/// segment's.
#[allow(clippy::too_many_arguments)]
pub fn write_cleaned(
    io: &Io,
    dir: &Path,
    group: &[SealedSegment],
    map: &KeyMap,
    rules: &Rules,
    txns: &mut TxnTracker,
    last_of_producer: &dyn Fn(&BatchHeader) -> bool,
    throttle: &Throttle,
) -> Result<(CleanedSegment, PassStats)> {
    let (Some(first), Some(last)) = (group.first(), group.last()) else {
        return Err(StorageError::Corrupt {
            path: dir.to_path_buf(),
            position: 0,
            reason: "an empty group of segments to clean".to_string(),
        });
    };
    let path = file_path(dir, first.base, CLEANED_SUFFIX);
    let out = io
        .open(&path, OpenMode::CreateTruncate)
        .io_context("create cleaned segment", &path)?;
    let mut stats = PassStats::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut size = 0u64;
    let mut flush = |pending: &mut Vec<u8>, throttle: &Throttle| -> Result<()> {
        io.write_all_vectored(&path, &out, &mut [IoSlice::new(pending)])
            .io_context("write cleaned segment", &path)?;
        size += pending.len() as u64;
        throttle.pace(pending.len());
        pending.clear();
        Ok(())
    };
    for segment in group {
        // Reads are paced as they happen, chunk by chunk, with the writes.
        for_each_batch(segment, throttle, |batch| {
            let s = pass::clean_batches(batch, map, rules, txns, last_of_producer, |b| {
                pending.extend_from_slice(b)
            })
            .map_err(|e| corrupt(segment, 0, e.to_string()))?;
            stats.add(&s);
            if pending.len() >= CHUNK {
                flush(&mut pending, throttle)?;
            }
            Ok(true)
        })?;
    }
    flush(&mut pending, throttle)?;
    io.sync(&out, true)
        .io_context("sync cleaned segment", &path)?;
    // Past the last base even when that segment is empty (next offset = base).
    let end = last.next_offset.max(last.base + 1);
    Ok((
        CleanedSegment {
            base: first.base,
            end,
            size,
            replaces: group.iter().map(|s| (s.base, s.size)).collect(),
            aborted: txns.decided_between(first.base, end),
        },
        stats,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_holds_bytes_to_the_rate_and_an_infinite_one_never_waits() {
        let started = std::time::Instant::now();
        let t = Throttle::new(1_000_000.0);
        for _ in 0..10 {
            t.pace(10_000);
        }
        // 100 kB at 1 MB/s: at least 100 ms (a lower bound only: sleeps never end early).
        assert!(started.elapsed() >= std::time::Duration::from_millis(99));
        let started = std::time::Instant::now();
        let free = Throttle::new(f64::INFINITY);
        free.pace(usize::MAX / 2);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
