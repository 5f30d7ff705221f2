//! The aborted-transaction index (`.txnindex`) and cutting a read at the last stable
//! offset, through the public API.

mod common;

use std::sync::Arc;

use common::*;
use fjord_protocol::record_batch::{end_txn_batch, EndTxnMarker};
use fjord_storage::fault::{FaultIo, Op as IoOp, Torn};
use fjord_storage::{AbortedTxn, Durability, Flusher, Io, Log, LogConfig};

fn entry(producer_id: i64, first: u64, last: u64) -> AbortedTxn {
    AbortedTxn {
        producer_id,
        first_offset: first,
        last_offset: last,
        last_stable_offset: last + 1,
    }
}

#[test]
fn entries_survive_a_reopen_and_go_with_their_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config();
    let mut log = open(dir.path(), config.clone());
    // 50 batches of 4 records over small segments; an abort recorded every 10 batches.
    for i in 0..50u64 {
        let info = log.append(&batch(4, 80, i as i64 * 10)).expect("append");
        if i % 10 == 9 {
            log.record_aborted(entry(i as i64, info.first_offset - 8, info.first_offset))
                .expect("record");
        }
    }
    assert!(log.segment_count() > 3, "small segments");
    let all: Vec<u64> = log
        .aborted_between(0, 200)
        .iter()
        .map(|e| e.last_offset)
        .collect();
    assert_eq!(all, vec![36, 76, 116, 156, 196]);
    // Only entries whose marker is at or after `from` and whose first record is before
    // `upper`.
    let some: Vec<u64> = log
        .aborted_between(77, 150)
        .iter()
        .map(|e| e.last_offset)
        .collect();
    assert_eq!(some, vec![116, 156], "156 began at 148, before 150");
    assert!(log.has_aborted(19, 76));
    assert!(!log.has_aborted(19, 77));
    drop(log); // no clean close: a crash

    let mut log = open(dir.path(), config);
    let again: Vec<u64> = log
        .aborted_between(0, 200)
        .iter()
        .map(|e| e.last_offset)
        .collect();
    assert_eq!(again, all, "read back from the .txnindex files");
    // Moving the log start past the first two entries' segments removes them.
    log.delete_records_before(100).expect("delete records");
    let left: Vec<u64> = log
        .aborted_between(0, 200)
        .iter()
        .map(|e| e.last_offset)
        .collect();
    assert!(
        left.len() < 5 && left.ends_with(&[116, 156, 196]),
        "{left:?}"
    );
    let files = std::fs::read_dir(dir.path())
        .expect("list")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "txnindex"))
        })
        .count();
    assert_eq!(files, left.len(), "one file per segment with an abort");
}

#[test]
fn a_read_is_cut_before_the_batch_at_the_stable_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config());
    for i in 0..50 {
        log.append(&batch(4, 30, i * 10)).expect("append");
    }
    for lso in [0u64, 4, 40, 41, 120, 199, 200] {
        let mut regions = log.read(0, 1 << 20).expect("read");
        log.cut_regions_at(&mut regions, lso).expect("cut");
        let mut bytes = Vec::new();
        for r in &regions {
            bytes.extend(r.read_to_vec().expect("bytes"));
        }
        let batches = batch_offsets(&bytes);
        // Whole batches only, every one ending before the batch holding `lso`.
        let end = batches
            .last()
            .map_or(0, |(base, n)| *base as u64 + *n as u64);
        assert_eq!(end, lso - lso % 4, "lso {lso}");
    }
}

#[test]
fn a_torn_last_entry_is_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default());
    let info = log.append(&batch(2, 10, 0)).expect("append");
    log.record_aborted(entry(3, 0, info.last_offset))
        .expect("record");
    drop(log);
    let file = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(Result::ok)
        .find(|e| e.path().extension().is_some_and(|x| x == "txnindex"))
        .expect("a txnindex file")
        .path();
    let mut bytes = std::fs::read(&file).expect("read");
    bytes.extend_from_slice(&[0, 0, 0, 1, 2]); // half an entry, as a crash leaves it
    std::fs::write(&file, bytes).expect("write");
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(log.aborted_between(0, 10), vec![entry(3, 0, 1)]);
}

#[test]
fn a_recorded_entry_survives_a_power_loss_after_a_flush() {
    // Without an fsync per ack, the log's flush is what a power loss keeps: an entry
    // recorded before it stays, in the active segment (flush) as in one rolled since
    // (roll).
    assert_eq!(small_config().durability, Durability::PageCache);
    for roll in [false, true] {
        let f = FaultLog::new();
        let mut log = f.open();
        let info = log.append(&batch(2, 10, 0)).expect("append");
        log.record_aborted(entry(3, 0, info.last_offset))
            .expect("record");
        if roll {
            while log.segment_count() == 1 {
                log.append(&batch(4, 200, 0)).expect("append");
            }
        }
        log.flush().expect("flush");
        drop(log);
        f.fault.power_loss(Torn::Nothing).expect("power loss");
        let log = f.open();
        assert_eq!(
            log.aborted_between(0, 10),
            vec![entry(3, 0, 1)],
            "roll: {roll}"
        );
    }
}

/// A log over the fault seam, reopened as often as a test needs.
struct FaultLog {
    dir: tempfile::TempDir,
    fault: Arc<FaultIo>,
}

impl FaultLog {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            fault: Arc::new(FaultIo::new()),
        }
    }

    /// Opens the log with `small_config` (page-cache durability: the flush syncs).
    fn open(&self) -> Log {
        let flusher = Flusher::with_io("test", Io::new(self.fault.clone())).expect("flusher");
        Log::open(self.dir.path(), small_config(), flusher).expect("open")
    }
}

/// An ABORT marker of producer 3 (any offset: the log assigns it).
fn abort_marker() -> Vec<u8> {
    let marker = EndTxnMarker {
        commit: false,
        coordinator_epoch: 0,
    };
    end_txn_batch(3, 0, marker, 0).expect("marker")
}

#[test]
fn an_abort_markers_entry_is_durable_first_and_a_lone_entry_goes_for_good() {
    let f = FaultLog::new();
    let fault = &f.fault;
    let mut log = f.open();
    log.append(&batch(2, 10, 0)).expect("append");
    log.flush().expect("flush");
    // The entry cannot be made durable: no marker is written.
    fault.fail(IoOp::Sync, ".txnindex", libc::EIO, true);
    let failed = log.append_abort_marker(&abort_marker(), |at| entry(3, 0, at));
    assert!(failed.is_err());
    assert_eq!(log.log_end_offset(), 2, "no marker without a durable entry");
    drop(log);
    fault.clear();
    // A power loss after the entry but before the marker reached the disk.
    let mut log = f.open();
    let info = log
        .append_abort_marker(&abort_marker(), |at| entry(3, 0, at))
        .expect("marker");
    assert_eq!(info.first_offset, 2);
    assert_eq!(log.aborted_between(0, 10), vec![entry(3, 0, 2)]);
    drop(log);
    fault.power_loss(Torn::Nothing).expect("power loss");
    let mut log = f.open();
    assert_eq!(log.log_end_offset(), 2, "the marker was lost");
    assert_eq!(log.aborted_between(0, 10), vec![], "so is its entry");
    // Offset 2 is taken by other records now: the lone entry must not come back.
    for i in 0..3 {
        log.append(&batch(2, 10, i)).expect("append");
    }
    log.flush().expect("flush");
    drop(log);
    let mut log = f.open();
    assert_eq!(log.aborted_between(0, 10), vec![]);
    // Made durable by a flush, both stay.
    let info = log
        .append_abort_marker(&abort_marker(), |at| entry(3, 2, at))
        .expect("marker");
    log.flush().expect("flush");
    drop(log);
    fault.power_loss(Torn::Nothing).expect("power loss");
    let log = f.open();
    assert_eq!(log.log_end_offset(), info.first_offset + 1);
    assert_eq!(
        log.aborted_between(0, 20),
        vec![entry(3, 2, info.first_offset)]
    );
}

#[test]
fn an_entry_synced_into_a_file_a_crash_could_still_take_syncs_its_name() {
    let f = FaultLog::new();
    let fault = &f.fault;
    let mut log = f.open();
    log.append(&batch(2, 10, 0)).expect("append");
    // An entry whose sync failed: its file exists with it, its name is not durable.
    log.append(&abort_marker()).expect("marker");
    fault.fail(IoOp::Sync, ".txnindex", libc::EIO, true);
    assert!(log.record_aborted(entry(3, 0, 2)).is_err());
    fault.clear();
    drop(log); // a crash that keeps the page cache
    let mut log = f.open();
    assert_eq!(log.aborted_between(0, 10), vec![entry(3, 0, 2)]);
    log.append(&batch(2, 10, 0)).expect("append");
    let info = log
        .append_abort_marker(&abort_marker(), |at| entry(3, 3, at))
        .expect("marker");
    log.flush().expect("flush");
    drop(log);
    fault.power_loss(Torn::Nothing).expect("power loss");
    let log = f.open();
    assert_eq!(log.log_end_offset(), info.first_offset + 1);
    assert_eq!(
        log.aborted_between(0, 20),
        vec![entry(3, 0, 2), entry(3, 3, info.first_offset)]
    );
}

#[test]
fn an_abort_markers_entry_lands_in_its_markers_segment_even_when_the_marker_rolls_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config());
    // Data and markers alternate over many small segments: some markers roll.
    let mut markers = Vec::new();
    for i in 0..120 {
        let first = log
            .append(&batch(3, 20 + (i as usize * 7) % 61, i))
            .expect("append")
            .first_offset;
        let at = log
            .append_abort_marker(&abort_marker(), |at| entry(3, first, at))
            .expect("marker")
            .first_offset;
        markers.push(at);
    }
    let sealed = log.sealed_segments().expect("sealed");
    assert!(sealed.len() > 3, "small segments");
    let rolled_by_marker: Vec<u64> = sealed
        .iter()
        .map(|s| s.base)
        .filter(|b| markers.contains(b))
        .collect();
    assert!(
        !rolled_by_marker.is_empty(),
        "a marker starts a segment: {sealed:?}"
    );
    // Each entry goes with its marker's segment: deleting the segments below one a
    // marker starts keeps exactly the entries of markers at or past it.
    let cut = rolled_by_marker[0];
    log.delete_records_before(cut).expect("delete records");
    let left: Vec<u64> = log
        .aborted_between(0, u64::MAX)
        .iter()
        .map(|e| e.last_offset)
        .collect();
    let want: Vec<u64> = markers.iter().copied().filter(|m| *m >= cut).collect();
    assert_eq!(left, want);
}
