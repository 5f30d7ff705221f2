//! Consumer groups on the KIP-848 protocol: the broker assigns ([`assignor`]), each
//! member reconciles one heartbeat at a time ([`reconcile`], [`group`]), and
//! [`ConsumerGroups`] holds them beside the classic groups, one group ID being one kind
//! or the other.

pub mod assignor;
pub mod group;
mod lifecycle;
#[cfg(test)]
mod model_tests;
pub mod persist;
pub mod reconcile;
pub mod records;

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

/// Record changes to make durable: (key, value or tombstone).
pub type Changes = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// Every consumer group of this broker.
#[derive(Debug)]
pub struct ConsumerGroups {
    /// Settings.
    pub config: ConsumerGroupConfig,
    groups: Mutex<HashMap<String, SharedConsumerGroup>>,
    /// Each group's records as last written.
    persisted: Mutex<HashMap<String, persist::Records>>,
}

impl ConsumerGroups {
    /// No groups yet.
    pub fn new(config: ConsumerGroupConfig) -> Self {
        Self {
            config,
            groups: Mutex::new(HashMap::new()),
            persisted: Mutex::new(HashMap::new()),
        }
    }

    /// The groups kept in `raw` (the offsets store's other records), their members'
    /// sessions starting now.
    pub fn load(config: ConsumerGroupConfig, raw: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        let groups = Self::new(config);
        let mut by_group: HashMap<String, Vec<persist::GroupRecord>> = HashMap::new();
        let mut persisted: HashMap<String, persist::Records> = HashMap::new();
        for (key, value) in raw {
            let Some((kind, group, member)) = records::parse_key(&key) else {
                continue;
            };
            if !(records::GROUP_METADATA..=records::CURRENT_MEMBER).contains(&kind) {
                continue;
            }
            persisted
                .entry(group.clone())
                .or_default()
                .insert(key, value.clone());
            by_group
                .entry(group)
                .or_default()
                .push((kind, member, value));
        }
        let now = now_ms();
        for (id, recs) in by_group {
            let g = ConsumerGroup::from_records(&id, &recs, groups.config.session_timeout_ms, now);
            tracing::info!(group = %id, members = g.members.len(), epoch = g.group_epoch, "restored consumer group");
            groups.map().insert(id, Arc::new(Mutex::new(g)));
        }
        *groups.persisted_map() = persisted;
        groups
    }

    fn persisted_map(&self) -> MutexGuard<'_, HashMap<String, persist::Records>> {
        self.persisted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// What changed in `group` since it was last written (all of it is tombstoned when
    /// `gone`), and notes it as written.
    fn changes(&self, group: &ConsumerGroup, gone: bool) -> Changes {
        let now = if gone {
            persist::Records::new()
        } else {
            group.records()
        };
        let mut persisted = self.persisted_map();
        let before = persisted.remove(&group.id).unwrap_or_default();
        let changes = persist::diff(&before, &now);
        if !gone {
            persisted.insert(group.id.clone(), now);
        }
        changes
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

    /// A heartbeat to group `id`; `persist` writes what it changed. A join (epoch 0)
    /// creates the group; any other heartbeat to a group this broker does not have is
    /// GROUP_ID_NOT_FOUND, as in Kafka (groups survive restarts through their records).
    pub fn heartbeat(
        &self,
        id: &str,
        hb: Heartbeat,
        topics: &Topics,
        now_ms: u64,
        persist: impl FnOnce(Changes),
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
                        E::GroupIdNotFound,
                        format!("Consumer group {id} not found."),
                    ))
                }
            }
        };
        let mut g = lock(&group);
        let answer = g.heartbeat(hb, topics, &self.config, now_ms);
        // Written under the group's lock, so the records follow the state in order.
        persist(self.changes(&g, false));
        answer
    }

    /// Forgets an empty group (so its ID can become a classic group). Returns whether
    /// it was there and empty.
    pub fn remove_if_empty(&self, id: &str, persist: impl FnOnce(Changes)) -> bool {
        let mut map = self.map();
        let Some(group) = map.get(id).cloned() else {
            return false;
        };
        let g = lock(&group);
        if !g.members.is_empty() {
            return false;
        }
        map.remove(id);
        persist(self.changes(&g, true));
        true
    }

    /// Expires members whose session ended, in every group.
    pub fn expire(&self, now_ms: u64, persist: impl Fn(Changes)) {
        let groups: Vec<SharedConsumerGroup> = self.map().values().cloned().collect();
        for group in groups {
            let mut g = lock(&group);
            if g.expire(now_ms) > 0 {
                persist(self.changes(&g, false));
            }
        }
    }
}
