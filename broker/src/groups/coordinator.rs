//! The group coordinator: every group behind its own lock, and the committed offsets.
//!
//! The map of groups is locked only to find or insert a group; each group's state machine
//! has its own mutex, so a slow or misbehaving member never holds up another group. Waits
//! (a JoinGroup for the other members, a follower's SyncGroup for the leader) happen on
//! oneshot channels outside any lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::group::{Group, GroupLimits, Phase};
use super::offset_store::{now_ms, OffsetStore};

/// A group behind its lock.
pub type SharedGroup = Arc<Mutex<Group>>;

/// Locks a group (a poisoned lock still holds a consistent group: every transition
/// completes before anything can panic).
pub fn lock(group: &SharedGroup) -> MutexGuard<'_, Group> {
    group.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Settings of the coordinator, by Kafka's names.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// Session and size limits, initial rebalance delay.
    pub limits: GroupLimits,
    /// `offsets.retention.minutes`, in ms.
    pub offsets_retention: Duration,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check: Duration,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
}

/// All groups of this broker.
#[derive(Debug)]
pub struct GroupCoordinator {
    /// Settings.
    pub config: CoordinatorConfig,
    groups: Mutex<HashMap<String, SharedGroup>>,
    /// Committed offsets.
    pub offsets: OffsetStore,
    last_expiry: Mutex<Instant>,
}

/// A group as ListGroups shows it.
#[derive(Debug, Clone)]
pub struct ListedGroup {
    /// Group id.
    pub id: String,
    /// Protocol type ("" for groups that only store offsets).
    pub protocol_type: String,
    /// State name.
    pub state: &'static str,
}

impl GroupCoordinator {
    /// A coordinator over `offsets`.
    pub fn new(config: CoordinatorConfig, offsets: OffsetStore) -> Self {
        Self {
            config,
            groups: Mutex::new(HashMap::new()),
            offsets,
            last_expiry: Mutex::new(Instant::now()),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, SharedGroup>> {
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The group, if it has state in memory.
    pub fn group(&self, id: &str) -> Option<SharedGroup> {
        self.map().get(id).cloned()
    }

    /// The group, created Empty if new.
    pub fn group_or_create(&self, id: &str) -> SharedGroup {
        Arc::clone(
            self.map()
                .entry(id.to_string())
                .or_insert_with(|| Arc::new(Mutex::new(Group::new(id)))),
        )
    }

    /// Whether the group exists: in memory or through committed offsets.
    pub fn exists(&self, id: &str) -> bool {
        self.group(id)
            .is_some_and(|g| lock(&g).phase != Phase::Dead)
            || !self.offsets.group(id).is_empty()
    }

    /// Every group, sorted by id.
    pub fn list(&self) -> Vec<ListedGroup> {
        let mut out: HashMap<String, ListedGroup> = self
            .offsets
            .groups()
            .into_iter()
            .map(|id| {
                let listed = ListedGroup {
                    id: id.clone(),
                    protocol_type: String::new(),
                    state: Phase::Empty.name(),
                };
                (id, listed)
            })
            .collect();
        let groups: Vec<SharedGroup> = self.map().values().cloned().collect();
        for g in groups {
            let g = lock(&g);
            if g.phase == Phase::Dead {
                continue;
            }
            let protocol_type = g.protocol_type.clone().unwrap_or_else(|| {
                out.get(&g.id)
                    .map(|l| l.protocol_type.clone())
                    .unwrap_or_default()
            });
            out.insert(
                g.id.clone(),
                ListedGroup {
                    id: g.id.clone(),
                    protocol_type,
                    state: g.phase.name(),
                },
            );
        }
        let mut all: Vec<ListedGroup> = out.into_values().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Deletes an Empty group and its offsets: `Ok` or a Kafka error code.
    pub fn delete_group(&self, id: &str) -> Result<(), i16> {
        use super::group::code;
        const GROUP_ID_NOT_FOUND: i16 = 69;
        const NON_EMPTY_GROUP: i16 = 68;
        if !self.exists(id) {
            return Err(GROUP_ID_NOT_FOUND);
        }
        if let Some(g) = self.group(id) {
            let mut g = lock(&g);
            if g.has_members() || g.phase != Phase::Empty {
                return Err(NON_EMPTY_GROUP);
            }
            g.kill();
        }
        self.map().remove(id);
        if let Err(e) = self.offsets.delete_group(id) {
            tracing::error!(group = id, error = %e, "deleting offsets failed");
            return Err(code::COORDINATOR_NOT_AVAILABLE);
        }
        tracing::info!(group = id, "deleted group");
        Ok(())
    }

    /// Answers every waiting join and sync (the broker is stopping), so that connections
    /// drain instead of waiting out rebalance timeouts.
    pub fn shutdown(&self) {
        let groups: Vec<SharedGroup> = self.map().values().cloned().collect();
        for g in groups {
            lock(&g).abort_waiters(super::group::code::NOT_COORDINATOR);
        }
    }

    /// Runs every group's deadlines, forgets empty groups without offsets, and expires the
    /// offsets of groups empty for `offsets.retention.minutes`.
    pub fn tick(&self) {
        let now = Instant::now();
        let groups: Vec<SharedGroup> = self.map().values().cloned().collect();
        let mut idle = Vec::new();
        for g in &groups {
            let mut g = lock(g);
            g.tick(&self.config.limits, now);
            if g.phase == Phase::Dead || (g.phase == Phase::Empty && !g.has_pending()) {
                idle.push((g.id.clone(), g.empty_since_ms));
            }
        }
        let expire = {
            let mut last = self
                .last_expiry
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let due = last.elapsed() >= self.config.offsets_retention_check;
            if due {
                *last = now;
            }
            due
        };
        if expire {
            self.expire_offsets(&idle);
        }
        let mut map = self.map();
        for (id, _) in idle {
            let drop_it = map.get(&id).is_some_and(|g| {
                let g = lock(g);
                g.phase == Phase::Dead
                    || (g.phase == Phase::Empty && !g.has_pending() && !g.has_members())
            }) && self.offsets.group(&id).is_empty();
            if drop_it {
                map.remove(&id);
            }
        }
    }

    /// Deletes the offsets of groups without members whose last commit (or the moment
    /// they became empty, if later) is older than the retention.
    fn expire_offsets(&self, idle_in_memory: &[(String, Option<i64>)]) {
        let now = now_ms();
        let retention = self.config.offsets_retention.as_millis() as i64;
        for id in self.offsets.groups() {
            let active = self
                .group(&id)
                .is_some_and(|g| lock(&g).phase != Phase::Empty);
            if active {
                continue;
            }
            let empty_since = idle_in_memory
                .iter()
                .find(|(g, _)| *g == id)
                .and_then(|(_, since)| *since)
                .unwrap_or(0);
            let last_commit = self
                .offsets
                .group(&id)
                .values()
                .map(|c| c.commit_ms)
                .max()
                .unwrap_or(0);
            if empty_since.max(last_commit).saturating_add(retention) <= now {
                match self.offsets.delete_group(&id) {
                    Ok(n) => tracing::info!(group = %id, offsets = n, "expired offsets"),
                    Err(e) => tracing::error!(group = %id, error = %e, "expiring offsets failed"),
                }
            }
        }
    }
}
