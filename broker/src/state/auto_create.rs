//! Auto-creation off the request path: Metadata and Produce queue the unknown topics
//! they name and never create one themselves. A task on the blocking pool drains the
//! queue in batches through [`Broker::create_topics`] (many topics per directory sync),
//! so a request naming 100,000 new topics holds no lock, no reactor thread and no
//! other client's request while the disk works.
//!
//! The work one client can cause is bounded three ways: names queued per request
//! (`fjord.auto.create.max.per.request`), the queue's length ([`MAX_QUEUED`]), and the
//! controller mutation quota ([`super::MutationQuota`]), which each queued topic's
//! partitions are charged to. What is not queued is answered as unknown (retriable).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use super::{Broker, NewTopic};

/// Topics waiting for creation at most; names past it are not queued.
pub(super) const MAX_QUEUED: usize = 10_000;
/// Topics created per batch (per pair of directory syncs).
const BATCH: usize = 256;

/// What became of one name asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCreated {
    /// The topic exists.
    Exists,
    /// Queued (now or by an earlier request) and not created yet.
    Pending,
    /// Not queued: auto-creation is off, or a bound (per request, queue, quota) is hit.
    Refused,
}

/// A queued name, with what its client's quota was charged for it.
#[derive(Debug)]
struct Queued {
    name: String,
    client_bucket: Arc<super::MutationQuota>,
    debited: u32,
}

#[derive(Debug, Default)]
struct Pending {
    queue: VecDeque<Queued>,
    queued: HashSet<String>,
    draining: bool,
    /// Set at shutdown: nothing more is queued, and a drain stops at its next step.
    stopping: bool,
}

/// The queue of topics to auto-create, and a signal bumped after each batch.
#[derive(Debug)]
pub(super) struct AutoCreateQueue {
    pending: Mutex<Pending>,
    done: watch::Sender<u64>,
}

impl Default for AutoCreateQueue {
    fn default() -> Self {
        Self {
            pending: Mutex::new(Pending::default()),
            done: watch::channel(0).0,
        }
    }
}

impl AutoCreateQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `name` waits for creation.
    pub(super) fn is_queued(&self, name: &str) -> bool {
        self.lock().queued.contains(name)
    }
}

impl Broker {
    /// Queues the unknown topics among `names` for creation with defaults (up to this
    /// request's share), and says what became of each. Never blocks on the disk. Must
    /// be called inside the tokio runtime (the batch runs on its blocking pool).
    /// Each queued name is charged to `client`'s controller mutation quota: past it,
    /// that client's names are refused, and other clients' are not.
    pub fn auto_create(self: &Arc<Self>, names: &[&str], client: &str) -> Vec<AutoCreated> {
        let bucket = self.client_quotas.for_client(client);
        let mut budget = self.config.auto_create_max_per_request;
        let mut start = false;
        let mut out = Vec::with_capacity(names.len());
        let queue = &self.auto_creation;
        let mut pending = queue.lock();
        for name in names {
            if self.topic(name).is_some() {
                out.push(AutoCreated::Exists);
            } else if pending.queued.contains(*name) {
                out.push(AutoCreated::Pending);
            } else if !self.config.auto_create_topics
                || pending.stopping
                || budget == 0
                || pending.queue.len() >= MAX_QUEUED
                || !super::valid_topic_name(name)
            {
                out.push(AutoCreated::Refused);
            } else if let Ok(debited) = bucket.try_admit(self.num_partitions()) {
                budget -= 1;
                pending.queue.push_back(Queued {
                    name: (*name).to_string(),
                    client_bucket: Arc::clone(&bucket),
                    debited,
                });
                pending.queued.insert((*name).to_string());
                out.push(AutoCreated::Pending);
                if !pending.draining {
                    pending.draining = true;
                    start = true;
                }
            } else {
                out.push(AutoCreated::Refused);
            }
        }
        drop(pending);
        if start {
            let broker = Arc::clone(self);
            tokio::task::spawn_blocking(move || broker.drain_auto_creation());
        }
        out
    }

    /// Partitions of a topic created with defaults (what the quota is charged).
    fn num_partitions(&self) -> u32 {
        u32::try_from(self.config.num_partitions).unwrap_or(1)
    }

    /// Stops auto-creation for shutdown: nothing more is queued, and a running drain
    /// (which may be waiting for the quota) ends at its next step, so the blocking pool
    /// can wind down and the logs close cleanly.
    pub fn stop_auto_creation(&self) {
        let mut pending = self.auto_creation.lock();
        pending.stopping = true;
        pending.queue.clear();
        pending.queued.clear();
    }

    /// A receiver that changes after each auto-creation batch.
    pub fn auto_created_signal(&self) -> watch::Receiver<u64> {
        self.auto_creation.done.subscribe()
    }

    /// Whether `name` waits for auto-creation.
    pub fn auto_create_pending(&self, name: &str) -> bool {
        self.auto_creation.is_queued(name)
    }

    /// Creates queued topics a batch at a time until the queue is empty, each charged
    /// to the controller mutation quota when it is created: past the quota the drain
    /// waits (off every lock), so a flood is created no faster than the quota allows.
    fn drain_auto_creation(&self) {
        let queue = &self.auto_creation;
        let _reset = ResetOnPanic(queue);
        let partitions = self.num_partitions();
        loop {
            let mut batch: Vec<Queued> = Vec::new();
            let mut debits: Vec<u32> = Vec::new();
            let mut wait = None;
            {
                let mut pending = queue.lock();
                if pending.stopping {
                    // Shutting down: what is still queued is not created (clients retry
                    // against the next start).
                    pending.queue.clear();
                    pending.queued.clear();
                    pending.draining = false;
                    return;
                }
                while batch.len() < BATCH {
                    let Some(queued) = pending.queue.pop_front() else {
                        break;
                    };
                    match self.mutation_quota.try_admit(partitions) {
                        Ok(debited) => {
                            batch.push(queued);
                            debits.push(debited);
                        }
                        Err(w) => {
                            pending.queue.push_front(queued);
                            wait = Some(w);
                            break;
                        }
                    }
                }
                if batch.is_empty() && wait.is_none() {
                    pending.draining = false;
                    return;
                }
            }
            let topics = batch
                .iter()
                .map(|q| NewTopic::with_defaults(&q.name))
                .collect();
            let outcomes = self.create_topics(topics, false);
            for ((queued, outcome), debited) in batch.iter().zip(outcomes).zip(debits) {
                if let Err(e) = outcome {
                    // Only creations count against the quotas.
                    self.mutation_quota.refund(debited);
                    queued.client_bucket.refund(queued.debited);
                    if !matches!(e, super::CreateError::Exists) {
                        tracing::warn!(topic = %queued.name, error = ?e, "auto-create failed");
                    }
                }
            }
            {
                let mut pending = queue.lock();
                for queued in &batch {
                    pending.queued.remove(&queued.name);
                }
            }
            queue.done.send_modify(|n| *n += 1);
            if let Some(w) = wait {
                // At least 100 ms, so each pass creates a batch, not one topic per sync;
                // at most 1 s, so a stop is seen soon.
                std::thread::sleep(w.clamp(
                    std::time::Duration::from_millis(100),
                    std::time::Duration::from_secs(1),
                ));
            }
        }
    }
}

/// If a drain panics, forgets the queue so the next request starts a new drain (its
/// topics are queued again by the clients' retries) instead of waiting forever.
struct ResetOnPanic<'a>(&'a AutoCreateQueue);

impl Drop for ResetOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut pending = self.0.lock();
            pending.queue.clear();
            pending.queued.clear();
            pending.draining = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerConfig;

    fn broker(dir: &std::path::Path, sets: &[(&str, &str)]) -> Arc<Broker> {
        let mut all = vec![("log.dirs".to_string(), dir.display().to_string())];
        all.extend(sets.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = BrokerConfig::from_sources(None, &all).expect("config");
        Arc::new(Broker::open(config).expect("broker"))
    }

    async fn settled(b: &Arc<Broker>) {
        let mut signal = b.auto_created_signal();
        while b.auto_creation.lock().draining {
            let _ =
                tokio::time::timeout(std::time::Duration::from_millis(50), signal.changed()).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn names_are_queued_once_and_created_in_the_background() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = broker(dir.path(), &[]);
        let first = b.auto_create(&["a", "b", "a", "bad/name"], "test");
        assert_eq!(
            first,
            [
                AutoCreated::Pending,
                AutoCreated::Pending,
                AutoCreated::Pending,
                AutoCreated::Refused
            ]
        );
        settled(&b).await;
        assert!(b.topic("a").is_some() && b.topic("b").is_some());
        assert_eq!(b.auto_create(&["a"], "test"), [AutoCreated::Exists]);
        assert!(!b.auto_create_pending("a"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_queues_at_most_its_share_and_the_quota_paces_creation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = broker(
            dir.path(),
            &[
                ("fjord.auto.create.max.per.request", "3"),
                ("fjord.controller.mutation.rate", "4"),
            ],
        );
        let names: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let one = b.auto_create(&refs, "test");
        let pending = |o: &[AutoCreated]| o.iter().filter(|o| **o == AutoCreated::Pending).count();
        assert_eq!(pending(&one), 3);
        // The same client's next request gets its own share of names, but its quota (four
        // a second) has room for one more.
        let two = b.auto_create(&refs[3..], "test");
        assert_eq!(pending(&two), 1);
        // Another client's request gets its own share and quota.
        let three = b.auto_create(&refs[4..], "other");
        assert_eq!(pending(&three), 3);
        assert_eq!(
            b.auto_create(&refs[6..], "other"),
            vec![
                AutoCreated::Pending,
                AutoCreated::Pending,
                AutoCreated::Refused,
                AutoCreated::Refused
            ]
        );
        // Eight queued, four a second broker-wide: not all at once, but all in the end.
        let started = std::time::Instant::now();
        settled(&b).await;
        assert_eq!(b.all_topics().len(), 8);
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(400),
            "the quota paced the creations ({:?})",
            started.elapsed()
        );
        // Creations were charged: a CreateTopics-sized admission right after waits.
        assert!(b.mutation_quota.try_admit(4).is_err());
        let off = tempfile::tempdir().expect("tempdir");
        let b = broker(off.path(), &[("auto.create.topics.enable", "false")]);
        assert_eq!(b.auto_create(&["x"], "test"), [AutoCreated::Refused]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flooding_client_is_refused_and_another_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = broker(dir.path(), &[("fjord.controller.mutation.rate", "3")]);
        let names: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let flood = b.auto_create(&refs, "flooder");
        let pending = |o: &[AutoCreated]| o.iter().filter(|o| **o == AutoCreated::Pending).count();
        assert_eq!(pending(&flood), 3, "three a second for this client");
        assert_eq!(b.auto_create(&["app-topic"], "app"), [AutoCreated::Pending]);
        settled(&b).await;
        assert!(b.topic("app-topic").is_some());
    }
}
