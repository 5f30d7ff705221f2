//! Offsets committed in transactions: invisible until the COMMIT marker, dropped by an
//! ABORT, and still pending (with their producer) after a crash and after a snapshot.

use fjord_storage::Flusher;

use super::{OffsetStore, TopicPartition};
use crate::groups::offset_records::Committed;

fn committed(offset: i64) -> Committed {
    Committed {
        offset,
        leader_epoch: -1,
        metadata: None,
        commit_ms: 1,
    }
}

fn tp(p: i32) -> TopicPartition {
    ("in".to_string(), p)
}

fn pending(store: &OffsetStore, producer: (i64, i16), offset: i64) {
    store
        .write_pending(producer, "g", &[(tp(0), committed(offset))], || Ok(()))
        .expect("write")
        .expect("verified");
}

#[test]
fn transactional_offsets_count_only_once_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flusher = Flusher::new("test").expect("flusher");
    let store = OffsetStore::open(dir.path(), flusher.clone(), false).expect("open");
    store
        .write("g", &[(tp(0), Some(committed(5)))])
        .expect("plain commit");
    pending(&store, (7, 0), 10);
    assert_eq!(store.committed("g", "in", 0), Some(committed(5)), "not yet");
    assert!(store.has_pending("g", "in", 0));
    assert!(!store.has_pending("g", "in", 1));
    // A refused verification writes nothing.
    let refused = store
        .write_pending((8, 0), "g", &[(tp(1), committed(3))], || Err(48))
        .expect("write");
    assert_eq!(refused.map(|_| ()), Err(48));
    assert!(!store.has_pending("g", "in", 1));
    drop(store); // crash with the transaction open

    let store = OffsetStore::open(dir.path(), flusher.clone(), false).expect("reopen");
    assert!(
        store.has_pending("g", "in", 0),
        "still pending after a crash"
    );
    assert_eq!(store.committed("g", "in", 0), Some(committed(5)));
    store.end_transaction(7, 0, true).expect("commit");
    assert_eq!(store.committed("g", "in", 0), Some(committed(10)));
    assert!(!store.has_pending("g", "in", 0));
    // Aborted offsets go; a second end of the same producer is a no-op.
    pending(&store, (7, 0), 20);
    store.end_transaction(7, 0, false).expect("abort");
    store.end_transaction(7, 0, true).expect("nothing to end");
    assert_eq!(store.committed("g", "in", 0), Some(committed(10)));
    drop(store);
    let store = OffsetStore::open(dir.path(), flusher, false).expect("reopen");
    assert_eq!(store.committed("g", "in", 0), Some(committed(10)));
    assert!(!store.has_pending("g", "in", 0));
}

#[test]
fn a_snapshot_keeps_open_transactions_pending() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flusher = Flusher::new("test").expect("flusher");
    let store = OffsetStore::open(dir.path(), flusher.clone(), false).expect("open");
    pending(&store, (9, 3), 42);
    // Enough plain commits to force a snapshot.
    for round in 0..(crate::keyed_log::GARBAGE_ALLOWANCE as i64 / 50 + 10) {
        let entries: Vec<_> = (0..100)
            .map(|p| (("t".to_string(), p), Some(committed(round))))
            .collect();
        store.write("h", &entries).expect("commit");
    }
    assert!(store.lock().log.generation() > 0, "no snapshot was written");
    assert!(store.has_pending("g", "in", 0));
    drop(store);
    let store = OffsetStore::open(dir.path(), flusher, false).expect("reopen");
    assert!(store.has_pending("g", "in", 0), "the snapshot kept it");
    store.end_transaction(9, 3, true).expect("commit");
    assert_eq!(store.committed("g", "in", 0), Some(committed(42)));
}
