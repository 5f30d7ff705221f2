//! `fjord-bench clean-produce --spawn-broker` (or `--spawn-peer kafka`): produce
//! throughput to a plain topic of a running broker while its log cleaner compacts another
//! topic, next to the same produce with the cleaner idle (issue 18's goal: at least 80%,
//! with the I/O throttle off, which is both brokers' default).
//!
//! Each pair of runs loads a compacted topic (4 partitions of keyed 100-byte records
//! over 50,000 keys a partition, 1 GiB in all, 4 segments a partition; `--quick`: 128
//! MiB) whose `min.compaction.lag.ms` keeps it uncleanable. The idle run produces then.
//! The busy run sets the lag to 0 (the cleaner takes the topic at its next wake-up) and
//! produces at once. The pair's order alternates; medians are reported, with how much of
//! each busy run the cleaner was busy for. The end of cleaning is read off the topic's
//! files (the last time their sizes changed, once they have shrunk), the same way for
//! both brokers.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use fjord_producer::ProducerRecord;
use rdkafka::admin::TopicReplication;
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

use crate::broker::Broker;
use crate::latency::Samples;
use crate::options::Options;
use crate::progress::Progress;
use crate::workload::{delete_topic, ensure_topic, payload};

/// Paired runs (idle and busy), in alternating order.
const PAIRS: usize = 3;
/// Partitions of the compacted topic: one cleaning pass each.
const PARTITIONS: i32 = 4;
/// Distinct keys in each partition of the compacted topic.
const KEYS: u64 = 50_000;
/// Segments of each compacted partition: all but the active one get cleaned.
const SEGMENTS: u64 = 4;
/// The broker's cleaner wake-up interval in these runs.
const BACKOFF_MS: u64 = 100;

/// What one busy run measured.
struct Busy {
    mb_per_sec: f64,
    /// Share of the produce the cleaner was busy for (1.0: all of it).
    overlap: f64,
    cleaned_mb_per_sec: f64,
}

/// The compacted topic's configs for `bytes` in all; `lag_ms` decides whether it can be
/// cleaned yet.
fn compacted_configs(bytes: u64, lag_ms: &str) -> [(&'static str, String); 4] {
    let segment_bytes = bytes / PARTITIONS as u64 / SEGMENTS;
    [
        ("cleanup.policy", "compact".into()),
        ("segment.bytes", segment_bytes.to_string()),
        ("min.cleanable.dirty.ratio", "0.01".into()),
        ("min.compaction.lag.ms", lag_ms.into()),
    ]
}

fn admin(bootstrap: &str) -> Result<AdminClient<DefaultClientContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?)
}

fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// Creates the compacted topic, not cleanable for an hour.
fn create_compacted(bootstrap: &str, topic: &str, bytes: u64) -> Result<()> {
    let admin = admin(bootstrap)?;
    let configs = compacted_configs(bytes, "3600000");
    let mut new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
    for (k, v) in &configs {
        new = new.set(k, v);
    }
    block_on(async {
        let r = admin.create_topics(&[new], &AdminOptions::new()).await?;
        match r.first() {
            Some(Ok(_)) => Ok(()),
            other => bail!("create {topic}: {other:?}"),
        }
    })
}

/// Makes the compacted topic cleanable now (AlterConfigs replaces the whole set).
fn make_cleanable(bootstrap: &str, topic: &str, bytes: u64) -> Result<()> {
    let admin = admin(bootstrap)?;
    let configs = compacted_configs(bytes, "0");
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(topic));
    for (k, v) in &configs {
        alter = alter.set(k, v);
    }
    block_on(async {
        admin.alter_configs(&[alter], &AdminOptions::new()).await?;
        Ok(())
    })
}

/// Loads `bytes` of keyed 100-byte records into the compacted topic, round-robin.
fn load(bootstrap: &str, topic: &str, bytes: u64, o: &Options) -> Result<()> {
    let records = bytes / 100;
    crate::fjord_client::runtime()?.block_on(async {
        let producer = crate::fjord_client::producer(bootstrap, o)?;
        let value = Bytes::from(payload(100));
        let topic: Arc<str> = topic.into();
        let mut pending = std::collections::VecDeque::new();
        for n in 0..records {
            let partition = (n % PARTITIONS as u64) as i32;
            let key = format!("key-{:08}", (n / PARTITIONS as u64) % KEYS);
            let record = ProducerRecord {
                topic: Arc::clone(&topic),
                partition: Some(partition),
                key: Some(Bytes::from(key)),
                value: Some(value.clone()),
                headers: Vec::new(),
                timestamp: None,
            };
            pending.push_back(producer.send(record).await.context("send")?);
            if pending.len() >= crate::fjord_client::WINDOW {
                if let Some(d) = pending.pop_front() {
                    d.await.context("delivery")?;
                }
            }
        }
        for d in pending {
            d.await.context("delivery")?;
        }
        producer.close().await;
        anyhow::Ok(())
    })
}

/// Bytes of each partition's `.log` files (cleaned, swap and deleted files left out).
fn partition_sizes(log_dir: &Path, topic: &str) -> Vec<u64> {
    (0..PARTITIONS)
        .map(|p| {
            let dir = log_dir.join(format!("{topic}-{p}"));
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .collect()
}

/// Watches the compacted topic's files until every partition has shrunk under 60% of
/// `before` and nothing changed for a second: when the last change was.
fn await_cleaned(log_dir: &Path, topic: &str, before: &[u64]) -> Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last = partition_sizes(log_dir, topic);
    let mut changed = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = partition_sizes(log_dir, topic);
        if now != last {
            (last, changed) = (now, Instant::now());
            continue;
        }
        let shrunk = last.iter().zip(before).all(|(n, b)| *n * 10 < *b * 6);
        if shrunk && changed.elapsed() > Duration::from_secs(1) {
            return Ok(changed);
        }
        if Instant::now() > deadline {
            bail!("{topic} not cleaned in 300 s: {last:?} bytes of {before:?}");
        }
    }
}

/// Writes every dirty page back (sync(1)).
fn write_back() -> Result<()> {
    let status = std::process::Command::new("sync")
        .status()
        .context("run sync")?;
    anyhow::ensure!(status.success(), "sync failed: {status}");
    Ok(())
}

/// The measured produce (Fjord's producer, the options' workload): MB/s, start, end.
/// Both runs of a pair start with dirty pages of what came before (the load, the other
/// run) written back, so neither pays for the other's writeback.
fn produce(bootstrap: &str, o: &Options) -> Result<(f64, Instant, Instant)> {
    let progress = Progress::start("produce", o.records, o.record_size, true);
    let value = payload(o.record_size);
    let start = Instant::now();
    let outcome =
        crate::fjord_client::produce(bootstrap, o, &value, &Samples::default(), &progress)?;
    let end = Instant::now();
    Ok((
        outcome.bytes as f64 / outcome.elapsed.as_secs_f64() / 1e6,
        start,
        end,
    ))
}

/// Triggers cleaning of `topic`, produces meanwhile, and waits for the cleaning to end.
fn busy_run(broker: &Broker, topic: &str, bytes: u64, o: &Options) -> Result<Busy> {
    let log_dir = broker.log_dir().context("a spawned broker")?;
    // The load's writeback before the cleaner starts, as the idle run has it.
    write_back()?;
    let before = partition_sizes(&log_dir, topic);
    make_cleanable(&broker.bootstrap, topic, bytes)?;
    let triggered = Instant::now();
    let watcher = {
        let (log_dir, topic, before) = (log_dir.clone(), topic.to_string(), before.clone());
        std::thread::spawn(move || await_cleaned(&log_dir, &topic, &before))
    };
    // The cleaner sees the change at its next wake-up.
    std::thread::sleep(Duration::from_millis(2 * BACKOFF_MS));
    let (mb_per_sec, start, end) = produce(&broker.bootstrap, o)?;
    let cleaned = watcher
        .join()
        .map_err(|_| anyhow::anyhow!("the file watcher panicked"))??;
    let produced = (end - start).as_secs_f64();
    let busy = cleaned.saturating_duration_since(start).as_secs_f64();
    let read: u64 = before.iter().sum();
    Ok(Busy {
        mb_per_sec,
        overlap: busy.min(produced) / produced,
        cleaned_mb_per_sec: read as f64 / (cleaned - triggered).as_secs_f64() / 1e6,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The whole command: spawns the broker (Fjord's or Kafka's), runs the pairs, prints
/// the table.
pub(crate) fn run(o: &Options) -> Result<()> {
    let mut settings = vec![format!("log.cleaner.backoff.ms={BACKOFF_MS}")];
    settings.extend(o.broker_settings.iter().cloned());
    let broker = match (o.spawn_peer.as_deref(), o.spawn_broker) {
        (Some("kafka"), _) => Broker::spawn_kafka(&settings)?,
        (None, true) => Broker::spawn_fjord(&settings)?,
        _ => bail!("clean-produce needs --spawn-broker or --spawn-peer kafka (it watches the broker's files)"),
    };
    let bootstrap = broker.bootstrap.clone();
    ensure_topic(&bootstrap, &o.topic, o.partitions)?;
    let load_bytes: u64 = if o.quick { 128 << 20 } else { 1 << 30 };
    let (mut idle, mut busy) = (Vec::new(), Vec::new());
    for pair in 0..PAIRS {
        let topic = format!("bench-compacted-{pair}");
        create_compacted(&bootstrap, &topic, load_bytes)?;
        load(&bootstrap, &topic, load_bytes, o).context("loading the compacted topic")?;
        for cleaning in [pair % 2 == 1, pair % 2 == 0] {
            if cleaning {
                let b = busy_run(&broker, &topic, load_bytes, o)?;
                eprintln!(
                    "pair {pair}: while cleaning {:.0} MB/s (cleaner busy for {:.0}% of it, cleaning at {:.0} MB/s)",
                    b.mb_per_sec,
                    b.overlap * 100.0,
                    b.cleaned_mb_per_sec
                );
                busy.push(b);
            } else {
                write_back()?;
                let (mb, _, _) = produce(&bootstrap, o)?;
                eprintln!("pair {pair}: cleaner idle {mb:.0} MB/s");
                idle.push(mb);
            }
        }
        delete_topic(&bootstrap, &topic)?;
    }
    // Each pair's ratio, then their median: the machine drifts between pairs (idle runs
    // of one invocation ranged 186-316 MB/s), less within one.
    let ratios: Vec<f64> = busy
        .iter()
        .zip(&idle)
        .map(|(b, i)| b.mb_per_sec / i)
        .collect();
    let ratio = median(ratios.clone());
    let idle_mb = median(idle);
    let busy_mb = median(busy.iter().map(|b| b.mb_per_sec).collect());
    let overlap = median(busy.iter().map(|b| b.overlap).collect());
    println!("| measure | busy | comparison, same run | ratio | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| {}: produce ({} x {} B) while the cleaner compacts {} MiB | {busy_mb:.0} MB/s | cleaner idle: {idle_mb:.0} MB/s | **{ratio:.2}** | >= 0.80 |",
        broker.name,
        o.records,
        o.record_size,
        load_bytes >> 20,
    );
    let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    println!(
        "ratio: median of the {PAIRS} pairs' ratios ({}); MB/s: medians; the cleaner was busy for {:.0}% of the median busy run",
        shown.join(", "),
        overlap * 100.0
    );
    Ok(())
}
