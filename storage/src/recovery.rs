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

use fjord_protocol::record_batch::{BatchHeader, BATCH_HEADER_LEN};

use crate::batch_scan::{BatchScanner, Scanned};
use crate::error::{IoContext, Result};
use crate::offset_index::{self, OffsetIndex};
use crate::segment::{
    index_batch, open_log_file, seal_files, segment_path, MaxTimestamp, SegmentCtx, SegmentFiles,
    SegmentMeta,
};
use crate::time_index::{self, TimeIndex};

/// How many index entries from the end recovery will try before giving up on the index.
const MAX_ENTRY_PROBES: usize = 16;

/// Recovers segment `base`; `active` leaves its indexes writable and preallocated.
pub(crate) fn recover_segment(
    ctx: SegmentCtx<'_>,
    base: u64,
    active: bool,
) -> Result<(SegmentMeta, SegmentFiles)> {
    match recover_once(ctx, base, active, false)? {
        Recovered::Done(meta, files) => Ok((*meta, files)),
        // The batch at the last index entry itself was damaged: the index is no guide to
        // what came before it, so read the whole segment (rare: damage exactly there).
        Recovered::Retry => match recover_once(ctx, base, active, true)? {
            Recovered::Done(meta, files) => Ok((*meta, files)),
            Recovered::Retry => unreachable!("a full scan never asks for a retry"),
        },
    }
}

enum Recovered {
    Done(Box<SegmentMeta>, SegmentFiles),
    Retry,
}

fn file_len(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

fn recover_once(
    ctx: SegmentCtx<'_>,
    base: u64,
    active: bool,
    full_scan: bool,
) -> Result<Recovered> {
    let (dir, config) = (ctx.dir, ctx.config);
    let log_path = segment_path(dir, base, "log");
    let index_path = segment_path(dir, base, "index");
    let time_path = segment_path(dir, base, "timeindex");
    let index_len = file_len(&index_path);
    let time_len = file_len(&time_path);
    let log = open_log_file(dir, base, false)?;
    let size = log.metadata().io_context("stat segment", &log_path)?.len();

    let index_entries = index_len.unwrap_or(0) as usize / offset_index::ENTRY_SIZE;
    let mut offset_index =
        OffsetIndex::open_writable(&index_path, index_entries, config.offset_index_capacity())?;
    let time_entries = time_len.unwrap_or(0) as usize / time_index::ENTRY_SIZE;
    let mut time_index =
        TimeIndex::open_writable(&time_path, time_entries, config.time_index_capacity())?;

    let mut valid = if full_scan || index_len.is_none() || time_len.is_none() {
        0
    } else {
        consistent_offset_entries(&offset_index, size)
    };
    valid = verify_last_entry(&log, &offset_index, base, valid)?;
    let (scan_rel, scan_pos) = match valid.checked_sub(1) {
        Some(i) => {
            let e = offset_index.get(i);
            (e.relative_offset, u64::from(e.position))
        }
        None => (0, 0),
    };
    let mut valid_time = if valid == 0 {
        0
    } else {
        consistent_time_entries(&time_index, scan_rel)
    };
    if valid > 0 && valid_time == 0 {
        // Entries exist in the offset index, so the time index must have some: it is lost.
        valid = 0;
        valid_time = 0;
    }
    let rebuilding = valid == 0
        && size > 0
        && (index_entries > 0 || time_entries > 0 || index_len.is_none() || time_len.is_none());
    if valid < index_entries.min(offset_index.capacity()) && index_len.is_some() && !active {
        tracing::warn!(segment = %log_path.display(), kept = valid, found = index_entries, "offset index inconsistent; rebuilding from the log");
    }
    offset_index.truncate(valid)?;
    time_index.truncate(valid_time)?;

    let mut meta = SegmentMeta::empty(base);
    meta.size = scan_pos;
    meta.next_offset = base + u64::from(scan_rel);
    meta.offset_entries = valid;
    meta.time_entries = valid_time;
    meta.max_timestamp = time_index.last().map(|e| MaxTimestamp {
        timestamp: e.timestamp,
        batch_offset: base + u64::from(e.relative_offset),
    });
    let mut files = SegmentFiles {
        log: std::sync::Arc::new(log),
        offset_index,
        time_index,
    };

    let log = std::sync::Arc::clone(&files.log);
    let mut scanner = BatchScanner::verifying(&log, scan_pos, size);
    loop {
        let scanned = scanner.next_batch().io_context("read segment", &log_path)?;
        let (position, reason) = match scanned {
            Scanned::End => break,
            Scanned::Damaged { position, reason } => (position, reason),
            Scanned::Batch { position, header } => {
                match check_offsets(&header, base, meta.next_offset) {
                    Ok((first, last)) => {
                        let len = header.total_len() as u64;
                        index_batch(
                            &mut meta,
                            &mut files,
                            base,
                            config,
                            position,
                            first,
                            last,
                            header.max_timestamp,
                            len,
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
        log.set_len(position)
            .io_context("truncate segment", &log_path)?;
        if position == scan_pos && scan_pos > 0 {
            return Ok(Recovered::Retry);
        }
        break;
    }
    if rebuilding {
        tracing::warn!(segment = %log_path.display(), entries = meta.offset_entries, "rebuilt indexes from the log");
    }
    if meta.first_batch_timestamp.is_none() && meta.size > 0 {
        meta.first_batch_timestamp = first_batch_timestamp(&files, &log_path)?;
    }
    if !active {
        seal_files(&mut meta, &mut files, base)?;
    }
    Ok(Recovered::Done(Box::new(meta), files))
}

/// Entries at the front of the index that rise strictly and point inside the log.
fn consistent_offset_entries(index: &OffsetIndex, log_size: u64) -> usize {
    let mut prev = (0u32, 0u32);
    let mut n = 0;
    while let Some(e) = index.raw(n) {
        if n >= index.len()
            || e.relative_offset <= prev.0
            || e.position <= prev.1
            || u64::from(e.position) >= log_size
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
        let Some(e) = index.raw(n) else { break };
        let rising = prev.is_none_or(|(ts, rel)| e.timestamp > ts && e.relative_offset >= rel);
        if !rising || e.relative_offset > max_rel {
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
) -> std::result::Result<(u64, u64), String> {
    let first =
        u64::try_from(header.base_offset).map_err(|_| "negative base offset".to_string())?;
    // Appends are contiguous: any other base offset is damage, not a gap.
    if first != expected {
        return Err(format!("base offset {first} where {expected} was expected"));
    }
    let last = first + u64::from(header.last_offset_delta.unsigned_abs());
    if last - base > u64::from(u32::MAX) {
        return Err(format!("offset {last} does not fit segment {base}"));
    }
    Ok((first, last))
}

fn first_batch_timestamp(files: &SegmentFiles, path: &Path) -> Result<Option<i64>> {
    let mut buf = [0u8; BATCH_HEADER_LEN];
    files
        .log
        .read_exact_at(&mut buf, 0)
        .io_context("read segment", path)?;
    Ok(BatchHeader::parse(&buf).ok().map(|h| h.max_timestamp))
}
