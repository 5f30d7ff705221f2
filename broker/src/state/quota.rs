//! The controller mutation quota (Kafka's KIP-599): partitions created or deleted per
//! second, broker-wide, so that no flood of CreateTopics, CreatePartitions, DeleteTopics
//! or auto-created topics can make the broker spend its disk on metadata for minutes.
//!
//! As in Kafka, a mutation is admitted while the quota is not already exceeded, and
//! may take it below zero; what follows waits until the rate falls back under it.
//!
//! Each client id has its own bucket at the default rate ([`ClientQuotas`]: Kafka's
//! `controller_mutation_rate` client quota, with `fjord.controller.mutation.rate` as
//! the default every client gets), so one client's flood spends its own budget, not
//! another's. Setting quotas per client (AlterClientQuotas) comes with the security
//! issue's quotas. Auto-creation is also paced by one broker-wide bucket, so the disk
//! work of all clients' auto-creations together stays bounded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
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

    /// Admits a mutation of `partitions` if the quota is not exceeded now, and says how
    /// much was debited (less than asked when the debt cap cut it: what a refund may give
    /// back); otherwise how long until it will not be (what `throttle_time_ms` tells the
    /// client).
    pub fn try_admit(&self, partitions: u32) -> Result<u32, Duration> {
        self.try_admit_at(partitions, Instant::now())
    }

    fn try_admit_at(&self, partitions: u32, now: Instant) -> Result<u32, Duration> {
        if self.rate.is_infinite() {
            return Ok(0);
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
        let after = (*tokens - f64::from(partitions)).max(-self.rate * MAX_DEBT_SECS);
        let debited = (*tokens - after).floor() as u32;
        *tokens = after;
        Ok(debited)
    }

    /// Gives back what an admitted mutation did not use (the topic existed, the disk
    /// failed): only what is created counts, as in Kafka. `debited` is what
    /// [`MutationQuota::try_admit`] or [`MutationQuota::record`] said they took, never
    /// more, so a refund cannot pay off debt the cap forgave.
    pub fn refund(&self, debited: u32) {
        let partitions = debited;
        if self.rate.is_infinite() {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.0 = (state.0 + f64::from(partitions)).min(self.rate);
    }

    /// Counts a mutation that happened whatever the quota said (old request versions,
    /// which Kafka admits and throttles afterwards): the throttle time it earns, and what
    /// was debited (see [`MutationQuota::refund`]).
    pub fn record(&self, partitions: u32) -> (Duration, u32) {
        self.record_at(partitions, Instant::now())
    }

    fn record_at(&self, partitions: u32, now: Instant) -> (Duration, u32) {
        if self.rate.is_infinite() {
            return (Duration::ZERO, 0);
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (tokens, at) = &mut *state;
        let elapsed = now.saturating_duration_since(*at).as_secs_f64();
        let before = (*tokens + elapsed * self.rate).min(self.rate);
        *tokens = (before - f64::from(partitions)).max(-self.rate * MAX_DEBT_SECS);
        *at = now;
        let debited = (before - *tokens).floor() as u32;
        (
            Duration::from_secs_f64((-*tokens / self.rate).max(0.0)),
            debited,
        )
    }
}

/// Client ids tracked at most; past it, buckets at rest are forgotten, and new client
/// ids share one overflow bucket until room is made (so a client inventing ids gains
/// nothing).
const MAX_CLIENTS: usize = 10_000;

/// One [`MutationQuota`] per client id, each at the default rate.
#[derive(Debug)]
pub struct ClientQuotas {
    rate: Option<u32>,
    buckets: Mutex<HashMap<String, Arc<MutationQuota>>>,
    overflow: Arc<MutationQuota>,
}

impl ClientQuotas {
    /// Buckets of `rate` partitions a second per client (`None`: unlimited).
    pub fn new(rate: Option<u32>) -> Self {
        Self {
            rate,
            buckets: Mutex::new(HashMap::new()),
            overflow: Arc::new(MutationQuota::new(rate)),
        }
    }

    /// The bucket of `client_id`.
    pub fn for_client(&self, client_id: &str) -> Arc<MutationQuota> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(b) = buckets.get(client_id) {
            return Arc::clone(b);
        }
        if buckets.len() >= MAX_CLIENTS {
            buckets.retain(|_, b| !b.at_rest());
            if buckets.len() >= MAX_CLIENTS {
                return Arc::clone(&self.overflow);
            }
        }
        let bucket = Arc::new(MutationQuota::new(self.rate));
        buckets.insert(client_id.to_string(), Arc::clone(&bucket));
        bucket
    }
}

impl MutationQuota {
    /// Whether the bucket is full again (its client has been quiet for a while): such
    /// a bucket can be forgotten and recreated with no change in what it admits.
    fn at_rest(&self) -> bool {
        if self.rate.is_infinite() {
            return true;
        }
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = Instant::now()
            .saturating_duration_since(state.1)
            .as_secs_f64();
        state.0 + elapsed * self.rate >= self.rate
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
        assert_eq!(q.record_at(5, t0), (Duration::ZERO, 5));
        let (earned, _) = q.record_at(25, t0);
        assert!((earned.as_secs_f64() - 2.0).abs() < 1e-6, "{earned:?}");
        assert!(q.try_admit_at(1, t0 + Duration::from_secs(1)).is_err());
        // Debt is capped: one enormous request costs at most ten seconds.
        let q = MutationQuota::new(Some(10));
        assert!(q.try_admit_at(u32::MAX, t0).is_ok());
        let wait = q.try_admit_at(1, t0).expect_err("in debt");
        assert!(wait <= Duration::from_secs(11), "{wait:?}");
        assert_eq!(q.record_at(u32::MAX, t0).0, Duration::from_secs(10));
        // What was not created is given back, but no more than was taken: a refund of a
        // huge request whose debt the cap forgave does not refill the bucket.
        let q = MutationQuota::new(Some(10));
        assert_eq!(q.try_admit_at(10, t0), Ok(10));
        assert!(q.try_admit_at(1, t0).is_err());
        q.refund(10);
        assert!(q.try_admit_at(1, t0).is_ok());
        let q = MutationQuota::new(Some(10));
        let huge = q.try_admit_at(100_000, t0).expect("admitted");
        assert_eq!(huge, 110, "10 banked plus 100 of debt at most");
        q.refund(huge);
        assert!(q.try_admit_at(1, t0).is_ok());
        assert!(q.try_admit_at(10, t0).is_ok());
        assert!(
            q.try_admit_at(1, t0).is_err(),
            "back where it started, not fuller"
        );
        let free = MutationQuota::new(None);
        for _ in 0..1000 {
            assert!(free.try_admit(100_000).is_ok());
        }
        assert_eq!(free.record(u32::MAX), (Duration::ZERO, 0));
    }

    #[test]
    fn each_client_spends_its_own_budget() {
        let quotas = ClientQuotas::new(Some(10));
        assert!(quotas.for_client("flooder").try_admit(10).is_ok());
        assert!(quotas.for_client("flooder").try_admit(1).is_err());
        assert!(
            quotas.for_client("polite").try_admit(5).is_ok(),
            "a bucket of its own"
        );
        assert!(quotas.for_client("").try_admit(5).is_ok());
    }

    #[test]
    fn past_the_client_limit_new_ids_share_one_bucket_until_room_is_made() {
        let quotas = ClientQuotas::new(Some(10));
        for i in 0..MAX_CLIENTS {
            assert!(quotas.for_client(&format!("c{i}")).try_admit(10).is_ok());
        }
        // Every bucket is spent (not at rest): a new id gets the shared overflow one.
        let a = quotas.for_client("new-a");
        assert!(a.try_admit(10).is_ok());
        assert!(
            quotas.for_client("new-b").try_admit(1).is_err(),
            "shared, and spent"
        );
        // Buckets at rest are forgotten to make room.
        let rested = ClientQuotas::new(Some(10));
        for i in 0..MAX_CLIENTS {
            rested.for_client(&format!("c{i}"));
        }
        assert!(rested.for_client("new").try_admit(10).is_ok());
        assert!(
            rested.for_client("other").try_admit(10).is_ok(),
            "room was made"
        );
    }
}
