//! The cleaner's batch filter against a model: the kept records, exactly, at their
//! offsets, with their keys, values, headers and timestamps, under every codec.

use proptest::prelude::*;

use super::*;
use crate::record_batch::{
    validate_batch, validate_stored_batch, BatchBuilder, RecordSpec, ATTR_TIMESTAMP_TYPE,
};

const BASE_OFFSET: i64 = 1_000;
const HORIZON: i64 = 9_000_000_000_000;

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
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        proptest::collection::vec(
            (
                proptest::collection::vec(any::<u8>(), 0..4),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..4)),
            ),
            0..2,
        ),
        1_000i64..2_000,
    )
        .prop_map(|(key, value, headers, ts)| RecordSpec {
            key,
            value,
            headers,
            timestamp: Some(ts),
        })
}

fn build(codec: Compression, records: &[RecordSpec]) -> Vec<u8> {
    let mut b = BatchBuilder::new(codec, 1_000).with_producer(7, 3, 40);
    for r in records {
        b.push(r.clone());
    }
    let mut bytes = b.build().expect("build");
    BatchHeader::write_base_offset(&mut bytes, BASE_OFFSET);
    BatchHeader::seal_crc(&mut bytes);
    bytes
}

/// (offset, key, value, headers, timestamp) of each record in `batch`.
type Decoded = Vec<(
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(Vec<u8>, Option<Vec<u8>>)>,
    i64,
)>;

fn decode(batch: &[u8]) -> Decoded {
    let h = validate_stored_batch(batch).expect("a valid batch");
    let payload = h
        .compression()
        .expect("codec")
        .decompress(&batch[BATCH_HEADER_LEN..], 1 << 24)
        .expect("decompress");
    RecordIter::new(&payload, h.records_count as usize)
        .map(|r| {
            let r = r.expect("record");
            let headers = r
                .headers()
                .map(|x| x.map(|x| (x.key.to_vec(), x.value.map(<[u8]>::to_vec))))
                .collect::<Result<_>>()
                .expect("headers");
            (
                h.base_offset + i64::from(r.offset_delta),
                r.key.map(<[u8]>::to_vec),
                r.value.map(<[u8]>::to_vec),
                headers,
                h.base_timestamp + r.timestamp_delta,
            )
        })
        .collect()
}

fn options(retain_empty: bool) -> FilterOptions {
    FilterOptions {
        retain_empty,
        new_delete_horizon: HORIZON,
        max_decompressed: 1 << 24,
    }
}

proptest! {
    #[test]
    fn kept_records_survive_exactly_and_the_batch_keeps_its_identity(
        codec in codec(),
        records in proptest::collection::vec(record(), 1..12),
        mask in proptest::collection::vec(any::<bool>(), 12),
        retain_empty in any::<bool>(),
    ) {
        let batch = build(codec, &records);
        let original = validate_batch(&batch).expect("valid");
        let all = decode(&batch);
        let mut seen = Vec::new();
        let (result, stats) = filter_batch(&batch, &options(retain_empty), |c| {
            seen.push((c.offset, c.key.map(<[u8]>::to_vec), c.timestamp));
            mask[seen.len() - 1]
        })
        .expect("filters");
        let offered: Vec<_> = all.iter().map(|r| (r.0, r.1.clone(), r.4)).collect();
        prop_assert_eq!(seen, offered, "the filter sees every record as it is");
        let want: Decoded = all.iter().zip(&mask).filter(|(_, k)| **k).map(|(r, _)| r.clone()).collect();
        prop_assert_eq!(stats, FilterStats { read: all.len(), kept: want.len() });
        let tombstone_kept = want.iter().any(|r| r.2.is_none());
        let out = match result {
            Filtered::Unchanged => {
                prop_assert_eq!(want.len(), all.len());
                prop_assert!(!tombstone_kept, "a kept tombstone needs its horizon stored");
                batch.clone()
            }
            Filtered::Rewritten(b) => b,
            Filtered::Empty(b) => {
                prop_assert!(want.is_empty() && retain_empty);
                b
            }
            Filtered::Dropped => {
                prop_assert!(want.is_empty() && !retain_empty);
                return Ok(());
            }
        };
        let h = validate_stored_batch(&out).expect("the result is a valid batch");
        prop_assert_eq!(h.base_offset, original.base_offset);
        prop_assert_eq!(h.last_offset_delta, original.last_offset_delta, "the last offset stays");
        prop_assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (7, 3, 40));
        prop_assert_eq!(decode(&out), want.clone());
        prop_assert_eq!(delete_horizon(&h), tombstone_kept.then_some(HORIZON));
        if !want.is_empty() {
            let max = want.iter().map(|r| r.4).max().expect("max");
            prop_assert_eq!(h.max_timestamp, max);
            prop_assert_eq!(h.compression().expect("codec"), codec);
        }
        // Cleaning the result again with everything kept changes nothing.
        let (again, _) = filter_batch(&out, &options(retain_empty), |_| true).expect("filters");
        prop_assert_eq!(again, Filtered::Unchanged);
    }
}

#[test]
fn a_stored_horizon_stays_and_log_append_time_keeps_the_batch_time() {
    let records: Vec<RecordSpec> = (0..3)
        .map(|i| RecordSpec {
            key: Some(vec![i]),
            value: (i != 1).then(|| vec![i]),
            headers: Vec::new(),
            timestamp: Some(1_000 + i64::from(i)),
        })
        .collect();
    let mut batch = build(Compression::Lz4, &records);
    // Stamp it LogAppendTime at 5000, as the broker does.
    let attributes = i16::from_be_bytes([batch[21], batch[22]]) | ATTR_TIMESTAMP_TYPE;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    batch[35..43].copy_from_slice(&5_000i64.to_be_bytes());
    BatchHeader::seal_crc(&mut batch);
    let (first, _) =
        filter_batch(&batch, &options(false), |c| c.offset != BASE_OFFSET).expect("filters");
    let Filtered::Rewritten(first) = first else {
        panic!("rewritten: {first:?}");
    };
    let h = validate_stored_batch(&first).expect("valid");
    assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(h.max_timestamp, 5_000);
    assert_eq!(delete_horizon(&h), Some(HORIZON), "it kept the tombstone");
    // A later pass with a later horizon keeps the stored one.
    let later = FilterOptions {
        new_delete_horizon: HORIZON + 1,
        ..options(false)
    };
    let (second, _) =
        filter_batch(&first, &later, |c| c.offset != BASE_OFFSET + 2).expect("filters");
    let Filtered::Rewritten(second) = second else {
        panic!("rewritten: {second:?}");
    };
    let h = validate_stored_batch(&second).expect("valid");
    assert_eq!(delete_horizon(&h), Some(HORIZON));
    assert_eq!(h.records_count, 1);
    assert_eq!(h.last_offset_delta, 2);
}

#[test]
fn a_producers_last_batch_stays_as_a_header() {
    let batch = build(
        Compression::Gzip,
        &[RecordSpec::value(b"v".to_vec()).with_key(b"k".to_vec())],
    );
    let (result, _) = filter_batch(&batch, &options(true), |_| false).expect("filters");
    let Filtered::Empty(empty) = result else {
        panic!("empty: {result:?}");
    };
    let h = validate_stored_batch(&empty).expect("valid");
    assert_eq!(
        (h.records_count, h.base_offset, h.last_offset_delta),
        (0, BASE_OFFSET, 0)
    );
    assert_eq!(h.compression().expect("codec"), Compression::None);
    assert_eq!((h.producer_id, h.base_sequence), (7, 40));
    assert_eq!(empty.len(), BATCH_HEADER_LEN);
}

#[test]
fn a_marker_of_an_empty_transaction_gets_a_horizon_then_goes_or_leaves_its_header() {
    use crate::record_batch::{end_txn_batch, read_end_txn_marker, EndTxnMarker};
    let marker = EndTxnMarker {
        commit: false,
        coordinator_epoch: 5,
    };
    let mut batch = end_txn_batch(7, 3, marker, 1_500).expect("marker");
    BatchHeader::write_base_offset(&mut batch, BASE_OFFSET);
    BatchHeader::seal_crc(&mut batch);
    // First pass: the horizon is stored, the marker still says what it said.
    let Filtered::Rewritten(marked) = filter_marker(&batch, &options(false), 0).expect("filter")
    else {
        panic!("the first pass stores a horizon");
    };
    let h = validate_stored_batch(&marked).expect("a valid batch");
    assert_eq!(delete_horizon(&h), Some(HORIZON));
    assert!(h.is_control() && h.is_transactional());
    assert_eq!(
        (h.base_offset, h.producer_id, h.producer_epoch),
        (BASE_OFFSET, 7, 3)
    );
    assert_eq!(read_end_txn_marker(&marked), Some(marker));
    // Before the horizon it stays as it is; at the horizon it goes.
    let unchanged = filter_marker(&marked, &options(false), HORIZON - 1).expect("filter");
    assert_eq!(unchanged, Filtered::Unchanged);
    assert_eq!(
        filter_marker(&marked, &options(false), HORIZON).expect("filter"),
        Filtered::Dropped
    );
    // A producer's last batch leaves its header, which a later pass keeps as it is.
    let Filtered::Empty(header) = filter_marker(&marked, &options(true), HORIZON).expect("f")
    else {
        panic!("a producer's last marker keeps its header");
    };
    let e = validate_stored_batch(&header).expect("a valid batch");
    assert_eq!(e.records_count, 0);
    assert!(e.is_control());
    assert_eq!(
        (e.base_offset, e.producer_id, e.producer_epoch),
        (BASE_OFFSET, 7, 3)
    );
    let again = filter_marker(&header, &options(true), HORIZON).expect("filter");
    assert_eq!(again, Filtered::Unchanged);
    let dropped = filter_marker(&header, &options(false), 0).expect("filter");
    assert_eq!(dropped, Filtered::Dropped);
}
