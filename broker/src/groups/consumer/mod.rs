//! Consumer groups on the KIP-848 protocol: the broker assigns ([`assignor`]), each
//! member reconciles one heartbeat at a time ([`reconcile`], [`group`]), and
//! [`ConsumerGroups`] holds them beside the classic groups, one group ID being one kind
//! or the other.

pub mod assignor;
pub mod classic;
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

    /// Writes what changed in `group` since it was last written (all of it is
    /// tombstoned when `gone`) with `write`, and notes it as written only if `write`
    /// succeeded: a failed write is retried with the next change.
    pub fn persist(&self, group: &ConsumerGroup, gone: bool, write: impl FnOnce(&Changes) -> bool) {
        let now = if gone {
            persist::Records::new()
        } else {
            group.records()
        };
        let before = self
            .persisted_map()
            .get(&group.id)
            .cloned()
            .unwrap_or_default();
        let changes = persist::diff(&before, &now);
        // Written without the map's lock (other groups write meanwhile); this group's
        // lock, held by the caller, keeps its writes in order.
        if changes.is_empty() || !write(&changes) {
            return;
        }
        let mut persisted = self.persisted_map();
        if gone {
            persisted.remove(&group.id);
        } else {
            persisted.insert(group.id.clone(), now);
        }
    }

    /// Adds a group (made from a classic one), replacing none.
    pub fn insert(&self, group: ConsumerGroup) -> SharedConsumerGroup {
        let id = group.id.clone();
        let shared = Arc::new(Mutex::new(group));
        self.map().insert(id, Arc::clone(&shared));
        shared
    }

    /// Takes group `id` out of the map (it became a classic group).
    pub fn forget(&self, id: &str) {
        self.map().remove(id);
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

    /// The group `id`, created for a join (epoch 0); any other heartbeat to a group this
    /// broker does not have is GROUP_ID_NOT_FOUND, as in Kafka (groups survive restarts
    /// through their records).
    pub fn get_or_join(&self, id: &str, member_epoch: i32) -> Result<SharedConsumerGroup, Refusal> {
        let mut map = self.map();
        match map.get(id) {
            Some(g) => Ok(Arc::clone(g)),
            None if member_epoch == 0 => {
                Ok(Arc::clone(map.entry(id.to_string()).or_insert_with(|| {
                    Arc::new(Mutex::new(ConsumerGroup::new(id)))
                })))
            }
            None => Err((
                E::GroupIdNotFound,
                format!("Consumer group {id} not found."),
            )),
        }
    }

    /// Forgets an empty group (so its ID can become a classic group). Returns whether
    /// it was there and empty.
    pub fn remove_if_empty(&self, id: &str, write: impl FnOnce(&Changes) -> bool) -> bool {
        let mut map = self.map();
        let Some(group) = map.get(id).cloned() else {
            return false;
        };
        let mut g = lock(&group);
        if !g.members.is_empty() {
            return false;
        }
        map.remove(id);
        drop(map);
        g.dead = true;
        self.persist(&g, true, write);
        true
    }

    /// Expires members whose session ended, in every group, and writes members
    /// removed since the last write (expired inside a classic member's request).
    pub fn expire(&self, now_ms: u64, write: impl Fn(&Changes) -> bool) {
        let groups: Vec<SharedConsumerGroup> = self.map().values().cloned().collect();
        for group in groups {
            let mut g = lock(&group);
            let expired = g.expire(now_ms) > 0;
            if (expired || std::mem::take(&mut g.unsaved)) && !g.dead {
                self.persist(&g, false, &write);
            }
        }
    }
}
