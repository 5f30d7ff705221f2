//! Latency: sampled records' time from send to acknowledgement (or, for `e2e`, to
//! receipt), in an HDR histogram; and pacing of sends to a target rate (`--rate`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// One record in this many is timed for delivery latency (the same for every client).
pub(crate) const SAMPLE_EVERY: u64 = 256;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Percentiles {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
    pub(crate) samples: u64,
}

/// Collected latencies, microseconds, 3 significant digits.
#[derive(Debug, Clone)]
pub(crate) struct Samples(Arc<Mutex<Histogram<u64>>>);

impl Default for Samples {
    fn default() -> Self {
        // Constant, valid bounds: 1 µs to an hour at 3 significant digits.
        let h = Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid HDR bounds");
        Self(Arc::new(Mutex::new(h)))
    }
}

impl Samples {
    pub(crate) fn push(&self, micros: u64) {
        let _ = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(micros.max(1));
    }

    pub(crate) fn percentiles(&self) -> Option<Percentiles> {
        let h = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if h.is_empty() {
            return None;
        }
        let ms = |v: u64| v as f64 / 1000.0;
        Some(Percentiles {
            p50: ms(h.value_at_quantile(0.5)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            samples: h.len(),
        })
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

    /// How long to wait before send number `sent` (checked every 16 sends).
    pub(crate) fn delay(&self, sent: u64) -> Option<Duration> {
        if self.rate == 0 || !sent.is_multiple_of(16) {
            return None;
        }
        let due = Duration::from_secs_f64(sent as f64 / self.rate as f64);
        due.checked_sub(self.start.elapsed())
            .filter(|d| *d > Duration::from_micros(100))
    }
}
