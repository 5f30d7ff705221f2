//! Writes records straight into a RecordBatch v2 buffer: the 61-byte header is reserved at
//! the front and filled in when the batch closes, so an uncompressed batch goes out as the
//! very buffer the records were written into.

use bytes::{BufMut, Bytes, BytesMut};
use fjord_protocol::compression::Compression;
use fjord_protocol::record_batch::{
    BatchHeader, ATTR_TRANSACTIONAL, BATCH_HEADER_LEN, LOG_OVERHEAD,
};
use fjord_protocol::varint::{
    put_unsigned_varint as put_uvarint, put_varint_bytes as put_bytes,
    unsigned_varint_len as uvarint_len, varint_bytes_len as bytes_len, zigzag32, zigzag64,
};

use crate::error::ProduceError;

/// Bytes of the batch header before the records.
pub(crate) const BATCH_HEADER: usize = BATCH_HEADER_LEN;

/// The fields of one record as the batch needs them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordParts<'a> {
    pub(crate) timestamp: i64,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
    pub(crate) headers: &'a [(String, Option<bytes::Bytes>)],
}

/// The size `record` takes in a batch (length prefix included), given its offset delta
/// and timestamp delta.
pub(crate) fn record_size(r: &RecordParts<'_>, offset_delta: i32, timestamp_delta: i64) -> usize {
    let body = body_len(r, offset_delta, timestamp_delta);
    uvarint_len(zigzag32(body as i32)) + body
}

fn body_len(r: &RecordParts<'_>, offset_delta: i32, timestamp_delta: i64) -> usize {
    let mut n = 1 // attributes
        + uvarint_len(zigzag64(timestamp_delta))
        + uvarint_len(zigzag32(offset_delta))
        + bytes_len(r.key)
        + bytes_len(r.value)
        + uvarint_len(zigzag32(r.headers.len() as i32));
    for (k, v) in r.headers {
        n += bytes_len(Some(k.as_bytes())) + bytes_len(v.as_deref());
    }
    n
}

/// A batch being filled.
#[derive(Debug)]
pub(crate) struct BatchWriter {
    buf: BytesMut,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
}

impl BatchWriter {
    /// An empty batch with room for about `capacity` bytes of records.
    pub(crate) fn new(capacity: usize, base_timestamp: i64) -> Self {
        let mut buf = BytesMut::with_capacity(BATCH_HEADER + capacity);
        buf.put_bytes(0, BATCH_HEADER);
        Self {
            buf,
            count: 0,
            base_timestamp,
            max_timestamp: base_timestamp,
        }
    }

    /// Records in the batch.
    pub(crate) fn count(&self) -> i32 {
        self.count
    }

    /// Bytes of the batch so far (header included).
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// The offset delta and timestamp delta the next record gets.
    fn next_deltas(&self, timestamp: i64) -> (i32, i64) {
        (self.count, timestamp - self.base_timestamp)
    }

    /// The bytes `r` would add as the next record.
    pub(crate) fn size_of(&self, r: &RecordParts<'_>) -> usize {
        let (offset_delta, timestamp_delta) = self.next_deltas(r.timestamp);
        record_size(r, offset_delta, timestamp_delta)
    }

    /// Appends a record; returns its offset delta.
    pub(crate) fn append(&mut self, r: &RecordParts<'_>) -> i32 {
        let (offset_delta, timestamp_delta) = self.next_deltas(r.timestamp);
        let body = body_len(r, offset_delta, timestamp_delta);
        self.buf.reserve(body + 5);
        put_uvarint(&mut self.buf, zigzag32(body as i32));
        self.buf.put_u8(0);
        put_uvarint(&mut self.buf, zigzag64(timestamp_delta));
        put_uvarint(&mut self.buf, zigzag32(offset_delta));
        put_bytes(&mut self.buf, r.key);
        put_bytes(&mut self.buf, r.value);
        put_uvarint(&mut self.buf, zigzag32(r.headers.len() as i32));
        for (k, v) in r.headers {
            put_bytes(&mut self.buf, Some(k.as_bytes()));
            put_bytes(&mut self.buf, v.as_deref());
        }
        self.max_timestamp = self.max_timestamp.max(r.timestamp);
        self.count += 1;
        offset_delta
    }

    /// The finished batch: compressed if asked, producer fields set (and the
    /// transactional bit, for a transactional producer), CRC computed.
    pub(crate) fn finish(
        self,
        compression: Compression,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        transactional: bool,
    ) -> Result<Bytes, ProduceError> {
        let mut buf = if compression == Compression::None {
            self.buf
        } else {
            let payload = compression
                .compress(&self.buf[BATCH_HEADER..])
                .map_err(|e| ProduceError::Config(format!("compression failed: {e}")))?;
            let mut out = BytesMut::with_capacity(BATCH_HEADER + payload.len());
            out.put_bytes(0, BATCH_HEADER);
            out.put_slice(&payload);
            out
        };
        let batch_length = i32::try_from(buf.len() - LOG_OVERHEAD)
            .map_err(|_| ProduceError::Config("batch larger than 2 GiB".into()))?;
        let header = BatchHeader {
            base_offset: 0, // set by the broker
            batch_length,
            partition_leader_epoch: -1,
            magic: 2,
            crc: 0, // below
            attributes: compression.attribute_bits()
                | if transactional { ATTR_TRANSACTIONAL } else { 0 },
            last_offset_delta: self.count - 1,
            base_timestamp: self.base_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            records_count: self.count,
        };
        header.encode_into(&mut buf);
        BatchHeader::seal_crc(&mut buf);
        Ok(buf.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_protocol::record_batch::{validate_batch, RecordIter};

    #[test]
    fn batches_validate_and_decode_under_every_codec() {
        let headers = vec![("h".to_string(), Some(Bytes::from_static(b"v")))];
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut w = BatchWriter::new(1024, 1_000);
            for i in 0..50i64 {
                let value = format!("value-{i}");
                let r = RecordParts {
                    timestamp: 1_000 + i,
                    key: if i % 2 == 0 { Some(b"k") } else { None },
                    value: Some(value.as_bytes()),
                    headers: &headers,
                };
                let expected = record_size(&r, i as i32, i);
                let before = w.len();
                w.append(&r);
                assert_eq!(w.len() - before, expected);
            }
            let transactional = codec == Compression::Lz4;
            let batch = w.finish(codec, 7, 1, 42, transactional).expect("finish");
            let header = validate_batch(&batch).expect("valid batch");
            assert_eq!(header.is_transactional(), transactional);
            assert_eq!(header.records_count, 50);
            assert_eq!(
                (
                    header.producer_id,
                    header.producer_epoch,
                    header.base_sequence
                ),
                (7, 1, 42)
            );
            assert_eq!(header.max_timestamp, 1_049);
            let payload = codec
                .decompress(&batch[BATCH_HEADER..], 1 << 20)
                .expect("decompress");
            let records: Vec<_> = RecordIter::new(&payload, 50)
                .collect::<Result<_, _>>()
                .expect("records");
            assert_eq!(records[3].value, Some(&b"value-3"[..]));
            assert_eq!(records[2].key, Some(&b"k"[..]));
            assert_eq!(records[3].key, None);
            assert_eq!(records[49].offset_delta, 49);
            assert_eq!(records[1].headers().count(), 1);
        }
    }
}
