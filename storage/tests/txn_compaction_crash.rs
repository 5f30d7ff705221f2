//! A crash at every I/O step of a pass over a log holding transactions (an operation
//! failing, then a power loss keeping only what was synced), in the pass that drops
//! aborted records, the one that gives emptied markers their horizon, and the one that
//! removes them and their aborted-index entries (the `.txnindex` swap): the log opens,
//! a read_committed reader sees exactly what the model allows, and later passes finish
//! the job.

mod common;
mod txn_model;

use std::sync::Arc;

use fjord_storage::fault::{FaultIo, Op as IoOp, Torn};
use fjord_storage::{Flusher, Io, Log};
use txn_model::*;

/// Rounds of two producers' transactions (most aborted) over four keys, between plain
/// records of the same keys, over many small segments.
fn fill(log: &mut Log, model: &mut Model) {
    for round in 0..8u8 {
        let key = round % 4;
        write(log, model, Some(0), &[(key, false), ((key + 1) % 4, false)]);
        write(log, model, None, &[(key, false)]);
        write(log, model, Some(1), &[((key + 1) % 4, false)]);
        write(log, model, Some(0), &[((key + 2) % 4, round % 4 == 0)]);
        end(log, model, 0, round % 3 == 0);
        end(log, model, 1, round % 2 == 0);
        write(log, model, None, &[((key + 2) % 4, false)]);
    }
    // Records of keys of their own push the transactions out of the active segment.
    let written_end = log.log_end_offset();
    let mut filler = 100u8;
    while log.active_segment_base() < written_end {
        write(log, model, None, &[(filler, false)]);
        filler += 1;
    }
}

/// Runs `passes_before` passes, then one that fails at the `after`-th matching call of
/// `op` on a path containing `path`, then a power loss; checks what the log opens
/// with. Returns whether the failure hit the pass.
fn crash_once(passes_before: usize, op: IoOp, path: &str, after: u32) -> bool {
    let dir = tempfile::tempdir().expect("tempdir");
    let fault = Arc::new(FaultIo::new());
    let flusher = || Flusher::with_io("test", Io::new(fault.clone())).expect("flusher");
    let mut log = Log::open(dir.path(), config(), flusher()).expect("open");
    let mut model = Model::new();
    fill(&mut log, &mut model);
    log.flush().expect("flush");
    for _ in 0..passes_before {
        compact(&mut log, &mut model, true).expect("a pass before the crash");
        log.flush().expect("flush");
    }
    let end = log.log_end_offset();
    fault.fail_after(op, path, libc::EIO, after);
    let result = compact(&mut log, &mut model, true);
    drop(log);
    fault.clear();
    fault.power_loss(Torn::Nothing).expect("power loss");
    let mut log = Log::open(dir.path(), config(), flusher()).expect("opens after the crash");
    let at = format!("{passes_before} passes, {op:?} on {path:?} after {after}: {result:?}");
    assert_eq!(log.log_end_offset(), end, "{at}");
    if let Err(e) = check_reader(&log, &model) {
        panic!("{at}: {e}");
    }
    decide_and_clean(&mut log, &mut model);
    if let Err(e) = check_reader(&log, &model).and_then(|()| check_cleaned(&log, &model)) {
        panic!("{at}, then cleaned: {e}");
    }
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".swap") || n.ends_with(".cleaned"))
        .collect();
    assert!(leftovers.is_empty(), "{at}: {leftovers:?} left over");
    result.is_err()
}

#[test]
fn a_crash_anywhere_in_a_pass_keeps_the_committed_view_and_the_index_with_its_markers() {
    let ops = [
        IoOp::Open,
        IoOp::Write,
        IoOp::Sync,
        IoOp::Rename,
        IoOp::Remove,
    ];
    for passes_before in 0..3 {
        for op in ops {
            for path in ["", ".txnindex"] {
                let mut crashed = 0;
                for after in 0..10 {
                    crashed += usize::from(crash_once(passes_before, op, path, after));
                }
                // Every step fails some pass, except where a pass has no such call (the
                // first has no aborted-index file to remove).
                let txnindex_remove = path == ".txnindex" && op == IoOp::Remove;
                assert!(
                    crashed > 0 || txnindex_remove,
                    "{passes_before} passes, {op:?} on {path:?} never failed a pass"
                );
            }
        }
    }
}
