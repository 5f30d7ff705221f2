//! Transactions on `/metrics`: how many the coordinator committed and aborted (and of
//! those, aborted past their timeout), how long they took from their first partition
//! to their last marker, its transactional ids by state, and per partition with a
//! transaction open the open transactions and the LSO lag (high watermark minus last
//! stable offset: the records read_committed consumers cannot read yet). The lag is
//! shown only for partitions with a transaction open; elsewhere it is 0.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::state::TxnState;
use crate::metrics::Histogram;
use crate::state::Broker;

/// Transaction duration buckets, in seconds: from fast commits to the longest timeout
/// Kafka allows (`transaction.max.timeout.ms`, 15 minutes).
const DURATION_BUCKETS: [f64; 13] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
];

/// The coordinator's counters.
#[derive(Debug)]
pub struct TxnMetrics {
    committed: AtomicU64,
    aborted: AtomicU64,
    timed_out: AtomicU64,
    commit_duration: Histogram,
    abort_duration: Histogram,
}

impl Default for TxnMetrics {
    fn default() -> Self {
        Self {
            committed: AtomicU64::new(0),
            aborted: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            commit_duration: Histogram::new(&DURATION_BUCKETS),
            abort_duration: Histogram::new(&DURATION_BUCKETS),
        }
    }
}

impl TxnMetrics {
    /// A transaction completed (its markers are written) after `took`, if it had
    /// started (one with no partitions has no duration).
    pub fn completed(&self, commit: bool, took: Option<Duration>) {
        let (count, histogram) = if commit {
            (&self.committed, &self.commit_duration)
        } else {
            (&self.aborted, &self.abort_duration)
        };
        count.fetch_add(1, Ordering::Relaxed);
        if let Some(took) = took {
            histogram.observe(took);
        }
    }

    /// `n` transactions were aborted because they ran past their timeout.
    pub fn timed_out(&self, n: usize) {
        self.timed_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Appends the duration histograms.
    pub fn render_histograms(&self, out: &mut String) {
        out.push_str("# HELP fjord_transaction_duration_seconds From a transaction's first partition to its last marker, by result.\n# TYPE fjord_transaction_duration_seconds histogram\n");
        let name = "fjord_transaction_duration_seconds";
        self.commit_duration.render(out, name, "result=\"commit\"");
        self.abort_duration.render(out, name, "result=\"abort\"");
    }

    /// (committed, aborted, of those past their timeout).
    pub fn totals(&self) -> (u64, u64, u64) {
        (
            self.committed.load(Ordering::Relaxed),
            self.aborted.load(Ordering::Relaxed),
            self.timed_out.load(Ordering::Relaxed),
        )
    }
}

/// Appends the transaction metrics of `broker`.
pub(crate) fn render(out: &mut String, broker: &Broker) {
    let m = broker.txn.metrics();
    let (committed, aborted, timed_out) = m.totals();
    out.push_str("# HELP fjord_transactions_completed_total Transactions completed (markers written), by result.\n# TYPE fjord_transactions_completed_total counter\n");
    let _ = writeln!(
        out,
        "fjord_transactions_completed_total{{result=\"commit\"}} {committed}"
    );
    let _ = writeln!(
        out,
        "fjord_transactions_completed_total{{result=\"abort\"}} {aborted}"
    );
    let _ = writeln!(out, "# HELP fjord_transactions_timed_out_total Transactions aborted by the coordinator past their timeout.\n# TYPE fjord_transactions_timed_out_total counter\nfjord_transactions_timed_out_total {timed_out}");
    m.render_histograms(out);
    let counts = broker.txn.state_counts();
    let ongoing: usize = counts
        .iter()
        .filter(|(s, _)| {
            matches!(
                s,
                TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort
            )
        })
        .map(|(_, n)| n)
        .sum();
    let _ = writeln!(out, "# HELP fjord_transactions_ongoing Transactions under way (Ongoing or deciding).\n# TYPE fjord_transactions_ongoing gauge\nfjord_transactions_ongoing {ongoing}");
    out.push_str("# HELP fjord_transactional_ids Transactional ids the coordinator keeps, by state.\n# TYPE fjord_transactional_ids gauge\n");
    for (state, n) in counts {
        let _ = writeln!(
            out,
            "fjord_transactional_ids{{state=\"{}\"}} {n}",
            state.name()
        );
    }
    render_partitions(out, broker);
}

/// Open transactions and LSO lag of each partition with a transaction open.
fn render_partitions(out: &mut String, broker: &Broker) {
    out.push_str("# HELP fjord_partition_open_transactions Transactions open in a partition.\n# TYPE fjord_partition_open_transactions gauge\n");
    let mut lags = Vec::new();
    for t in broker.all_topics() {
        for (index, p) in t.partitions.iter().enumerate() {
            let log = p.read();
            let producers = p
                .producers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let open = producers.open_transactions();
            if open == 0 {
                continue;
            }
            let end = log.log_end_offset();
            let lag = end.saturating_sub(producers.last_stable_offset(log.log_start_offset(), end));
            let labels = format!("topic=\"{}\",partition=\"{index}\"", t.name);
            let _ = writeln!(out, "fjord_partition_open_transactions{{{labels}}} {open}");
            lags.push((labels, lag));
        }
    }
    out.push_str("# HELP fjord_partition_lso_lag Records past a partition's last stable offset (high watermark minus LSO).\n# TYPE fjord_partition_lso_lag gauge\n");
    for (labels, lag) in lags {
        let _ = writeln!(out, "fjord_partition_lso_lag{{{labels}}} {lag}");
    }
}
