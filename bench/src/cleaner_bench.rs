//! `fjord-bench storage --only clean`: the log cleaner on its own. It reports
//!
//! - a pass's rate (bytes read plus bytes written, per second) next to this machine's
//!   sequential read+write limit (a file copied in 1 MiB chunks) measured in the same
//!   run (goal: at least half of it);
//! - append throughput to another log while a pass runs, next to the same appends with
//!   the cleaner idle (goal: at least 80%), with the I/O throttle off.
//!
//! The log: keyed records of 100 bytes over `KEYS` keys, each written many times, in
//! 8 segments. Paired runs alternate their order; medians are reported.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use fjord_protocol::compression::Compression;
use fjord_protocol::record_batch::{BatchBuilder, RecordSpec};
use fjord_storage::cleaner::Rules;
use fjord_storage::log::CompactOptions;
use fjord_storage::{Compaction, Flusher, Log, LogConfig};

/// Distinct keys: each appears (log size / 100 B / KEYS) times.
const KEYS: usize = 50_000;

/// A compacted log of about `bytes` in 8 segments.
fn config(bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes: (bytes / 8).max(1 << 20),
        retention_ms: None,
        compaction: Some(Compaction {
            min_cleanable_ratio_ppm: 500_000,
            delete_retention_ms: 86_400_000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
        }),
        ..LogConfig::default()
    }
}

/// A batch of 140 keyed records of 100 bytes, keys from `first`.
fn keyed_batch(first: usize) -> Result<Vec<u8>> {
    let mut b = BatchBuilder::new(Compression::None, 1_700_000_000_000);
    for i in 0..140 {
        let key = format!("key-{:08}", (first + i) % KEYS);
        b.push(RecordSpec::value(vec![(i % 251) as u8; 100]).with_key(key.into_bytes()));
    }
    b.build().context("batch")
}

/// A log of about `bytes` of keyed records, sealed but for the last segment.
fn fill(dir: &Path, bytes: u64, flusher: &Flusher) -> Result<Log> {
    let mut log = Log::open(dir, config(bytes), flusher.clone()).context("open")?;
    let mut written = 0u64;
    let mut first = 0usize;
    while written < bytes {
        let b = keyed_batch(first)?;
        log.append(&b).context("append")?;
        written += b.len() as u64;
        first += 140;
    }
    log.flush().context("flush")?;
    Ok(log)
}

/// The machine's sequential read+write rate: `bytes` copied in 1 MiB chunks (read and
/// written bytes both counted).
fn copy_limit(dir: &Path, bytes: u64) -> Result<f64> {
    let src = dir.join("limit-src.bin");
    let dst = dir.join("limit-dst.bin");
    let chunk = vec![7u8; 1 << 20];
    {
        let mut f = File::create(&src).context("create")?;
        let mut n = 0;
        while n < bytes {
            f.write_all(&chunk).context("write")?;
            n += chunk.len() as u64;
        }
        f.sync_all().context("sync")?;
    }
    let start = Instant::now();
    let mut input = File::open(&src).context("open")?;
    let mut output = File::create(&dst).context("create")?;
    let mut buf = vec![0u8; 1 << 20];
    let mut moved = 0u64;
    loop {
        let n = input.read(&mut buf).context("read")?;
        if n == 0 {
            break;
        }
        output.write_all(&buf[..n]).context("write")?;
        moved += 2 * n as u64;
    }
    output.sync_data().context("sync")?;
    let secs = start.elapsed().as_secs_f64();
    std::fs::remove_file(&src).ok();
    std::fs::remove_file(&dst).ok();
    Ok(moved as f64 / secs)
}

fn options() -> CompactOptions {
    CompactOptions {
        dedupe_bytes: 128 << 20,
        min_compaction_lag_ms: 0,
        rules: Rules {
            now_ms: 1_800_000_000_000,
            delete_retention_ms: 86_400_000,
            max_decompressed: 64 << 20,
        },
        max_bytes_per_second: f64::INFINITY,
    }
}

/// One pass over a fresh log of `bytes`: its rate (read + written per second). The
/// pass is timed as the broker runs it, with a data sync of the result included.
fn pass_rate(dir: &Path, bytes: u64, flusher: &Flusher) -> Result<f64> {
    let mut log = fill(dir, bytes, flusher)?;
    let start = Instant::now();
    let outcome = log
        .compact(&options(), log.log_end_offset())
        .context("compact")?;
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(outcome.segments_swapped > 0, "the pass cleaned nothing");
    drop(log);
    std::fs::remove_dir_all(dir).ok();
    Ok((outcome.stats.bytes_read + outcome.stats.bytes_written) as f64 / secs)
}

/// Appends `bytes` to a new log, while `cleaning` compacts a log in another thread if
/// set: the append rate.
fn appends_while(dir: &Path, bytes: u64, flusher: &Flusher, cleaning: bool) -> Result<f64> {
    let busy = dir.join("busy");
    let mut other = if cleaning {
        Some(fill(&busy, bytes, flusher)?)
    } else {
        None
    };
    let target = dir.join("appends");
    let mut log = Log::open(&target, LogConfig::default(), flusher.clone()).context("open")?;
    let batch = keyed_batch(0)?;
    let cleaner = other.take().map(|mut l| {
        std::thread::spawn(move || {
            let r = l.compact(&options(), l.log_end_offset());
            drop(l);
            r
        })
    });
    let start = Instant::now();
    let mut written = 0u64;
    while written < bytes {
        log.append(&batch).context("append")?;
        written += batch.len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    if let Some(c) = cleaner {
        c.join()
            .map_err(|_| anyhow::anyhow!("cleaner panicked"))?
            .context("compact")?;
    }
    log.flush().context("flush")?;
    drop(log);
    std::fs::remove_dir_all(dir).ok();
    Ok(written as f64 / secs)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the cleaner benchmark with logs of `bytes`, data under `root`.
pub(crate) fn run(root: &Path, bytes: u64, flusher: &Flusher) -> Result<()> {
    let (mut limits, mut passes, mut idle, mut busy) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..3 {
        let dir = root.join(format!("clean-{round}"));
        if round % 2 == 0 {
            limits.push(copy_limit(root, bytes)?);
            passes.push(pass_rate(&dir, bytes, flusher)?);
        } else {
            passes.push(pass_rate(&dir, bytes, flusher)?);
            limits.push(copy_limit(root, bytes)?);
        }
        let dir = root.join(format!("appends-{round}"));
        if round % 2 == 0 {
            idle.push(appends_while(&dir, bytes, flusher, false)?);
            busy.push(appends_while(&dir, bytes, flusher, true)?);
        } else {
            busy.push(appends_while(&dir, bytes, flusher, true)?);
            idle.push(appends_while(&dir, bytes, flusher, false)?);
        }
    }
    let ratios: Vec<f64> = passes.iter().zip(&limits).map(|(p, l)| p / l).collect();
    println!(
        "clean {} MiB of keyed records ({KEYS} keys): {:.0} MB/s read+written, copy limit {:.0} MB/s, ratio {:.2} (median of 3 paired runs; target >= 0.50)",
        bytes >> 20,
        median(passes) / 1e6,
        median(limits) / 1e6,
        median(ratios)
    );
    let append_ratios: Vec<f64> = busy.iter().zip(&idle).map(|(b, i)| b / i).collect();
    println!(
        "appends while a pass runs: {:.0} MB/s, with the cleaner idle {:.0} MB/s, ratio {:.2} (median of 3 paired runs; target >= 0.80)",
        median(busy) / 1e6,
        median(idle) / 1e6,
        median(append_ratios)
    );
    Ok(())
}
