//! The controller mutation quota (Kafka's KIP-599): partitions created or deleted per
//! second, broker-wide, so that no flood of CreateTopics, CreatePartitions, DeleteTopics
//! or auto-created topics can make the broker spend its disk on metadata for minutes.
//!
//! As in Kafka, a mutation is admitted while the quota is not already exceeded, and
//! may take it below zero; what follows waits until the rate falls back under it.
//! Per-client quotas (`controller_mutation_rate` set with AlterClientQuotas) come with
//! the security issue's quotas; this is the broker-wide bound a flood cannot exceed.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The most debt a bucket carries, in seconds of its rate: Kafka's throttle time is
/// bounded by its quota window (11 one-second samples) in the same way, so no single
/// huge request can lock everyone out for longer.
const MAX_DEBT_SECS: f64 = 10.0;

/// A token bucket of partitions: `rate` a second, at most one second's worth banked and
/// [`MAX_DEBT_SECS`] owed; a mutation is admitted while at least one partition's worth
/// is left.
#[derive(Debug)]
pub struct MutationQuota {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl MutationQuota {
    /// A quota of `rate` partitions a second (`None`: unlimited).
    pub fn new(rate: Option<u32>) -> Self {
        let rate = rate.map_or(f64::INFINITY, f64::from);
        Self {
            rate,
            state: Mutex::new((rate, Instant::now())),
        }
    }

    /// Admits a mutation of `partitions` if the quota is not exceeded now; otherwise
    /// how long until it will not be (what `throttle_time_ms` tells the client).
    pub fn try_admit(&self, partitions: u32) -> Result<(), Duration> {
        self.try_admit_at(partitions, Instant::now())
    }

    fn try_admit_at(&self, partitions: u32, now: Instant) -> Result<(), Duration> {
        if self.rate.is_infinite() {
            return Ok(());
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (tokens, at) = &mut *state;
        let elapsed = now.saturating_duration_since(*at).as_secs_f64();
        *tokens = (*tokens + elapsed * self.rate).min(self.rate);
        *at = now;
        if *tokens < 1.0 {
            // Until one partition's worth is back, plus a millisecond so the retry lands.
            let wait = ((1.0 - *tokens) / self.rate).max(0.0) + 0.001;
            return Err(Duration::from_secs_f64(wait));
        }
        *tokens = (*tokens - f64::from(partitions)).max(-self.rate * MAX_DEBT_SECS);
        Ok(())
    }

    /// Gives back what an admitted mutation did not use (the topic existed, the disk
    /// failed): only what is created counts, as in Kafka.
    pub fn refund(&self, partitions: u32) {
        if self.rate.is_infinite() {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.0 = (state.0 + f64::from(partitions)).min(self.rate);
    }

    /// Counts a mutation that happened whatever the quota said (old request versions,
    /// which Kafka admits and throttles afterwards): the throttle time it earns.
    pub fn record(&self, partitions: u32) -> Duration {
        self.record_at(partitions, Instant::now())
    }

    fn record_at(&self, partitions: u32, now: Instant) -> Duration {
        if self.rate.is_infinite() {
            return Duration::ZERO;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (tokens, at) = &mut *state;
        let elapsed = now.saturating_duration_since(*at).as_secs_f64();
        *tokens = ((*tokens + elapsed * self.rate).min(self.rate) - f64::from(partitions))
            .max(-self.rate * MAX_DEBT_SECS);
        *at = now;
        Duration::from_secs_f64((-*tokens / self.rate).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_while_under_the_rate_then_throttles_until_it_recovers() {
        let q = MutationQuota::new(Some(100));
        let t0 = Instant::now();
        // One second's worth is banked; a mutation past it is still admitted (Kafka's
        // rule: admitted while not already exceeded).
        assert!(q.try_admit_at(60, t0).is_ok());
        assert!(q.try_admit_at(60, t0).is_ok());
        let wait = q.try_admit_at(1, t0).expect_err("exceeded");
        assert!(
            wait >= Duration::from_millis(210) && wait <= Duration::from_millis(212),
            "{wait:?}"
        );
        // 0.2 s later the balance is 0.9 of a partition: still throttled, barely.
        assert!(q.try_admit_at(1, t0 + Duration::from_millis(209)).is_err());
        assert!(q.try_admit_at(1, t0 + Duration::from_millis(250)).is_ok());
        // A long pause banks no more than one second.
        let later = t0 + Duration::from_secs(60);
        assert!(q.try_admit_at(100, later).is_ok());
        assert!(q.try_admit_at(1, later).is_err());
    }

    #[test]
    fn recorded_mutations_earn_throttle_time_and_unlimited_never_throttles() {
        let q = MutationQuota::new(Some(10));
        let t0 = Instant::now();
        assert_eq!(q.record_at(5, t0), Duration::ZERO);
        let earned = q.record_at(25, t0);
        assert!((earned.as_secs_f64() - 2.0).abs() < 1e-6, "{earned:?}");
        assert!(q.try_admit_at(1, t0 + Duration::from_secs(1)).is_err());
        // Debt is capped: one enormous request costs at most ten seconds.
        let q = MutationQuota::new(Some(10));
        assert!(q.try_admit_at(u32::MAX, t0).is_ok());
        let wait = q.try_admit_at(1, t0).expect_err("in debt");
        assert!(wait <= Duration::from_secs(11), "{wait:?}");
        assert_eq!(q.record_at(u32::MAX, t0), Duration::from_secs(10));
        // What was not created is given back.
        let q = MutationQuota::new(Some(10));
        assert!(q.try_admit_at(10, t0).is_ok());
        assert!(q.try_admit_at(1, t0).is_err());
        q.refund(10);
        assert!(q.try_admit_at(1, t0).is_ok());
        let free = MutationQuota::new(None);
        for _ in 0..1000 {
            assert!(free.try_admit(100_000).is_ok());
        }
        assert_eq!(free.record(u32::MAX), Duration::ZERO);
    }
}
