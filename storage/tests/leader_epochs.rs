//! Leader epochs of a log: stamped into every batch, recorded where each one starts
//! (Kafka's `leader-epoch-checkpoint`), moved on by restarts that wrote, kept through
//! truncations, DeleteRecords and power losses, and never repeated.

mod common;

use std::sync::Arc;

use common::*;
use fjord_protocol::record_batch::batches;
use fjord_storage::fault::{FaultIo, Torn};
use fjord_storage::{EpochEntry, Flusher, Io, Log};

fn entries(log: &Log) -> Vec<(i32, u64)> {
    log.leader_epoch_entries()
        .iter()
        .map(|e: &EpochEntry| (e.epoch, e.start_offset))
        .collect()
}

/// The partition leader epoch of every batch, in order.
fn stamped(log: &Log) -> Vec<i32> {
    batches(&read_all(log))
        .map(|b| b.expect("valid").0.partition_leader_epoch)
        .collect()
}

#[test]
fn batches_carry_the_epoch_and_restarts_that_wrote_move_it_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t-0");
    let mut log = open(&path, small_config());
    assert_eq!(log.leader_epoch(), -1);
    assert_eq!(log.begin_leader_epoch(), 0);
    log.append(&batch(2, 10, 1_000)).expect("append");
    log.append(&batch(1, 10, 1_000)).expect("append");
    assert_eq!(stamped(&log), vec![0, 0]);
    assert_eq!(entries(&log), vec![(0, 0)]);
    log.close().expect("close");

    let mut log = open(&path, small_config());
    assert_eq!(log.begin_leader_epoch(), 1, "epoch 0 wrote: a new one");
    log.close().expect("close");
    let mut log = open(&path, small_config());
    assert_eq!(log.begin_leader_epoch(), 1, "epoch 1 wrote nothing: kept");
    log.append(&batch(3, 10, 1_000)).expect("append");
    assert_eq!(stamped(&log), vec![0, 0, 1]);
    assert_eq!(entries(&log), vec![(0, 0), (1, 3)]);
    // OffsetForLeaderEpoch's answers.
    assert_eq!(log.end_offset_for_epoch(0), (0, 3));
    assert_eq!(log.end_offset_for_epoch(1), (1, 6));
    assert_eq!(log.end_offset_for_epoch(2), (-1, -1));
    assert_eq!(log.epoch_for_offset(2), Some(0));
    assert_eq!(log.epoch_for_offset(6), Some(1));
    // The checkpoint file is Kafka's.
    let text = std::fs::read_to_string(path.join("leader-epoch-checkpoint")).expect("file");
    assert_eq!(text, "0\n2\n0 0\n1 3\n");
}

#[test]
fn truncation_and_delete_records_fit_the_epochs_to_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t-0");
    let mut log = open(&path, small_config());
    for epoch in 0..3 {
        // A new epoch each time, as after restarts.
        log.close().expect("close");
        log = open(&path, small_config());
        assert_eq!(log.begin_leader_epoch(), epoch);
        for _ in 0..3 {
            log.append(&batch(2, 300, 1_000)).expect("append");
        }
    }
    assert_eq!(entries(&log), vec![(0, 0), (1, 6), (2, 12)]);
    log.truncate_to(8).expect("truncate");
    assert_eq!(entries(&log), vec![(0, 0), (1, 6)]);
    log.delete_records_before(4).expect("delete records");
    assert_eq!(entries(&log), vec![(0, 4), (1, 6)]);
    log.close().expect("close");
    let mut log = open(&path, small_config());
    assert_eq!(entries(&log), vec![(0, 4), (1, 6)], "durable");
    assert_eq!(
        log.begin_leader_epoch(),
        2,
        "epoch 2 was begun before: never again"
    );
}

#[test]
fn an_epoch_a_power_loss_took_whole_is_not_used_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t-0");
    let fault = Arc::new(FaultIo::new());
    let open_faulty = || {
        let flusher = Flusher::with_io("test", Io::new(fault.clone())).expect("flusher");
        Log::open(&path, small_config(), flusher).expect("open")
    };
    let mut log = open_faulty();
    log.begin_leader_epoch();
    log.append(&batch(2, 10, 1_000)).expect("append");
    log.flush().expect("flush");
    drop(log);
    fault.power_loss(Torn::Nothing).expect("power loss");
    let mut log = open_faulty();
    assert_eq!(log.begin_leader_epoch(), 1);
    log.append(&batch(2, 10, 1_000)).expect("append"); // epoch 1, never synced
    drop(log);
    fault.power_loss(Torn::Nothing).expect("power loss");
    let mut log = open_faulty();
    assert_eq!(log.log_end_offset(), 2, "epoch 1's records are gone");
    assert_eq!(entries(&log), vec![(0, 0), (1, 2)], "not its place");
    assert_eq!(log.begin_leader_epoch(), 2);
    // A reader that saw epoch 1's records learns that it ended at 2.
    assert_eq!(log.end_offset_for_epoch(1), (1, 2));
    assert_eq!(log.end_offset_for_epoch(0), (0, 2));
}

#[test]
fn a_damaged_checkpoint_is_rebuilt_from_the_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t-0");
    let mut log = open(&path, small_config());
    log.begin_leader_epoch();
    log.append(&batch(2, 10, 1_000)).expect("append");
    log.close().expect("close");
    let mut log = open(&path, small_config());
    log.begin_leader_epoch();
    log.append(&batch(1, 10, 1_000)).expect("append");
    log.close().expect("close");
    std::fs::write(path.join("leader-epoch-checkpoint"), "garbage").expect("damage");
    let mut log = open(&path, small_config());
    assert_eq!(entries(&log), vec![(0, 0), (1, 2)]);
    assert_eq!(log.begin_leader_epoch(), 2);
}
