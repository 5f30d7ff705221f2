//! Writes RecordBatch v2 bytes: used by clients to produce and by tests everywhere.

use crate::compression::Compression;
use crate::error::Result;
use crate::record_batch::header::{
    BatchHeader, ATTR_CONTROL, ATTR_TRANSACTIONAL, BATCH_HEADER_LEN, LOG_OVERHEAD,
};
use crate::varint::{varint_len, write_varint, write_varlong};

/// One record to put in a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordSpec {
    /// Key, or `None` for null.
    pub key: Option<Vec<u8>>,
    /// Value, or `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers as (key, value) pairs.
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Timestamp in ms; `None` uses the batch's base timestamp.
    pub timestamp: Option<i64>,
}

impl RecordSpec {
    /// A record with only a value.
    pub fn value(value: impl Into<Vec<u8>>) -> Self {
        Self {
            value: Some(value.into()),
            ..Self::default()
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the timestamp.
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, key: impl Into<Vec<u8>>, value: Option<Vec<u8>>) -> Self {
        self.headers.push((key.into(), value));
        self
    }
}

/// Builds one batch: push records, then [`BatchBuilder::build`].
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    compression: Compression,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    /// Extra attribute bits: transactional, control.
    flags: i16,
    count: i32,
    records: Vec<u8>,
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

impl BatchBuilder {
    /// A builder for records stamped relative to `base_timestamp` (ms).
    pub fn new(compression: Compression, base_timestamp: i64) -> Self {
        Self {
            compression,
            base_timestamp,
            max_timestamp: base_timestamp,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            flags: 0,
            count: 0,
            records: Vec::new(),
        }
    }

    /// Marks the batch as idempotent: producer id, epoch and the first record's sequence.
    pub fn with_producer(
        mut self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Marks the batch as part of a transaction of its producer (KIP-98).
    pub fn transactional(mut self) -> Self {
        self.flags |= ATTR_TRANSACTIONAL;
        self
    }

    /// Marks the batch as a control batch (a transaction marker; only brokers write one).
    pub fn control(mut self) -> Self {
        self.flags |= ATTR_CONTROL;
        self
    }

    /// Records pushed so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends a record with the next offset delta.
    pub fn push(&mut self, record: RecordSpec) {
        let timestamp = record.timestamp.unwrap_or(self.base_timestamp);
        self.max_timestamp = self.max_timestamp.max(timestamp);
        let mut body = Vec::with_capacity(16 + record.value.as_ref().map_or(0, Vec::len));
        body.push(0); // attributes
        write_varlong(&mut body, timestamp - self.base_timestamp);
        write_varint(&mut body, self.count);
        write_bytes(&mut body, record.key.as_deref());
        write_bytes(&mut body, record.value.as_deref());
        write_varint(
            &mut body,
            i32::try_from(record.headers.len()).unwrap_or(i32::MAX),
        );
        for (key, value) in &record.headers {
            write_bytes(&mut body, Some(key));
            write_bytes(&mut body, value.as_deref());
        }
        let len = i32::try_from(body.len()).unwrap_or(i32::MAX);
        self.records.reserve(varint_len(len) + body.len());
        write_varint(&mut self.records, len);
        self.records.extend_from_slice(&body);
        self.count += 1;
    }

    /// The finished batch with base offset 0, compressed and with its CRC set.
    pub fn build(&self) -> Result<Vec<u8>> {
        let payload = self.compression.compress(&self.records)?;
        let batch_length =
            i32::try_from(BATCH_HEADER_LEN - LOG_OVERHEAD + payload.len()).unwrap_or(i32::MAX);
        let header = BatchHeader {
            base_offset: 0,
            batch_length,
            partition_leader_epoch: -1,
            magic: 2,
            crc: 0, // set below
            attributes: self.compression.attribute_bits() | self.flags,
            last_offset_delta: (self.count - 1).max(0),
            base_timestamp: self.base_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            records_count: self.count,
        };
        let mut out = vec![0u8; BATCH_HEADER_LEN];
        header.encode_into(&mut out);
        out.extend_from_slice(&payload);
        BatchHeader::seal_crc(&mut out);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_batch::{validate_batch, RecordIter};
    use proptest::prelude::*;

    fn codec() -> impl Strategy<Value = Compression> {
        prop_oneof![
            Just(Compression::None),
            Just(Compression::Gzip),
            Just(Compression::Snappy),
            Just(Compression::Lz4),
            Just(Compression::Zstd),
        ]
    }

    fn record() -> impl Strategy<Value = RecordSpec> {
        (
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
            proptest::collection::vec(
                (
                    proptest::collection::vec(any::<u8>(), 0..8),
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
                ),
                0..3,
            ),
            -1_000_000i64..5_000_000_000_000,
        )
            .prop_map(|(key, value, headers, ts)| RecordSpec {
                key,
                value,
                headers,
                timestamp: Some(ts),
            })
    }

    proptest! {
        #[test]
        fn batches_round_trip_under_every_codec(codec in codec(), records in proptest::collection::vec(record(), 1..20)) {
            let mut builder = BatchBuilder::new(codec, 1_000);
            for r in &records {
                builder.push(r.clone());
            }
            let bytes = builder.build().expect("build");
            let header = validate_batch(&bytes).expect("valid");
            prop_assert_eq!(header.total_len(), bytes.len());
            prop_assert_eq!(header.records_count as usize, records.len());
            let payload = codec.decompress(&bytes[BATCH_HEADER_LEN..], 1 << 24).expect("decompress");
            let decoded: Vec<_> = RecordIter::new(&payload, records.len()).collect::<Result<_>>().expect("records");
            prop_assert_eq!(decoded.len(), records.len());
            for (i, (got, want)) in decoded.iter().zip(&records).enumerate() {
                prop_assert_eq!(got.offset_delta, i as i32);
                prop_assert_eq!(header.base_timestamp + got.timestamp_delta, want.timestamp.expect("ts"));
                prop_assert_eq!(got.key, want.key.as_deref());
                prop_assert_eq!(got.value, want.value.as_deref());
                let headers: Vec<_> = got.headers().collect::<Result<_>>().expect("headers");
                prop_assert_eq!(headers.len(), want.headers.len());
                for (h, (k, v)) in headers.iter().zip(&want.headers) {
                    prop_assert_eq!(h.key, k.as_slice());
                    prop_assert_eq!(h.value, v.as_deref());
                }
            }
            let max = records.iter().filter_map(|r| r.timestamp).max().expect("max").max(1_000);
            prop_assert_eq!(header.max_timestamp, max);
        }

        #[test]
        fn truncated_payloads_never_panic(records in proptest::collection::vec(record(), 1..5), cut in 0usize..400) {
            let mut builder = BatchBuilder::new(Compression::None, 0);
            for r in &records {
                builder.push(r.clone());
            }
            let bytes = builder.build().expect("build");
            let payload = &bytes[BATCH_HEADER_LEN..];
            let cut = cut.min(payload.len().saturating_sub(1));
            let results: Vec<_> = RecordIter::new(&payload[..cut], records.len()).collect();
            prop_assert!(results.iter().any(|r| r.is_err()));
        }
    }
}
