//! Random appends, reads, rolls, truncations, deletions and reopens, checked against a
//! plain in-memory model of the log.

mod common;

use common::*;
use fjord_protocol::record_batch::batches;
use fjord_storage::LogConfig;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append {
        count: usize,
        value_len: usize,
        ts: i64,
    },
    Read {
        at: u16,
        max_bytes: u16,
    },
    Truncate {
        at: u16,
    },
    DeleteRecords {
        at: u16,
    },
    Reopen {
        clean: bool,
    },
    CloseIdle,
    Retention {
        max_bytes: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..6, 0usize..300, 0i64..100_000).prop_map(|(count, value_len, ts)| Op::Append { count, value_len, ts }),
        4 => (any::<u16>(), any::<u16>()).prop_map(|(at, max_bytes)| Op::Read { at, max_bytes }),
        1 => any::<u16>().prop_map(|at| Op::Truncate { at }),
        1 => any::<u16>().prop_map(|at| Op::DeleteRecords { at }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
        1 => Just(Op::CloseIdle),
        1 => any::<u16>().prop_map(|max_bytes| Op::Retention { max_bytes }),
    ]
}

/// The model: every batch with its first offset and original bytes.
#[derive(Debug, Default)]
struct Model {
    batches: Vec<(u64, Vec<u8>)>,
    start: u64,
    end: u64,
}

impl Model {
    fn count(bytes: &[u8]) -> u64 {
        first_header(bytes).records_count as u64
    }

    fn holding(&self, offset: u64) -> Option<usize> {
        self.batches
            .iter()
            .position(|(first, b)| offset < first + Self::count(b))
    }

    /// The log's bytes from the batch at index `from` on, base offsets patched.
    fn bytes_from(&self, from: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for (first, b) in &self.batches[from..] {
            out.extend_from_slice(&(*first as i64).to_be_bytes());
            out.extend_from_slice(&b[8..]);
        }
        out
    }
}

fn pick(at: u16, lo: u64, hi: u64) -> u64 {
    if hi <= lo {
        lo
    } else {
        lo + u64::from(at) % (hi - lo + 1)
    }
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 300,
        segment_index_bytes: 4096,
        ..small_config()
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Some(open(dir.path(), config()));
    let mut model = Model::default();
    for op in ops {
        let l = log.as_mut().expect("open log");
        match op {
            Op::Append {
                count,
                value_len,
                ts,
            } => {
                let b = batch(count, value_len, ts);
                let info = l.append(&b).expect("append");
                prop_assert_eq!(info.first_offset, model.end);
                model.batches.push((model.end, b));
                model.end += count as u64;
            }
            Op::Read { at, max_bytes } => {
                let from = pick(at, model.start, model.end);
                let bytes = l.read_to_vec(from, u64::from(max_bytes)).expect("read");
                if from == model.end {
                    prop_assert!(bytes.is_empty());
                    continue;
                }
                let i = model.holding(from).expect("offset in model");
                let expected = model.bytes_from(i);
                prop_assert!(!bytes.is_empty());
                prop_assert!(
                    bytes.len() <= usize::from(max_bytes).max(first_header(&expected).total_len())
                );
                prop_assert_eq!(&bytes[..], &expected[..bytes.len()]);
                prop_assert!(batches(&bytes).all(|b| b.is_ok()), "whole batches only");
            }
            Op::Truncate { at } => {
                let to = pick(at, 0, model.end + 1);
                let first_base = l.segment_base_offsets()[0];
                l.truncate_to(to).expect("truncate");
                if to >= model.end {
                } else if to <= first_base {
                    model.batches.clear();
                    model.start = to;
                    model.end = to;
                } else {
                    let i = model.holding(to).expect("holding");
                    model.end = model.batches[i].0;
                    model.batches.truncate(i);
                    model.start = model.start.min(to).min(model.end);
                }
            }
            Op::DeleteRecords { at } => {
                let to = pick(at, model.start, model.end);
                prop_assert_eq!(
                    l.delete_records_before(to).expect("delete"),
                    to.max(model.start)
                );
                model.start = model.start.max(to);
            }
            Op::Reopen { clean } => {
                let old = log.take().expect("log");
                if clean {
                    old.close().expect("close");
                } else {
                    drop(old);
                }
                log = Some(open(dir.path(), config()));
            }
            Op::CloseIdle => {
                l.close_idle(std::time::Duration::ZERO).expect("close idle");
            }
            Op::Retention { max_bytes } => {
                l.set_config(LogConfig {
                    retention_bytes: Some(u64::from(max_bytes) * 4),
                    ..config()
                })
                .expect("config");
                let outcome = l.apply_retention(0).expect("retention");
                l.set_config(config()).expect("config");
                model.start = model.start.max(outcome.log_start_offset);
                prop_assert_eq!(outcome.log_start_offset, model.start);
                let first_base = l.segment_base_offsets()[0];
                model
                    .batches
                    .retain(|(first, b)| first + Model::count(b) > first_base);
            }
        }
        let l = log.as_ref().expect("log");
        prop_assert_eq!(l.log_end_offset(), model.end);
        prop_assert_eq!(l.log_start_offset(), model.start);
    }
    let l = log.as_ref().expect("log");
    if model.start < model.end {
        let i = model.holding(model.start).expect("start batch");
        prop_assert_eq!(read_all(l), model.bytes_from(i));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
