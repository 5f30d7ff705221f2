//! The 61-byte RecordBatch v2 header: parsing, validation, and the few in-place rewrites
//! the broker is allowed to make.

use crate::compression::Compression;
use crate::error::{Error, Result};

/// Bytes before the batchLength-covered part: baseOffset (8) + batchLength (4).
pub const LOG_OVERHEAD: usize = 12;
/// Size of the whole v2 header, up to the first record.
pub const BATCH_HEADER_LEN: usize = 61;
/// Offset of the magic byte.
pub const MAGIC_OFFSET: usize = 16;
/// Offset of the CRC field.
pub const CRC_OFFSET: usize = 17;
/// First byte covered by the CRC (the attributes).
pub const CRC_START: usize = 21;
/// Offset of the attributes field.
pub const ATTRIBUTES_OFFSET: usize = 21;
/// Offset of the maxTimestamp field.
pub const MAX_TIMESTAMP_OFFSET: usize = 35;
/// Attribute bit 3: the batch's timestamps are LogAppendTime.
pub const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
/// Attribute bit 4: the batch belongs to a transaction.
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
/// Attribute bit 5: the batch is a control batch (transaction marker).
pub const ATTR_CONTROL: i16 = 0x20;
/// The timestamp Kafka uses for "no timestamp".
pub const NO_TIMESTAMP: i64 = -1;
/// Smallest legal batchLength: the header after the length field, with no records.
const MIN_BATCH_LENGTH: i32 = (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32;

/// Whether a batch's timestamps were set by the producer or by the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Set by the producer.
    CreateTime,
    /// Set by the broker when the batch was appended.
    LogAppendTime,
}

/// The fields of a RecordBatch v2 header, copied out of the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the batchLength field.
    pub batch_length: i32,
    /// Leader epoch of the partition leader that appended the batch (kept as sent on a
    /// single node; replication will stamp it).
    pub partition_leader_epoch: i32,
    /// Always 2 for a parsed header.
    pub magic: i8,
    /// CRC-32C of bytes 21..end.
    pub crc: u32,
    /// Codec, timestamp type, transactional and control bits.
    pub attributes: i16,
    /// Offset of the last record minus the base offset.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub records_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Reads the header fields from the first 61 bytes of `buf`. Checks only that they are
    /// there and that the magic is 2; see [`validate_batch`] for the full check.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        if buf.len() < BATCH_HEADER_LEN {
            return Err(Error::UnexpectedEof {
                offset: 0,
                need: BATCH_HEADER_LEN,
                have: buf.len(),
            });
        }
        let magic = buf[MAGIC_OFFSET] as i8;
        if magic != 2 {
            return Err(Error::UnsupportedMagic { magic });
        }
        Ok(Self {
            base_offset: be_i64(buf, 0),
            batch_length: be_i32(buf, 8),
            partition_leader_epoch: be_i32(buf, 12),
            magic,
            crc: be_i32(buf, CRC_OFFSET) as u32,
            attributes: be_i16(buf, ATTRIBUTES_OFFSET),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_OFFSET),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            records_count: be_i32(buf, 57),
        })
    }

    /// Writes the header into the first 61 bytes of `out` (the stored `crc` as is; see
    /// [`BatchHeader::seal_crc`]). The one writer of the layout, for every batch built.
    pub fn encode_into(&self, out: &mut [u8]) {
        let mut h = &mut out[..BATCH_HEADER_LEN];
        use bytes::BufMut;
        h.put_i64(self.base_offset);
        h.put_i32(self.batch_length);
        h.put_i32(self.partition_leader_epoch);
        h.put_i8(self.magic);
        h.put_u32(self.crc);
        h.put_i16(self.attributes);
        h.put_i32(self.last_offset_delta);
        h.put_i64(self.base_timestamp);
        h.put_i64(self.max_timestamp);
        h.put_i64(self.producer_id);
        h.put_i16(self.producer_epoch);
        h.put_i32(self.base_sequence);
        h.put_i32(self.records_count);
    }

    /// Computes a whole batch's CRC-32C (attributes to the end) and stores it.
    pub fn seal_crc(batch: &mut [u8]) {
        let crc = crate::crc::crc32c(&batch[CRC_START..]);
        batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    }

    /// Total size of the batch on the wire, length prefix included.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + usize::try_from(self.batch_length).unwrap_or(0)
    }

    /// Offset of the last record (saturating: a hostile header cannot overflow it).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// The batch's codec.
    pub fn compression(&self) -> Result<Compression> {
        Compression::from_attributes(self.attributes)
    }

    /// Whether timestamps are CreateTime or LogAppendTime.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & ATTR_TIMESTAMP_TYPE != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Whether this is a control batch (a transaction marker).
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// Whether this batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// Overwrites the base offset in `buf` (outside the CRC, so the batch stays valid).
    pub fn write_base_offset(buf: &mut [u8], base_offset: i64) {
        buf[..8].copy_from_slice(&base_offset.to_be_bytes());
    }

    /// Rewrites the partition leader epoch in a batch header (`buf` holds at least its
    /// first 16 bytes). It sits before the CRC'd part, so the CRC stays valid.
    pub fn write_partition_leader_epoch(buf: &mut [u8], epoch: i32) {
        buf[12..16].copy_from_slice(&epoch.to_be_bytes());
    }

    /// Rewrites a batch header to LogAppendTime with `timestamp` as maxTimestamp and
    /// recomputes the CRC. `header` is the batch's first 61 bytes (rewritten in place),
    /// `payload` the rest of the batch (the records), which the CRC also covers.
    pub fn set_log_append_time(header: &mut [u8], payload: &[u8], timestamp: i64) {
        let attributes = be_i16(header, ATTRIBUTES_OFFSET) | ATTR_TIMESTAMP_TYPE;
        header[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
        header[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8]
            .copy_from_slice(&timestamp.to_be_bytes());
        let mut crc = crate::crc::Crc32c::new();
        crc.update(&header[CRC_START..BATCH_HEADER_LEN]);
        crc.update(payload);
        header[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.finish().to_be_bytes());
    }
}

/// The 12 bytes every log entry starts with, base offset and batch length, read
/// without checking anything else: what a reader needs to decide whether a whole batch
/// is there. `None` if fewer than 12 bytes.
pub fn peek_entry(buf: &[u8]) -> Option<(i64, i32)> {
    (buf.len() >= LOG_OVERHEAD).then(|| (be_i64(buf, 0), be_i32(buf, 8)))
}

/// The offset after the last whole batch at the front of `buf` (a trailing partial batch,
/// which a fetch size can cut, is not counted), or `None` if there is no whole batch.
/// Walks headers only.
pub fn next_offset_after_whole_batches(buf: &[u8]) -> Option<i64> {
    let mut rest = buf;
    let mut next = None;
    while rest.len() >= BATCH_HEADER_LEN {
        let (base, len) = peek_entry(rest)?;
        let total = usize::try_from(len).ok()?.checked_add(LOG_OVERHEAD)?;
        if total > rest.len() || total < BATCH_HEADER_LEN {
            break;
        }
        let last_delta = be_i32(rest, 23);
        next = Some(base.checked_add(i64::from(last_delta))?.checked_add(1)?);
        rest = &rest[total..];
    }
    next
}

/// Checks one whole batch at the start of `buf` without decompressing it: magic 2, length
/// fields inside `buf`, CRC-32C, a known codec, and recordsCount = lastOffsetDelta + 1.
/// Returns the header; the batch is `buf[..header.total_len()]`.
pub fn validate_batch(buf: &[u8]) -> Result<BatchHeader> {
    let header = validate_framing(buf)?;
    if header.records_count < 1 || header.last_offset_delta != header.records_count - 1 {
        return Err(Error::RecordCountMismatch {
            records_count: header.records_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    Ok(header)
}

/// As [`validate_batch`], for a batch read back from a log that compaction may have
/// thinned: fewer records than its offset range holds, or none (a producer's emptied
/// last batch keeps its header).
pub fn validate_stored_batch(buf: &[u8]) -> Result<BatchHeader> {
    let header = validate_framing(buf)?;
    let span = i64::from(header.last_offset_delta) + 1;
    if header.records_count < 0
        || header.last_offset_delta < 0
        || i64::from(header.records_count) > span
    {
        return Err(Error::RecordCountMismatch {
            records_count: header.records_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    Ok(header)
}

/// Everything [`validate_batch`] checks but the record count.
fn validate_framing(buf: &[u8]) -> Result<BatchHeader> {
    let header = BatchHeader::parse(buf)?;
    if header.batch_length < MIN_BATCH_LENGTH {
        return Err(Error::InvalidBatchLength {
            length: header.batch_length,
        });
    }
    let total = header.total_len();
    if buf.len() < total {
        return Err(Error::UnexpectedEof {
            offset: 0,
            need: total,
            have: buf.len(),
        });
    }
    let computed = crate::crc::crc32c(&buf[CRC_START..total]);
    if computed != header.crc {
        return Err(Error::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    header.compression()?;
    Ok(header)
}

/// Splits a buffer holding consecutive batches into `(header, batch bytes)` pairs,
/// validating each. Stops at the first error, which it yields.
pub fn batches(buf: &[u8]) -> impl Iterator<Item = Result<(BatchHeader, &[u8])>> + '_ {
    split_batches(buf, validate_batch)
}

/// As [`batches`], for batches read back from a log (see [`validate_stored_batch`]).
pub fn stored_batches(buf: &[u8]) -> impl Iterator<Item = Result<(BatchHeader, &[u8])>> + '_ {
    split_batches(buf, validate_stored_batch)
}

fn split_batches(
    buf: &[u8],
    validate: fn(&[u8]) -> Result<BatchHeader>,
) -> impl Iterator<Item = Result<(BatchHeader, &[u8])>> + '_ {
    let mut rest = buf;
    let mut failed = false;
    std::iter::from_fn(move || {
        if rest.is_empty() || failed {
            return None;
        }
        match validate(rest) {
            Ok(header) => {
                let (batch, tail) = rest.split_at(header.total_len());
                rest = tail;
                Some(Ok((header, batch)))
            }
            Err(e) => {
                failed = true;
                Some(Err(e))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_batch::{BatchBuilder, RecordSpec};

    fn batch() -> Vec<u8> {
        let mut b = BatchBuilder::new(Compression::None, 1_000);
        for i in 0..3 {
            b.push(RecordSpec::value(format!("v{i}").into_bytes()).with_timestamp(1_000 + i));
        }
        b.build().expect("build")
    }

    #[test]
    fn parses_what_the_builder_writes() {
        let bytes = batch();
        let h = validate_batch(&bytes).expect("valid");
        assert_eq!(h.total_len(), bytes.len());
        assert_eq!(h.records_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.base_timestamp, 1_000);
        assert_eq!(h.max_timestamp, 1_002);
        assert_eq!(h.producer_id, -1);
        assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
    }

    #[test]
    fn every_truncated_prefix_fails() {
        let bytes = batch();
        for cut in 0..bytes.len() {
            assert!(
                validate_batch(&bytes[..cut]).is_err(),
                "prefix of {cut} bytes accepted"
            );
        }
    }

    #[test]
    fn any_flipped_bit_after_the_length_is_caught() {
        let bytes = batch();
        for at in 12..bytes.len() {
            // partitionLeaderEpoch (12..16) is outside the CRC by design.
            if (12..16).contains(&at) {
                continue;
            }
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(validate_batch(&bad).is_err(), "flip at {at} accepted");
        }
    }

    #[test]
    fn base_offset_rewrite_keeps_crc_valid() {
        let mut bytes = batch();
        BatchHeader::write_base_offset(&mut bytes, 12345);
        assert_eq!(validate_batch(&bytes).expect("valid").base_offset, 12345);
    }

    #[test]
    fn log_append_time_rewrite_keeps_crc_valid() {
        let mut bytes = batch();
        let (head, payload) = bytes.split_at_mut(BATCH_HEADER_LEN);
        BatchHeader::set_log_append_time(head, payload, 99_999);
        let h = validate_batch(&bytes).expect("valid");
        assert_eq!(h.max_timestamp, 99_999);
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
    }

    #[test]
    fn count_mismatch_and_bad_magic_rejected() {
        let mut bytes = batch();
        bytes[MAGIC_OFFSET] = 1;
        assert_eq!(
            validate_batch(&bytes),
            Err(Error::UnsupportedMagic { magic: 1 })
        );

        let mut bytes = batch();
        bytes[57..61].copy_from_slice(&5i32.to_be_bytes());
        let crc = crate::crc::crc32c(&bytes[CRC_START..]);
        bytes[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate_batch(&bytes),
            Err(Error::RecordCountMismatch { .. })
        ));
    }

    #[test]
    fn a_stored_batch_may_hold_fewer_records_than_its_offsets_but_never_more() {
        let with_count = |count: i32, delta: i32| {
            let mut bytes = batch();
            bytes[23..27].copy_from_slice(&delta.to_be_bytes());
            bytes[57..61].copy_from_slice(&count.to_be_bytes());
            BatchHeader::seal_crc(&mut bytes);
            bytes
        };
        // Compacted: 1 record left of 3 offsets, or none (a producer's last batch).
        for (count, delta) in [(1, 2), (0, 2), (0, 0)] {
            let b = with_count(count, delta);
            assert!(validate_stored_batch(&b).is_ok(), "{count}/{delta}");
            assert!(
                validate_batch(&b).is_err(),
                "{count}/{delta} is no produced batch"
            );
        }
        for (count, delta) in [(4, 2), (-1, 2), (1, -1)] {
            assert!(matches!(
                validate_stored_batch(&with_count(count, delta)),
                Err(Error::RecordCountMismatch { .. })
            ));
        }
        assert_eq!(stored_batches(&with_count(1, 2)).count(), 1);
    }

    #[test]
    fn batches_splits_and_stops_at_damage() {
        let one = batch();
        let mut two = one.clone();
        two.extend_from_slice(&one);
        assert_eq!(batches(&two).filter(|r| r.is_ok()).count(), 2);
        two.truncate(one.len() + 20);
        let results: Vec<_> = batches(&two).collect();
        assert_eq!(results.len(), 2);
        assert!(results[0].is_ok() && results[1].is_err());
    }
}
