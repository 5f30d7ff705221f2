//! Delivery latency: sampled records' time from `send` to acknowledgement, and pacing of
//! sends to a target rate (`--rate`), so latency can be read at a given load.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One record in this many is timed (the same for every client).
pub(crate) const SAMPLE_EVERY: u64 = 256;

/// Collected latencies in microseconds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Samples(Arc<Mutex<Vec<u64>>>);

impl Samples {
    pub(crate) fn push(&self, micros: u64) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(micros);
    }

    /// "p50 / p99 / p99.9 / max in ms (samples)", or a note that there were none.
    pub(crate) fn summary(&self) -> String {
        let mut v = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if v.is_empty() {
            return "no latency samples".into();
        }
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
        format!(
            "delivery latency ms: p50 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2} ({} samples)",
            at(0.5),
            at(0.99),
            at(0.999),
            at(1.0),
            v.len()
        )
    }
}

/// Spaces sends to `rate` records/s (0: as fast as possible).
#[derive(Debug)]
pub(crate) struct Pacer {
    start: Instant,
    rate: u64,
}

impl Pacer {
    pub(crate) fn new(rate: u64) -> Self {
        Self {
            start: Instant::now(),
            rate,
        }
    }

    /// How long to wait before send number `sent` (checked every 64 sends).
    pub(crate) fn delay(&self, sent: u64) -> Option<Duration> {
        if self.rate == 0 || !sent.is_multiple_of(64) {
            return None;
        }
        let due = Duration::from_secs_f64(sent as f64 / self.rate as f64);
        due.checked_sub(self.start.elapsed())
            .filter(|d| *d > Duration::from_micros(200))
    }
}
