//! [`Log`]: one partition's log, a directory of segments.
//!
//! Mutations (`append`, `truncate_to`, `delete_records_before`, retention) take `&mut
//! self`; reads and lookups take `&self`, so a broker can keep a log behind an `RwLock`,
//! compute file regions under a short read lock and `sendfile` them after releasing it.
//! Dropping a log without [`Log::close`] is an unclean stop: the next open recovers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fjord_protocol::record_batch::{
    batches, require_keys, validate_records, BatchHeader, TimestampType,
};

use crate::clean_shutdown;
use crate::config::{Durability, LogConfig};
use crate::error::{IoContext, Result, StorageError};
use crate::file_region::FileRegion;
use crate::flusher::{FlushTicket, Flusher};
use crate::io::OpenMode;
pub use crate::retention::RetentionOutcome;
use crate::segment::{Segment, SegmentCtx};
pub use crate::timestamp_search::TimestampOffset;
pub use aborted::AbortedTxn;
pub use compaction::{CompactOptions, CompactOutcome, CompactionSnapshot, PreparedCompaction};

mod aborted;
pub(crate) mod compaction;
mod epochs;
mod files;
mod hot;
mod recover_tail;
mod swap;
mod timestamps;
mod truncation;

use files::{indexes_cover, list_segments, read_log_start};
use hot::HotWindow;

/// ListOffsets "latest": the log end offset.
pub const LATEST_TIMESTAMP: i64 = -1;
/// ListOffsets "earliest": the log start offset.
pub const EARLIEST_TIMESTAMP: i64 = -2;
/// ListOffsets "max timestamp" (KIP-734): the record with the largest timestamp.
pub const MAX_TIMESTAMP: i64 = -3;

/// Largest decompressed batch the full record validation holds in memory.
const MAX_VALIDATED_BYTES: usize = 64 << 20;

/// What an append did.
#[derive(Debug)]
#[non_exhaustive]
pub struct AppendInfo {
    /// Offset given to the first record.
    pub first_offset: u64,
    /// Offset given to the last record.
    pub last_offset: u64,
    /// The broker's timestamp if the log uses LogAppendTime.
    pub log_append_time: Option<i64>,
    /// Log start offset after the append.
    pub log_start_offset: u64,
    /// With [`Durability::FsyncOnAck`]: completes once the appended bytes are on disk.
    pub durable: Option<FlushTicket>,
}

/// One partition's log.
#[derive(Debug)]
pub struct Log {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    flusher: Flusher,
    pub(crate) segments: BTreeMap<u64, Segment>,
    pub(crate) log_start_offset: u64,
    clean_marker: bool,
    unflushed_messages: u64,
    oldest_unflushed: Option<Instant>,
    rolled_flushes: Vec<FlushTicket>,
    /// The index size grew at runtime: the active segment's index files keep the size
    /// they were made with, so the next append that finds data starts a new segment.
    roll_for_index_size: bool,
    /// A failed background flush of a rolled segment, reported by the next `flush`.
    flush_failure: Option<StorageError>,
    /// Where the bytes this process appended recently begin (see [`Log::read_hot`]).
    hot: HotWindow,
    /// Where each leader epoch starts (the `leader-epoch-checkpoint`).
    leader_epochs: crate::leader_epochs::LeaderEpochs,
    /// The epoch stamped into appended batches (-1: none, batches keep the client's).
    leader_epoch: i32,
    /// The cleaner's checkpoint as last read or written (`cleaner-offset-checkpoint`).
    cleaner_checkpoint: u64,
    /// Aborted transactions (`.txnindex`).
    aborted: aborted::AbortedIndex,
}

/// KIP-74: the response's first partition with data gets its first batch whole, past
/// its limit if need be (a consumer always makes progress); a later one only what fits.
fn fits_fetch(first: bool, region: &FileRegion, max_bytes: u64) -> bool {
    first || region.len <= max_bytes
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Log {
    /// Opens the log in `dir`, creating it if needed. After a clean close this reads no
    /// segment; after an unclean stop it rescans only the active segment's tail. Sealed
    /// segments are opened on first use.
    pub fn open(dir: impl AsRef<Path>, config: LogConfig, flusher: Flusher) -> Result<Self> {
        Self::open_with(dir.as_ref(), config, flusher, true)
    }

    /// [`Log::open`] for one of many logs created together: when it creates `dir`, it
    /// does not sync the parent directory, and the caller must call [`Io::sync_dir_at`] on it
    /// once for the whole batch before relying on any of them surviving a crash (one
    /// directory sync for many new partitions instead of one each). The log's own
    /// directory is still synced, so its segment names are durable once the parent is.
    pub fn open_in_batch(
        dir: impl AsRef<Path>,
        config: LogConfig,
        flusher: Flusher,
    ) -> Result<Self> {
        Self::open_with(dir.as_ref(), config, flusher, false)
    }

    fn open_with(
        dir: &Path,
        config: LogConfig,
        flusher: Flusher,
        sync_parent: bool,
    ) -> Result<Self> {
        config.validate()?;
        let dir = dir.to_path_buf();
        let io = flusher.io().clone();
        let is_new = !dir.exists();
        io.create_dir_all(&dir).io_context("create log dir", &dir)?;
        if is_new && sync_parent {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                io.sync_dir_at(parent)?;
            }
        }
        let listed = list_segments(&io, &dir)?;
        let persisted_start = read_log_start(&dir)?;
        let marker = clean_shutdown::read(&dir);
        let mut marker_present = clean_shutdown::path(&dir).exists();
        let ctx = SegmentCtx {
            dir: &dir,
            config: &config,
            io: &io,
        };
        let mut segments = BTreeMap::new();
        match listed.split_last() {
            None => {
                let base = persisted_start.unwrap_or(0);
                segments.insert(base, Segment::create(ctx, base)?);
                io.sync_dir_at(&dir)?;
            }
            Some((&(active_base, active_size), sealed)) => {
                let clean = marker.filter(|(base, meta)| {
                    *base == active_base
                        && meta.next_offset >= *base
                        && meta.size == active_size
                        && indexes_cover(&dir, active_base, meta)
                });
                match clean {
                    Some((_, meta)) => {
                        for &(base, size) in sealed {
                            segments.insert(base, Segment::unloaded(base, size));
                        }
                        segments.insert(active_base, Segment::loaded(active_base, meta, None));
                    }
                    None => {
                        if marker_present {
                            tracing::warn!(dir = %dir.display(), "clean-shutdown marker does not match the files; recovering");
                            clean_shutdown::remove(&io, &dir)?;
                            marker_present = false;
                        }
                        segments = recover_tail::recover_tail(ctx, &listed)?;
                    }
                }
            }
        }
        let dir_for_checkpoint = dir.clone();
        let mut log = Self {
            dir,
            config,
            flusher,
            segments,
            log_start_offset: 0,
            clean_marker: marker_present,
            unflushed_messages: 0,
            oldest_unflushed: None,
            rolled_flushes: Vec::new(),
            roll_for_index_size: false,
            flush_failure: None,
            hot: HotWindow::from_end(0, 0),
            leader_epochs: Default::default(),
            leader_epoch: -1,
            cleaner_checkpoint: compaction::read_checkpoint(&dir_for_checkpoint)?,
            aborted: aborted::AbortedIndex::default(),
        };
        // After a restart nothing is known to be in memory.
        log.hot = HotWindow::from_end(log.log_end_offset(), log.active().1.size());
        let first_base = log.segments.keys().next().copied().unwrap_or(0);
        match persisted_start.filter(|s| *s > log.log_end_offset()) {
            // Records up to a durable log start were lost (a power loss took unsynced
            // appends): start again there, as Kafka does, so offsets deleted once are
            // never handed out again and later records are not hidden below the start.
            Some(start) => log.restart_at(start)?,
            None => {
                log.log_start_offset = persisted_start
                    .unwrap_or(0)
                    .max(first_base)
                    .min(log.log_end_offset());
            }
        }
        // Segments wholly below the start (left by a crash between a durable start
        // and the deletions that follow it) are never served: remove them now.
        let bases: Vec<u64> = log.segments.keys().copied().collect();
        let below: Vec<u64> = bases
            .windows(2)
            .take_while(|w| w[1] <= log.log_start_offset)
            .map(|w| w[0])
            .collect();
        if !below.is_empty() {
            tracing::info!(dir = %log.dir.display(), segments = below.len(), start = log.log_start_offset, "removing segments below the log start offset");
            log.mark_dirty()?;
            log.delete_segments(&below)?;
        }
        log.load_epochs()?;
        let io = log.flusher.io().clone();
        log.aborted = aborted::AbortedIndex::load(&io, &log.dir, log.log_end_offset())?;
        log.forget_aborted_below_first_segment(&io)?;
        Ok(log)
    }

    pub(crate) fn ctx(&self) -> SegmentCtx<'_> {
        SegmentCtx {
            dir: &self.dir,
            config: &self.config,
            io: self.flusher.io(),
        }
    }

    fn active(&self) -> (&u64, &Segment) {
        self.segments
            .last_key_value()
            .expect("a log always has an active segment")
    }

    /// The segment context and the active segment, borrowed together.
    fn active_mut(&mut self) -> (SegmentCtx<'_>, &mut Segment) {
        let ctx = SegmentCtx {
            dir: &self.dir,
            config: &self.config,
            io: self.flusher.io(),
        };
        let active = self
            .segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment");
        (ctx, active)
    }

    fn active_base(&self) -> u64 {
        *self.active().0
    }

    /// [`Log::read`] for a reader at the tail, only if it cannot block: `from` is among
    /// the bytes this process appended last (the active segment's most recent
    /// [`HOT_BYTES`] to twice that, whose pages, index entries and batch headers are in
    /// memory), the segment's files are open and no other thread holds it. `None`
    /// otherwise: the caller reads with [`Log::read`] where waiting is allowed. Also
    /// gives the log end offset the read saw.
    ///
    /// With `max_bytes` 0 nothing is read, only `from` checked against the log's bounds,
    /// wherever it is.
    pub fn read_hot(&self, from: u64, max_bytes: u64) -> Option<(u64, Result<Vec<FileRegion>>)> {
        self.read_hot_for_fetch(from, max_bytes, max_bytes > 0)
    }

    /// [`Log::read_hot`] under a fetch's rules, as [`Log::read_for_fetch`].
    pub fn read_hot_for_fetch(
        &self,
        from: u64,
        max_bytes: u64,
        first: bool,
    ) -> Option<(u64, Result<Vec<FileRegion>>)> {
        let (&base, active) = self.active();
        let reads = (max_bytes > 0 || first) && from >= self.log_start_offset;
        if reads && (from < base || from < self.hot.floor) {
            return None;
        }
        // As in `read_for_fetch`: the first batch is read whole, then kept only if the
        // fetch rules let it through.
        let (end, found) = active.try_read_open(from, if reads { max_bytes } else { 0 }, reads)?;
        let result = self.check_fetch_offset(from, end).and_then(|()| {
            found.map(|region| {
                region
                    .map(|(r, _)| r)
                    .filter(|r| fits_fetch(first, r, max_bytes))
                    .into_iter()
                    .collect()
            })
        });
        Some((end, result))
    }

    /// Kafka's range rule for a fetch offset: within `[log_start_offset, end]` (at the
    /// end there is nothing yet to read), else OFFSET_OUT_OF_RANGE. The one place the
    /// rule lives.
    fn check_fetch_offset(&self, from: u64, end: u64) -> Result<()> {
        if from < self.log_start_offset || from > end {
            return Err(StorageError::OffsetOutOfRange {
                offset: from,
                log_start_offset: self.log_start_offset,
                log_end_offset: end,
            });
        }
        Ok(())
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log's settings.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Changes settings; size and index settings apply from the next segment roll (a
    /// larger index size rolls at the next append, since the active index cannot grow).
    pub fn set_config(&mut self, config: LogConfig) -> Result<()> {
        config.validate()?;
        if config.segment_index_bytes > self.config.segment_index_bytes {
            self.roll_for_index_size = true;
        }
        self.config = config;
        Ok(())
    }

    /// First offset still readable.
    pub fn log_start_offset(&self) -> u64 {
        self.log_start_offset
    }

    /// Offset the next appended record will get (on a single node, the high watermark).
    pub fn log_end_offset(&self) -> u64 {
        let (base, seg) = self.active();
        seg.meta_if_loaded().map_or(*base, |m| m.next_offset)
    }

    /// Bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size).sum()
    }

    /// Number of segments, the active one included.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<u64> {
        self.segments.keys().copied().collect()
    }

    /// Segments whose files are open right now (see [`Log::close_idle`]).
    pub fn open_segment_count(&self) -> usize {
        self.segments.values().filter(|s| s.is_open()).count()
    }

    fn mark_dirty(&mut self) -> Result<()> {
        if self.clean_marker {
            clean_shutdown::remove(self.flusher.io(), &self.dir)?;
            self.clean_marker = false;
        }
        Ok(())
    }

    /// Appends one or more RecordBatch v2 batches as the broker received them, stamping
    /// the current time if the log uses LogAppendTime.
    pub fn append(&mut self, records: &[u8]) -> Result<AppendInfo> {
        self.append_at(records, now_ms())
    }

    /// [`Log::append`] with an explicit clock (ms since the epoch), used for
    /// LogAppendTime and `segment.ms`.
    ///
    /// Every batch is validated first (magic, lengths, CRC, record count, size limit);
    /// if any fails, nothing is written. Offsets are assigned by rewriting each batch's
    /// base offset, the only bytes changed (with LogAppendTime, also maxTimestamp, the
    /// timestamp-type bit and the CRC).
    pub fn append_at(&mut self, records: &[u8], now_ms: i64) -> Result<AppendInfo> {
        let mut parsed: Vec<(BatchHeader, &[u8])> = Vec::with_capacity(1);
        let mut position = 0;
        for batch in batches(records) {
            let (header, bytes) =
                batch.map_err(|source| StorageError::InvalidBatch { position, source })?;
            validate_records(
                bytes,
                &header,
                self.config.record_validation,
                MAX_VALIDATED_BYTES,
            )
            .map_err(|source| StorageError::InvalidBatch { position, source })?;
            if self.config.compaction.is_some() {
                require_keys(bytes, &header, MAX_VALIDATED_BYTES)
                    .map_err(|source| StorageError::InvalidBatch { position, source })?;
            }
            if bytes.len() > self.config.max_batch_bytes {
                return Err(StorageError::BatchTooLarge {
                    size: bytes.len(),
                    max: self.config.max_batch_bytes,
                });
            }
            position += bytes.len();
            parsed.push((header, bytes));
        }
        if parsed.is_empty() {
            return Err(StorageError::EmptyAppend);
        }
        let records_count: u64 = parsed
            .iter()
            .map(|(h, _)| u64::from(h.records_count.unsigned_abs()))
            .sum();
        let max_timestamp = parsed
            .iter()
            .map(|(h, _)| h.max_timestamp)
            .max()
            .unwrap_or(-1);
        let append_time =
            (self.config.timestamp_type == TimestampType::LogAppendTime).then_some(now_ms);
        self.mark_dirty()?;
        let first_offset = self.log_end_offset();
        let last_offset = first_offset + records_count - 1;
        self.note_epoch_start(first_offset)?;
        self.maybe_roll(
            position as u64,
            last_offset,
            append_time.unwrap_or(max_timestamp),
        )?;
        let epoch = self.leader_epoch;
        let (ctx, active) = self.active_mut();
        let position = active.append(ctx, &parsed, first_offset, append_time, epoch)?;
        self.hot.appended(first_offset, position);
        let durable = self.after_append(records_count)?;
        Ok(AppendInfo {
            first_offset,
            last_offset,
            log_append_time: append_time,
            log_start_offset: self.log_start_offset,
            durable,
        })
    }

    /// Starts a new segment if the append of `bytes` ending at `last_offset` would not
    /// fit the active one (size, index room, relative offsets) or it is old enough.
    fn maybe_roll(&mut self, bytes: u64, last_offset: u64, max_timestamp: i64) -> Result<()> {
        let ctx = self.ctx();
        let (base, seg) = self.active();
        let meta = seg.meta(ctx, true)?;
        if meta.size == 0 {
            return Ok(());
        }
        let c = &self.config;
        let too_big = meta.size + bytes > c.segment_bytes;
        let index_full = meta.offset_entries >= c.offset_index_capacity()
            || meta.time_entries >= c.time_index_capacity();
        let offsets_overflow = last_offset - base > u64::from(u32::MAX);
        let too_old = match (c.segment_ms, meta.first_batch_timestamp) {
            (Some(ms), Some(first)) => max_timestamp.saturating_sub(first) > ms as i64,
            _ => false,
        };
        if too_big || index_full || offsets_overflow || too_old || self.roll_for_index_size {
            self.roll(meta.next_offset)?;
            self.roll_for_index_size = false;
        }
        Ok(())
    }

    /// Seals the active segment and starts a new one at `next_offset`.
    fn roll(&mut self, next_offset: u64) -> Result<()> {
        self.collect_rolled_flushes();
        let (ctx, active) = self.active_mut();
        let old_log = active.seal(ctx)?;
        self.rolled_flushes.push(self.flusher.request(old_log));
        let segment = Segment::create(self.ctx(), next_offset)?;
        // The new file's directory entry is made durable by the flusher, not here under
        // the log's write lock; tickets for bytes in the new segment complete after it.
        let dir = self
            .flusher
            .io()
            .open(&self.dir, OpenMode::Read)
            .io_context("open dir", &self.dir)?;
        self.rolled_flushes
            .push(self.flusher.request_dir(std::sync::Arc::new(dir)));
        self.segments.insert(next_offset, segment);
        // Reads below the new segment are not hot (they are in a sealed one).
        self.hot = HotWindow::from_end(next_offset, 0);
        tracing::debug!(dir = %self.dir.display(), base = next_offset, "rolled segment");
        Ok(())
    }

    /// Drops the tickets of finished flushes of rolled segments, keeping the first
    /// failure to report from the next [`Log::flush`].
    fn collect_rolled_flushes(&mut self) {
        let mut failed = None;
        self.rolled_flushes.retain_mut(|t| match t.try_result() {
            None => true,
            Some(Ok(())) => false,
            Some(Err(e)) => {
                failed.get_or_insert(e);
                false
            }
        });
        if let Some(e) = failed {
            tracing::error!(dir = %self.dir.display(), error = %e, "flushing a rolled segment failed");
            self.flush_failure.get_or_insert(e);
        }
    }

    fn after_append(&mut self, records: u64) -> Result<Option<FlushTicket>> {
        match self.config.durability {
            Durability::PageCache => Ok(None),
            Durability::FsyncOnAck => Ok(Some(self.flusher.request(self.active_log_file()?))),
            Durability::Interval { messages, .. } => {
                self.unflushed_messages += records;
                self.oldest_unflushed.get_or_insert_with(Instant::now);
                if messages.is_some_and(|m| self.unflushed_messages >= m) {
                    self.flush_detached()?;
                }
                Ok(None)
            }
        }
    }

    fn active_log_file(&self) -> Result<std::sync::Arc<std::fs::File>> {
        self.active().1.log_file(self.ctx(), true)
    }

    fn flush_detached(&mut self) -> Result<()> {
        self.flusher.request_detached(self.active_log_file()?);
        self.unflushed_messages = 0;
        self.oldest_unflushed = None;
        Ok(())
    }

    /// With `flush.ms` set, hands the active segment to the flusher once the oldest
    /// unflushed append is that old. A broker calls this periodically; it never blocks.
    pub fn maybe_flush(&mut self) -> Result<()> {
        if let Durability::Interval { ms: Some(ms), .. } = self.config.durability {
            if self
                .oldest_unflushed
                .is_some_and(|t| t.elapsed() >= Duration::from_millis(ms))
            {
                self.flush_detached()?;
            }
        }
        Ok(())
    }

    /// A ticket that completes when everything appended so far is on disk.
    pub fn flush_async(&mut self) -> Result<FlushTicket> {
        self.unflushed_messages = 0;
        self.oldest_unflushed = None;
        Ok(self.flusher.request(self.active_log_file()?))
    }

    /// Blocks until everything appended so far, rolled segments included, is on disk.
    /// Not for async contexts: await [`Log::flush_async`] there.
    pub fn flush(&mut self) -> Result<()> {
        if let Some(e) = self.flush_failure.take() {
            return Err(e);
        }
        for ticket in self.rolled_flushes.drain(..) {
            ticket.wait()?;
        }
        self.flush_async()?.wait()
    }

    /// Regions of whole batches from the batch holding `from`, up to `max_bytes` in all,
    /// crossing segments if needed. The first batch comes whole even if larger than
    /// `max_bytes` (KIP-74). `from == log_end_offset` gives no regions; outside
    /// `[log_start_offset, log_end_offset]` is [`StorageError::OffsetOutOfRange`].
    pub fn read(&self, from: u64, max_bytes: u64) -> Result<Vec<FileRegion>> {
        self.read_for_fetch(from, max_bytes, true)
    }

    /// [`Log::read`] under a fetch's rules (KIP-74), in one place: `from` outside the
    /// log is OFFSET_OUT_OF_RANGE; the `first` partition of a response with data gets
    /// its first batch whole even past `max_bytes` (even 0), so a consumer always makes
    /// progress; any later one gets only what fits.
    pub fn read_for_fetch(
        &self,
        from: u64,
        max_bytes: u64,
        first: bool,
    ) -> Result<Vec<FileRegion>> {
        let end = self.log_end_offset();
        self.check_fetch_offset(from, end)?;
        let mut regions = Vec::new();
        if from == end || (max_bytes == 0 && !first) {
            return Ok(regions);
        }
        // The first batch is always read whole, so a "None" below means a gap and never
        // "too large"; a later partition whose first batch does not fit gets nothing.
        let ctx = self.ctx();
        let active_base = self.active_base();
        let start_base = self
            .segments
            .range(..=from)
            .next_back()
            .map_or(0, |(b, _)| *b);
        let mut budget = max_bytes;
        for (&base, segment) in self.segments.range(start_base..) {
            let none_yet = regions.is_empty();
            match segment.read(ctx, base == active_base, from, budget, none_yet)? {
                // A gap (damage cut a segment short): the offset is in a later segment.
                None if none_yet => continue,
                None => break,
                Some((region, to_end)) => {
                    budget = budget.saturating_sub(region.len);
                    regions.push(region);
                    if !to_end || budget == 0 {
                        break;
                    }
                }
            }
        }
        // The first region is the only one that can exceed the limit.
        if regions
            .first()
            .is_some_and(|r| !fits_fetch(first, r, max_bytes))
        {
            regions.clear();
        }
        Ok(regions)
    }

    /// [`Log::read`], copied into memory (tests, replication, tools).
    pub fn read_to_vec(&self, from: u64, max_bytes: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for region in self.read(from, max_bytes)? {
            let bytes = region.read_to_vec().map_err(|source| StorageError::Io {
                op: "read region",
                path: self.dir.clone(),
                source,
            })?;
            out.extend_from_slice(&bytes);
        }
        Ok(out)
    }

    /// Calls `visit` with the header of every batch whose base offset is at or after the
    /// start of the segment holding `from`, oldest first: what a broker needs to rebuild
    /// per-producer state after a restart. Reads headers only.
    pub fn for_each_batch_header(
        &self,
        from: u64,
        mut visit: impl FnMut(&BatchHeader),
    ) -> Result<()> {
        let ctx = self.ctx();
        let active_base = self.active_base();
        let start = self
            .segments
            .range(..=from)
            .next_back()
            .map_or(0, |(b, _)| *b);
        for (&base, segment) in self.segments.range(start..) {
            segment.with_open(ctx, base == active_base, |meta, files| {
                crate::batch_scan::for_each_header(&files.log, meta.size, &mut visit).map_err(|e| {
                    StorageError::Io {
                        op: "scan headers",
                        path: self.dir.clone(),
                        source: e,
                    }
                })
            })?;
        }
        Ok(())
    }

    /// Base offset of the active segment.
    pub fn active_segment_base(&self) -> u64 {
        self.active_base()
    }

    /// Closes the files of segments unused for `idle` (the active one included; it
    /// reopens on the next append or read). Returns how many were closed.
    pub fn close_idle(&self, idle: Duration) -> Result<usize> {
        let mut closed = 0;
        for segment in self.segments.values() {
            closed += usize::from(segment.close_if_idle(idle)?);
        }
        Ok(closed)
    }

    /// Flushes everything and writes the clean-shutdown marker, so the next open reads
    /// nothing.
    pub fn close(mut self) -> Result<()> {
        if self.clean_marker {
            return Ok(());
        }
        self.flush()?;
        for segment in self.segments.values() {
            segment.sync_all(self.flusher.io())?;
        }
        let ctx = self.ctx();
        let (base, active) = self.active();
        let meta = active.meta(ctx, true)?;
        clean_shutdown::write(self.flusher.io(), &self.dir, *base, &meta)
    }

    /// Deletes the log and its directory (DeleteTopics).
    pub fn delete(self) -> Result<()> {
        let dir = self.dir.clone();
        let io = self.flusher.io().clone();
        drop(self);
        io.remove_dir_all(&dir).io_context("delete log dir", &dir)
    }
}
