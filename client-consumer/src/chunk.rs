//! One partition's share of a fetch response, decoded lazily into records: batches are
//! checked (CRC with `check.crcs`), decompressed when needed, and their records handed out
//! as slices of the response (or of the decompressed payload), never copied.

use std::sync::Arc;

use bytes::Bytes;
use fjord_protocol::block_crc::BlockCrcs;
use fjord_protocol::compression::Compression;
use fjord_protocol::record_batch::{
    peek_entry, BatchHeader, ATTR_TIMESTAMP_TYPE, BATCH_HEADER_LEN, CRC_START, LOG_OVERHEAD,
};
use fjord_protocol::varint::{read_varint, read_varlong};

use crate::aborted::AbortedFilter;
use crate::error::ConsumeError;
use crate::partition::PartitionState;
use crate::record::{ConsumerRecord, TimestampKind};

const HEADER: usize = BATCH_HEADER_LEN;
/// Most bytes one batch may decompress to: larger is treated as corrupt.
const MAX_DECOMPRESSED: usize = 256 << 20;

/// Records of one partition from one fetch.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub(crate) partition: Arc<PartitionState>,
    /// The partition's epoch when fetched: a seek or revocation since makes it stale.
    pub(crate) epoch: u64,
    /// Bytes of the response this chunk holds (for the buffer accounting).
    pub(crate) size: usize,
    rest: Bytes,
    min_offset: i64,
    check_crcs: CrcCheck,
    payload: Bytes,
    pos: usize,
    remaining: i32,
    base_offset: i64,
    base_timestamp: i64,
    log_append_time: Option<i64>,
    /// read_committed: batches of aborted transactions to drop.
    aborted: Option<AbortedFilter>,
}

struct Failure(String);

/// Whether and how batch CRCs are checked.
#[derive(Debug, Clone)]
pub(crate) enum CrcCheck {
    /// `check.crcs=false`.
    Off,
    /// With the block CRCs the connection computed over the response the records came
    /// in: only the ends of each batch are read again (bytes outside that response are
    /// checksummed in full).
    Blocks(Arc<BlockCrcs>),
}

impl Chunk {
    /// Records of `records` (a partition's record set) at or after `min_offset`.
    pub(crate) fn new(
        partition: Arc<PartitionState>,
        epoch: u64,
        records: Bytes,
        min_offset: i64,
        check_crcs: CrcCheck,
    ) -> Self {
        Self {
            partition,
            epoch,
            size: records.len(),
            rest: records,
            min_offset,
            check_crcs,
            payload: Bytes::new(),
            pos: 0,
            remaining: 0,
            base_offset: 0,
            base_timestamp: 0,
            log_append_time: None,
            aborted: None,
        }
    }

    /// Drops the batches of these aborted transactions, (producer id, first offset), as
    /// a read_committed fetch lists them.
    pub(crate) fn without_aborted(mut self, aborted: Vec<(i64, i64)>) -> Self {
        self.aborted = Some(AbortedFilter::new(aborted));
        self
    }

    fn corrupt(&self, offset: i64, reason: String) -> ConsumeError {
        ConsumeError::Corrupt {
            topic: self.partition.tp.topic.to_string(),
            partition: self.partition.tp.partition,
            offset,
            reason,
        }
    }

    /// The next record, `None` when the chunk is used up (a partial batch at the end, as
    /// a fetch may return, is left for the next fetch).
    pub(crate) fn next_record(&mut self) -> Option<Result<ConsumerRecord, ConsumeError>> {
        loop {
            if self.remaining > 0 {
                self.remaining -= 1;
                match self.decode_record() {
                    Ok(record) if record.offset < self.min_offset => continue,
                    Ok(record) => return Some(Ok(record)),
                    Err(Failure(reason)) => {
                        self.remaining = 0;
                        self.rest = Bytes::new();
                        let offset = self.base_offset;
                        return Some(Err(self.corrupt(offset, reason)));
                    }
                }
            }
            match self.next_batch() {
                Ok(true) => {}
                Ok(false) => return None,
                Err((offset, reason)) => {
                    self.rest = Bytes::new();
                    return Some(Err(self.corrupt(offset, reason)));
                }
            }
        }
    }

    /// Moves to the next batch with records at or after `min_offset`; `false` at the end.
    fn next_batch(&mut self) -> Result<bool, (i64, String)> {
        loop {
            if self.rest.len() < HEADER {
                return Ok(false);
            }
            let Some((base_offset, batch_length)) = peek_entry(&self.rest) else {
                return Ok(false);
            };
            let Some(total) = usize::try_from(batch_length)
                .ok()
                .and_then(|n| n.checked_add(LOG_OVERHEAD))
                .filter(|n| *n >= HEADER)
            else {
                return Err((base_offset, format!("batch length {batch_length}")));
            };
            if total > self.rest.len() {
                return Ok(false); // cut off by the fetch size: fetched again next time
            }
            let batch = self.rest.split_to(total);
            let header = BatchHeader::parse(&batch).map_err(|e| match e {
                fjord_protocol::Error::UnsupportedMagic { magic } => (
                    base_offset,
                    format!("message format v{magic} is not supported"),
                ),
                other => (base_offset, other.to_string()),
            })?;
            let actual = match &self.check_crcs {
                CrcCheck::Off => None,
                CrcCheck::Blocks(blocks) => Some(blocks.crc32c(&batch[CRC_START..])),
            };
            if let Some(actual) = actual {
                if header.crc != actual {
                    return Err((
                        base_offset,
                        format!("crc {actual:#x}, batch says {:#x}", header.crc),
                    ));
                }
            }
            let (attributes, count) = (header.attributes, header.records_count);
            let aborted = self.aborted.as_mut().is_some_and(|f| f.drops(&header));
            if aborted || header.is_control() || header.last_offset() < self.min_offset {
                continue;
            }
            let compression = Compression::from_attributes(attributes)
                .map_err(|e| (base_offset, format!("{e}")))?;
            self.payload = if compression == Compression::None {
                batch.slice(HEADER..)
            } else {
                Bytes::from(
                    compression
                        .decompress(&batch[HEADER..], MAX_DECOMPRESSED)
                        .map_err(|e| (base_offset, format!("decompress: {e}")))?,
                )
            };
            self.pos = 0;
            self.remaining = count.max(0);
            self.base_offset = base_offset;
            self.base_timestamp = header.base_timestamp;
            self.log_append_time =
                (attributes & ATTR_TIMESTAMP_TYPE != 0).then_some(header.max_timestamp);
            return Ok(true);
        }
    }

    fn decode_record(&mut self) -> Result<ConsumerRecord, Failure> {
        let p = &self.payload[..];
        let mut pos = self.pos;
        let bad = |what: &str| Failure(format!("record: {what}"));
        let len = read_varint(p, &mut pos).map_err(|_| bad("length"))?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| pos.checked_add(l))
            .filter(|e| *e <= p.len())
            .ok_or_else(|| bad("length past the batch"))?;
        let body = &p[..end];
        pos += 1; // attributes
        let timestamp_delta = read_varlong(body, &mut pos).map_err(|_| bad("timestamp"))?;
        let offset_delta = read_varint(body, &mut pos).map_err(|_| bad("offset"))?;
        let key = self.bytes_at(body, &mut pos).ok_or_else(|| bad("key"))?;
        let value = self.bytes_at(body, &mut pos).ok_or_else(|| bad("value"))?;
        let header_count = read_varint(body, &mut pos).map_err(|_| bad("header count"))?;
        let mut headers = Vec::new();
        for _ in 0..header_count.max(0) {
            let k = self
                .bytes_at(body, &mut pos)
                .ok_or_else(|| bad("header key"))?
                .ok_or_else(|| bad("null header key"))?;
            let v = self
                .bytes_at(body, &mut pos)
                .ok_or_else(|| bad("header value"))?;
            headers.push((String::from_utf8_lossy(&k).into_owned(), v));
        }
        self.pos = end;
        Ok(ConsumerRecord {
            topic: Arc::clone(&self.partition.tp.topic),
            partition: self.partition.tp.partition,
            offset: self.base_offset.saturating_add(i64::from(offset_delta)),
            timestamp: self
                .log_append_time
                .unwrap_or(self.base_timestamp.wrapping_add(timestamp_delta)),
            timestamp_kind: if self.log_append_time.is_some() {
                TimestampKind::LogAppendTime
            } else {
                TimestampKind::CreateTime
            },
            key,
            value,
            headers,
        })
    }

    /// A length-prefixed field as a slice of the payload: `Some(None)` for null, `None`
    /// when it does not fit.
    fn bytes_at(&self, body: &[u8], pos: &mut usize) -> Option<Option<Bytes>> {
        let len = read_varint(body, pos).ok()?;
        if len < 0 {
            return Some(None);
        }
        let end = pos.checked_add(len as usize).filter(|e| *e <= body.len())?;
        let slice = self.payload.slice(*pos..end);
        *pos = end;
        Some(Some(slice))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::TopicPartition;
    use fjord_protocol::record_batch::{BatchBuilder, RecordSpec};

    fn batch(base: i64, n: usize, codec: Compression) -> Vec<u8> {
        let mut b = BatchBuilder::new(codec, 1_000);
        for i in 0..n {
            b.push(RecordSpec::value(format!("v{i}")).with_key("k"));
        }
        let mut out = b.build().expect("batch");
        out[0..8].copy_from_slice(&base.to_be_bytes());
        out
    }

    fn chunk(bytes: Vec<u8>, min_offset: i64) -> Chunk {
        let p = Arc::new(PartitionState::new(TopicPartition::new("t", 0), 1));
        // Block CRCs of no response: every batch is checksummed in full.
        let direct = fjord_protocol::block_crc::BlockCrcBuilder::default().finish(Bytes::new());
        Chunk::new(
            p,
            0,
            Bytes::from(bytes),
            min_offset,
            CrcCheck::Blocks(Arc::new(direct)),
        )
    }

    fn drain(c: &mut Chunk) -> Vec<Result<i64, String>> {
        std::iter::from_fn(|| c.next_record())
            .map(|r| r.map(|r| r.offset).map_err(|e| e.to_string()))
            .collect()
    }

    #[test]
    fn records_start_at_the_fetch_offset_and_a_cut_batch_waits() {
        let mut bytes = batch(10, 5, Compression::Lz4);
        bytes.extend(batch(15, 5, Compression::None));
        let mut cut = bytes.clone();
        cut.truncate(bytes.len() - 7);
        assert_eq!(
            drain(&mut chunk(bytes, 12)),
            (12..20).map(Ok).collect::<Vec<_>>()
        );
        // The second batch is incomplete: not an error, it is fetched again.
        assert_eq!(
            drain(&mut chunk(cut, 10)),
            (10..15).map(Ok).collect::<Vec<_>>()
        );
    }

    #[test]
    fn crc_mismatches_and_unknown_codecs_are_errors() {
        let mut flipped = batch(0, 3, Compression::None);
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let got = drain(&mut chunk(flipped, 0));
        assert_eq!(got.len(), 1);
        assert!(got[0].as_ref().is_err_and(|e| e.contains("crc")), "{got:?}");

        let mut unknown = batch(0, 3, Compression::None);
        unknown[21..23].copy_from_slice(&7i16.to_be_bytes()); // codec 7 does not exist
        let crc = fjord_protocol::crc::crc32c(&unknown[21..]);
        unknown[17..21].copy_from_slice(&crc.to_be_bytes());
        let got = drain(&mut chunk(unknown, 0));
        assert_eq!(got.len(), 1);
        assert!(got[0].is_err(), "{got:?}");
    }

    /// Two batches of 100 KiB records inside a response frame, block CRCs as the
    /// connection builds them, and the chunk over the records' slice of that frame.
    fn framed(corrupt_at: Option<usize>) -> Chunk {
        let big = |base: i64| {
            let mut b = BatchBuilder::new(Compression::None, 1_000);
            b.push(RecordSpec::value(vec![base as u8; 100 << 10]));
            let mut out = b.build().expect("batch");
            out[0..8].copy_from_slice(&base.to_be_bytes());
            out
        };
        let records = [big(0), big(1)].concat();
        let mut frame = vec![9u8; 37]; // the response's fields before the records
        frame.extend(&records);
        if let Some(at) = corrupt_at {
            frame[37 + at] ^= 0x10; // changed after the producer's CRC was computed
        }
        let mut builder = fjord_protocol::block_crc::BlockCrcBuilder::default();
        for read in (0..=frame.len()).step_by(5000).chain([frame.len()]) {
            builder.update(&frame[..read]);
        }
        let frame = Bytes::from(frame);
        let blocks = builder.finish(frame.clone());
        assert!(blocks.blocks() >= 12, "the batches span whole blocks");
        let p = Arc::new(PartitionState::new(TopicPartition::new("t", 0), 1));
        let records = frame.slice(37..);
        Chunk::new(p, 0, records, 0, CrcCheck::Blocks(Arc::new(blocks)))
    }

    #[test]
    fn block_crcs_pass_good_batches_and_catch_a_changed_byte_anywhere() {
        assert_eq!(drain(&mut framed(None)), vec![Ok(0), Ok(1)]);
        let second = (100 << 10) + 61 + 20; // the first batch is a little over 100 KiB
        for at in [70, 50 << 10, (100 << 10) - 3, second + (60 << 10)] {
            let got = drain(&mut framed(Some(at)));
            assert!(
                got.iter()
                    .any(|r| r.as_ref().is_err_and(|e| e.contains("crc"))),
                "byte {at}: {got:?}"
            );
        }
    }
}
