//! Compaction of one log: a pass (map the dirty section, clean the sealed segments
//! below the cut, small consecutive ones merged, into `.cleaned` files), then the swap
//! (`swap.rs`), crash-safe as Kafka's.
//!
//! Regions read before the swap keep their open file and read the old bytes; offsets
//! never change, so a fetch in flight stays consistent. Each group of segments is
//! cleaned with the same map on its own, so any mix of swapped and unswapped groups
//! after a crash is a valid log, and the checkpoint, written last, only saves work.

use std::collections::HashMap;
use std::path::PathBuf;

use fjord_protocol::record_batch::BatchHeader;

use crate::cleaner::files::{self, CleanedSegment, SealedSegment};
use crate::cleaner::{KeyMap, PassStats, Rules, TxnTracker};
use crate::error::{IoContext, Result};
use crate::io::Io;
use crate::log::{AbortedTxn, Log};
use crate::segment::Segment;

/// The checkpoint file: where the dirty section starts. Its presence also says the
/// log's segments may have offset gaps (see `recovery::check_offsets`).
pub(crate) const CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

/// How one pass cleans.
#[derive(Debug, Clone, Copy)]
pub struct CompactOptions {
    /// Memory for the key map (`log.cleaner.dedupe.buffer.size`, this log's share).
    pub dedupe_bytes: usize,
    /// `min.compaction.lag.ms`: segments with a record younger than this stay dirty.
    pub min_compaction_lag_ms: i64,
    /// The clock, `delete.retention.ms` and the decompression bound.
    pub rules: Rules,
    /// `log.cleaner.io.max.bytes.per.second`.
    pub max_bytes_per_second: f64,
}

/// What a pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactOutcome {
    /// Counts.
    pub stats: PassStats,
    /// Segments replaced.
    pub segments_swapped: usize,
    /// The dirty section starts here now.
    pub first_dirty: u64,
}

impl Log {
    /// The sealed segments (all but the active one), with their open files, for a
    /// cleaner to read without holding the log.
    pub fn sealed_segments(&self) -> Result<Vec<SealedSegment>> {
        let ctx = self.ctx();
        let active = self.active_segment_base();
        let mut out = Vec::new();
        for (&base, segment) in self.segments.range(..active) {
            let sealed = segment.with_open(ctx, false, |meta, files| {
                Ok(SealedSegment {
                    base,
                    next_offset: meta.next_offset,
                    size: meta.size,
                    max_timestamp: meta.max_timestamp.map(|m| m.timestamp),
                    file: std::sync::Arc::clone(&files.log),
                })
            })?;
            out.push(sealed);
        }
        Ok(out)
    }

    /// Where the dirty section starts (the cleaner's checkpoint, never below the log
    /// start).
    pub fn first_dirty_offset(&self) -> Result<u64> {
        Ok(self.cleaner_checkpoint.max(self.log_start_offset))
    }

    fn write_checkpoint(&mut self, offset: u64) -> Result<()> {
        self.flusher.io().write_durably(
            &self.dir,
            CHECKPOINT_FILE,
            format!("{offset}\n").as_bytes(),
        )?;
        self.cleaner_checkpoint = offset;
        Ok(())
    }

    /// Bytes a pass could clean (of the sealed segments from the dirty section's start
    /// up to the one holding the last stable offset, `last_stable`), and those plus the
    /// clean section's: the dirty ratio, as Kafka's `cleanableBytes` over clean plus
    /// cleanable (an open transaction's segments count as neither, so they do not make
    /// the cleaner run pass after pass for nothing). Touches no file.
    pub fn dirty_bytes(&self, last_stable: u64) -> Result<(u64, u64)> {
        let first_dirty = self.first_dirty_offset()?;
        let active = self.active_segment_base();
        let mut dirty = 0;
        let mut clean = 0;
        let sealed: Vec<(&u64, &Segment)> = self.segments.range(..active).collect();
        for (i, (_, segment)) in sealed.iter().enumerate() {
            let next_base = sealed.get(i + 1).map_or(active, |(b, _)| **b);
            if next_base > last_stable {
                break;
            }
            // A segment is dirty if any of it is at or past the first dirty offset.
            if next_base > first_dirty {
                dirty += segment.size();
            } else {
                clean += segment.size();
            }
        }
        Ok((dirty, dirty + clean))
    }

    /// What a pass needs of the log, taken briefly (under a broker's read lock): the
    /// pass itself then runs without the log, and [`Log::finish_compaction`] swaps in
    /// what it wrote. `last_stable` is the log's last stable offset (the broker keeps
    /// the transactions): a pass maps nothing at or past it.
    pub fn compaction_snapshot(&self, last_stable: u64) -> Result<CompactionSnapshot> {
        let active_base = self.active_segment_base();
        Ok(CompactionSnapshot {
            sealed: self.sealed_segments()?,
            first_dirty: self.first_dirty_offset()?,
            active_base,
            last_stable,
            aborted: self.aborted_between(0, active_base),
            lasts: self.last_batches_of_producers()?,
            segment_bytes: self.config.segment_bytes,
            dir: self.dir.clone(),
            io: self.flusher.io().clone(),
        })
    }

    /// Swaps in what [`CompactionSnapshot::prepare`] wrote and moves the checkpoint.
    pub fn finish_compaction(&mut self, prepared: PreparedCompaction) -> Result<CompactOutcome> {
        if !prepared.cleaned.is_empty() && !self.dir.join(CHECKPOINT_FILE).exists() {
            // Before the first swap ever: from here recovery accepts offset gaps, which
            // cleaned segments have.
            self.write_checkpoint(self.cleaner_checkpoint)?;
        }
        let segments_swapped = self.swap_cleaned(&prepared.cleaned)?;
        if prepared.cut > prepared.first_dirty {
            self.write_checkpoint(prepared.cut)?;
        }
        Ok(CompactOutcome {
            stats: prepared.stats,
            segments_swapped,
            first_dirty: prepared.cut,
        })
    }

    /// One compaction pass, all of it under `&mut self` (tests, tools), with the log's
    /// last stable offset.
    pub fn compact(
        &mut self,
        options: &CompactOptions,
        last_stable: u64,
    ) -> Result<CompactOutcome> {
        let prepared = self.compaction_snapshot(last_stable)?.prepare(options)?;
        self.finish_compaction(prepared)
    }

    /// Each producer's last batches, by producer ID.
    fn last_batches_of_producers(&self) -> Result<HashMap<i64, LastOfProducer>> {
        let mut lasts: HashMap<i64, LastOfProducer> = HashMap::new();
        self.for_each_batch_header(self.log_start_offset, |h| {
            if h.producer_id < 0 {
                return;
            }
            let last = lasts.entry(h.producer_id).or_default();
            last.epoch = h.producer_epoch;
            if !h.is_control() {
                last.data = Some(h.last_offset());
            }
        })?;
        Ok(lasts)
    }
}

/// What of a producer a pass must keep (Kafka's `LastRecord`): its last data batch,
/// which holds its last sequence, or, if it has none, its last marker, which holds its
/// epoch for fencing.
#[derive(Debug, Clone, Copy, Default)]
struct LastOfProducer {
    /// The last offset of its last data batch.
    data: Option<i64>,
    /// The epoch of its last batch.
    epoch: i16,
}

impl LastOfProducer {
    fn is(&self, h: &BatchHeader) -> bool {
        match self.data {
            Some(offset) => !h.is_control() && h.last_offset() == offset,
            None => h.is_control() && h.producer_epoch == self.epoch,
        }
    }
}

/// A log as a pass sees it: its sealed segments (files open), the dirty section's
/// start, the active segment's base, each producer's last batch.
#[derive(Debug)]
pub struct CompactionSnapshot {
    sealed: Vec<SealedSegment>,
    first_dirty: u64,
    active_base: u64,
    last_stable: u64,
    /// The aborted index's entries with markers in the sealed segments.
    aborted: Vec<AbortedTxn>,
    lasts: HashMap<i64, LastOfProducer>,
    segment_bytes: u64,
    dir: PathBuf,
    io: Io,
}

/// Cleaned segments written, ready for [`Log::finish_compaction`].
#[derive(Debug)]
pub struct PreparedCompaction {
    cleaned: Vec<CleanedSegment>,
    first_dirty: u64,
    cut: u64,
    stats: PassStats,
}

impl CompactionSnapshot {
    /// Whether a dirty sealed segment holds a record older than `max_lag_ms` at
    /// `now_ms` (`max.compaction.lag.ms` forces a pass).
    pub fn overdue(&self, now_ms: i64, max_lag_ms: i64) -> bool {
        self.sealed
            .iter()
            .filter(|s| s.next_offset > self.first_dirty)
            .filter_map(|s| s.max_timestamp)
            .any(|t| now_ms.saturating_sub(t) > max_lag_ms)
    }

    /// The newest timestamp of the oldest dirty sealed segment: how long its records
    /// have waited to be cleaned.
    pub fn oldest_dirty_timestamp(&self) -> Option<i64> {
        self.sealed
            .iter()
            .filter(|s| s.next_offset > self.first_dirty)
            .filter_map(|s| s.max_timestamp)
            .min()
    }

    /// The pass: the key map over the dirty section (up to the first segment holding
    /// a record younger than `min.compaction.lag.ms`, and never past the last stable
    /// offset), the sealed segments below the cut cleaned into `.cleaned` files, each
    /// with the aborted-index entries it keeps. Touches no state of the log.
    pub fn prepare(&self, options: &CompactOptions) -> Result<PreparedCompaction> {
        let now = options.rules.now_ms;
        let lag = options.min_compaction_lag_ms;
        let until = self
            .sealed
            .iter()
            .find(|s| s.max_timestamp.is_some_and(|t| now.saturating_sub(t) < lag))
            .map_or(self.active_base, |s| s.base)
            .min(self.last_stable);
        let mut map = KeyMap::with_budget(options.dedupe_bytes);
        let max = options.rules.max_decompressed;
        let from = i64::try_from(self.first_dirty).unwrap_or(i64::MAX);
        let to = i64::try_from(until).unwrap_or(i64::MAX);
        let throttle = files::Throttle::new(options.max_bytes_per_second);
        let mut mapping = TxnTracker::new(self.aborted.clone());
        let cut = files::map_segments(
            &self.sealed,
            from,
            to,
            &mut map,
            &mut mapping,
            max,
            &throttle,
        )?;
        let cut = u64::try_from(cut).unwrap_or(0).max(self.first_dirty);
        let last_of = |h: &BatchHeader| self.lasts.get(&h.producer_id).is_some_and(|l| l.is(h));
        // One tracker over every group, in order: a transaction may span groups.
        let mut txns = TxnTracker::new(self.aborted.clone());
        let mut stats = PassStats::default();
        let mut cleaned = Vec::new();
        // The sealed segments are in offset order: those below the cut are a prefix.
        let below = &self.sealed[..self.sealed.partition_point(|s| s.base < cut)];
        for group in files::group_by_size(below, self.segment_bytes) {
            let (c, s) = files::write_cleaned(
                &self.io,
                &self.dir,
                group,
                &map,
                &options.rules,
                &mut txns,
                &last_of,
                &throttle,
            )?;
            stats.add(&s);
            cleaned.push(c);
        }
        Ok(PreparedCompaction {
            cleaned,
            first_dirty: self.first_dirty,
            cut,
            stats,
        })
    }
}

/// The checkpoint in `dir` (0 without one, or one that does not parse).
pub(super) fn read_checkpoint(dir: &std::path::Path) -> Result<u64> {
    let path = dir.join(CHECKPOINT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim().parse().unwrap_or(0)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e).io_context("read cleaner checkpoint", &path),
    }
}
