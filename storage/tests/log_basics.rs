//! Append, read and lookups through the public API.

mod common;

use common::*;
use fjord_protocol::compression::Compression;
use fjord_protocol::record_batch::{validate_batch, TimestampType};
use fjord_storage::{Durability, LogConfig, StorageError};

#[test]
fn append_assigns_offsets_and_reads_back_the_same_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default());
    let a = batch(3, 10, 1_000);
    let b = batch(5, 10, 2_000);
    let info = log.append(&a).expect("append a");
    assert_eq!((info.first_offset, info.last_offset), (0, 2));
    let info = log.append(&b).expect("append b");
    assert_eq!((info.first_offset, info.last_offset), (3, 7));
    assert_eq!(log.log_end_offset(), 8);

    let bytes = log.read_to_vec(0, 1 << 20).expect("read");
    assert_eq!(batch_offsets(&bytes), vec![(0, 3), (3, 5)]);
    // Only the base offset differs from what the client sent.
    assert_eq!(&bytes[8..a.len()], &a[8..]);
    assert_eq!(&bytes[a.len() + 8..], &b[8..]);
}

#[test]
fn read_starts_at_the_batch_holding_the_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config());
    for i in 0..50 {
        log.append(&batch(4, 30, i * 10)).expect("append");
    }
    for offset in [0u64, 1, 3, 4, 77, 150, 199] {
        let regions = log.read(offset, 1).expect("read");
        let bytes = regions[0].read_to_vec().expect("bytes");
        let h = first_header(&bytes);
        assert!(
            h.base_offset as u64 <= offset && offset <= h.last_offset() as u64,
            "offset {offset}"
        );
        // KIP-74: one whole batch even though max_bytes is 1.
        assert_eq!(bytes.len(), h.total_len());
    }
    assert!(log.read(200, 100).expect("at end").is_empty());
    assert!(matches!(
        log.read(201, 100),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn read_returns_whole_batches_within_max_bytes_across_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config());
    let one = batch(2, 100, 0);
    for _ in 0..100 {
        log.append(&one).expect("append");
    }
    assert!(log.segment_count() > 5);
    let budget = one.len() as u64 * 45 + 10;
    let regions = log.read(10, budget).expect("read");
    assert!(
        regions.len() > 1,
        "a 45-batch read should cross a 4 KiB segment"
    );
    let total: u64 = regions.iter().map(|r| r.len).sum();
    assert_eq!(total, one.len() as u64 * 45);
    let bytes = log.read_to_vec(10, budget).expect("read");
    let offsets = batch_offsets(&bytes);
    assert_eq!(offsets.len(), 45);
    assert_eq!(offsets[0].0, 10);
    assert!(offsets.windows(2).all(|w| w[1].0 == w[0].0 + 2));
}

#[test]
fn bad_batches_are_rejected_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(
        dir.path(),
        LogConfig {
            max_batch_bytes: 2_000,
            ..LogConfig::default()
        },
    );
    let good = batch(2, 10, 0);
    log.append(&good).expect("append");

    let mut corrupt = good.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    let mut two = good.clone();
    two.extend_from_slice(&corrupt);
    assert!(
        matches!(log.append(&two), Err(StorageError::InvalidBatch { position, .. }) if position == good.len())
    );
    assert!(
        log.append(&good[..good.len() - 1]).is_err(),
        "truncated batch"
    );
    assert!(matches!(log.append(&[]), Err(StorageError::EmptyAppend)));
    assert!(matches!(
        log.append(&batch(30, 100, 0)),
        Err(StorageError::BatchTooLarge { .. })
    ));
    let mut magic1 = good.clone();
    magic1[16] = 1;
    assert!(log.append(&magic1).is_err());

    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(log.size_bytes(), good.len() as u64);
    assert_eq!(read_all(&log).len(), good.len());
}

#[test]
fn log_append_time_rewrites_max_timestamp_and_keeps_crc_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    let info = log
        .append_at(&batch(3, 10, 5), 1_700_000_000_000)
        .expect("append");
    assert_eq!(info.log_append_time, Some(1_700_000_000_000));
    let bytes = log.read_to_vec(0, 1 << 20).expect("read");
    let h = validate_batch(&bytes).expect("crc still valid");
    assert_eq!(h.max_timestamp, 1_700_000_000_000);
    assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
    let hit = log
        .offset_for_timestamp(1_700_000_000_000)
        .expect("lookup")
        .expect("found");
    assert_eq!((hit.offset, hit.timestamp), (0, 1_700_000_000_000));
}

#[test]
fn offset_for_timestamp_follows_list_offsets_semantics_under_every_codec() {
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = open(dir.path(), small_config());
        // 40 batches of 5 records; record k (offset k) has timestamp 10_000 + 10 * k.
        for i in 0..40i64 {
            let mut b = fjord_protocol::record_batch::BatchBuilder::new(codec, 10_000 + 50 * i);
            for r in 0..5 {
                b.push(
                    fjord_protocol::record_batch::RecordSpec::value(vec![1; 40])
                        .with_timestamp(10_000 + 50 * i + 10 * r),
                );
            }
            log.append(&b.build().expect("build")).expect("append");
        }
        let at = |ts| {
            log.offset_for_timestamp(ts)
                .expect("lookup")
                .map(|t| (t.offset, t.timestamp))
        };
        assert_eq!(at(0), Some((0, 10_000)), "{codec:?}");
        assert_eq!(at(10_000), Some((0, 10_000)));
        assert_eq!(at(10_001), Some((1, 10_010)));
        assert_eq!(at(10_555), Some((56, 10_560)));
        assert_eq!(at(11_990), Some((199, 11_990)));
        assert_eq!(at(11_991), None);
        assert_eq!(at(-1), Some((200, -1)));
        assert_eq!(at(-2), Some((0, -1)));
        assert_eq!(at(-3), Some((199, 11_990)));
    }
}

#[test]
fn truncate_to_drops_whole_batches_and_appends_continue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config());
    for i in 0..60 {
        log.append(&batch(2, 50, i)).expect("append");
    }
    let segments_before = log.segment_count();
    log.truncate_to(51).expect("truncate inside a batch");
    assert_eq!(
        log.log_end_offset(),
        50,
        "the batch holding 51 starts at 50"
    );
    assert!(log.segment_count() < segments_before);
    let info = log.append(&batch(2, 50, 0)).expect("append after truncate");
    assert_eq!(info.first_offset, 50);
    let offsets = batch_offsets(&read_all(&log));
    assert_eq!(offsets.len(), 26);
    assert!(offsets.windows(2).all(|w| w[1].0 == w[0].0 + 2));

    log.truncate_to(0).expect("truncate everything");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    assert_eq!(log.segment_count(), 1);
}

#[test]
fn delete_records_before_moves_the_start_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config());
    for i in 0..60 {
        log.append(&batch(2, 50, i)).expect("append");
    }
    let segments_before = log.segment_count();
    assert_eq!(log.delete_records_before(101).expect("delete"), 101);
    assert!(log.segment_count() < segments_before);
    assert!(log.segment_base_offsets()[0] <= 100);
    assert!(matches!(
        log.read(100, 100),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    let first = log.read_to_vec(101, 1).expect("read");
    assert_eq!(
        first_header(&first).base_offset,
        100,
        "batch holding 101 comes whole"
    );
    assert!(log.delete_records_before(500).is_err());
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_start_offset(), 101);
    assert_eq!(log.log_end_offset(), 120);
}

#[test]
fn clean_close_reopens_without_touching_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config());
    for i in 0..100 {
        log.append(&batch(3, 40, i)).expect("append");
    }
    let size = log.size_bytes();
    let segments = log.segment_count();
    log.close().expect("close");
    let mut log = open(dir.path(), small_config());
    assert_eq!(log.open_segment_count(), 0, "clean open reads no segment");
    assert_eq!(
        (log.log_end_offset(), log.size_bytes(), log.segment_count()),
        (300, size, segments)
    );
    assert!(!dir.path().join(".clean-shutdown").exists() || log.open_segment_count() == 0);
    log.append(&batch(1, 10, 0))
        .expect("append after clean open");
    assert!(
        !dir.path().join(".clean-shutdown").exists(),
        "marker removed on first change"
    );
    assert_eq!(batch_offsets(&read_all(&log)).len(), 101);
}

#[test]
fn unclean_stop_recovers_everything_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config());
    for i in 0..100 {
        log.append(&batch(3, 40, i)).expect("append");
    }
    let before = read_all(&log);
    drop(log); // no close: an unclean stop
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_end_offset(), 300);
    assert_eq!(read_all(&log), before);
    assert_eq!(
        log.offset_for_timestamp(-3)
            .expect("max")
            .map(|t| t.timestamp),
        Some(101)
    );
}

#[test]
fn idle_segments_close_and_reopen_on_demand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config());
    for i in 0..100 {
        log.append(&batch(3, 40, i)).expect("append");
    }
    let before = read_all(&log);
    assert!(log.open_segment_count() > 1);
    let closed = log
        .close_idle(std::time::Duration::ZERO)
        .expect("close idle");
    assert!(closed > 1);
    assert_eq!(log.open_segment_count(), 0);
    assert_eq!(read_all(&log), before);
    log.close_idle(std::time::Duration::ZERO)
        .expect("close idle");
    log.append(&batch(1, 10, 0))
        .expect("append reopens the active segment");
    assert_eq!(log.log_end_offset(), 301);
}

#[test]
fn fsync_on_ack_hands_out_tickets_that_complete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flusher = flusher();
    let config = LogConfig {
        durability: Durability::FsyncOnAck,
        ..small_config()
    };
    let mut log = fjord_storage::Log::open(dir.path(), config, flusher.clone()).expect("open");
    let tickets: Vec<_> = (0..50)
        .map(|i| {
            log.append(&batch(1, 100, i))
                .expect("append")
                .durable
                .expect("ticket")
        })
        .collect();
    for t in tickets {
        t.wait().expect("durable");
    }
    assert!(flusher.requests() >= 50);
    assert!(flusher.syncs() >= 1);
}

#[tokio::test]
async fn fsync_on_ack_ticket_is_awaitable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        durability: Durability::FsyncOnAck,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    let info = log.append(&batch(1, 100, 0)).expect("append");
    info.durable.expect("ticket").await.expect("durable");
}

#[test]
fn flush_messages_triggers_background_flushes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flusher = flusher();
    let config = LogConfig {
        durability: Durability::Interval {
            messages: Some(10),
            ms: None,
        },
        ..LogConfig::default()
    };
    let mut log = fjord_storage::Log::open(dir.path(), config, flusher.clone()).expect("open");
    for i in 0..9 {
        assert!(log
            .append(&batch(1, 10, i))
            .expect("append")
            .durable
            .is_none());
    }
    assert_eq!(flusher.requests(), 0);
    log.append(&batch(1, 10, 9)).expect("append");
    assert_eq!(flusher.requests(), 1);
}

#[test]
fn segment_ms_rolls_by_record_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_ms: Some(1_000),
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    log.append(&batch(1, 10, 10_000)).expect("append");
    log.append(&batch(1, 10, 10_900)).expect("append");
    assert_eq!(log.segment_count(), 1);
    log.append(&batch(1, 10, 11_100)).expect("append");
    assert_eq!(log.segment_base_offsets(), vec![0, 2]);
}

#[test]
fn full_index_rolls_the_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_index_bytes: 24,
        index_interval_bytes: 1,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    for i in 0..10 {
        log.append(&batch(1, 10, i)).expect("append");
    }
    assert!(
        log.segment_count() >= 3,
        "an index of 2 entries must force rolls"
    );
    assert_eq!(batch_offsets(&read_all(&log)).len(), 10);
}

#[test]
fn segment_ms_counts_from_the_first_batch_after_an_unclean_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_ms: Some(1_000),
        index_interval_bytes: 100,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config.clone());
    for i in 0..20 {
        log.append(&batch(1, 100, 10_000 + 40 * i)).expect("append");
    }
    drop(log); // unclean: recovery rescans from the last index entry, not from 0
    let mut log = open(dir.path(), config);
    log.append(&batch(1, 100, 11_001)).expect("append");
    assert_eq!(
        log.segment_base_offsets(),
        vec![0, 20],
        "11_001 - 10_000 > segment.ms"
    );
}

#[test]
fn truncating_at_a_segment_boundary_keeps_the_new_active_segment_indexed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_ms: Some(1_000),
        index_interval_bytes: 100,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    for i in 0..10 {
        log.append(&batch(1, 100, i)).expect("append");
    }
    log.append(&batch(1, 100, 5_000))
        .expect("append rolls by time");
    assert_eq!(log.segment_base_offsets(), vec![0, 10]);
    log.truncate_to(10).expect("truncate at the boundary");
    assert_eq!(
        (log.segment_base_offsets(), log.log_end_offset()),
        (vec![0], 10)
    );
    let index = dir.path().join(format!("{:020}.index", 0));
    let entries = |p: &std::path::Path| {
        std::fs::read(p)
            .expect("index")
            .chunks_exact(8)
            .filter(|e| e != &[0u8; 8])
            .count()
    };
    let before = entries(&index);
    for i in 0..20 {
        log.append(&batch(1, 100, 20 + i)).expect("append");
    }
    assert_eq!(log.segment_count(), 1);
    assert!(
        entries(&index) > before,
        "appends to the re-activated segment must be indexed"
    );
}

#[test]
fn flush_ms_hands_old_appends_to_the_flusher() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flusher = flusher();
    let config = LogConfig {
        durability: Durability::Interval {
            messages: None,
            ms: Some(20),
        },
        ..LogConfig::default()
    };
    let mut log = fjord_storage::Log::open(dir.path(), config, flusher.clone()).expect("open");
    log.maybe_flush().expect("nothing to flush");
    assert_eq!(flusher.requests(), 0);
    log.append(&batch(1, 10, 0)).expect("append");
    log.maybe_flush().expect("too young");
    assert_eq!(flusher.requests(), 0);
    std::thread::sleep(std::time::Duration::from_millis(30));
    log.maybe_flush().expect("old enough");
    assert_eq!(flusher.requests(), 1);
    log.maybe_flush().expect("already flushed");
    assert_eq!(flusher.requests(), 1);
}

#[test]
fn truncating_below_the_first_segment_restarts_the_log_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config());
    for i in 0..40 {
        log.append(&batch(2, 50, i)).expect("append");
    }
    log.delete_records_before(60).expect("delete");
    let first = log.segment_base_offsets()[0];
    assert!(first > 0);
    log.truncate_to(first).expect("truncate at the first base");
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.segment_base_offsets()
        ),
        (first, first, vec![first])
    );
    log.truncate_to(first - 1).expect("truncate below it");
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.segment_base_offsets()
        ),
        (first - 1, first - 1, vec![first - 1])
    );
    assert_eq!(
        log.append(&batch(1, 5, 0)).expect("append").first_offset,
        first - 1
    );
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (first - 1, first)
    );
}

#[test]
fn logs_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<fjord_storage::Log>();
    assert_send_sync::<fjord_storage::FileRegion>();
    assert_send_sync::<fjord_storage::Flusher>();
}

#[test]
fn huge_max_bytes_reads_to_the_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config());
    for i in 0..30 {
        log.append(&batch(2, 50, i)).expect("append");
    }
    let bytes = log.read_to_vec(7, u64::MAX).expect("read");
    assert_eq!(batch_offsets(&bytes).first().map(|b| b.0), Some(6));
}

#[test]
fn timestamp_lookups_survive_batches_with_undecodable_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default());
    log.append(&batch(2, 10, 1_000)).expect("append");
    // A compressed batch whose header and CRC are valid but whose payload is garbage:
    // the default validation does not open compressed payloads, so it is stored.
    let mut bad = batch_with(Compression::Lz4, 3, 10, 2_000);
    let payload_start = 61;
    for b in &mut bad[payload_start..] {
        *b = 0xff;
    }
    let crc = fjord_protocol::crc::crc32c(&bad[21..]);
    bad[17..21].copy_from_slice(&crc.to_be_bytes());
    log.append(&bad).expect("append");
    let hit = log
        .offset_for_timestamp(2_001)
        .expect("no error")
        .expect("found");
    assert_eq!(hit.offset, 2, "falls back to the batch start");
    assert!(log.offset_for_timestamp(-3).expect("max").is_some());
    assert_eq!(
        log.offset_for_timestamp(1_001)
            .expect("lookup")
            .map(|t| t.offset),
        Some(1)
    );
}

#[test]
fn records_without_timestamps_keep_no_timestamp_across_an_unclean_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        index_interval_bytes: 100,
        retention_ms: Some(3_600_000),
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config.clone());
    for _ in 0..10 {
        log.append(&batch(1, 100, -1)).expect("append");
    }
    drop(log); // unclean: the active time index is recovered from its preallocated file
    let mut log = open(dir.path(), config.clone());
    assert_eq!(
        log.offset_for_timestamp(-3)
            .expect("max")
            .map(|t| t.timestamp),
        Some(-1)
    );
    log.set_config(LogConfig {
        segment_bytes: 100,
        ..config
    })
    .expect("config");
    log.append(&batch(1, 100, -1)).expect("append rolls");
    assert_eq!(log.segment_count(), 2);
    // No timestamps: retention ages the segment by its file time (now), so nothing goes.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    assert_eq!(
        log.apply_retention(now)
            .expect("retention")
            .segments_deleted,
        0
    );
}

#[test]
fn batch_headers_can_be_walked_from_a_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config());
    for i in 0..40 {
        log.append(&batch(2, 50, i)).expect("append");
    }
    let active = log.active_segment_base();
    assert!(active > 0);
    let mut bases = Vec::new();
    log.for_each_batch_header(active, |h| bases.push(h.base_offset as u64))
        .expect("walk");
    assert_eq!(bases.first(), Some(&active));
    assert_eq!(bases.last(), Some(&78));
    let mut all = 0;
    log.for_each_batch_header(0, |_| all += 1)
        .expect("walk all");
    assert_eq!(all, 40);
}

#[test]
fn record_validation_levels() {
    use fjord_protocol::record_batch::RecordValidation;
    let resign = |b: &mut Vec<u8>| {
        let crc = fjord_protocol::crc::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    };
    // Uncompressed, a record length prefix off by two: caught by the default walk.
    let mut lengths = batch(3, 10, 0);
    lengths[61] = lengths[61].wrapping_add(2);
    resign(&mut lengths);
    // Compressed garbage: only the full check opens it.
    let mut packed = batch_with(Compression::Gzip, 3, 10, 0);
    let n = packed.len();
    packed[n - 12..n - 4].fill(0x55);
    resign(&mut packed);

    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default());
    log.append(&lengths)
        .expect("header and CRC only by default in storage");
    let walk = LogConfig {
        record_validation: RecordValidation::Lengths,
        ..LogConfig::default()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), walk);
    assert!(matches!(
        log.append(&lengths),
        Err(StorageError::InvalidBatch { .. })
    ));
    log.append(&packed)
        .expect("compressed payloads are not opened by the walk");
    let full = LogConfig {
        record_validation: RecordValidation::Full,
        ..LogConfig::default()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), full);
    assert!(matches!(
        log.append(&packed),
        Err(StorageError::InvalidBatch { .. })
    ));
    log.append(&batch_with(Compression::Zstd, 5, 10, 0))
        .expect("good batch passes the full check");
    assert_eq!(log.log_end_offset(), 5);
}

#[test]
fn a_larger_index_size_at_runtime_starts_a_new_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        index_interval_bytes: 1,
        segment_index_bytes: 4096,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config.clone());
    log.append(&batch(1, 100, -1)).expect("append");
    // Smaller or equal index sizes keep the segment: its index has room for them.
    log.set_config(config.clone()).expect("same config");
    log.append(&batch(1, 100, -1)).expect("append");
    assert_eq!(log.segment_count(), 1);
    // A larger one cannot be given to the active index's preallocated file: the next
    // append goes to a new segment made at the new size, so no index entry is dropped.
    log.set_config(LogConfig {
        segment_index_bytes: 1 << 20,
        ..config
    })
    .expect("larger index");
    log.append(&batch(1, 100, -1)).expect("append rolls");
    assert_eq!(log.segment_count(), 2);
    log.append(&batch(1, 100, -1)).expect("append");
    assert_eq!(log.segment_count(), 2, "only one roll");
    let active = log.active_segment_base();
    let index = dir.path().join(format!("{active:020}.index"));
    assert_eq!(std::fs::metadata(index).expect("index").len(), 1 << 20);
}

/// (position, length) of each region.
fn spans(regions: &[fjord_storage::FileRegion]) -> Vec<(u64, u64)> {
    regions.iter().map(|r| (r.position, r.len)).collect()
}

#[test]
fn hot_reads_are_tail_reads_of_the_open_active_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config());
    for i in 0..40 {
        log.append(&batch(4, 30, i * 10)).expect("append");
    }
    assert!(log.segment_count() > 2, "the test needs sealed segments");
    let end = log.log_end_offset();

    // The last batch: the same regions as a plain read, and the end offset.
    let (seen_end, hot) = log.read_hot(end - 1, 1 << 20).expect("hot");
    assert_eq!(seen_end, end);
    let hot = hot.expect("read");
    assert!(!hot.is_empty());
    assert_eq!(
        spans(&hot),
        spans(&log.read(end - 1, 1 << 20).expect("read"))
    );
    // At the end there is nothing to read; past it is out of range.
    assert!(log
        .read_hot(end, 1 << 20)
        .expect("hot")
        .1
        .expect("read")
        .is_empty());
    assert!(matches!(
        log.read_hot(end + 1, 1 << 20).expect("hot").1,
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    // A sealed segment is not hot, unless nothing is to be read.
    assert!(log.read_hot(0, 1 << 20).is_none());
    assert!(log
        .read_hot(0, 0)
        .expect("bounds only")
        .1
        .expect("read")
        .is_empty());

    // Closed files would have to be opened: not hot, until a read opens them. (A
    // segment stays open while regions read from it are alive.)
    drop(hot);
    assert!(log.close_idle(std::time::Duration::ZERO).expect("close") > 0);
    assert!(log.read_hot(end - 1, 1 << 20).is_none());
    log.read(end - 1, 1 << 20).expect("read reopens");
    assert!(log.read_hot(end - 1, 1 << 20).is_some());

    // After a restart nothing is known to be in memory; new appends are.
    log.close().expect("close");
    let mut log = open(dir.path(), small_config());
    assert!(log.read_hot(end - 1, 1 << 20).is_none());
    log.append(&batch(4, 30, 1_000)).expect("append");
    assert!(log.read_hot(end, 1 << 20).is_some());
}

#[test]
fn the_hot_window_follows_the_end_of_a_large_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default());
    let big = batch(1, 512 << 10, 0);
    // 70 MiB in one segment: more than twice the hot window.
    for _ in 0..140 {
        log.append(&big).expect("append");
    }
    assert_eq!(log.segment_count(), 1);
    let end = log.log_end_offset();
    assert!(log.read_hot(0, 1 << 20).is_none(), "the start went cold");
    assert!(log.read_hot(end - 1, 1 << 20).is_some());
    assert!(
        log.read_hot(end - 40, 1 << 20).is_some(),
        "the last 20 MiB are hot"
    );

    // After a restart only what is appended from then on is hot, though the segment's
    // files are open again.
    log.close().expect("close");
    let mut log = open(dir.path(), LogConfig::default());
    log.append(&batch(2, 10, 0)).expect("append");
    assert_eq!(log.segment_count(), 1);
    assert!(log.read_hot(end - 1, 1 << 20).is_none());
    assert!(log.read_hot(end, 1 << 20).is_some());
}

#[test]
fn a_segment_with_regions_in_flight_refuses_truncation_until_they_are_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config());
    for ts in 0..3 {
        log.append(&batch(2, 50, ts)).expect("append");
    }
    let regions = log.read(2, 1 << 20).expect("read");
    assert!(!regions.is_empty());
    let end = log.log_end_offset();
    let refused = log.truncate_to(1);
    assert!(
        matches!(
            refused,
            Err(fjord_storage::StorageError::RegionsInUse { .. })
        ),
        "{refused:?}"
    );
    // Nothing changed, and the region still reads what it covered.
    assert_eq!(log.log_end_offset(), end);
    assert!(!regions[0].read_to_vec().expect("read region").is_empty());
    // An idle close does not drop the segment's reader count either.
    log.close_idle(std::time::Duration::ZERO)
        .expect("close idle");
    assert!(log.truncate_to(1).is_err());
    drop(regions);
    log.truncate_to(1)
        .expect("truncate once the reads are done");
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn fetch_reads_follow_kip_74_for_the_first_partition_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config());
    let big = batch(3, 300, 0);
    log.append(&big).expect("append");
    let size = big.len() as u64;
    let total = |r: Vec<fjord_storage::FileRegion>| r.iter().map(|r| r.len).sum::<u64>();
    // The first partition of a response gets its first batch whole, even past (or at) 0.
    for max in [0, 10, size - 1] {
        assert_eq!(
            total(log.read_for_fetch(0, max, true).expect("first")),
            size,
            "{max}"
        );
        let hot = log.read_hot_for_fetch(0, max, true).expect("hot");
        assert_eq!(total(hot.1.expect("first, hot")), size, "{max}");
    }
    // A later one gets only what fits.
    for max in [0, 10, size - 1] {
        assert!(
            log.read_for_fetch(0, max, false).expect("later").is_empty(),
            "{max}"
        );
        let hot = log.read_hot_for_fetch(0, max, false).expect("hot");
        assert!(hot.1.expect("later, hot").is_empty(), "{max}");
    }
    assert_eq!(
        total(log.read_for_fetch(0, size, false).expect("fits")),
        size
    );
    // One range rule for both: past the end or below the start is out of range.
    for from in [4, u64::MAX] {
        for first in [true, false] {
            assert!(matches!(
                log.read_for_fetch(from, 1 << 20, first),
                Err(fjord_storage::StorageError::OffsetOutOfRange { .. })
            ));
            assert!(matches!(
                log.read_hot_for_fetch(from, 1 << 20, first).expect("hot").1,
                Err(fjord_storage::StorageError::OffsetOutOfRange { .. })
            ));
        }
    }
    assert!(log
        .read_for_fetch(3, 1 << 20, true)
        .expect("at the end")
        .is_empty());
}

#[test]
fn a_later_partition_never_skips_past_a_batch_that_does_not_fit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config());
    // Big batches (about 3 KB) and medium ones (about 1.2 KB) alternate, so each
    // segment (4 KiB) starts with a batch that fits a budget the one before does not.
    let mut big = true;
    while log.segment_count() < 4 {
        let b = if big {
            batch(3, 1000, 0)
        } else {
            batch(1, 1100, 0)
        };
        log.append(&b).expect("append");
        big = !big;
    }
    let end = log.log_end_offset();
    for from in 0..end {
        for max in [10, 1500, 5000] {
            for first in [true, false] {
                let regions = log.read_for_fetch(from, max, first).expect("read");
                let Some(r) = regions.first() else {
                    assert!(!first, "the first partition always gets a batch");
                    continue;
                };
                // Whatever comes starts with the batch holding `from`: nothing skipped.
                let bytes = r.read_to_vec().expect("region");
                let h = first_header(&bytes);
                assert!(
                    h.base_offset as u64 <= from && from <= h.last_offset() as u64,
                    "from {from}, max {max}, first {first}: got a batch at {}",
                    h.base_offset
                );
            }
        }
    }
}

#[test]
fn truncating_at_a_segment_boundary_checks_the_segment_it_cuts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config());
    while log.segment_count() < 3 {
        log.append(&batch(3, 300, 0)).expect("append");
    }
    let bases = log.segment_base_offsets();
    let (middle, last) = (bases[1], bases[2]);
    let end = log.log_end_offset();
    // A region in the middle segment, which truncating to the last base would cut to
    // its end and make active: refused before anything changes.
    let held = log.read(middle, 1).expect("read");
    assert!(log.truncate_to(last).is_err());
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.segment_count(), 3);
    drop(held);
    log.truncate_to(last).expect("truncate");
    assert_eq!(log.log_end_offset(), last);
}

#[test]
fn segments_wholly_below_a_durable_start_are_removed_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config());
    while log.segment_count() < 3 {
        log.append(&batch(3, 300, 0)).expect("append");
    }
    let bases = log.segment_base_offsets();
    let end = log.log_end_offset();
    drop(log);
    // A crash right after the start was written durably, before the deletions.
    std::fs::write(
        dir.path().join("log-start-offset"),
        format!("{}\n", bases[2]),
    )
    .expect("start");
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_start_offset(), bases[2]);
    assert_eq!(log.segment_base_offsets(), vec![bases[2]]);
    assert_eq!(log.log_end_offset(), end);
    assert!(!dir.path().join(format!("{:020}.log", bases[0])).exists());
}
