//! Consumer groups on the KIP-848 protocol: the broker assigns ([`assignor`]), each
//! member reconciles one heartbeat at a time ([`reconcile`], [`group`]), and
//! [`ConsumerGroups`] holds them beside the classic groups, one group ID being one kind
//! or the other.

pub mod assignor;
pub mod group;
mod lifecycle;
#[cfg(test)]
mod model_tests;
pub mod reconcile;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use fjord_protocol::kafka_protocol::ResponseError as E;

pub use group::{Answer, ConsumerGroup, ConsumerGroupConfig, Heartbeat, Refusal, Topics};

/// Milliseconds on a monotonic clock (since the first call), the time consumer groups
/// keep deadlines in.
pub fn now_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

/// A consumer group behind its lock.
pub type SharedConsumerGroup = Arc<Mutex<ConsumerGroup>>;

/// Locks a group (a poisoned lock still holds a consistent group: each heartbeat
/// completes its changes before anything can panic).
pub fn lock(group: &SharedConsumerGroup) -> MutexGuard<'_, ConsumerGroup> {
    group.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every consumer group of this broker.
#[derive(Debug)]
pub struct ConsumerGroups {
    /// Settings.
    pub config: ConsumerGroupConfig,
    groups: Mutex<HashMap<String, SharedConsumerGroup>>,
}

impl ConsumerGroups {
    /// No groups yet.
    pub fn new(config: ConsumerGroupConfig) -> Self {
        Self {
            config,
            groups: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, SharedConsumerGroup>> {
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The group, if there is one with this ID.
    pub fn get(&self, id: &str) -> Option<SharedConsumerGroup> {
        self.map().get(id).cloned()
    }

    /// Every group's ID.
    pub fn ids(&self) -> Vec<String> {
        self.map().keys().cloned().collect()
    }

    /// A heartbeat to group `id`. A join (epoch 0) creates the group. A heartbeat for
    /// a group this broker does not know answers UNKNOWN_MEMBER_ID, so the member
    /// rejoins: consumer groups are not kept across restarts yet, and Kafka's answer
    /// there (GROUP_ID_NOT_FOUND) is fatal to the Java client.
    pub fn heartbeat(
        &self,
        id: &str,
        hb: Heartbeat,
        topics: &Topics,
        now_ms: u64,
    ) -> Result<Answer, Refusal> {
        let group = {
            let mut map = self.map();
            match map.get(id) {
                Some(g) => Arc::clone(g),
                None if hb.member_epoch == 0 => Arc::clone(
                    map.entry(id.to_string())
                        .or_insert_with(|| Arc::new(Mutex::new(ConsumerGroup::new(id)))),
                ),
                None => {
                    return Err((
                        E::UnknownMemberId,
                        format!("Member {} is not a member of group {id}.", hb.member_id),
                    ))
                }
            }
        };
        let mut g = lock(&group);
        g.heartbeat(hb, topics, &self.config, now_ms)
    }

    /// Forgets an empty group (so its ID can become a classic group). Returns whether
    /// it was there and empty.
    pub fn remove_if_empty(&self, id: &str) -> bool {
        let mut map = self.map();
        let empty = map.get(id).is_some_and(|g| lock(g).members.is_empty());
        if empty {
            map.remove(id);
        }
        empty
    }

    /// Expires members whose session ended, in every group.
    pub fn expire(&self, now_ms: u64) {
        let groups: Vec<SharedConsumerGroup> = self.map().values().cloned().collect();
        for g in groups {
            lock(&g).expire(now_ms);
        }
    }
}
