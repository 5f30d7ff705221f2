//! Compaction of one log: a pass (map the dirty section, clean the sealed segments
//! below the cut into `.cleaned` files), then the swap, crash-safe as Kafka's:
//!
//! 1. each `<base>.log.cleaned` (already synced) is renamed `<base>.log.swap`, and the
//!    directory synced: from here an open finishes the swap;
//! 2. the old segment's indexes are removed and the directory synced (a stale index
//!    must never describe the new file);
//! 3. the swap file is renamed over `<base>.log` (atomic: a reader opening the name sees
//!    the old file or the new one), the directory synced, and the segment reloaded: its
//!    indexes are rebuilt on first use.
//!
//! Regions read before the swap keep their open file and read the old bytes; offsets
//! never change, so a fetch in flight stays consistent. Each segment is cleaned with
//! the same map on its own, so any mix of swapped and unswapped segments after a crash
//! is a valid log, and the checkpoint, written last, only saves work.

use std::collections::HashMap;
use std::path::PathBuf;

use fjord_protocol::record_batch::BatchHeader;

use crate::cleaner::files::{self, file_path, CleanedSegment, SealedSegment, SWAP_SUFFIX};
use crate::cleaner::{KeyMap, PassStats, Rules};
use crate::error::{IoContext, Result};
use crate::io::Io;
use crate::log::Log;
use crate::segment::{segment_path, Segment};

/// The checkpoint file: where the dirty section starts.
pub(super) const CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

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

    /// Bytes of the sealed segments from the dirty section's start, and of all sealed
    /// segments: the dirty ratio, without touching any file.
    pub fn dirty_bytes(&self) -> Result<(u64, u64)> {
        let first_dirty = self.first_dirty_offset()?;
        let active = self.active_segment_base();
        let mut dirty = 0;
        let mut total = 0;
        let sealed: Vec<(&u64, &Segment)> = self.segments.range(..active).collect();
        for (i, (_, segment)) in sealed.iter().enumerate() {
            let size = segment.size();
            total += size;
            // A segment is dirty if any of it is at or past the first dirty offset.
            let next_base = sealed.get(i + 1).map_or(active, |(b, _)| **b);
            if next_base > first_dirty {
                dirty += size;
            }
        }
        Ok((dirty, total))
    }

    /// What a pass needs of the log, taken briefly (under a broker's read lock): the
    /// pass itself then runs without the log, and [`Log::finish_compaction`] swaps in
    /// what it wrote.
    pub fn compaction_snapshot(&self) -> Result<CompactionSnapshot> {
        Ok(CompactionSnapshot {
            sealed: self.sealed_segments()?,
            first_dirty: self.first_dirty_offset()?,
            active_base: self.active_segment_base(),
            lasts: self.last_batches_of_producers()?,
            dir: self.dir.clone(),
            io: self.flusher.io().clone(),
        })
    }

    /// Swaps in what [`CompactionSnapshot::prepare`] wrote and moves the checkpoint.
    pub fn finish_compaction(&mut self, prepared: PreparedCompaction) -> Result<CompactOutcome> {
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

    /// One compaction pass, all of it under `&mut self` (tests, tools).
    pub fn compact(&mut self, options: &CompactOptions) -> Result<CompactOutcome> {
        let prepared = self.compaction_snapshot()?.prepare(options)?;
        self.finish_compaction(prepared)
    }

    /// Each producer's last batch (its last offset), by producer ID.
    fn last_batches_of_producers(&self) -> Result<HashMap<i64, i64>> {
        let mut lasts = HashMap::new();
        self.for_each_batch_header(self.log_start_offset, |h| {
            if h.producer_id >= 0 {
                lasts.insert(h.producer_id, h.last_offset());
            }
        })?;
        Ok(lasts)
    }

    /// Swaps cleaned segments in (see the module doc). A segment gone or changed since
    /// it was read keeps its files, and its cleaned file is removed. Returns how many
    /// were swapped.
    pub fn swap_cleaned(&mut self, cleaned: &[CleanedSegment]) -> Result<usize> {
        let io = self.flusher.io().clone();
        let dir = self.dir.clone();
        let active = self.active_segment_base();
        let mut ready = Vec::new();
        for c in cleaned {
            let from = file_path(&dir, c.base, files::CLEANED_SUFFIX);
            let current = self.segments.get(&c.base).map(Segment::size);
            if c.base >= active || current != Some(c.replaces_size) {
                io.remove_file(&from)
                    .io_context("remove cleaned segment", &from)?;
                continue;
            }
            let to = file_path(&dir, c.base, SWAP_SUFFIX);
            io.rename(&from, &to)
                .io_context("rename cleaned segment", &to)?;
            ready.push(c.clone());
        }
        if ready.is_empty() {
            return Ok(0);
        }
        io.sync_dir_at(&dir)?;
        for c in &ready {
            if let Some(segment) = self.segments.remove(&c.base) {
                segment.drop_files();
            }
            remove_indexes(&io, &dir, c.base)?;
        }
        io.sync_dir_at(&dir)?;
        for c in &ready {
            let swap = file_path(&dir, c.base, SWAP_SUFFIX);
            let log = segment_path(&dir, c.base, "log");
            io.rename(&swap, &log)
                .io_context("swap cleaned segment", &log)?;
        }
        io.sync_dir_at(&dir)?;
        for c in &ready {
            self.segments
                .insert(c.base, Segment::unloaded(c.base, c.size));
        }
        tracing::debug!(dir = %dir.display(), segments = ready.len(), "swapped cleaned segments");
        Ok(ready.len())
    }
}

fn remove_indexes(io: &crate::io::Io, dir: &std::path::Path, base: u64) -> Result<()> {
    for ext in ["index", "timeindex"] {
        let path = segment_path(dir, base, ext);
        match io.remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).io_context("remove index", &path),
        }
    }
    Ok(())
}

/// A log as a pass sees it: its sealed segments (files open), the dirty section's
/// start, the active segment's base, each producer's last batch.
#[derive(Debug)]
pub struct CompactionSnapshot {
    sealed: Vec<SealedSegment>,
    first_dirty: u64,
    active_base: u64,
    lasts: HashMap<i64, i64>,
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
    /// a record younger than `min.compaction.lag.ms`), the sealed segments below the
    /// cut cleaned into `.cleaned` files. Touches no state of the log.
    pub fn prepare(&self, options: &CompactOptions) -> Result<PreparedCompaction> {
        let now = options.rules.now_ms;
        let lag = options.min_compaction_lag_ms;
        let until = self
            .sealed
            .iter()
            .find(|s| s.max_timestamp.is_some_and(|t| now.saturating_sub(t) < lag))
            .map_or(self.active_base, |s| s.base);
        let mut map = KeyMap::with_budget(options.dedupe_bytes);
        let max = options.rules.max_decompressed;
        let from = i64::try_from(self.first_dirty).unwrap_or(i64::MAX);
        let to = i64::try_from(until).unwrap_or(i64::MAX);
        let mut throttle = files::Throttle::new(options.max_bytes_per_second);
        let cut = files::map_segments(&self.sealed, from, to, &mut map, max, &mut throttle)?;
        let cut = u64::try_from(cut).unwrap_or(0).max(self.first_dirty);
        let last_of = |h: &BatchHeader| self.lasts.get(&h.producer_id) == Some(&h.last_offset());
        let mut stats = PassStats::default();
        let mut cleaned = Vec::new();
        for segment in self.sealed.iter().filter(|s| s.base < cut) {
            let (c, s) = files::write_cleaned(
                &self.io,
                &self.dir,
                segment,
                &map,
                &options.rules,
                &last_of,
                &mut throttle,
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

/// Finishes swaps a crash interrupted and removes cleaned files never swapped in: run
/// at open, before the segments are listed.
pub(super) fn recover_swaps(io: &crate::io::Io, dir: &std::path::Path) -> Result<()> {
    let mut swaps = Vec::new();
    for entry in std::fs::read_dir(dir).io_context("list log dir", dir)? {
        let entry = entry.io_context("list log dir", dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let base = |suffix: &str| {
            name.strip_suffix(&format!(".{suffix}"))
                .filter(|s| s.len() == 20)
                .and_then(|s| s.parse::<u64>().ok())
        };
        if base(files::CLEANED_SUFFIX).is_some() {
            let path = entry.path();
            tracing::info!(file = %path.display(), "removing a cleaned segment never swapped in");
            io.remove_file(&path)
                .io_context("remove cleaned segment", &path)?;
        } else if let Some(b) = base(SWAP_SUFFIX) {
            swaps.push(b);
        }
    }
    if swaps.is_empty() {
        return Ok(());
    }
    for base in &swaps {
        remove_indexes(io, dir, *base)?;
    }
    io.sync_dir_at(dir)?;
    for base in &swaps {
        let log = segment_path(dir, *base, "log");
        io.rename(&file_path(dir, *base, SWAP_SUFFIX), &log)
            .io_context("finish segment swap", &log)?;
        tracing::info!(segment = %log.display(), "finished a cleaned segment's swap");
    }
    io.sync_dir_at(dir)
}
