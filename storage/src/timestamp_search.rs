//! Record-level timestamp lookups (ListOffsets by time, and by largest timestamp).
//!
//! Indexes narrow the search to a few batches by their maxTimestamp; inside a batch the
//! answer needs the records themselves, so this is the one storage path that decompresses.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use fjord_protocol::record_batch::{BatchHeader, RecordIter, TimestampType, BATCH_HEADER_LEN};

use crate::batch_scan::{BatchScanner, Scanned};
use crate::error::{Result, StorageError};
use crate::segment::{relative, SegmentFiles, SegmentMeta};

/// An offset found by timestamp, with the record's timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    /// The record's offset.
    pub offset: u64,
    /// The record's timestamp (-1 for the "latest"/"earliest" answers, as Kafka).
    pub timestamp: i64,
}

/// Largest decompressed batch this search will hold in memory.
const MAX_DECOMPRESSED: usize = 256 << 20;

fn corrupt(base: u64, position: u64, reason: String) -> StorageError {
    StorageError::Corrupt {
        path: PathBuf::from(format!("segment {base:020}")),
        position,
        reason,
    }
}

/// Reads a whole batch at `position` whose header is `header`.
fn read_batch(
    files: &SegmentFiles,
    base: u64,
    position: u64,
    header: &BatchHeader,
) -> Result<Vec<u8>> {
    let mut bytes = vec![0u8; header.total_len()];
    files
        .log
        .read_exact_at(&mut bytes, position)
        .map_err(|e| corrupt(base, position, e.to_string()))?;
    Ok(bytes)
}

/// Calls `visit(offset, timestamp)` for each record of `batch` until it returns true;
/// returns the accepted record.
fn find_record(
    batch: &[u8],
    header: &BatchHeader,
    mut accept: impl FnMut(u64, i64) -> bool,
) -> std::result::Result<Option<TimestampOffset>, fjord_protocol::Error> {
    let codec = header.compression()?;
    let payload = &batch[BATCH_HEADER_LEN..];
    let limit = MAX_DECOMPRESSED.min(payload.len().saturating_mul(1024).max(1 << 20));
    let decompressed;
    let records = if codec == fjord_protocol::compression::Compression::None {
        payload
    } else {
        decompressed = codec.decompress(payload, limit)?;
        &decompressed
    };
    let count = usize::try_from(header.records_count).unwrap_or(0);
    for record in RecordIter::new(records, count) {
        let record = record?;
        let offset = (header.base_offset + i64::from(record.offset_delta)) as u64;
        let timestamp = match header.timestamp_type() {
            TimestampType::LogAppendTime => header.max_timestamp,
            TimestampType::CreateTime => header.base_timestamp + record.timestamp_delta,
        };
        if accept(offset, timestamp) {
            return Ok(Some(TimestampOffset { offset, timestamp }));
        }
    }
    Ok(None)
}

/// The first record at or after `min_offset` whose timestamp is at least `target`.
pub(crate) fn search_segment(
    base: u64,
    meta: &SegmentMeta,
    files: &SegmentFiles,
    target: i64,
    min_offset: u64,
) -> Result<Option<TimestampOffset>> {
    let start_rel = files
        .time_index
        .lookup(target)
        .map_or(0, |e| e.relative_offset);
    let start_rel = start_rel.max(relative(base, min_offset));
    let start = files
        .offset_index
        .lookup(start_rel)
        .map_or(0, |e| u64::from(e.position));
    let mut scanner = BatchScanner::headers(&files.log, start, meta.size, 4096);
    loop {
        let scanned = scanner
            .next_batch()
            .map_err(|e| corrupt(base, start, e.to_string()))?;
        let (position, header) = match scanned {
            Scanned::Batch { position, header } => (position, header),
            Scanned::End => return Ok(None),
            Scanned::Damaged { position, reason } => return Err(corrupt(base, position, reason)),
        };
        if header.max_timestamp < target || header.last_offset() < min_offset as i64 {
            continue;
        }
        let batch = read_batch(files, base, position, &header)?;
        let hit = find_record(&batch, &header, |offset, ts| {
            offset >= min_offset && ts >= target
        })
        .map_err(|e| corrupt(base, position, e.to_string()))?;
        if hit.is_some() {
            return Ok(hit);
        }
    }
}

/// The record holding the segment's largest timestamp (the first such record).
pub(crate) fn max_timestamp_record(
    base: u64,
    meta: &SegmentMeta,
    files: &SegmentFiles,
) -> Result<Option<TimestampOffset>> {
    let Some(max) = meta.max_timestamp else {
        return Ok(None);
    };
    let start = files
        .offset_index
        .lookup(relative(base, max.batch_offset))
        .map_or(0, |e| u64::from(e.position));
    let mut scanner = BatchScanner::headers(&files.log, start, meta.size, 4096);
    loop {
        match scanner
            .next_batch()
            .map_err(|e| corrupt(base, start, e.to_string()))?
        {
            Scanned::Batch { position, header }
                if header.base_offset as u64 == max.batch_offset =>
            {
                let batch = read_batch(files, base, position, &header)?;
                let hit = find_record(&batch, &header, |_, ts| ts >= max.timestamp)
                    .map_err(|e| corrupt(base, position, e.to_string()))?;
                // A producer may claim a maxTimestamp no record has: answer the batch then.
                return Ok(hit.or(Some(TimestampOffset {
                    offset: header.last_offset() as u64,
                    timestamp: max.timestamp,
                })));
            }
            Scanned::Batch { .. } => {}
            Scanned::End => return Ok(None),
            Scanned::Damaged { position, reason } => return Err(corrupt(base, position, reason)),
        }
    }
}
