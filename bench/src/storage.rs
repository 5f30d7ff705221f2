//! `fjord-bench storage`: the storage engine on its own (no broker, no network), each
//! figure next to the machine's own limit measured in the same run, as a ratio (shared
//! machines are noisy; ratios and medians travel better).
//!
//! Full size writes about 25 GiB (14 GiB of disk at peak) in a few minutes; `--quick`
//! shrinks every size about 16x. `--dir` chooses where the data goes (default
//! `./fjord-bench-data`); `--only NAME` runs one of append, lookup, recovery, partitions,
//! clean (the log cleaner, see `cleaner_bench`).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use fjord_protocol::compression::Compression;
use fjord_protocol::record_batch::{BatchBuilder, RecordSpec, RecordValidation};
use fjord_storage::{Flusher, Log, LogConfig};

const GIB: u64 = 1 << 30;

struct Sizes {
    append_bytes: u64,
    lookup_segment: u64,
    closed_bytes: u64,
    active_bytes: u64,
    partitions: usize,
}

fn sizes(quick: bool) -> Sizes {
    if quick {
        Sizes {
            append_bytes: GIB / 16,
            lookup_segment: GIB / 16,
            closed_bytes: GIB / 2,
            active_bytes: GIB / 16,
            partitions: 1_000,
        }
    } else {
        Sizes {
            append_bytes: GIB,
            lookup_segment: GIB,
            closed_bytes: 10 * GIB,
            active_bytes: GIB,
            partitions: 10_000,
        }
    }
}

fn batch(records: usize, value_len: usize) -> Result<Vec<u8>> {
    let mut b = BatchBuilder::new(Compression::None, 1_700_000_000_000);
    for i in 0..records {
        b.push(
            RecordSpec::value(vec![(i % 251) as u8; value_len])
                .with_timestamp(1_700_000_000_000 + i as i64),
        );
    }
    b.build().context("batch")
}

/// A 16 KiB-ish batch: 160 records of 100 bytes.
fn batch_16k() -> Result<Vec<u8>> {
    batch(140, 100)
}

fn bench_dir(root: &Path) -> Result<PathBuf> {
    let dir = root.join(format!("run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Raw sequential `write` of `total` bytes in `chunk`-sized writes: the limit for appends.
fn raw_write(path: &Path, chunk: &[u8], total: u64) -> Result<f64> {
    let mut f = File::create(path).context("create")?;
    let start = Instant::now();
    let mut written = 0;
    while written < total {
        f.write_all(chunk).context("write")?;
        written += chunk.len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    // Untimed: leave no dirty pages behind to slow the next run's writes.
    f.sync_all().context("sync")?;
    drop(f);
    std::fs::remove_file(path).context("remove")?;
    Ok(written as f64 / secs)
}

fn log_append(
    dir: &Path,
    batch: &[u8],
    total: u64,
    flusher: &Flusher,
    validation: RecordValidation,
) -> Result<f64> {
    let config = LogConfig {
        record_validation: validation,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir, config, flusher.clone()).context("open")?;
    let start = Instant::now();
    let mut written = 0;
    while written < total {
        log.append(batch).context("append")?;
        written += batch.len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    log.flush().context("flush")?;
    drop(log);
    std::fs::remove_dir_all(dir).context("remove")?;
    Ok(written as f64 / secs)
}

fn bench_append(root: &Path, s: &Sizes, flusher: &Flusher) -> Result<()> {
    let b = batch_16k()?;
    let (mut raw, mut log, mut lengths, mut full) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Alternate which goes first, so neither always follows the other's file deletion.
    for round in 0..6 {
        let raw_path = root.join(format!("raw-{round}.bin"));
        let run = |name: &str, validation| {
            log_append(
                &root.join(format!("{name}-{round}")),
                &b,
                s.append_bytes,
                flusher,
                validation,
            )
        };
        if round % 2 == 0 {
            raw.push(raw_write(&raw_path, &b, s.append_bytes)?);
            log.push(run("append", RecordValidation::Header)?);
        } else {
            log.push(run("append", RecordValidation::Header)?);
            raw.push(raw_write(&raw_path, &b, s.append_bytes)?);
        }
        lengths.push(run("append-lengths", RecordValidation::Lengths)?);
        full.push(run("append-full", RecordValidation::Full)?);
    }
    let ratios: Vec<f64> = raw.iter().zip(&log).map(|(r, l)| l / r).collect();
    let full_ratios: Vec<f64> = raw.iter().zip(&full).map(|(r, l)| l / r).collect();
    let lengths_ratios: Vec<f64> = raw.iter().zip(&lengths).map(|(r, l)| l / r).collect();
    println!(
        "append {} B batches: log {:.0} MB/s, raw write {:.0} MB/s, ratio {:.2} (median of 6 paired runs, order alternating; target >= 0.90)",
        b.len(),
        median(log) / 1e6,
        median(raw) / 1e6,
        median(ratios)
    );
    println!(
        "append with fjord.produce.validation=lengths (the broker's default: record lengths walked): {:.0} MB/s, ratio to raw write {:.2}",
        median(lengths) / 1e6,
        median(lengths_ratios)
    );
    println!(
        "append with fjord.produce.validation=full (every record decoded): {:.0} MB/s, ratio to raw write {:.2}",
        median(full) / 1e6,
        median(full_ratios)
    );
    Ok(())
}

fn bench_lookup(root: &Path, s: &Sizes, flusher: &Flusher) -> Result<()> {
    let dir = root.join("lookup");
    let b = batch(10, 90)?; // about 1 KiB: many batches per index interval
    let config = LogConfig {
        segment_bytes: s.lookup_segment,
        ..LogConfig::default()
    };
    let mut log = Log::open(&dir, config, flusher.clone()).context("open")?;
    while log.size_bytes() + b.len() as u64 <= s.lookup_segment {
        log.append(&b).context("append")?;
    }
    ensure!(log.segment_count() == 1, "one segment");
    let end = log.log_end_offset();
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut samples = Vec::with_capacity(200_000);
    for _ in 0..200_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let offset = seed % end;
        let t = Instant::now();
        let regions = log.read(offset, 64 * 1024).context("read")?;
        samples.push(t.elapsed().as_nanos() as u64);
        ensure!(!regions.is_empty(), "a read found nothing");
    }
    samples.sort_unstable();
    // The machine's limit for the same access pattern: one 4 KiB pread at a random
    // position of the same file, no index, no parsing.
    let file = File::open(dir.join(format!("{:020}.log", 0))).context("segment")?;
    let mut raw = Vec::with_capacity(samples.len());
    let mut buf = vec![0u8; 4096];
    for _ in 0..samples.len() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let at = seed % (s.lookup_segment - 4096);
        let t = Instant::now();
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut buf, at).context("pread")?;
        raw.push(t.elapsed().as_nanos() as u64);
    }
    raw.sort_unstable();
    let us = |v: &[u64], p| percentile(v, p) as f64 / 1e3;
    println!(
        "random read lookup in a {} MiB segment of {} B batches ({} lookups, page cache warm): \
         p50 {:.2} us, p90 {:.2} us, p99 {:.2} us, p99.9 {:.2} us (target p99 < 5 us); \
         one random 4 KiB pread of the same file: p50 {:.2} us, p99 {:.2} us; p99 ratio lookup/pread {:.2}",
        s.lookup_segment >> 20,
        b.len(),
        samples.len(),
        us(&samples, 0.50),
        us(&samples, 0.90),
        us(&samples, 0.99),
        us(&samples, 0.999),
        us(&raw, 0.50),
        us(&raw, 0.99),
        us(&samples, 0.99) / us(&raw, 0.99),
    );
    drop(log);
    std::fs::remove_dir_all(&dir).context("remove")?;
    Ok(())
}

fn bench_recovery(root: &Path, s: &Sizes, flusher: &Flusher) -> Result<()> {
    let dir = root.join("recovery");
    let b = batch_16k()?;
    let segment_bytes = s.active_bytes;
    let config = LogConfig {
        segment_bytes,
        ..LogConfig::default()
    };
    let mut log = Log::open(&dir, config.clone(), flusher.clone()).context("open")?;
    // Sealed segments until they hold `closed_bytes`, then an active segment filled to
    // just below its roll point.
    let sealed = s.closed_bytes.div_ceil(segment_bytes - b.len() as u64) as usize;
    while log.segment_count() <= sealed {
        log.append(&b).context("append")?;
    }
    let mut active_size = b.len() as u64;
    while active_size + b.len() as u64 <= segment_bytes {
        log.append(&b).context("append")?;
        active_size += b.len() as u64;
    }
    ensure!(log.segment_count() == sealed + 1, "segments");
    let (end, size, segments) = (log.log_end_offset(), log.size_bytes(), log.segment_count());
    drop(log); // unclean stop: no marker
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let log = Log::open(&dir, config.clone(), flusher.clone()).context("recover")?;
        times.push(start.elapsed().as_secs_f64());
        ensure!(log.log_end_offset() == end, "log end after reopen");
        drop(log);
    }
    // Worst case: the active segment's index is lost, so recovery rebuilds it by reading
    // and checking the whole active segment (still independent of the sealed ones).
    let active = dir.join(format!(
        "{:020}.index",
        *Log::open(&dir, config.clone(), flusher.clone())
            .context("open")?
            .segment_base_offsets()
            .last()
            .context("segment")?
    ));
    std::fs::remove_file(&active).context("remove index")?;
    let start = Instant::now();
    let log = Log::open(&dir, config.clone(), flusher.clone()).context("rebuild")?;
    let rebuild = start.elapsed();
    ensure!(log.log_end_offset() == end, "log end after reopen");
    log.close().context("close")?;
    let start = Instant::now();
    let log = Log::open(&dir, config, flusher.clone()).context("clean open")?;
    let clean = start.elapsed();
    ensure!(log.log_end_offset() == end, "log end after reopen");
    println!(
        "recovery after unclean stop: {:.1} GiB in {segments} segments (active {:.1} GiB): median {:.1} ms of 5 opens (target < 1000 ms); \
         with the active index lost (full rescan of the active segment) {:.0} ms; clean open {:.2} ms",
        size as f64 / GIB as f64,
        active_size as f64 / GIB as f64,
        median(times) * 1e3,
        rebuild.as_secs_f64() * 1e3,
        clean.as_secs_f64() * 1e3,
    );
    drop(log);
    std::fs::remove_dir_all(&dir).context("remove")?;
    Ok(())
}

fn bench_partitions(root: &Path, s: &Sizes, flusher: &Flusher) -> Result<()> {
    let dir = root.join("partitions");
    let b = batch(10, 90)?;
    let config = LogConfig::default();
    for i in 0..s.partitions {
        let mut log = Log::open(
            dir.join(format!("topic-{i}")),
            config.clone(),
            flusher.clone(),
        )
        .context("create")?;
        log.append(&b).context("append")?;
        log.close().context("close")?;
    }
    let (rss0, fds0) = (rss_kib(), open_fds());
    let start = Instant::now();
    let logs: Vec<Log> = (0..s.partitions)
        .map(|i| {
            Log::open(
                dir.join(format!("topic-{i}")),
                config.clone(),
                flusher.clone(),
            )
            .context("open")
        })
        .collect::<Result<_>>()?;
    let open = start.elapsed();
    let (rss1, fds1) = (rss_kib(), open_fds());
    for log in &logs {
        log.read(0, 1 << 20).context("read")?;
    }
    let (rss2, fds2) = (rss_kib(), open_fds());
    for log in &logs {
        log.close_idle(Duration::ZERO).context("close idle")?;
    }
    let (rss3, fds3) = (rss_kib(), open_fds());
    println!(
        "{} partitions: open {:.0} ms ({:.1} us each), +{} KiB RSS and +{} fds after open; \
         after reading each once +{} KiB, +{} fds; after close_idle +{} KiB, +{} fds",
        s.partitions,
        open.as_secs_f64() * 1e3,
        open.as_secs_f64() * 1e6 / s.partitions as f64,
        rss1.saturating_sub(rss0),
        fds1.saturating_sub(fds0),
        rss2.saturating_sub(rss0),
        fds2.saturating_sub(fds0),
        rss3.saturating_sub(rss0),
        fds3.saturating_sub(fds0),
    );
    drop(logs);
    std::fs::remove_dir_all(&dir).context("remove")?;
    Ok(())
}

/// The parts of the storage benchmark, in the order they run.
const PARTS: [&str; 5] = ["append", "lookup", "recovery", "partitions", "clean"];

/// Raises the soft open-file limit to the hard one: opening 10,000 logs and reading each
/// holds 10,000 segment files, as a broker does.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    if let (Some(current), Some(maximum)) = (now.current, now.maximum) {
        if maximum > current {
            let raised = Rlimit {
                current: Some(maximum),
                maximum: Some(maximum),
            };
            if let Err(e) = setrlimit(Resource::Nofile, raised) {
                eprintln!("could not raise the open file limit from {current}: {e}");
            }
        }
    }
}

/// Runs the storage benchmarks (`names` empty: all of them) with data under `dir`.
pub(crate) fn run(quick: bool, dir: &Path, names: &[String]) -> Result<()> {
    if let Some(unknown) = names.iter().find(|n| !PARTS.contains(&n.as_str())) {
        anyhow::bail!("--only {unknown}: the parts are {}", PARTS.join(", "));
    }
    raise_open_file_limit();
    let s = sizes(quick);
    let root = bench_dir(dir)?;
    let flusher = Flusher::new("bench").context("flusher")?;
    println!(
        "fjord-bench storage ({} cores), data in {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        root.display()
    );
    let wanted = |name: &str| names.is_empty() || names.iter().any(|o| o == name);
    let result = (|| {
        if wanted("append") {
            bench_append(&root, &s, &flusher)?;
        }
        if wanted("lookup") {
            bench_lookup(&root, &s, &flusher)?;
        }
        if wanted("recovery") {
            bench_recovery(&root, &s, &flusher)?;
        }
        if wanted("partitions") {
            bench_partitions(&root, &s, &flusher)?;
        }
        if wanted("clean") {
            crate::cleaner_bench::run(&root, s.append_bytes / 4, &flusher)?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&root);
    result
}
