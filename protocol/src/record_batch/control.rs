//! Transaction markers: the one record of a control batch that ends a producer's
//! transaction in a partition (Kafka's `EndTransactionMarker`).
//!
//! - key: version (i16, 0), type (i16: 0 = ABORT, 1 = COMMIT);
//! - value: version (i16, 0), coordinator epoch (i32).
//!
//! The batch carries the producer's id and epoch, is transactional and control, and has
//! no sequence (-1), as Kafka's `MemoryRecords.withEndTransactionMarker` writes it.

use crate::compression::Compression;
use crate::error::Result;
use crate::record_batch::{BatchBuilder, BatchHeader, RecordIter, RecordSpec, BATCH_HEADER_LEN};

/// What a transaction marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndTxnMarker {
    /// COMMIT (true) or ABORT (false).
    pub commit: bool,
    /// The epoch of the coordinator that wrote it (fences markers of an older one).
    pub coordinator_epoch: i32,
}

/// The control batch ending `producer_id`'s transaction (base offset 0, CRC set).
pub fn end_txn_batch(
    producer_id: i64,
    producer_epoch: i16,
    marker: EndTxnMarker,
    timestamp_ms: i64,
) -> Result<Vec<u8>> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&i16::from(marker.commit).to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    let mut b = BatchBuilder::new(Compression::None, timestamp_ms)
        .with_producer(producer_id, producer_epoch, -1)
        .transactional()
        .control();
    b.push(RecordSpec {
        key: Some(key),
        value: Some(value),
        headers: Vec::new(),
        timestamp: None,
    });
    b.build()
}

/// The marker of a control batch (its whole bytes), or `None` for any other batch, an
/// unknown control type or a record too short to hold one.
pub fn read_end_txn_marker(batch: &[u8]) -> Option<EndTxnMarker> {
    let header = BatchHeader::parse(batch).ok()?;
    if !header.is_control() || header.compression().ok()? != Compression::None {
        return None;
    }
    let record = RecordIter::new(batch.get(BATCH_HEADER_LEN..)?, 1)
        .next()?
        .ok()?;
    let key = record.key?;
    let commit = match key.get(2..4)? {
        [0, 0] => false,
        [0, 1] => true,
        _ => return None,
    };
    let epoch = record.value.and_then(|v| v.get(2..6))?;
    Some(EndTxnMarker {
        commit,
        coordinator_epoch: i32::from_be_bytes([epoch[0], epoch[1], epoch[2], epoch[3]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_with_kafkas_attributes() {
        for commit in [true, false] {
            let marker = EndTxnMarker {
                commit,
                coordinator_epoch: 7,
            };
            let batch = end_txn_batch(42, 3, marker, 1_000).expect("batch");
            let h = BatchHeader::parse(&batch).expect("header");
            // Kafka's attributes for a marker: transactional (0x10) and control (0x20).
            assert_eq!(h.attributes, 0x30);
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (42, 3, -1)
            );
            assert_eq!(h.records_count, 1);
            assert_eq!(read_end_txn_marker(&batch), Some(marker));
        }
    }

    #[test]
    fn the_marker_record_is_laid_out_as_kafkas_schema_says() {
        // Written out by hand from `EndTransactionMarker` and the record v2 layout:
        // length 16 (varint 0x20), attributes 0, timestamp and offset deltas 0, key of
        // 4 bytes (version 0, COMMIT 1), value of 6 (version 0, coordinator epoch 0),
        // no headers. (apache_kafka_broker.rs checks real Kafka markers too.)
        let record: [u8; 17] = [
            0x20, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x0c, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00,
        ];
        let ours = end_txn_batch(
            0,
            0,
            EndTxnMarker {
                commit: true,
                coordinator_epoch: 0,
            },
            5,
        )
        .expect("batch");
        assert_eq!(&ours[BATCH_HEADER_LEN..], &record[..]);
    }

    #[test]
    fn other_batches_are_not_markers() {
        let mut b = BatchBuilder::new(Compression::None, 0);
        b.push(RecordSpec::value("v"));
        assert_eq!(read_end_txn_marker(&b.build().expect("batch")), None);
        assert_eq!(read_end_txn_marker(&[1, 2, 3]), None);
    }
}
