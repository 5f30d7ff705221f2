//! One RecordBatch v2 rewritten without some of its records: what the log cleaner does
//! to each batch (Kafka's `MemoryRecords.filterTo`). Kept records keep their offsets
//! (offset deltas from the same base offset), keys, values, headers and timestamps; the
//! batch keeps its codec, timestamp type, producer ID, epoch and base sequence, and its
//! last offset delta even when its last record went, so an idempotent producer's
//! sequence checks still line up.
//!
//! KIP-534: the first time a batch with a tombstone is cleaned, its delete horizon
//! (when the tombstone may go) is stored in the batch: attribute bit 6 set and the base
//! timestamp holding the horizon, record timestamps then relative to it.

use crate::compression::Compression;
use crate::error::{Error, Result};
use crate::varint::{varint_len, write_varint, write_varlong};

use super::header::{BatchHeader, TimestampType, BATCH_HEADER_LEN, LOG_OVERHEAD};
use super::records::{Record, RecordIter};

/// The batch attribute bit saying the base timestamp is the delete horizon (KIP-534).
pub const ATTR_DELETE_HORIZON: i16 = 0x40;

/// A record as the cleaner's filter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// Its offset.
    pub offset: i64,
    /// Its key (`None`: no key).
    pub key: Option<&'a [u8]>,
    /// Its value (`None`: a tombstone).
    pub value: Option<&'a [u8]>,
    /// Its timestamp (the batch's for LogAppendTime).
    pub timestamp: i64,
}

/// How the cleaner treats the batch as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterOptions {
    /// Keep a header-only batch if no record stays (a producer's last batch: its
    /// sequence must survive).
    pub retain_empty: bool,
    /// The delete horizon to store if a kept record is a tombstone and the batch has
    /// none yet (`now + delete.retention.ms`).
    pub new_delete_horizon: i64,
    /// Largest decompressed payload accepted.
    pub max_decompressed: usize,
}

/// What became of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filtered {
    /// Every record stays and nothing changes: the original bytes are the result.
    Unchanged,
    /// Some records stay: the rewritten batch.
    Rewritten(Vec<u8>),
    /// No record stays but the batch must: its header alone (no records).
    Empty(Vec<u8>),
    /// No record stays: the batch goes.
    Dropped,
}

/// Counts of one batch's filtering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterStats {
    /// Records read.
    pub read: usize,
    /// Records kept.
    pub kept: usize,
}

/// The batch's delete horizon, if it has one (KIP-534).
pub fn delete_horizon(header: &BatchHeader) -> Option<i64> {
    (header.attributes & ATTR_DELETE_HORIZON != 0).then_some(header.base_timestamp)
}

/// Filters `batch` (one whole RecordBatch v2, length prefix included): `keep` decides
/// for each record. Control batches are left as they are: [`filter_marker`] decides
/// theirs.
pub fn filter_batch(
    batch: &[u8],
    options: &FilterOptions,
    mut keep: impl FnMut(&Candidate<'_>) -> bool,
) -> Result<(Filtered, FilterStats)> {
    let header = BatchHeader::parse(batch)?;
    if header.is_control() {
        let n = usize::try_from(header.records_count).unwrap_or(0);
        return Ok((Filtered::Unchanged, FilterStats { read: n, kept: n }));
    }
    let codec = header.compression()?;
    let payload = payload_of(batch, &header, codec, options.max_decompressed)?;
    let count = usize::try_from(header.records_count).unwrap_or(0);
    let log_append = header.timestamp_type() == TimestampType::LogAppendTime;
    let mut kept: Vec<(Record<'_>, i64)> = Vec::new();
    let mut stats = FilterStats::default();
    for record in RecordIter::new(&payload, count) {
        let record = record?;
        stats.read += 1;
        let timestamp = timestamp_of(&header, log_append, &record);
        let candidate = Candidate {
            offset: header.base_offset + i64::from(record.offset_delta),
            key: record.key,
            value: record.value,
            timestamp,
        };
        if keep(&candidate) {
            kept.push((record, timestamp));
        }
    }
    stats.kept = kept.len();
    let tombstones = kept.iter().any(|(r, _)| r.value.is_none());
    let horizon =
        delete_horizon(&header).or_else(|| tombstones.then_some(options.new_delete_horizon));
    if kept.is_empty() {
        let result = if options.retain_empty && header.records_count == 0 {
            Filtered::Unchanged
        } else if options.retain_empty {
            Filtered::Empty(empty_batch(&header))
        } else {
            Filtered::Dropped
        };
        return Ok((result, stats));
    }
    if kept.len() == stats.read && horizon == delete_horizon(&header) {
        return Ok((Filtered::Unchanged, stats));
    }
    let rebuilt = rebuild(&header, codec, &kept, horizon)?;
    Ok((Filtered::Rewritten(rebuilt), stats))
}

/// Filters a control batch (a transaction marker) the cleaner may discard because no
/// record of its transaction is left (Kafka's `containsMarkerForEmptyTxn`): like a
/// tombstone, it first gets a delete horizon (`options.new_delete_horizon`, its records
/// kept), and goes in the first pass at or after that horizon (`now_ms`); a header stays
/// if `options.retain_empty` (its producer's last batch). A marker already emptied goes
/// at once unless it must stay.
pub fn filter_marker(batch: &[u8], options: &FilterOptions, now_ms: i64) -> Result<Filtered> {
    let header = BatchHeader::parse(batch)?;
    let gone = |header: &BatchHeader| {
        if !options.retain_empty {
            Filtered::Dropped
        } else if header.records_count == 0 {
            Filtered::Unchanged
        } else {
            Filtered::Empty(empty_batch(header))
        }
    };
    if header.records_count == 0 {
        return Ok(gone(&header));
    }
    match delete_horizon(&header) {
        Some(horizon) if horizon <= now_ms => Ok(gone(&header)),
        Some(_) => Ok(Filtered::Unchanged),
        None => {
            let codec = header.compression()?;
            let payload = payload_of(batch, &header, codec, options.max_decompressed)?;
            let count = usize::try_from(header.records_count).unwrap_or(0);
            let log_append = header.timestamp_type() == TimestampType::LogAppendTime;
            let records = RecordIter::new(&payload, count)
                .map(|r| r.map(|r| (r, timestamp_of(&header, log_append, &r))))
                .collect::<Result<Vec<_>>>()?;
            let rebuilt = rebuild(&header, codec, &records, Some(options.new_delete_horizon))?;
            Ok(Filtered::Rewritten(rebuilt))
        }
    }
}

/// The records' bytes of `batch`, decompressed (at most `max_decompressed`).
fn payload_of<'a>(
    batch: &'a [u8],
    header: &BatchHeader,
    codec: Compression,
    max_decompressed: usize,
) -> Result<std::borrow::Cow<'a, [u8]>> {
    let end = header.total_len().min(batch.len());
    let stored = batch
        .get(BATCH_HEADER_LEN..end)
        .ok_or(Error::UnexpectedEof {
            offset: BATCH_HEADER_LEN,
            need: header.total_len(),
            have: batch.len(),
        })?;
    Ok(match codec {
        Compression::None => std::borrow::Cow::Borrowed(stored),
        c => std::borrow::Cow::Owned(c.decompress(stored, max_decompressed)?),
    })
}

/// A record's timestamp: the batch's for LogAppendTime.
fn timestamp_of(header: &BatchHeader, log_append: bool, record: &Record<'_>) -> i64 {
    if log_append {
        header.max_timestamp
    } else {
        header.base_timestamp + record.timestamp_delta
    }
}

/// A batch of the kept records: the same base offset, producer fields and last offset
/// delta; the base timestamp is the delete horizon if there is one, else the first kept
/// record's timestamp.
fn rebuild(
    header: &BatchHeader,
    codec: Compression,
    kept: &[(Record<'_>, i64)],
    horizon: Option<i64>,
) -> Result<Vec<u8>> {
    let log_append = header.timestamp_type() == TimestampType::LogAppendTime;
    let base_timestamp = horizon.unwrap_or_else(|| {
        if log_append {
            header.base_timestamp
        } else {
            kept.first().map_or(header.base_timestamp, |(_, ts)| *ts)
        }
    });
    let mut records = Vec::new();
    for (r, ts) in kept {
        // LogAppendTime records keep their deltas (readers take the batch's time).
        let delta = if log_append {
            r.timestamp_delta
        } else {
            ts - base_timestamp
        };
        write_record(&mut records, r, delta)?;
    }
    let payload = codec.compress(&records)?;
    let max_timestamp = if log_append {
        header.max_timestamp
    } else {
        kept.iter()
            .map(|(_, ts)| *ts)
            .max()
            .unwrap_or(header.max_timestamp)
    };
    let mut attributes = header.attributes & !ATTR_DELETE_HORIZON;
    if horizon.is_some() {
        attributes |= ATTR_DELETE_HORIZON;
    }
    let out_header = BatchHeader {
        batch_length: i32::try_from(BATCH_HEADER_LEN - LOG_OVERHEAD + payload.len())
            .unwrap_or(i32::MAX),
        crc: 0,
        attributes,
        base_timestamp,
        max_timestamp,
        records_count: i32::try_from(kept.len()).unwrap_or(i32::MAX),
        ..*header
    };
    let mut out = vec![0u8; BATCH_HEADER_LEN];
    out_header.encode_into(&mut out);
    out.extend_from_slice(&payload);
    BatchHeader::seal_crc(&mut out);
    Ok(out)
}

/// The header of `header`'s batch with no records (Kafka's `writeEmptyHeader`): no
/// codec and no delete horizon, the same offsets and producer fields, both timestamps
/// the batch's largest.
fn empty_batch(header: &BatchHeader) -> Vec<u8> {
    let codec_bits = 0x07;
    let out_header = BatchHeader {
        batch_length: i32::try_from(BATCH_HEADER_LEN - LOG_OVERHEAD).unwrap_or(i32::MAX),
        crc: 0,
        attributes: header.attributes & !(codec_bits | ATTR_DELETE_HORIZON),
        base_timestamp: header.max_timestamp,
        records_count: 0,
        ..*header
    };
    let mut out = vec![0u8; BATCH_HEADER_LEN];
    out_header.encode_into(&mut out);
    BatchHeader::seal_crc(&mut out);
    out
}

fn write_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => write_varint(out, -1),
        Some(b) => {
            write_varint(out, i32::try_from(b.len()).unwrap_or(i32::MAX));
            out.extend_from_slice(b);
        }
    }
}

/// Writes one record as it was, with `timestamp_delta`.
fn write_record(out: &mut Vec<u8>, r: &Record<'_>, timestamp_delta: i64) -> Result<()> {
    let mut body = Vec::with_capacity(16 + r.value.map_or(0, <[u8]>::len));
    body.push(r.attributes as u8);
    write_varlong(&mut body, timestamp_delta);
    write_varint(&mut body, r.offset_delta);
    write_bytes(&mut body, r.key);
    write_bytes(&mut body, r.value);
    let headers: Vec<_> = r.headers().collect::<Result<_>>()?;
    write_varint(&mut body, i32::try_from(headers.len()).unwrap_or(i32::MAX));
    for h in headers {
        write_bytes(&mut body, Some(h.key));
        write_bytes(&mut body, h.value);
    }
    let len = i32::try_from(body.len()).unwrap_or(i32::MAX);
    out.reserve(varint_len(len) + body.len());
    write_varint(out, len);
    out.extend_from_slice(&body);
    Ok(())
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
