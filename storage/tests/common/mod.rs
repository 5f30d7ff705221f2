//! Helpers shared by the storage tests.
#![allow(dead_code, unreachable_pub)]

use fjord_protocol::compression::Compression;
use fjord_protocol::record_batch::{batches, BatchBuilder, BatchHeader, RecordSpec};
use fjord_storage::{Flusher, Log, LogConfig};
use std::path::Path;

/// A batch of `count` records with values of `value_len` bytes, timestamps `ts, ts+1, ...`.
pub fn batch(count: usize, value_len: usize, ts: i64) -> Vec<u8> {
    batch_with(Compression::None, count, value_len, ts)
}

pub fn batch_with(codec: Compression, count: usize, value_len: usize, ts: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new(codec, ts);
    for i in 0..count {
        let value: Vec<u8> = (0..value_len).map(|j| (i + j) as u8).collect();
        b.push(RecordSpec::value(value).with_timestamp(ts + i as i64));
    }
    b.build().expect("build batch")
}

/// Small segments and a dense index so tests roll and index often.
pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        segment_index_bytes: 8 * 1024,
        index_interval_bytes: 256,
        retention_ms: None,
        segment_ms: None,
        ..LogConfig::default()
    }
}

pub fn flusher() -> Flusher {
    Flusher::new("test").expect("flusher")
}

pub fn open(dir: &Path, config: LogConfig) -> Log {
    Log::open(dir, config, flusher()).expect("open log")
}

/// (base offset, record count) of every batch in `bytes`.
pub fn batch_offsets(bytes: &[u8]) -> Vec<(i64, i32)> {
    batches(bytes)
        .map(|b| {
            let (h, _) = b.expect("valid batch read back");
            (h.base_offset, h.records_count)
        })
        .collect()
}

/// Every batch from the start of the log, read back in small steps.
pub fn read_all(log: &Log) -> Vec<u8> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let bytes = log.read_to_vec(next, 1 << 20).expect("read");
        assert!(!bytes.is_empty(), "no progress reading at {next}");
        let last = batches(&bytes).last().expect("a batch").expect("valid");
        next = last.0.last_offset() as u64 + 1;
        out.extend_from_slice(&bytes);
    }
    out
}

/// Header of the first batch in `bytes`.
pub fn first_header(bytes: &[u8]) -> BatchHeader {
    BatchHeader::parse(bytes).expect("header")
}

/// `delete.retention.ms` of the compaction tests.
pub const RETENTION: i64 = 10_000;

/// A pass at `now_ms` with room for every key, no lag, no throttle.
pub fn compact_options(now_ms: i64) -> fjord_storage::log::CompactOptions {
    fjord_storage::log::CompactOptions {
        dedupe_bytes: 1 << 20,
        min_compaction_lag_ms: 0,
        rules: fjord_storage::cleaner::Rules {
            now_ms,
            delete_retention_ms: RETENTION,
            max_decompressed: 1 << 20,
        },
        max_bytes_per_second: f64::INFINITY,
    }
}

/// Every stored batch from the log start, headers and bytes.
pub fn raw_batches(log: &Log) -> Vec<(BatchHeader, Vec<u8>)> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let bytes = log.read_to_vec(next, 1 << 20).expect("read");
        assert!(!bytes.is_empty(), "no progress reading at {next}");
        for batch in fjord_protocol::record_batch::stored_batches(&bytes) {
            let (h, b) = batch.expect("a valid batch");
            next = h.last_offset() as u64 + 1;
            out.push((h, b.to_vec()));
        }
    }
    out
}
