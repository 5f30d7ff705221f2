//! Power losses at random points, through the fault-injecting file system: appends,
//! syncs, segment rolls (small segments), index writes, log-start-offset writes and
//! clean closes, cut off by a power loss that keeps only what was synced (plus, at
//! random, a torn piece of what came after, at a byte or page boundary), or by an
//! operation failing half-way and the power going right after.
//!
//! After each loss the log must open, serve only valid batches (every CRC checked), and
//! hold every acknowledged record (appended before a sync that returned Ok) at its
//! offset with its bytes; the log start offset never goes below one that was durably
//! moved.

mod common;

use std::sync::Arc;

use common::*;
use fjord_protocol::record_batch::batches;
use fjord_storage::fault::{FaultIo, Op as IoOp, Torn};
use fjord_storage::{Flusher, Io, Log};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Step {
    Append {
        count: usize,
        value_len: usize,
    },
    Sync,
    DeleteRecords {
        at: u16,
    },
    CloseClean,
    PowerLoss {
        torn: Torn,
    },
    /// The next operation of this kind on the log's files fails (as if the machine died
    /// inside it), then an append and a sync are tried, then the power goes.
    DieDuring {
        op: IoOp,
        torn: Torn,
    },
}

fn torn() -> impl Strategy<Value = Torn> {
    prop_oneof![
        Just(Torn::Nothing),
        (1u64..5000).prop_map(Torn::Bytes),
        (1u64..3).prop_map(Torn::Pages),
    ]
}

fn io_op() -> impl Strategy<Value = IoOp> {
    prop_oneof![
        Just(IoOp::Write),
        Just(IoOp::SetLen),
        Just(IoOp::Sync),
        Just(IoOp::Rename),
        Just(IoOp::Open),
        Just(IoOp::Remove),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        10 => (1usize..5, 0usize..400).prop_map(|(count, value_len)| Step::Append { count, value_len }),
        4 => Just(Step::Sync),
        1 => any::<u16>().prop_map(|at| Step::DeleteRecords { at }),
        1 => Just(Step::CloseClean),
        2 => torn().prop_map(|torn| Step::PowerLoss { torn }),
        2 => (io_op(), torn()).prop_map(|(op, torn)| Step::DieDuring { op, torn }),
    ]
}

/// What must survive: the batches acknowledged so far (first offset, bytes as sent)
/// and the durable log start offset.
#[derive(Debug, Default)]
struct Acked {
    batches: Vec<(u64, Vec<u8>)>,
    start: u64,
}

struct World {
    dir: tempfile::TempDir,
    fault: Arc<FaultIo>,
    log: Option<Log>,
    acked: Acked,
    /// Appended since the last successful sync: acknowledged by the next one.
    pending: Vec<(u64, Vec<u8>)>,
    /// The leader epoch of the last open (-1 before the first).
    last_epoch: i32,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let fault = Arc::new(FaultIo::new());
        let mut w = Self {
            dir,
            fault,
            log: None,
            acked: Acked::default(),
            pending: Vec::new(),
            last_epoch: -1,
        };
        w.open();
        w
    }

    fn open(&mut self) {
        let flusher = Flusher::with_io("test", Io::new(self.fault.clone())).expect("flusher");
        let mut log = Log::open(self.dir.path().join("t-0"), small_config(), flusher)
            .expect("the log opens after a power loss");
        self.check(&log);
        // As the broker does: each start writes in a new leader epoch (its checkpoint
        // is written under the same faults).
        let epoch = log.begin_leader_epoch();
        assert!(epoch >= self.last_epoch, "epochs never go back");
        self.last_epoch = epoch;
        self.log = Some(log);
    }

    /// Every batch served is valid, and every acknowledged one is there as sent.
    fn check(&self, log: &Log) {
        let bytes = read_all(log);
        let served: Vec<(i64, Vec<u8>)> = batches(&bytes)
            .map(|b| {
                let (h, raw) = b.expect("only valid batches are served");
                (h.base_offset, raw.to_vec())
            })
            .collect();
        assert!(
            log.log_start_offset() >= self.acked.start,
            "log start {} went below the durable {}",
            log.log_start_offset(),
            self.acked.start
        );
        for (first, sent) in &self.acked.batches {
            let last = *first + first_header(sent).records_count as u64 - 1;
            if last < log.log_start_offset() {
                continue;
            }
            let (_, raw) = served
                .iter()
                .find(|(base, _)| *base as u64 == *first)
                .unwrap_or_else(|| panic!("acknowledged batch at {first} lost"));
            // The same bytes, but for the base offset and leader epoch the log wrote.
            assert_eq!(&raw[8..12], &sent[8..12], "batch at {first} changed");
            assert_eq!(&raw[16..], &sent[16..], "batch at {first} changed");
        }
    }

    fn power_loss(&mut self, torn: Torn) {
        // Everything in flight dies with the machine: drop the log (its maps and files)
        // and its flusher before the disk is rolled back.
        drop(self.log.take());
        self.fault.clear();
        self.fault.power_loss(torn).expect("power loss");
        self.pending.clear();
        self.open();
    }

    fn log(&mut self) -> &mut Log {
        self.log.as_mut().expect("open")
    }

    fn append(&mut self, count: usize, value_len: usize) -> bool {
        let b = batch(count, value_len, 1_000);
        match self.log().append(&b) {
            Ok(info) => {
                self.pending.push((info.first_offset, b));
                true
            }
            Err(_) => false,
        }
    }

    fn sync(&mut self) -> bool {
        if self.log().flush().is_ok() {
            self.acked.batches.append(&mut self.pending);
            true
        } else {
            false
        }
    }

    fn run(&mut self, step: &Step) {
        match step {
            Step::Append { count, value_len } => {
                self.append(*count, *value_len);
            }
            Step::Sync => {
                self.sync();
            }
            Step::DeleteRecords { at } => {
                let log = self.log();
                let (lo, hi) = (log.log_start_offset(), log.log_end_offset());
                let to = lo + u64::from(*at) % (hi - lo + 1);
                if log.delete_records_before(to).is_ok() {
                    self.acked.start = self.acked.start.max(to);
                }
            }
            Step::CloseClean => {
                let log = self.log.take().expect("open");
                if log.close().is_ok() {
                    // A clean close syncs everything.
                    self.acked.batches.append(&mut self.pending);
                }
                self.pending.clear();
                self.open();
            }
            Step::PowerLoss { torn } => self.power_loss(*torn),
            Step::DieDuring { op, torn } => {
                let dir = self.dir.path().join("t-0");
                let fired = self.fault.fired();
                self.fault
                    .fail(*op, &dir.to_string_lossy(), libc::EIO, true);
                // Work that reaches every kind of operation: appends that roll a segment
                // (open, set_len, write, directory sync), a sync, and DeleteRecords
                // (the log start's rename, removal of the sealed segments below).
                for _ in 0..4 {
                    self.append(4, 400);
                }
                self.sync();
                let log = self.log();
                let to = log.active_segment_base();
                if to > log.log_start_offset() && log.delete_records_before(to).is_ok() {
                    self.acked.start = self.acked.start.max(to);
                }
                assert_eq!(self.fault.fired(), fired + 1, "the {op:?} fault fired");
                // Acknowledged is only what a sync that returned Ok covered.
                self.power_loss(*torn);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn acknowledged_records_survive_any_power_loss(steps in proptest::collection::vec(step(), 1..40)) {
        let mut world = World::new();
        for step in &steps {
            world.run(step);
        }
        world.power_loss(Torn::Nothing);
    }
}

#[test]
fn unsynced_appends_are_lost_and_synced_ones_kept() {
    let mut world = World::new();
    assert!(world.append(2, 10));
    assert!(world.sync());
    assert!(world.append(2, 10));
    world.power_loss(Torn::Nothing);
    // The loss is real: the unsynced batch is gone, so the seam is not a no-op.
    assert_eq!(world.log().log_end_offset(), 2);
    assert!(world.append(1, 10));
    assert!(world.sync());
    world.power_loss(Torn::Pages(1));
    assert_eq!(world.log().log_end_offset(), 3);
}

#[test]
fn a_torn_tail_is_cut_at_the_last_valid_batch() {
    let mut world = World::new();
    assert!(world.append(1, 10));
    assert!(world.sync());
    assert!(world.append(4, 300));
    // Keep 100 bytes of the 1.2 KB batch written after the sync: a torn batch.
    world.power_loss(Torn::Bytes(100));
    assert_eq!(world.log().log_end_offset(), 1);
    assert!(world.append(1, 10));
    assert_eq!(world.log().log_end_offset(), 2);
}

/// Found by CI: a segment's name can be durable before the tail of the one before it
/// (the flusher syncs the directory first, and DeleteRecords' log-start write syncs it at
/// any time). Here the old segment's sync fails, so its tail never reaches the disk while
/// the new segment's name does: the log must reopen ending at its last surviving record,
/// not at the empty segment's base with a hole no read can cross.
#[test]
fn an_empty_segment_past_a_lost_tail_is_removed() {
    let mut world = World::new();
    for _ in 0..3 {
        assert!(world.append(3, 280));
    }
    assert!(world.sync());
    let synced_end = world.log().log_end_offset();
    let first_segment = world.dir.path().join("t-0").join(format!("{:020}.log", 0));
    world
        .fault
        .fail_exact(IoOp::Sync, &first_segment, libc::EIO, false);
    while world.log().active_segment_base() == 0 {
        assert!(world.append(2, 300));
    }
    let rolled_at = world.log().active_segment_base();
    assert!(rolled_at > synced_end);
    // The log-start write syncs the directory: the new segment's name is durable.
    world
        .log()
        .delete_records_before(1)
        .expect("delete records");
    world.power_loss(Torn::Nothing);
    let log = world.log();
    assert_eq!(
        log.log_end_offset(),
        synced_end,
        "ends at the last surviving record"
    );
    assert_eq!(log.active_segment_base(), 0);
    assert!(log.append(&batch(1, 10, 1_000)).is_ok());
    assert_eq!(log.log_end_offset(), synced_end + 1);
}
