//! Retention by time and by size: whole old segments go, the active one never does.

mod common;

use common::*;
use fjord_storage::LogConfig;

fn filled(dir: &std::path::Path, config: LogConfig) -> fjord_storage::Log {
    let mut log = open(dir, config);
    // 100 batches, timestamps 1_000 apart: batch i has records at 1_000 * i.
    for i in 0..100i64 {
        log.append(&batch(2, 100, 1_000 * i)).expect("append");
    }
    log
}

#[test]
fn retention_ms_deletes_only_segments_whose_newest_record_is_old() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        retention_ms: Some(30_000),
        ..small_config()
    };
    let mut log = filled(dir.path(), config);
    let bases = log.segment_base_offsets();
    let now = 100_000;
    let outcome = log.apply_retention(now).expect("retention");
    assert!(outcome.segments_deleted > 0);
    let first_base = log.segment_base_offsets()[0];
    assert_eq!(outcome.log_start_offset, first_base);
    assert_eq!(log.log_start_offset(), first_base);
    // Every deleted segment held only records older than now - retention; the first kept
    // one holds a record within retention (its last batch is younger).
    let kept_first = log.read_to_vec(first_base, 1 << 20).expect("read");
    let newest_kept: i64 = fjord_protocol::record_batch::batches(&kept_first)
        .map(|b| b.expect("valid").0.max_timestamp)
        .max()
        .expect("batches");
    assert!(
        now - newest_kept <= 30_000,
        "first kept segment should not be expired"
    );
    assert!(bases.len() - log.segment_count() == outcome.segments_deleted);
    // Nothing left to delete on a second pass; the files are really gone.
    assert_eq!(log.apply_retention(now).expect("again").segments_deleted, 0);
    assert!(!dir.path().join(format!("{:020}.log", bases[0])).exists());
}

#[test]
fn retention_never_deletes_the_active_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        retention_ms: Some(1),
        retention_bytes: Some(1),
        ..small_config()
    };
    let mut log = filled(dir.path(), config);
    let end = log.log_end_offset();
    let outcome = log.apply_retention(i64::MAX / 2).expect("retention");
    assert_eq!(log.segment_count(), 1);
    assert!(outcome.segments_deleted > 0);
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.log_start_offset(), log.segment_base_offsets()[0]);
    let info = log.append(&batch(1, 10, 0)).expect("still writable");
    assert_eq!(info.first_offset, end);
}

#[test]
fn retention_bytes_deletes_whole_segments_down_to_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limit = 6_000;
    let config = LogConfig {
        retention_bytes: Some(limit),
        ..small_config()
    };
    let mut log = filled(dir.path(), config);
    let total = log.size_bytes();
    assert!(total > 3 * limit);
    let outcome = log.apply_retention(0).expect("retention");
    // Kafka's rule: delete the oldest segments while the rest still holds at least
    // retention.bytes, so the log never drops below the limit.
    assert!(log.size_bytes() >= limit);
    assert_eq!(total - log.size_bytes(), outcome.bytes_deleted);
    // Deleting one more segment would have taken the log below the limit.
    let first_size = std::fs::metadata(
        dir.path()
            .join(format!("{:020}.log", log.segment_base_offsets()[0])),
    )
    .expect("stat")
    .len();
    assert!(log.size_bytes() - first_size < limit);
    assert_eq!(read_all(&log).len() as u64, log.size_bytes());
}

#[test]
fn retention_state_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        retention_bytes: Some(10_000),
        ..small_config()
    };
    let mut log = filled(dir.path(), config.clone());
    log.apply_retention(0).expect("retention");
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    log.close().expect("close");
    let log = open(dir.path(), config);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (start, end));
}
