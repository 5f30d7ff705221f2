//! Turning a segment's files back into a [`SegmentMeta`] when their state is not known:
//! the active segment after an unclean stop, a sealed segment on first access, and a
//! segment just truncated.
//!
//! The indexes are trusted up to their last entry that is consistent (offsets and
//! positions rising, inside the file, pointing at a batch with the expected base offset);
//! only the log after that entry is read again, each batch checked completely. So recovery
//! reads at most about `index.interval.bytes` plus one batch per segment, whatever the
//! log's size. The first damaged batch and everything after it is cut off; a missing or
//! inconsistent index is rebuilt from the log.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use fjord_protocol::record_batch::{BatchHeader, BATCH_HEADER_LEN};

use crate::batch_scan::{BatchScanner, Scanned};
use crate::error::{IoContext, Result};
use crate::offset_index::OffsetIndex;
use crate::segment::{
    index_batch, open_log_file, seal_files, segment_path, MaxTimestamp, SegmentCtx, SegmentFiles,
    SegmentMeta,
};
use crate::time_index::TimeIndex;

/// How many index entries from the end recovery will try before giving up on the index.
const MAX_ENTRY_PROBES: usize = 16;

/// Whether a segment's index files should be there when it is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Indexes {
    /// Written with the segment: missing ones are damage, rebuilt with a warning.
    Expected,
    /// Not written (a segment the cleaner swapped in): built on first load, quietly.
    NotWritten,
}

/// Recovers segment `base`; `active` leaves its indexes writable and preallocated.
pub(crate) fn recover_segment(
    ctx: SegmentCtx<'_>,
    base: u64,
    active: bool,
    indexes: Indexes,
) -> Result<(SegmentMeta, SegmentFiles)> {
    let mut limit = None;
    loop {
        match recover_once(ctx, base, active, limit, indexes)? {
            Recovered::Done(done) => return Ok(*done),
            // The batch at the last trusted index entry was itself damaged (and is now cut
            // off): trust one entry fewer and rescan from the one before it. With no entry
            // left this is a full scan, which never retries.
            Recovered::Retry { entries_used } => limit = Some(entries_used.saturating_sub(1)),
        }
    }
}

#[derive(Debug)]
enum Recovered {
    Done(Box<(SegmentMeta, SegmentFiles)>),
    Retry { entries_used: usize },
}

fn recover_once(
    ctx: SegmentCtx<'_>,
    base: u64,
    active: bool,
    limit: Option<usize>,
    indexes: Indexes,
) -> Result<Recovered> {
    let (dir, config, io) = (ctx.dir, ctx.config, ctx.io);
    let log_path = segment_path(dir, base, "log");
    let log = open_log_file(io, dir, base, false)?;
    let size = log.metadata().io_context("stat segment", &log_path)?.len();
    let trusted = trusted_prefix(ctx, base, &log, size, limit, indexes)?;
    // A log the cleaner has swapped segments into has gaps between batches.
    let gaps = dir.join(crate::log::compaction::CHECKPOINT_FILE).exists();
    let offset_index = OffsetIndex::open_writable(
        io,
        &segment_path(dir, base, "index"),
        trusted.offset_entries,
        config.offset_index_capacity(),
    )?;
    let time_index = TimeIndex::open_writable(
        io,
        &segment_path(dir, base, "timeindex"),
        trusted.time_entries,
        config.time_index_capacity(),
    )?;

    let mut meta = SegmentMeta::empty(base);
    meta.size = trusted.scan_position;
    meta.next_offset = base + u64::from(trusted.scan_relative_offset);
    meta.offset_entries = trusted.offset_entries;
    meta.time_entries = trusted.time_entries;
    meta.max_timestamp = time_index.last().map(|e| MaxTimestamp {
        timestamp: e.timestamp,
        batch_offset: base + u64::from(e.relative_offset),
    });
    let log = Arc::new(log);
    if size > 0 {
        meta.first_batch_timestamp = first_batch_timestamp(&log, &log_path)?;
    }
    let mut files = SegmentFiles {
        log: Arc::clone(&log),
        log_path: log_path.clone(),
        readers: Arc::new(()),
        offset_index,
        time_index,
    };

    let mut scanner = BatchScanner::verifying(&log, trusted.scan_position, size);
    loop {
        let (position, reason) = match scanner.next_batch().io_context("read segment", &log_path)? {
            Scanned::End => break,
            Scanned::Damaged { position, reason } => (position, reason),
            Scanned::Batch { position, header } => {
                match check_offsets(&header, base, meta.next_offset, gaps) {
                    Ok((first, last)) => {
                        let len = header.total_len() as u64;
                        let ts = header.max_timestamp;
                        index_batch(
                            &mut meta, &mut files, base, config, position, first, last, ts, len,
                        );
                        continue;
                    }
                    Err(reason) => (position, reason),
                }
            }
        };
        tracing::warn!(
            segment = %log_path.display(),
            position,
            dropped_bytes = size - position,
            %reason,
            "damaged batch; truncating the segment to its last valid batch"
        );
        io.set_len(&log_path, &log, position)
            .io_context("truncate segment", &log_path)?;
        if position == trusted.scan_position && position > 0 {
            return Ok(Recovered::Retry {
                entries_used: trusted.offset_entries,
            });
        }
        break;
    }
    if meta.size == 0 {
        meta.first_batch_timestamp = None;
    }
    if !active {
        seal_files(&mut meta, &mut files, base)?;
    }
    Ok(Recovered::Done(Box::new((meta, files))))
}

/// How much of a segment's indexes recovery keeps, and where it rescans from.
#[derive(Debug, Clone, Copy)]
struct TrustedPrefix {
    offset_entries: usize,
    time_entries: usize,
    scan_relative_offset: u32,
    scan_position: u64,
}

/// Reads the indexes (mapped read-only: validation touches only the pages it looks at)
/// and decides which entries to keep. Missing or inconsistent indexes keep nothing, which
/// makes the rescan a rebuild.
fn trusted_prefix(
    ctx: SegmentCtx<'_>,
    base: u64,
    log: &std::fs::File,
    size: u64,
    limit: Option<usize>,
    indexes: Indexes,
) -> Result<TrustedPrefix> {
    let index_path = segment_path(ctx.dir, base, "index");
    let time_path = segment_path(ctx.dir, base, "timeindex");
    let rebuild = TrustedPrefix {
        offset_entries: 0,
        time_entries: 0,
        scan_relative_offset: 0,
        scan_position: 0,
    };
    if limit == Some(0) || !index_path.exists() || !time_path.exists() {
        match indexes {
            Indexes::Expected if size > 0 => {
                tracing::warn!(segment = base, "rebuilding indexes from the log");
            }
            _ => tracing::debug!(segment = base, "building indexes from the log"),
        }
        return Ok(rebuild);
    }
    let offset_index = OffsetIndex::open_read_only(ctx.io, &index_path)?;
    let time_index = TimeIndex::open_read_only(ctx.io, &time_path)?;
    let consistent =
        consistent_offset_entries(&offset_index, size).min(limit.unwrap_or(usize::MAX));
    let valid = verify_last_entry(log, &offset_index, base, consistent)?;
    let Some(last) = valid.checked_sub(1).map(|i| offset_index.get(i)) else {
        return Ok(rebuild);
    };
    let time_entries = consistent_time_entries(&time_index, last.relative_offset);
    if time_entries == 0 {
        // Offset entries exist, so time entries must too: the time index is lost.
        tracing::warn!(
            segment = base,
            "time index inconsistent; rebuilding indexes from the log"
        );
        return Ok(rebuild);
    }
    if valid < consistent {
        tracing::warn!(
            segment = base,
            kept = valid,
            "offset index entries point at the wrong batches; dropped"
        );
    }
    Ok(TrustedPrefix {
        offset_entries: valid,
        time_entries,
        scan_relative_offset: last.relative_offset,
        scan_position: u64::from(last.position),
    })
}

/// Entries at the front of the index that rise strictly and point inside the log.
fn consistent_offset_entries(index: &OffsetIndex, log_size: u64) -> usize {
    let mut prev = (0u32, 0u32);
    let mut n = 0;
    while n < index.len() {
        let e = index.get(n);
        if e.relative_offset <= prev.0 || e.position <= prev.1 || u64::from(e.position) >= log_size
        {
            break;
        }
        prev = (e.relative_offset, e.position);
        n += 1;
    }
    n
}

/// Drops trailing entries until the last one points at a batch header with the offset it
/// claims; after [`MAX_ENTRY_PROBES`] misses the index is not trusted at all.
fn verify_last_entry(
    log: &std::fs::File,
    index: &OffsetIndex,
    base: u64,
    mut valid: usize,
) -> Result<usize> {
    for _ in 0..MAX_ENTRY_PROBES {
        let Some(i) = valid.checked_sub(1) else {
            return Ok(0);
        };
        let e = index.get(i);
        let mut buf = [0u8; BATCH_HEADER_LEN];
        let matches = log.read_exact_at(&mut buf, u64::from(e.position)).is_ok()
            && BatchHeader::parse(&buf)
                .is_ok_and(|h| h.base_offset == (base + u64::from(e.relative_offset)) as i64);
        if matches {
            return Ok(valid);
        }
        valid = i;
    }
    Ok(0)
}

/// Entries at the front of the time index with rising timestamps and offsets, none past
/// the batch recovery restarts from.
fn consistent_time_entries(index: &TimeIndex, max_rel: u32) -> usize {
    let mut n = 0;
    let mut prev: Option<(i64, u32)> = None;
    while n < index.len() {
        let e = index.get(n);
        let rising = prev.is_none_or(|(ts, rel)| e.timestamp > ts && e.relative_offset >= rel);
        // An all-zero entry is the preallocated tail, not a record at time 0.
        let zero = e.timestamp == 0 && e.relative_offset == 0;
        if !rising || zero || e.relative_offset > max_rel {
            break;
        }
        prev = Some((e.timestamp, e.relative_offset));
        n += 1;
    }
    n
}

/// The batch's first and last offsets if they continue the segment and fit its indexes.
fn check_offsets(
    header: &BatchHeader,
    base: u64,
    expected: u64,
    gaps: bool,
) -> std::result::Result<(u64, u64), String> {
    let first =
        u64::try_from(header.base_offset).map_err(|_| "negative base offset".to_string())?;
    // Appends are contiguous, so in a log never compacted any other base offset is
    // damage (the base offset is outside the CRC). The cleaner drops whole batches and
    // merges segments, so a compacted log's batches may start past the previous one's
    // end, as Kafka's recovery accepts; one starting before it is still damage.
    if first < expected || (first > expected && !gaps) {
        return Err(format!("base offset {first} where {expected} was expected"));
    }
    let last = first + u64::from(header.last_offset_delta.unsigned_abs());
    if last - base > u64::from(u32::MAX) {
        return Err(format!("offset {last} does not fit segment {base}"));
    }
    Ok((first, last))
}

/// maxTimestamp of the batch at position 0 (what `segment.ms` counts from), if readable.
fn first_batch_timestamp(log: &std::fs::File, path: &Path) -> Result<Option<i64>> {
    let mut buf = [0u8; BATCH_HEADER_LEN];
    match log.read_exact_at(&mut buf, 0) {
        Ok(()) => Ok(BatchHeader::parse(&buf).ok().map(|h| h.max_timestamp)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e).io_context("read segment", path),
    }
}
