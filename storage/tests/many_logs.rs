//! Ten thousand partitions: opening them is cheap in time, descriptors and mappings,
//! because segments are opened on first use and closed when idle.

mod common;

use common::*;
use fjord_storage::{Log, LogConfig};
use std::time::Duration;

const LOGS: usize = 10_000;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count())
}

#[test]
fn ten_thousand_logs_reopen_cheaply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_index_bytes: 64 * 1024,
        ..LogConfig::default()
    };
    let flusher = flusher();
    let one = batch(3, 50, 1_000);
    for i in 0..LOGS {
        let mut log = Log::open(
            dir.path().join(format!("t-{i}")),
            config.clone(),
            flusher.clone(),
        )
        .expect("create");
        log.append(&one).expect("append");
        log.close().expect("close");
    }

    let (fds, maps) = (open_fds(), mappings());
    let logs: Vec<Log> = (0..LOGS)
        .map(|i| {
            Log::open(
                dir.path().join(format!("t-{i}")),
                config.clone(),
                flusher.clone(),
            )
            .expect("reopen")
        })
        .collect();
    assert!(
        open_fds() <= fds + 8,
        "reopening must not hold descriptors: {} -> {}",
        fds,
        open_fds()
    );
    assert!(mappings() <= maps + 8, "reopening must not map indexes");
    assert!(logs
        .iter()
        .all(|l| l.log_end_offset() == 3 && l.open_segment_count() == 0));

    // Reading every log opens its segment; closing idle ones gives the descriptors back.
    for (i, log) in logs.iter().enumerate() {
        assert_eq!(log.read_to_vec(0, 1 << 20).expect("read").len(), one.len());
        if i % 500 == 499 {
            for l in &logs[..=i] {
                l.close_idle(Duration::ZERO).expect("close idle");
            }
        }
    }
    for l in &logs {
        l.close_idle(Duration::ZERO).expect("close idle");
    }
    assert!(open_fds() <= fds + 8, "idle logs must release descriptors");
}
