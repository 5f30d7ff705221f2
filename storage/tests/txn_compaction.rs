//! Compaction of a log holding transactions, against a model: random writes (plain and
//! transactional, from several producers, some tombstones), commits, aborts, passes of
//! the cleaner at the log's last stable offset, DeleteRecords and reopens. A
//! read_committed reader (Kafka's consumer algorithm over the aborted index) always
//! sees only committed records as written and the latest committed value of every key;
//! once every transaction is decided and enough passes ran past the delete horizon, the
//! aborted records and the markers guarding nothing are gone, and every index entry
//! still has its marker.

mod common;
mod txn_model;

use common::open;
use proptest::prelude::*;
use txn_model::*;

#[derive(Debug, Clone)]
enum Step {
    /// A batch of `(key, tombstone)` records, transactional for `Some(producer)`.
    Write {
        producer: Option<u8>,
        records: Vec<(u8, bool)>,
    },
    /// The producer's transaction ends (if one is open).
    End { producer: u8, commit: bool },
    /// A pass at the last stable offset, `later` past one more delete horizon.
    Compact { later: bool },
    /// DeleteRecords at this share (of 256) of the log end.
    DeleteRecords { share: u8 },
    /// An unclean stop and an open.
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    let records = proptest::collection::vec((0u8..6, proptest::bool::weighted(0.15)), 1..4);
    prop_oneof![
        6 => (proptest::option::weighted(0.7, 0u8..3), records)
            .prop_map(|(producer, records)| Step::Write { producer, records }),
        3 => (0u8..3, any::<bool>()).prop_map(|(producer, commit)| Step::End { producer, commit }),
        3 => any::<bool>().prop_map(|later| Step::Compact { later }),
        1 => (0u8..64).prop_map(|share| Step::DeleteRecords { share }),
        1 => Just(Step::Reopen),
    ]
}

fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), config());
    let mut model = Model::new();
    for s in steps {
        match s {
            Step::Write { producer, records } => write(&mut log, &mut model, producer, &records),
            Step::End { producer, commit } => end(&mut log, &mut model, producer, commit),
            Step::Compact { later } => compact(&mut log, &mut model, later).expect("compact"),
            Step::DeleteRecords { share } => {
                let at = log.log_end_offset() * u64::from(share) / 256;
                if at > log.log_start_offset() {
                    log.delete_records_before(at).expect("delete records");
                }
            }
            Step::Reopen => {
                drop(log);
                log = open(dir.path(), config());
            }
        }
        check_reader(&log, &model)?;
    }
    decide_and_clean(&mut log, &mut model);
    check_reader(&log, &model)?;
    check_cleaned(&log, &model)?;
    drop(log);
    let log = open(dir.path(), config());
    check_cleaned(&log, &model)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn read_committed_sees_the_compacted_committed_log(
        steps in proptest::collection::vec(step(), 1..70)
    ) {
        run(steps)?;
    }
}
