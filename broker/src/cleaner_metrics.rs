//! What the log cleaner did, for `/metrics`: passes, bytes read and written, time spent,
//! the last pass's rate, the dirtiest log seen, the oldest dirty record, and the
//! partitions whose last pass failed (a cleaner that silently stops cleaning a log is
//! Kafka's KAFKA-7215; here it shows). Per compacted partition, its dirty ratio and the
//! time of its last pass are read off the logs at scrape time.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::state::Broker;

/// The cleaner's counters and gauges.
#[derive(Debug, Default)]
pub struct CleanerMetrics {
    passes: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    pass_micros: AtomicU64,
    last_rate: AtomicU64,
    max_dirty_ppm: AtomicU64,
    max_delay_ms: AtomicU64,
    /// (topic, partition) whose last pass failed.
    uncleanable: Mutex<BTreeSet<(String, i32)>>,
    /// When each partition was last cleaned (ms since the epoch).
    last_clean_ms: Mutex<BTreeMap<(String, i32), i64>>,
}

impl CleanerMetrics {
    /// A pass over `topic`-`partition` that read and wrote these bytes in `took`, at
    /// `now_ms`.
    pub fn cleaned(
        &self,
        topic: &str,
        partition: i32,
        bytes_read: u64,
        bytes_written: u64,
        took: Duration,
        now_ms: i64,
    ) {
        self.passes.fetch_add(1, Ordering::Relaxed);
        self.bytes_read.fetch_add(bytes_read, Ordering::Relaxed);
        self.bytes_written
            .fetch_add(bytes_written, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        self.pass_micros.fetch_add(micros, Ordering::Relaxed);
        let rate = (bytes_read + bytes_written).saturating_mul(1_000_000) / micros;
        self.last_rate.store(rate, Ordering::Relaxed);
        let key = (topic.to_string(), partition);
        lock(&self.uncleanable).remove(&key);
        lock(&self.last_clean_ms).insert(key, now_ms);
    }

    /// A pass over `topic`-`partition` failed: it counts as uncleanable until one works.
    pub fn failed(&self, topic: &str, partition: i32) {
        lock(&self.uncleanable).insert((topic.to_string(), partition));
    }

    /// What a round's scan saw: the highest dirty ratio (parts per million).
    pub fn scanned(&self, max_dirty_ppm: u64) {
        self.max_dirty_ppm.store(max_dirty_ppm, Ordering::Relaxed);
    }

    /// How long the oldest dirty record of the log being cleaned waited (ms).
    pub fn delayed(&self, ms: u64) {
        self.max_delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Forgets a partition that is gone (a deleted topic).
    pub fn forget_topic(&self, topic: &str) {
        lock(&self.uncleanable).retain(|(t, _)| t != topic);
        lock(&self.last_clean_ms).retain(|(t, _), _| t != topic);
    }

    /// The Prometheus text of it all.
    pub fn render(&self, out: &mut String, broker: &Broker) {
        let counters = [
            (
                "fjord_cleaner_passes_total",
                "Log cleaner passes.",
                self.passes.load(Ordering::Relaxed),
            ),
            (
                "fjord_cleaner_bytes_read_total",
                "Bytes the log cleaner read.",
                self.bytes_read.load(Ordering::Relaxed),
            ),
            (
                "fjord_cleaner_bytes_written_total",
                "Bytes the log cleaner wrote.",
                self.bytes_written.load(Ordering::Relaxed),
            ),
        ];
        for (metric, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {metric} {help}\n# TYPE {metric} counter\n{metric} {v}"
            );
        }
        let seconds = self.pass_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "# HELP fjord_cleaner_pass_seconds_total Time spent in log cleaner passes.\n# TYPE fjord_cleaner_pass_seconds_total counter\nfjord_cleaner_pass_seconds_total {seconds}");
        let gauges = [
            (
                "fjord_cleaner_last_pass_bytes_per_second",
                "Bytes read and written per second by the last pass.",
                self.last_rate.load(Ordering::Relaxed) as f64,
            ),
            (
                "fjord_cleaner_max_dirty_ratio",
                "The highest dirty ratio of a compacted log, as of the last round.",
                self.max_dirty_ppm.load(Ordering::Relaxed) as f64 / 1e6,
            ),
            (
                "fjord_cleaner_max_compaction_delay_seconds",
                "How long the oldest dirty record of the last log cleaned had waited.",
                self.max_delay_ms.load(Ordering::Relaxed) as f64 / 1e3,
            ),
            (
                "fjord_cleaner_uncleanable_partitions",
                "Compacted partitions whose last cleaning failed.",
                lock(&self.uncleanable).len() as f64,
            ),
        ];
        for (metric, help, v) in gauges {
            let _ = writeln!(
                out,
                "# HELP {metric} {help}\n# TYPE {metric} gauge\n{metric} {v}"
            );
        }
        out.push_str("# HELP fjord_cleaner_dirty_ratio A compacted partition's dirty share.\n# TYPE fjord_cleaner_dirty_ratio gauge\n");
        let last = lock(&self.last_clean_ms).clone();
        let mut cleaned_at = String::new();
        for topic in broker.all_topics() {
            for p in &topic.partitions {
                let Some(log) = p.try_read() else {
                    continue;
                };
                if log.config().compaction.is_none() {
                    continue;
                }
                if let Ok((dirty, total)) = log.dirty_bytes(p.last_stable_offset(&log)) {
                    let ratio = if total == 0 {
                        0.0
                    } else {
                        dirty as f64 / total as f64
                    };
                    let _ = writeln!(
                        out,
                        "fjord_cleaner_dirty_ratio{{topic=\"{}\",partition=\"{}\"}} {ratio}",
                        topic.name, p.index
                    );
                }
                if let Some(ms) = last.get(&(topic.name.clone(), p.index)) {
                    let _ = writeln!(cleaned_at, "fjord_cleaner_last_clean_timestamp_seconds{{topic=\"{}\",partition=\"{}\"}} {}", topic.name, p.index, *ms as f64 / 1e3);
                }
            }
        }
        out.push_str("# HELP fjord_cleaner_last_clean_timestamp_seconds When a compacted partition was last cleaned.\n# TYPE fjord_cleaner_last_clean_timestamp_seconds gauge\n");
        out.push_str(&cleaned_at);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_pass_counts_as_uncleanable_until_one_works() {
        let m = CleanerMetrics::default();
        m.failed("t", 0);
        m.failed("t", 1);
        assert_eq!(lock(&m.uncleanable).len(), 2);
        m.cleaned("t", 0, 100, 40, Duration::from_millis(10), 5_000);
        assert_eq!(lock(&m.uncleanable).len(), 1);
        assert_eq!(m.passes.load(Ordering::Relaxed), 1);
        assert_eq!(
            m.last_rate.load(Ordering::Relaxed),
            14_000,
            "140 bytes in 10 ms"
        );
        assert_eq!(
            lock(&m.last_clean_ms).get(&("t".to_string(), 0)),
            Some(&5_000)
        );
        m.forget_topic("t");
        assert!(lock(&m.uncleanable).is_empty());
        assert!(lock(&m.last_clean_ms).is_empty());
    }
}
