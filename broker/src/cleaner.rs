//! The log cleaner of compacted topics (`cleanup.policy` with `compact`), as Kafka's
//! `LogCleaner`: each of `log.cleaner.threads` threads, every `log.cleaner.backoff.ms`,
//! looks for the dirtiest log whose dirty share is at least its
//! `min.cleanable.dirty.ratio`, or whose dirty section holds a record older than
//! `max.compaction.lag.ms`, and cleans it, then the next, until none is left. A log
//! under way in one thread is claimed, so no other takes it; the dedupe buffer and the
//! I/O throttle are split evenly between the threads, as Kafka splits them.
//!
//! A pass holds the partition's lock only to snapshot the log (a read lock) and to swap
//! the cleaned segments in (a write lock): reading, mapping and writing run without it,
//! so produces and fetches to the partition go on meanwhile. All of it runs on the
//! blocking pool. A log that fails to clean is logged and skipped until the next round
//! (Kafka marks it uncleanable; a counter of those is to come with the cleaner metrics).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
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

/// A log: (topic, partition).
type LogKey = (String, i32);

/// The logs a pass is under way on, so two cleaner threads never take the same one.
#[derive(Default)]
struct Claims(Mutex<HashSet<LogKey>>);

/// A log one thread is cleaning; released on drop, however the pass ended.
struct Claim<'a> {
    claims: &'a Claims,
    key: LogKey,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.claims.lock().remove(&self.key);
    }
}

impl Claims {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<LogKey>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The dirtiest cleanable log nobody has claimed and not in `skipped`, claimed.
    fn claim_dirtiest(
        &self,
        broker: &Broker,
        now: i64,
        skipped: &[LogKey],
    ) -> Option<(Arc<Topic>, Arc<Partition>, Claim<'_>)> {
        let mut claimed = self.lock();
        // Both sets are small (a thread each; a round's logs): a scan, no key built.
        let (topic, partition) = dirtiest(broker, now, |t, p| {
            claimed
                .iter()
                .chain(skipped)
                .any(|(ct, cp)| ct == t && *cp == p)
        })?;
        let key = (topic.name.clone(), partition.index);
        claimed.insert(key.clone());
        Some((topic, partition, Claim { claims: self, key }))
    }
}

/// Runs until `stop` turns true (at once if `log.cleaner.enable` is false or
/// `log.cleaner.threads` is 0).
pub async fn run(broker: Arc<Broker>, stop: watch::Receiver<bool>) {
    let threads = broker.config.cleaner.threads;
    if !broker.config.cleaner.enable || threads == 0 {
        return;
    }
    let claims = Arc::new(Claims::default());
    let loops: Vec<_> = (0..threads)
        .map(|_| {
            tokio::spawn(cleaner_thread(
                Arc::clone(&broker),
                stop.clone(),
                Arc::clone(&claims),
            ))
        })
        .collect();
    for l in loops {
        let _ = l.await;
    }
}

/// One cleaner thread: a round after every backoff, on the blocking pool.
async fn cleaner_thread(broker: Arc<Broker>, mut stop: watch::Receiver<bool>, claims: Arc<Claims>) {
    let backoff = Duration::from_millis(broker.config.cleaner.backoff_ms.max(1));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        let (b, stopping, c) = (Arc::clone(&broker), stop.clone(), Arc::clone(&claims));
        if let Err(e) = tokio::task::spawn_blocking(move || round(&b, &stopping, &c)).await {
            tracing::error!(error = %e, "log cleaner round failed");
        }
    }
}

/// Cleans the dirtiest cleanable log, then the next, until none is left (or the broker
/// stops: a stop waits for the pass under way only).
fn round(broker: &Broker, stop: &watch::Receiver<bool>, claims: &Claims) {
    let mut skipped: Vec<LogKey> = Vec::new();
    for _ in 0..MAX_PER_ROUND {
        if *stop.borrow() {
            return;
        }
        let now = now_ms();
        let Some((topic, partition, claim)) = claims.claim_dirtiest(broker, now, &skipped) else {
            return;
        };
        if let Err(e) = clean(broker, &topic.name, &partition, now) {
            broker.metrics.cleaner.failed(&topic.name, partition.index);
            tracing::error!(topic = %topic.name, partition = partition.index, error = %e, "cleaning failed; the log is skipped this round");
        }
        // Whatever happened, not again this round (a log with little dirty left would
        // otherwise be cleaned over and over).
        skipped.push(claim.key.clone());
    }
}

/// The cleanable log with the highest dirty ratio.
fn dirtiest(
    broker: &Broker,
    now: i64,
    excluded: impl Fn(&str, i32) -> bool,
) -> Option<(Arc<Topic>, Arc<Partition>)> {
    let mut best: Option<(f64, Arc<Topic>, Arc<Partition>)> = None;
    let mut max_ratio = 0.0f64;
    for topic in broker.all_topics() {
        for partition in &topic.partitions {
            if partition.is_offline() || excluded(&topic.name, partition.index) {
                continue;
            }
            let Some(log) = partition.try_read() else {
                continue;
            };
            let Some(compaction) = log.config().compaction else {
                continue;
            };
            let Ok((dirty, total)) = log.dirty_bytes(partition.last_stable_offset(&log)) else {
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
                        .compaction_snapshot(partition.last_stable_offset(&log))
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
        // Kafka's cleaner stops at the first unstable offset: an open transaction's
        // records may yet be aborted, and its keys must not shadow older committed ones.
        (
            log.compaction_snapshot(partition.last_stable_offset(&log))?,
            compaction,
        )
    };
    // Kafka's split: each thread gets its share of the memory and of the throttle.
    let threads = broker.config.cleaner.threads.max(1);
    let options = CompactOptions {
        dedupe_bytes: broker.config.cleaner.dedupe_buffer_bytes / threads,
        min_compaction_lag_ms: compaction.min_compaction_lag_ms,
        rules: Rules {
            now_ms: now,
            delete_retention_ms: compaction.delete_retention_ms,
            max_decompressed: MAX_DECOMPRESSED,
        },
        max_bytes_per_second: broker.config.cleaner.io_max_bytes_per_second / threads as f64,
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use fjord_protocol::compression::Compression;
    use fjord_protocol::record_batch::{BatchBuilder, RecordSpec};

    use super::*;
    use crate::config::BrokerConfig;

    /// A broker over `dir` whose compacted topics `a` and `b` each have sealed segments
    /// of superseded records: both cleanable.
    fn broker_with_dirty_logs(dir: &std::path::Path) -> Arc<Broker> {
        let sets = vec![
            ("log.dirs".to_string(), dir.display().to_string()),
            ("log.cleaner.threads".to_string(), "2".to_string()),
        ];
        let config = BrokerConfig::from_sources(None, &sets).expect("config");
        let broker = Arc::new(Broker::open(config).expect("broker"));
        for name in ["a", "b"] {
            let overrides = BTreeMap::from([
                ("cleanup.policy".to_string(), "compact".to_string()),
                ("segment.bytes".to_string(), "1024".to_string()),
            ]);
            let topic = broker
                .create_topic(name, 1, overrides, false)
                .expect("created");
            for round in 0..10u8 {
                let mut b = BatchBuilder::new(Compression::None, 1_000);
                for k in 0..5 {
                    b.push(
                        RecordSpec::value(vec![round; 50]).with_key(format!("k{k}").into_bytes()),
                    );
                }
                let batch = b.build().expect("batch");
                topic.partitions[0].write().append(&batch).expect("append");
            }
        }
        broker
    }

    #[test]
    fn two_cleaner_threads_never_take_the_same_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = broker_with_dirty_logs(dir.path());
        let claims = Claims::default();
        let (t1, _, first) = claims
            .claim_dirtiest(&broker, now_ms(), &[])
            .expect("a dirty log");
        let (t2, _, _second) = claims
            .claim_dirtiest(&broker, now_ms(), &[])
            .expect("the other");
        assert_ne!(t1.name, t2.name);
        assert!(claims.claim_dirtiest(&broker, now_ms(), &[]).is_none());
        // A finished pass (or a failed one: the claim goes with it) frees its log.
        drop(first);
        let (t3, _, third) = claims
            .claim_dirtiest(&broker, now_ms(), &[])
            .expect("free again");
        assert_eq!(t3.name, t1.name);
        // A log this thread skipped this round is not taken again.
        let skipped = [(t1.name.clone(), 0)];
        drop(third);
        assert!(claims.claim_dirtiest(&broker, now_ms(), &skipped).is_none());
    }
}
