//! The log cleaner of compacted topics (`cleanup.policy` with `compact`), as Kafka's
//! `LogCleaner` with one thread: every `log.cleaner.backoff.ms` it looks for the dirtiest
//! log whose dirty share is at least its `min.cleanable.dirty.ratio`, or whose dirty
//! section holds a record older than `max.compaction.lag.ms`, and cleans it, then the
//! next, until none is left.
//!
//! A pass holds the partition's lock only to snapshot the log (a read lock) and to swap
//! the cleaned segments in (a write lock): reading, mapping and writing run without it,
//! so produces and fetches to the partition go on meanwhile. All of it runs on the
//! blocking pool. A log that fails to clean is logged and skipped until the next round
//! (Kafka marks it uncleanable; a counter of those is to come with the cleaner metrics).

use std::sync::Arc;
use std::time::Duration;

use fjord_storage::cleaner::Rules;
use fjord_storage::log::CompactOptions;
use tokio::sync::watch;

use crate::state::{Broker, Partition, Topic};

/// Largest decompressed batch the cleaner holds in memory.
const MAX_DECOMPRESSED: usize = 64 << 20;

/// Logs cleaned per round at most, so a stop is never far away.
const MAX_PER_ROUND: usize = 64;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Runs until `stop` turns true (at once if `log.cleaner.enable` is false).
pub async fn run(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    if !broker.config.cleaner.enable {
        return;
    }
    let backoff = Duration::from_millis(broker.config.cleaner.backoff_ms.max(1));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        let b = Arc::clone(&broker);
        let stopping = stop.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || round(&b, &stopping)).await {
            tracing::error!(error = %e, "log cleaner round failed");
        }
    }
}

/// Cleans the dirtiest cleanable log, then the next, until none is left (or the broker
/// stops: a stop waits for the pass under way only).
fn round(broker: &Broker, stop: &watch::Receiver<bool>) {
    let mut skipped: Vec<(String, i32)> = Vec::new();
    for _ in 0..MAX_PER_ROUND {
        if *stop.borrow() {
            return;
        }
        let now = now_ms();
        let Some((topic, partition)) = dirtiest(broker, now, &skipped) else {
            return;
        };
        let key = (topic.name.clone(), partition.index);
        if let Err(e) = clean(broker, &topic.name, &partition, now) {
            broker.metrics.cleaner.failed(&topic.name, partition.index);
            tracing::error!(topic = %topic.name, partition = partition.index, error = %e, "cleaning failed; the log is skipped this round");
        }
        // Whatever happened, not again this round (a log with little dirty left would
        // otherwise be cleaned over and over).
        skipped.push(key);
    }
}

/// The cleanable log with the highest dirty ratio.
fn dirtiest(
    broker: &Broker,
    now: i64,
    skipped: &[(String, i32)],
) -> Option<(Arc<Topic>, Arc<Partition>)> {
    let mut best: Option<(f64, Arc<Topic>, Arc<Partition>)> = None;
    let mut max_ratio = 0.0f64;
    for topic in broker.all_topics() {
        for partition in &topic.partitions {
            if partition.is_offline()
                || skipped
                    .iter()
                    .any(|(t, p)| *t == topic.name && *p == partition.index)
            {
                continue;
            }
            let Some(log) = partition.try_read() else {
                continue;
            };
            let Some(compaction) = log.config().compaction else {
                continue;
            };
            let Ok((dirty, total)) = log.dirty_bytes() else {
                continue;
            };
            if dirty == 0 || total == 0 {
                continue;
            }
            let ratio = dirty as f64 / total as f64;
            max_ratio = max_ratio.max(ratio);
            let wanted = f64::from(compaction.min_cleanable_ratio_ppm) / 1e6;
            // Only a finite max.compaction.lag.ms needs the (costlier) look at the files.
            let overdue = || {
                compaction.max_compaction_lag_ms < i64::MAX
                    && log
                        .compaction_snapshot()
                        .is_ok_and(|s| s.overdue(now, compaction.max_compaction_lag_ms))
            };
            if ratio < wanted && !overdue() {
                continue;
            }
            if best.as_ref().is_none_or(|(r, _, _)| ratio > *r) {
                best = Some((ratio, Arc::clone(&topic), Arc::clone(partition)));
            }
        }
    }
    broker.metrics.cleaner.scanned((max_ratio * 1e6) as u64);
    best.map(|(_, t, p)| (t, p))
}

/// One pass over `partition`'s log.
fn clean(broker: &Broker, topic: &str, partition: &Partition, now: i64) -> anyhow::Result<()> {
    let (snapshot, compaction) = {
        let log = partition.read();
        let Some(compaction) = log.config().compaction else {
            return Ok(());
        };
        (log.compaction_snapshot()?, compaction)
    };
    let options = CompactOptions {
        dedupe_bytes: broker.config.cleaner.dedupe_buffer_bytes,
        min_compaction_lag_ms: compaction.min_compaction_lag_ms,
        rules: Rules {
            now_ms: now,
            delete_retention_ms: compaction.delete_retention_ms,
            max_decompressed: MAX_DECOMPRESSED,
        },
        max_bytes_per_second: broker.config.cleaner.io_max_bytes_per_second,
    };
    let delay = snapshot
        .oldest_dirty_timestamp()
        .map_or(0, |t| u64::try_from(now.saturating_sub(t)).unwrap_or(0));
    broker.metrics.cleaner.delayed(delay);
    let started = std::time::Instant::now();
    let prepared = snapshot.prepare(&options)?;
    let outcome = partition.write().finish_compaction(prepared)?;
    broker.metrics.cleaner.cleaned(
        topic,
        partition.index,
        outcome.stats.bytes_read,
        outcome.stats.bytes_written,
        started.elapsed(),
        now,
    );
    tracing::info!(
        dir = %partition.read().dir().display(),
        segments = outcome.segments_swapped,
        records_read = outcome.stats.records_read,
        records_kept = outcome.stats.records_kept,
        bytes_read = outcome.stats.bytes_read,
        bytes_written = outcome.stats.bytes_written,
        first_dirty = outcome.first_dirty,
        ms = started.elapsed().as_millis() as u64,
        "cleaned log"
    );
    Ok(())
}
