//! Compaction of a real log on disk: the latest value of every key stays at its
//! offset, reads step over the gaps, the result survives reopening, tombstones go once
//! their horizon passed; and a crash (an operation failing, then a power loss that keeps
//! only what was synced) at any point of a pass loses no surviving record and leaves a
//! log that opens and reads.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use fjord_protocol::compression::Compression;
use fjord_protocol::record_batch::{BatchBuilder, RecordIter, RecordSpec, BATCH_HEADER_LEN};
use fjord_storage::fault::{FaultIo, Op as IoOp, Torn};
use fjord_storage::log::CompactOptions;
use fjord_storage::{Flusher, Io, Log};

const NOW: i64 = 1_000_000;

type Model = BTreeMap<u64, (u8, Option<Vec<u8>>)>;

/// Appends 60 batches of 3 records over `keys` keys (every codec, some tombstones); the
/// model of what was written. With few keys every sealed segment is cleaned down to
/// nothing; with more, latest values are spread over the sealed segments.
fn fill(log: &mut Log, keys: u32) -> Model {
    let mut model = Model::new();
    let codecs = [
        Compression::None,
        Compression::Lz4,
        Compression::Zstd,
        Compression::Gzip,
    ];
    for b in 0..60u32 {
        let mut builder = BatchBuilder::new(codecs[b as usize % 4], 1_000 + i64::from(b));
        let first = log.log_end_offset();
        for r in 0..3u32 {
            let key = ((b * 3 + r) * 7 % keys) as u8;
            let value = ((b * 3 + r) % 11 != 0).then(|| format!("v{b}-{r}").into_bytes());
            builder.push(RecordSpec {
                key: Some(vec![key]),
                value: value.clone(),
                headers: Vec::new(),
                timestamp: Some(1_000 + i64::from(b)),
            });
            model.insert(first + u64::from(r), (key, value));
        }
        log.append(&builder.build().expect("build"))
            .expect("append");
    }
    model
}

/// offset -> (key, value) of every record, read through the log's own reads.
fn records(log: &Log) -> Model {
    let mut out = Model::new();
    for (h, b) in raw_batches(log) {
        let payload = h
            .compression()
            .expect("codec")
            .decompress(&b[BATCH_HEADER_LEN..], 1 << 20)
            .expect("payload");
        for r in RecordIter::new(&payload, h.records_count as usize) {
            let r = r.expect("record");
            let offset = (h.base_offset + i64::from(r.offset_delta)) as u64;
            out.insert(
                offset,
                (r.key.expect("keyed")[0], r.value.map(<[u8]>::to_vec)),
            );
        }
    }
    out
}

fn latest(model: &Model) -> BTreeMap<u8, u64> {
    model.iter().map(|(o, (k, _))| (*k, *o)).collect()
}

/// Segments of a few batches each.
fn config() -> fjord_storage::LogConfig {
    fjord_storage::LogConfig {
        segment_bytes: 1024,
        ..small_config()
    }
}

/// What a compacted log may hold: records as written, the latest of every key with a
/// value among them.
fn check(got: &Model, model: &Model, active_base: u64) {
    for (offset, record) in got {
        assert_eq!(
            Some(record),
            model.get(offset),
            "offset {offset} is as written"
        );
    }
    for (key, offset) in latest(model) {
        if model[&offset].1.is_some() || offset >= active_base {
            assert!(
                got.contains_key(&offset),
                "key {key}'s latest record (offset {offset}) stays"
            );
        }
    }
}

#[test]
fn a_pass_keeps_the_latest_per_key_and_later_ones_drop_expired_tombstones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), config());
    // With 64 keys the latest values are spread over the sealed segments, so cleaned
    // segments have gaps between their batches, and merged ones start past their base.
    let model = fill(&mut log, 64);
    let end = log.log_end_offset();
    let before = log.size_bytes();
    assert!(log.segment_count() > 3, "small segments");
    // A fetch's region read before the pass keeps reading the old file whole.
    let regions = log.read(0, 1 << 20).expect("read");
    let old_bytes = log.read_to_vec(0, 1 << 20).expect("read");
    let outcome = log
        .compact(&compact_options(NOW), log.log_end_offset())
        .expect("compact");
    let mut after: Vec<u8> = Vec::new();
    for r in &regions {
        after.extend(r.read_to_vec().expect("the old file still reads"));
    }
    assert_eq!(after, old_bytes);
    assert!(outcome.segments_swapped > 0);
    assert_eq!(outcome.first_dirty, log.active_segment_base());
    assert!(log.size_bytes() < before, "{} < {before}", log.size_bytes());
    assert_eq!(log.log_end_offset(), end);
    let active = log.active_segment_base();
    let got = records(&log);
    check(&got, &model, active);
    // Below the active segment only the latest record of each key is left.
    let sealed: Vec<u8> = got.range(..active).map(|(_, (k, _))| *k).collect();
    let distinct: std::collections::BTreeSet<u8> = sealed.iter().copied().collect();
    assert_eq!(sealed.len(), distinct.len(), "{got:?}");
    // It survives an unclean stop and a clean close.
    drop(log);
    let log = open(dir.path(), config());
    assert_eq!(records(&log), got);
    assert_eq!(log.first_dirty_offset().expect("checkpoint"), active);
    log.close().expect("close");
    let mut log = open(dir.path(), config());
    assert_eq!(records(&log), got);
    // Past the horizon, tombstones in the cleaned segments go, and the segments the
    // first pass left small merge (each group within segment.bytes, as Kafka's).
    let segments = log.segment_count();
    log.compact(&compact_options(NOW + RETENTION), log.log_end_offset())
        .expect("compact");
    assert!(
        log.segment_count() < segments,
        "{} < {segments}",
        log.segment_count()
    );
    let sealed = log.sealed_segments().expect("sealed");
    assert!(sealed.iter().all(|s| s.size <= 1024), "{sealed:?}");
    let later = records(&log);
    assert!(
        later.range(..active).all(|(_, (_, v))| v.is_some()),
        "no tombstone left: {later:?}"
    );
    check(&later, &model, active);
}

#[test]
fn the_io_throttle_holds_a_pass_to_its_rate() {
    // The same log twice: one pass unthrottled, to count its bytes; then the other at a
    // rate that makes those bytes take at least 300 ms.
    let (free_dir, slow_dir) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let mut free = open(free_dir.path(), config());
    fill(&mut free, 64);
    let stats = free
        .compact(&compact_options(NOW), free.log_end_offset())
        .expect("compact")
        .stats;
    let bytes = (stats.bytes_read + stats.bytes_written) as f64;
    assert!(bytes > 0.0);
    let mut slow = open(slow_dir.path(), config());
    fill(&mut slow, 64);
    let throttled = CompactOptions {
        max_bytes_per_second: bytes / 0.3,
        ..compact_options(NOW)
    };
    let started = std::time::Instant::now();
    let outcome = slow
        .compact(&throttled, slow.log_end_offset())
        .expect("compact");
    // A lower bound only: sleeps never end early, and the map's reads count too.
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(299),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        outcome.stats.bytes_written, stats.bytes_written,
        "same log, same pass"
    );
}

#[test]
fn a_crash_anywhere_in_a_pass_loses_no_surviving_record() {
    crash_in_pass(0, 64);
}

#[test]
fn a_crash_anywhere_in_a_merging_pass_brings_no_removed_record_back() {
    // The first pass leaves small segments; the second merges them, so crashes land
    // between a merged swap's steps.
    crash_in_pass(1, 64);
}

/// Runs `clean_passes` passes, then one that fails at each I/O operation in turn
/// followed by a power loss: the log opens with every surviving record and none that
/// an earlier pass removed, and a later pass finishes the job.
fn crash_in_pass(clean_passes: usize, keys: u32) {
    for op in [
        IoOp::Open,
        IoOp::Write,
        IoOp::Sync,
        IoOp::Rename,
        IoOp::Remove,
    ] {
        let mut crashed = 0;
        for passes in 0..12 {
            let dir = tempfile::tempdir().expect("tempdir");
            let fault = Arc::new(FaultIo::new());
            let flusher = || Flusher::with_io("test", Io::new(fault.clone())).expect("flusher");
            let mut log = Log::open(dir.path(), config(), flusher()).expect("open");
            let model = fill(&mut log, keys);
            log.flush().expect("flush");
            let active = log.active_segment_base();
            let end = log.log_end_offset();
            assert!(log.segment_count() > 3);
            for _ in 0..clean_passes {
                log.compact(&compact_options(NOW), log.log_end_offset())
                    .expect("a pass before the crash");
                log.flush().expect("flush");
            }
            let before = records(&log);
            let segments = log.segment_count();
            fault.fail_after(op, "", libc::EIO, passes);
            let result = log.compact(&compact_options(NOW), log.log_end_offset());
            crashed += usize::from(result.is_err());
            if clean_passes > 0 && result.is_ok() {
                assert!(log.segment_count() < segments, "the pass merged segments");
            }
            drop(log);
            fault.clear();
            fault.power_loss(Torn::Nothing).expect("power loss");
            let mut log =
                Log::open(dir.path(), config(), flusher()).expect("opens after the crash");
            assert_eq!(log.log_end_offset(), end, "{op:?}/{passes}: {result:?}");
            let recovered = records(&log);
            check(&recovered, &model, active);
            for offset in recovered.keys() {
                assert!(
                    before.contains_key(offset),
                    "{op:?}/{passes}: offset {offset}, removed before the pass, is back"
                );
            }
            // A pass after the crash finishes the job.
            log.compact(&compact_options(NOW), log.log_end_offset())
                .expect("compact again");
            let got = records(&log);
            check(&got, &model, active);
            let sealed: Vec<u8> = got.range(..active).map(|(_, (k, _))| *k).collect();
            let distinct: std::collections::BTreeSet<u8> = sealed.iter().copied().collect();
            assert_eq!(sealed.len(), distinct.len(), "{op:?}/{passes}");
        }
        assert!(crashed > 0, "{op:?} never failed a pass");
    }
}
