//! One segment: a `.log` file of batches and its two indexes, plus what the log keeps in
//! memory about it.
//!
//! Files are opened on first use and closed when idle ([`Segment::close_if_idle`]), so a
//! broker with thousands of partitions holds descriptors and mappings only for segments in
//! use. A sealed segment is not even looked at until something reads it: its in-memory
//! summary ([`SegmentMeta`]) is filled in by recovery on first access.

use std::fs::File;
use std::io::IoSlice;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use fjord_protocol::record_batch::{BatchHeader, BATCH_HEADER_LEN};

use crate::batch_scan::{BatchScanner, Scanned};
use crate::config::LogConfig;
use crate::error::{IoContext, Result, StorageError};
use crate::file_region::FileRegion;
use crate::io::{Io, OpenMode};
use crate::offset_index::OffsetIndex;
use crate::recovery::{self, Indexes};
use crate::time_index::TimeIndex;

/// File name of a segment file: the base offset in 20 digits and an extension.
pub(crate) fn segment_path(dir: &Path, base_offset: u64, extension: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{extension}"))
}

/// The largest timestamp in a segment and the base offset of the batch holding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MaxTimestamp {
    pub(crate) timestamp: i64,
    pub(crate) batch_offset: u64,
}

/// What the log knows about a segment without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentMeta {
    /// Bytes of valid batches in the `.log`.
    pub(crate) size: u64,
    /// Offset after the last batch (the base offset when empty).
    pub(crate) next_offset: u64,
    /// Largest timestamp, if any batch.
    pub(crate) max_timestamp: Option<MaxTimestamp>,
    /// Valid entries in the offset index.
    pub(crate) offset_entries: usize,
    /// Valid entries in the time index.
    pub(crate) time_entries: usize,
    /// Bytes appended since the last offset-index entry.
    pub(crate) bytes_since_index: u64,
    /// maxTimestamp of the first batch: what `segment.ms` is measured from.
    pub(crate) first_batch_timestamp: Option<i64>,
}

impl SegmentMeta {
    pub(crate) fn empty(base_offset: u64) -> Self {
        Self {
            size: 0,
            next_offset: base_offset,
            max_timestamp: None,
            offset_entries: 0,
            time_entries: 0,
            bytes_since_index: 0,
            first_batch_timestamp: None,
        }
    }
}

/// The open files of a segment.
#[derive(Debug)]
pub(crate) struct SegmentFiles {
    pub(crate) log: Arc<File>,
    /// The `.log`'s path, kept so appends name it to the I/O seam without formatting it.
    pub(crate) log_path: PathBuf,
    /// Cloned into every region read from the segment: more than one holder means a
    /// read may be in flight, and the file must not be shortened.
    pub(crate) readers: Arc<()>,
    pub(crate) offset_index: OffsetIndex,
    pub(crate) time_index: TimeIndex,
}

impl SegmentFiles {
    /// Opens the files of a segment whose state is known (`meta`).
    pub(crate) fn open(
        ctx: SegmentCtx<'_>,
        base: u64,
        meta: &SegmentMeta,
        active: bool,
    ) -> Result<Self> {
        let (io, dir, config) = (ctx.io, ctx.dir, ctx.config);
        let log = open_log_file(io, dir, base, false)?;
        let (offset_index, time_index) = if active {
            (
                OffsetIndex::open_writable(
                    io,
                    &segment_path(dir, base, "index"),
                    meta.offset_entries,
                    config.offset_index_capacity(),
                )?,
                TimeIndex::open_writable(
                    io,
                    &segment_path(dir, base, "timeindex"),
                    meta.time_entries,
                    config.time_index_capacity(),
                )?,
            )
        } else {
            (
                OffsetIndex::open_read_only(io, &segment_path(dir, base, "index"))?,
                TimeIndex::open_read_only(io, &segment_path(dir, base, "timeindex"))?,
            )
        };
        Ok(Self {
            log: Arc::new(log),
            log_path: segment_path(dir, base, "log"),
            readers: Arc::new(()),
            offset_index,
            time_index,
        })
    }
}

/// Opens a segment's `.log` for reading and appending (creating it empty if `create`).
pub(crate) fn open_log_file(io: &Io, dir: &Path, base: u64, create: bool) -> Result<File> {
    let path = segment_path(dir, base, "log");
    io.open(&path, OpenMode::Append { create })
        .io_context("open segment", &path)
}

#[derive(Debug)]
pub(crate) struct SegmentState {
    /// `None` for a sealed segment nobody has touched since the log was opened.
    pub(crate) meta: Option<SegmentMeta>,
    pub(crate) files: Option<SegmentFiles>,
    /// Size from the directory listing, until `meta` is known.
    size_hint: u64,
    last_used: Instant,
    /// Whether the first load should find index files.
    indexes: Indexes,
}

/// A region read from a segment, and whether it reaches the segment's end.
pub(crate) type RegionRead = (FileRegion, bool);

/// A batch found by a lookup.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Located {
    pub(crate) position: u64,
    pub(crate) header: BatchHeader,
}

/// Where a segment lives and how its log is configured: what lazy opening needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentCtx<'a> {
    pub(crate) dir: &'a Path,
    pub(crate) config: &'a LogConfig,
    pub(crate) io: &'a Io,
}

/// One segment of a log.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: u64,
    state: Mutex<SegmentState>,
}

impl Segment {
    /// Creates the files of a new, empty, active segment.
    pub(crate) fn create(ctx: SegmentCtx<'_>, base_offset: u64) -> Result<Self> {
        let path = segment_path(ctx.dir, base_offset, "log");
        let file = open_log_file(ctx.io, ctx.dir, base_offset, true)?;
        ctx.io
            .set_len(&path, &file, 0)
            .io_context("truncate new segment", &path)?;
        let meta = SegmentMeta::empty(base_offset);
        let files = SegmentFiles::open(ctx, base_offset, &meta, true)?;
        Ok(Self::loaded(base_offset, meta, Some(files)))
    }

    /// A segment whose state is known; `files` may be left closed.
    pub(crate) fn loaded(base_offset: u64, meta: SegmentMeta, files: Option<SegmentFiles>) -> Self {
        Self {
            base_offset,
            state: Mutex::new(SegmentState {
                size_hint: meta.size,
                meta: Some(meta),
                files,
                last_used: Instant::now(),
                indexes: Indexes::Expected,
            }),
        }
    }

    /// A sealed segment known only by name and size, loaded on first access.
    pub(crate) fn unloaded(base_offset: u64, size_hint: u64) -> Self {
        Self::unloaded_with(base_offset, size_hint, Indexes::Expected)
    }

    /// A segment the cleaner just swapped in: its indexes are built on first access
    /// (an expected rebuild, not logged as damage).
    pub(crate) fn swapped_in(base_offset: u64, size: u64) -> Self {
        Self::unloaded_with(base_offset, size, Indexes::NotWritten)
    }

    fn unloaded_with(base_offset: u64, size_hint: u64, indexes: Indexes) -> Self {
        Self {
            base_offset,
            state: Mutex::new(SegmentState {
                meta: None,
                files: None,
                size_hint,
                last_used: Instant::now(),
                indexes,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SegmentState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Size in bytes (from the listing if the segment was never loaded).
    pub(crate) fn size(&self) -> u64 {
        let state = self.lock();
        state.meta.as_ref().map_or(state.size_hint, |m| m.size)
    }

    /// Runs `f` on the segment's state with its files open, opening (and, for a sealed
    /// segment seen for the first time, recovering) them as needed.
    pub(crate) fn with_open<R>(
        &self,
        ctx: SegmentCtx<'_>,
        active: bool,
        f: impl FnOnce(&mut SegmentMeta, &mut SegmentFiles) -> Result<R>,
    ) -> Result<R> {
        let mut state = self.lock();
        let (meta, files) = opened(&mut state, ctx, self.base_offset, active)?;
        f(meta, files)
    }

    /// The segment's summary, loading it if needed.
    pub(crate) fn meta(&self, ctx: SegmentCtx<'_>, active: bool) -> Result<SegmentMeta> {
        if let Some(meta) = &self.lock().meta {
            return Ok(meta.clone());
        }
        self.with_open(ctx, active, |meta, _| Ok(meta.clone()))
    }

    /// The summary if known, without touching files.
    pub(crate) fn meta_if_loaded(&self) -> Option<SegmentMeta> {
        self.lock().meta.clone()
    }

    /// Closes the files if unused for `idle`. Returns whether it closed anything.
    pub(crate) fn close_if_idle(&self, idle: Duration) -> Result<bool> {
        let mut state = self.lock();
        // A segment with regions in flight stays open: its reader count is what keeps
        // truncation away from them.
        let pinned = state
            .files
            .as_ref()
            .is_none_or(|f| Arc::strong_count(&f.readers) > 1);
        if pinned || state.last_used.elapsed() < idle {
            return Ok(false);
        }
        if let Some(files) = state.files.take() {
            files.offset_index.flush()?;
            files.time_index.flush()?;
        }
        Ok(true)
    }

    /// Whether the files are open.
    pub(crate) fn is_open(&self) -> bool {
        self.lock().files.is_some()
    }

    /// Appends validated batches with offsets from `first_offset` on, in one vectored
    /// write of the original bytes with each 61-byte header patched (base offset, and the
    /// LogAppendTime fields when `append_time` is set, and the partition leader epoch
    /// when `leader_epoch` is not -1). Returns the byte position the
    /// batches start at. On error nothing is kept.
    pub(crate) fn append(
        &mut self,
        ctx: SegmentCtx<'_>,
        batches: &[(BatchHeader, &[u8])],
        first_offset: u64,
        append_time: Option<i64>,
        leader_epoch: i32,
    ) -> Result<u64> {
        let base = self.base_offset;
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        let (meta, files) = opened(state, ctx, base, true)?;
        let mut headers = Vec::with_capacity(batches.len());
        let mut offset = first_offset;
        for (header, bytes) in batches {
            let mut patched = [0u8; BATCH_HEADER_LEN];
            patched.copy_from_slice(&bytes[..BATCH_HEADER_LEN]);
            BatchHeader::write_base_offset(&mut patched, offset as i64);
            if leader_epoch >= 0 {
                BatchHeader::write_partition_leader_epoch(&mut patched, leader_epoch);
            }
            if let Some(now) = append_time {
                BatchHeader::set_log_append_time(&mut patched, &bytes[BATCH_HEADER_LEN..], now);
            }
            headers.push(patched);
            offset += u64::from(header.last_offset_delta.unsigned_abs()) + 1;
        }
        let mut slices = Vec::with_capacity(batches.len() * 2);
        for (patched, (_, bytes)) in headers.iter().zip(batches) {
            slices.push(IoSlice::new(patched));
            slices.push(IoSlice::new(&bytes[BATCH_HEADER_LEN..]));
        }
        let path = &files.log_path;
        if let Err(e) = ctx.io.write_all_vectored(path, &files.log, &mut slices) {
            // Take back a partial write so the file ends at a batch boundary.
            let _ = ctx.io.set_len(path, &files.log, meta.size);
            return Err(StorageError::Io {
                op: "append",
                path: path.clone(),
                source: e,
            });
        }
        let start = meta.size;
        let mut position = start;
        let mut offset = first_offset;
        for (header, bytes) in batches {
            let last = offset + u64::from(header.last_offset_delta.unsigned_abs());
            let timestamp = append_time.unwrap_or(header.max_timestamp);
            index_batch(
                meta,
                files,
                base,
                ctx.config,
                position,
                offset,
                last,
                timestamp,
                bytes.len() as u64,
            );
            position += bytes.len() as u64;
            offset = last + 1;
        }
        Ok(start)
    }

    /// A region of whole batches starting at the batch holding `offset`, at most
    /// `max_bytes` long, except that the first batch is returned whole even when larger if
    /// `first_may_exceed` (KIP-74: a consumer can always make progress). Returns the
    /// region and whether it runs to the end of the segment.
    pub(crate) fn read(
        &self,
        ctx: SegmentCtx<'_>,
        active: bool,
        offset: u64,
        max_bytes: u64,
        first_may_exceed: bool,
    ) -> Result<Option<RegionRead>> {
        let base = self.base_offset;
        self.with_open(ctx, active, |meta, files| {
            read_open(base, meta, files, offset, max_bytes, first_may_exceed)
        })
    }

    /// The byte position of the batch holding `offset`, if this segment has it.
    pub(crate) fn position_of(
        &self,
        ctx: SegmentCtx<'_>,
        active: bool,
        offset: u64,
    ) -> Result<Option<u64>> {
        let base = self.base_offset;
        self.with_open(ctx, active, |meta, files| {
            Ok(locate_in(base, meta, files, offset)?.map(|l| l.position))
        })
    }

    /// [`Segment::read`] (first batch allowed past `max_bytes`) only if it can start at
    /// once: `None` when another thread holds the segment or its files are closed.
    /// Otherwise also gives the next offset, read under the same lock; from there on,
    /// and with `max_bytes` 0, nothing is read.
    pub(crate) fn try_read_open(
        &self,
        offset: u64,
        max_bytes: u64,
        first_may_exceed: bool,
    ) -> Option<(u64, Result<Option<RegionRead>>)> {
        let mut guard = match self.state.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        let state = &mut *guard;
        let (Some(meta), Some(files)) = (state.meta.as_ref(), state.files.as_ref()) else {
            return None;
        };
        state.last_used = Instant::now();
        let end = meta.next_offset;
        if offset >= end || (max_bytes == 0 && !first_may_exceed) {
            return Some((end, Ok(None)));
        }
        let found = read_open(
            self.base_offset,
            meta,
            files,
            offset,
            max_bytes,
            first_may_exceed,
        );
        Some((end, found))
    }

    /// Seals the active segment: a last time-index entry for its largest timestamp, then
    /// both indexes trimmed and remapped read-only. Returns the `.log` for a final flush.
    pub(crate) fn seal(&mut self, ctx: SegmentCtx<'_>) -> Result<Arc<File>> {
        let base = self.base_offset;
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        let (meta, files) = opened(state, ctx, base, true)?;
        seal_files(meta, files, base)?;
        Ok(Arc::clone(&files.log))
    }

    /// Removes every batch from the one holding `offset` on (the whole batch: a batch is
    /// never split). The segment becomes the active one; its indexes are cut back by the
    /// same code that recovers a torn tail.
    pub(crate) fn truncate_to(&mut self, ctx: SegmentCtx<'_>, offset: u64) -> Result<()> {
        let base = self.base_offset;
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        let (meta, files) = opened(state, ctx, base, true)?;
        // A region read earlier may be mapped or in a sendfile: shortening the file
        // under it would make a mapped reader fault (SIGBUS). Refuse instead.
        if Arc::strong_count(&files.readers) > 1 {
            return Err(StorageError::RegionsInUse { base_offset: base });
        }
        if let Some(cut) = locate_in(base, meta, files, offset)? {
            let path = segment_path(ctx.dir, base, "log");
            ctx.io
                .set_len(&path, &files.log, cut.position)
                .and_then(|()| ctx.io.sync(&files.log, false))
                .io_context("truncate segment", &path)?;
        }
        state.files = None;
        let (meta, files) = recovery::recover_segment(ctx, base, true, Indexes::Expected)?;
        state.size_hint = meta.size;
        state.meta = Some(meta);
        state.files = Some(files);
        Ok(())
    }

    /// Deletes the segment's files. Open regions keep reading the unlinked `.log`.
    pub(crate) fn delete_files(&self, io: &Io, dir: &Path) -> Result<()> {
        self.lock().files = None;
        for ext in ["log", "index", "timeindex"] {
            let path = segment_path(dir, self.base_offset, ext);
            match io.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(StorageError::Io {
                        op: "delete segment",
                        path,
                        source: e,
                    })
                }
            }
        }
        Ok(())
    }

    /// Closes the segment's files (its `.log` stays open for regions read from it).
    pub(crate) fn drop_files(&self) {
        self.lock().files = None;
    }

    /// Whether a region read from this segment may still be in use.
    pub(crate) fn has_readers(&self) -> bool {
        self.lock()
            .files
            .as_ref()
            .is_some_and(|f| Arc::strong_count(&f.readers) > 1)
    }

    /// Syncs the index mappings and the `.log` (clean shutdown).
    pub(crate) fn sync_all(&self, io: &Io) -> Result<()> {
        let state = self.lock();
        if let Some(files) = &state.files {
            files.offset_index.flush()?;
            files.time_index.flush()?;
            io.sync(&files.log, false)
                .map_err(|source| StorageError::Io {
                    op: "fdatasync",
                    path: PathBuf::from(format!("segment {}", self.base_offset)),
                    source,
                })?;
        }
        Ok(())
    }

    /// The open `.log` of the active segment (opening it if idle-closed).
    pub(crate) fn log_file(&self, ctx: SegmentCtx<'_>, active: bool) -> Result<Arc<File>> {
        self.with_open(ctx, active, |_, files| Ok(Arc::clone(&files.log)))
    }
}

/// Opens the files (recovering the segment first if needed), marks it used, and hands
/// out its summary and files together.
fn opened<'s>(
    state: &'s mut SegmentState,
    ctx: SegmentCtx<'_>,
    base: u64,
    active: bool,
) -> Result<(&'s mut SegmentMeta, &'s mut SegmentFiles)> {
    open_state(state, ctx, base, active)?;
    state.last_used = Instant::now();
    match (&mut state.meta, &mut state.files) {
        (Some(meta), Some(files)) => Ok((meta, files)),
        _ => unreachable!("open_state fills meta and files"),
    }
}

fn open_state(
    state: &mut SegmentState,
    ctx: SegmentCtx<'_>,
    base: u64,
    active: bool,
) -> Result<()> {
    if state.files.is_some() {
        return Ok(());
    }
    match &state.meta {
        Some(meta) => {
            state.files = Some(SegmentFiles::open(ctx, base, meta, active)?);
        }
        None => {
            let (meta, files) = recovery::recover_segment(ctx, base, active, state.indexes)?;
            state.size_hint = meta.size;
            state.meta = Some(meta);
            state.files = Some(files);
        }
    }
    Ok(())
}

/// Adds the final time-index entry (the segment's largest timestamp) and trims both
/// indexes, mapping them read-only.
pub(crate) fn seal_files(
    meta: &mut SegmentMeta,
    files: &mut SegmentFiles,
    base: u64,
) -> Result<()> {
    if let Some(max) = meta.max_timestamp {
        files
            .time_index
            .maybe_push(max.timestamp, relative(base, max.batch_offset));
    }
    files.offset_index.seal()?;
    files.time_index.seal()?;
    meta.offset_entries = files.offset_index.len();
    meta.time_entries = files.time_index.len();
    Ok(())
}

/// `offset - base` as the u32 the indexes store. Callers keep segments within u32 range
/// (the log rolls before an offset would not fit).
pub(crate) fn relative(base: u64, offset: u64) -> u32 {
    u32::try_from(offset.saturating_sub(base)).unwrap_or(u32::MAX)
}

/// Updates meta and indexes for a batch just written (or found by recovery) at `position`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn index_batch(
    meta: &mut SegmentMeta,
    files: &mut SegmentFiles,
    base: u64,
    config: &LogConfig,
    position: u64,
    first_offset: u64,
    last_offset: u64,
    max_timestamp: i64,
    len: u64,
) {
    if meta
        .max_timestamp
        .is_none_or(|m| max_timestamp > m.timestamp)
    {
        meta.max_timestamp = Some(MaxTimestamp {
            timestamp: max_timestamp,
            batch_offset: first_offset,
        });
    }
    if meta.bytes_since_index > config.index_interval_bytes {
        files
            .offset_index
            .push(relative(base, first_offset), position as u32);
        if let Some(max) = meta.max_timestamp {
            files
                .time_index
                .maybe_push(max.timestamp, relative(base, max.batch_offset));
        }
        meta.bytes_since_index = 0;
    }
    meta.offset_entries = files.offset_index.len();
    meta.time_entries = files.time_index.len();
    meta.bytes_since_index += len;
    meta.size = position + len;
    meta.next_offset = last_offset + 1;
    if meta.first_batch_timestamp.is_none() {
        meta.first_batch_timestamp = Some(max_timestamp);
    }
}

/// The region of whole batches from the one holding `offset`, at most `max_bytes` long
/// (the first batch alone may exceed it if `first_may_exceed`), and whether it reaches
/// the segment's end; `None` if no batch holds `offset` here.
fn read_open(
    base: u64,
    meta: &SegmentMeta,
    files: &SegmentFiles,
    offset: u64,
    max_bytes: u64,
    first_may_exceed: bool,
) -> Result<Option<RegionRead>> {
    let Some(first) = locate_in(base, meta, files, offset)? else {
        return Ok(None);
    };
    let start = first.position;
    let first_len = first.header.total_len() as u64;
    let end = if first_len > max_bytes {
        if !first_may_exceed {
            return Ok(None);
        }
        start + first_len
    } else {
        end_of_region(
            meta,
            files,
            start,
            first_len,
            start.saturating_add(max_bytes).min(meta.size),
        )?
    };
    let region = FileRegion::pinned(
        Arc::clone(&files.log),
        start,
        end - start,
        first.header.base_offset as u64,
        &files.readers,
    );
    Ok(Some((region, end >= meta.size)))
}

/// Index lookup plus a short header walk to the batch holding `offset`.
fn locate_in(
    base: u64,
    meta: &SegmentMeta,
    files: &SegmentFiles,
    offset: u64,
) -> Result<Option<Located>> {
    if offset >= meta.next_offset {
        return Ok(None);
    }
    let (entry, next) = files.offset_index.lookup_bounded(relative(base, offset));
    let start = entry.map_or(0, |e| u64::from(e.position));
    // The batch starts before the next entry: one read up to its header usually suffices.
    let span = next.map_or(meta.size, |p| u64::from(p) + BATCH_HEADER_LEN as u64) - start;
    let mut scanner = BatchScanner::headers(&files.log, start, meta.size, span);
    loop {
        match scanner
            .next_batch()
            .map_err(|e| io_err("read segment", base, e))?
        {
            Scanned::Batch { position, header } => {
                if header.last_offset() >= offset as i64 {
                    return Ok(Some(Located { position, header }));
                }
            }
            Scanned::End => return Ok(None),
            Scanned::Damaged { position, reason } => {
                return Err(StorageError::Corrupt {
                    path: PathBuf::from(format!("segment {base:020}")),
                    position,
                    reason,
                })
            }
        }
    }
}

/// Where a region starting at `start` with a first batch of `first_len` bytes ends, at
/// or before `limit`: on a batch boundary, and never before the end of its first batch.
///
/// The segment end and index entries are boundaries known without I/O: an index entry
/// within 1/8 of `limit` is taken as is (giving up at most that fraction of the budget,
/// at most `index.interval.bytes`, to save a read); otherwise headers are walked from the
/// nearest entry below `limit`.
fn end_of_region(
    meta: &SegmentMeta,
    files: &SegmentFiles,
    start: u64,
    first_len: u64,
    limit: u64,
) -> Result<u64> {
    if limit >= meta.size {
        return Ok(meta.size);
    }
    let min_end = start + first_len;
    let entry = files
        .offset_index
        .lookup_position(u32::try_from(limit).unwrap_or(u32::MAX))
        .map(|e| u64::from(e.position))
        .filter(|p| *p >= min_end);
    let budget = limit - start;
    if let Some(position) = entry {
        if limit - position <= budget / 8 {
            return Ok(position);
        }
    }
    let from = entry.unwrap_or(min_end);
    let mut scanner = BatchScanner::headers(&files.log, from, limit, limit - from);
    loop {
        match scanner
            .next_batch()
            .map_err(|e| io_err("read segment", 0, e))?
        {
            Scanned::Batch { .. } => {}
            Scanned::End | Scanned::Damaged { .. } => return Ok(scanner.position()),
        }
    }
}

fn io_err(op: &'static str, base: u64, source: std::io::Error) -> StorageError {
    StorageError::Io {
        op,
        path: PathBuf::from(format!("segment {base:020}")),
        source,
    }
}
