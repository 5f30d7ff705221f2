//! Open transactions and the last stable offset against a model: random appends of
//! transactional, idempotent and control batches by a few producers.

use std::collections::BTreeMap;

use fjord_protocol::compression::Compression;
use fjord_protocol::record_batch::{
    end_txn_batch, BatchBuilder, BatchHeader, EndTxnMarker, RecordSpec,
};
use proptest::prelude::*;

use super::ProducerStates;

#[derive(Debug, Clone)]
enum Append {
    /// A transactional batch of `n` records by producer `p`.
    Txn(u8, u8),
    /// A plain idempotent batch.
    Plain(u8),
    /// The producer's marker (commit or abort).
    Marker(u8, bool),
}

fn append() -> impl Strategy<Value = Append> {
    prop_oneof![
        (0u8..3, 1u8..4).prop_map(|(p, n)| Append::Txn(p, n)),
        (0u8..3).prop_map(Append::Plain),
        (0u8..3, any::<bool>()).prop_map(|(p, c)| Append::Marker(p, c)),
    ]
}

fn header_of(batch: &[u8]) -> BatchHeader {
    BatchHeader::parse(batch).expect("header")
}

/// A data batch of `n` records by producer `p` (id p + 1), in sequence.
fn data_batch(seq: &mut BTreeMap<i64, i32>, p: u8, n: u8, transactional: bool) -> (Vec<u8>, u64) {
    let pid = i64::from(p) + 1;
    let s = seq.entry(pid).or_insert(0);
    let mut b = BatchBuilder::new(Compression::None, 0).with_producer(pid, 0, *s);
    if transactional {
        b = b.transactional();
    }
    *s += i32::from(n);
    for _ in 0..n {
        b.push(RecordSpec::value("v"));
    }
    (b.build().expect("batch"), u64::from(n))
}

proptest! {
    #[test]
    fn the_last_stable_offset_is_the_oldest_open_transactions_first_offset(
        appends in proptest::collection::vec(append(), 1..60)
    ) {
        let mut states = ProducerStates::default();
        let mut open: BTreeMap<i64, u64> = BTreeMap::new();
        let mut seq: BTreeMap<i64, i32> = BTreeMap::new();
        let mut end = 0u64;
        for a in appends {
            let (batch, records) = match a {
                Append::Txn(p, n) => {
                    open.entry(i64::from(p) + 1).or_insert(end);
                    data_batch(&mut seq, p, n, true)
                }
                Append::Plain(p) => data_batch(&mut seq, p, 1, false),
                Append::Marker(p, commit) => {
                    let pid = i64::from(p) + 1;
                    open.remove(&pid);
                    let marker = EndTxnMarker { commit, coordinator_epoch: 0 };
                    (end_txn_batch(pid, 0, marker, 0).expect("marker"), 1)
                }
            };
            states.record(&header_of(&batch), end);
            end += records;
            // DeleteRecords or retention may have moved the log start past an open
            // transaction's start: the LSO follows the log start, never below it.
            for log_start in [0, end / 2, end] {
                let oldest = open.values().min().copied();
                let want = oldest.map_or(end, |first| first.max(log_start));
                prop_assert_eq!(states.last_stable_offset(log_start, end), want);
            }
            prop_assert_eq!(states.open_transactions(), open.len());
            for (pid, first) in &open {
                prop_assert_eq!(states.txn_start(*pid), Some(*first));
            }
        }
    }
}

#[test]
fn a_restored_start_replaces_the_one_the_active_segment_showed() {
    let mut states = ProducerStates::default();
    let mut b = BatchBuilder::new(Compression::None, 0)
        .with_producer(5, 0, 10)
        .transactional();
    b.push(RecordSpec::value("v"));
    states.record(&header_of(&b.build().expect("batch")), 100);
    assert_eq!(states.last_stable_offset(0, 101), 100);
    // The transaction began in an older segment, at 40.
    states.restore_txn_start(5, 40);
    assert_eq!(states.last_stable_offset(0, 101), 40);
    assert_eq!(states.open_transactions(), 1);
    let marker = end_txn_batch(
        5,
        0,
        EndTxnMarker {
            commit: false,
            coordinator_epoch: 0,
        },
        0,
    )
    .expect("marker");
    states.record(&header_of(&marker), 101);
    assert_eq!(states.last_stable_offset(0, 102), 102);
    assert_eq!(states.txn_start(5), None);
}
