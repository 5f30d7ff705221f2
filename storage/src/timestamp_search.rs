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
const MAX_DECOMPRESSED: usize = 64 << 20;

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
    let last = header.last_offset();
    for record in RecordIter::new(records, count) {
        let record = record?;
        // Record fields are the producer's, never checked at append: bound them.
        let offset = header
            .base_offset
            .checked_add(i64::from(record.offset_delta));
        let Some(offset) = offset.filter(|o| (header.base_offset..=last).contains(o)) else {
            return Err(fjord_protocol::Error::MalformedRecord {
                offset: 0,
                what: "offset delta outside the batch",
            });
        };
        let timestamp = match header.timestamp_type() {
            TimestampType::LogAppendTime => header.max_timestamp,
            TimestampType::CreateTime => {
                header.base_timestamp.saturating_add(record.timestamp_delta)
            }
        };
        if accept(offset as u64, timestamp) {
            return Ok(Some(TimestampOffset {
                offset: offset as u64,
                timestamp,
            }));
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
        match find_record(&batch, &header, |offset, ts| {
            offset >= min_offset && ts >= target
        }) {
            Ok(Some(hit)) => return Ok(Some(hit)),
            Ok(None) => {}
            Err(e) => {
                // The header says a record here is late enough; the records cannot say
                // which. Start the consumer at the batch (it skips what it does not want).
                tracing::warn!(segment = base, position, error = %e, "undecodable records in a timestamp lookup");
                let offset = (header.base_offset as u64).max(min_offset);
                return Ok(Some(TimestampOffset {
                    offset,
                    timestamp: header.max_timestamp,
                }));
            }
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
                let hit = find_record(&batch, &header, |_, ts| ts >= max.timestamp).unwrap_or_else(|e| {
                    tracing::warn!(segment = base, position, error = %e, "undecodable records in a max-timestamp lookup");
                    None
                });
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
