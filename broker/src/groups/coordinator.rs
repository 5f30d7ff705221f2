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
    /// `group.consumer.*`: KIP-848 groups.
    pub consumer: super::consumer::ConsumerGroupConfig,
}

/// All groups of this broker.
#[derive(Debug)]
pub struct GroupCoordinator {
    /// Settings.
    pub config: CoordinatorConfig,
    groups: Mutex<HashMap<String, SharedGroup>>,
    /// Committed offsets.
    pub offsets: OffsetStore,
    /// KIP-848 consumer groups (a group ID is classic or consumer, never both).
    pub consumer: super::consumer::ConsumerGroups,
    /// Held while deciding which kind a group ID is (see [`super::routing`]).
    pub(super) kinds: Mutex<()>,
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
    /// "classic" or "consumer" (ListGroups v5).
    pub group_type: &'static str,
}

impl GroupCoordinator {
    /// A coordinator over `offsets`.
    pub fn new(config: CoordinatorConfig, offsets: OffsetStore) -> Self {
        Self {
            consumer: super::consumer::ConsumerGroups::load(config.consumer.clone(), offsets.raw()),
            config,
            groups: Mutex::new(HashMap::new()),
            kinds: Mutex::new(()),
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
                    group_type: "classic",
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
                    group_type: "classic",
                },
            );
        }
        for id in self.consumer.ids() {
            if let Some(g) = self.consumer.get(&id) {
                let state = super::consumer::lock(&g).state();
                out.insert(
                    id.clone(),
                    ListedGroup {
                        id,
                        protocol_type: "consumer".to_string(),
                        state,
                        group_type: "consumer",
                    },
                );
            }
        }
        let mut all: Vec<ListedGroup> = out.into_values().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Writes consumer group record changes (waiting for the disk when acknowledgements
    /// do); whether they were written. A failure is
    /// logged: the group goes on in memory, the changes are written again with the next
    /// ones, and a restart brings back the last state that was written.
    pub(super) fn write(&self, changes: &super::consumer::Changes) -> bool {
        // Answers go out once the records are durable (with fjord.fsync.on.ack), as
        // Kafka answers once its records are committed.
        let written = self
            .offsets
            .write_raw(changes)
            .and_then(|ticket| ticket.map_or(Ok(()), |t| t.wait().map_err(Into::into)));
        match written {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "writing consumer group state failed");
                false
            }
        }
    }

    /// Drops classic group `id` from the map (it became a consumer group).
    pub(super) fn forget_classic(&self, id: &str) {
        self.map().remove(id);
    }

    /// Puts classic group `g` in the map (a consumer group downgraded to it).
    pub(super) fn adopt_classic(&self, g: Group) {
        self.map().insert(g.id.clone(), Arc::new(Mutex::new(g)));
    }

    /// Deletes an Empty group and its offsets: `Ok` or a Kafka error code.
    pub fn delete_group(&self, id: &str) -> Result<(), i16> {
        use super::group::code;
        const GROUP_ID_NOT_FOUND: i16 = 69;
        const NON_EMPTY_GROUP: i16 = 68;
        let _kinds = self.kinds();
        if let Some(g) = self.consumer.get(id) {
            if !super::consumer::lock(&g).members.is_empty() {
                return Err(NON_EMPTY_GROUP);
            }
            self.consumer.remove_if_empty(id, |c| self.write(c));
        } else if !self.exists(id) {
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
        self.tick_consumer_groups();
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
        drop(groups);
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
        // Decided before taking the map lock: the offsets mutex can be held by a snapshot.
        let idle: Vec<String> = idle
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| !self.offsets.has_group(id))
            .collect();
        let mut map = self.map();
        for id in idle {
            // Only the map holds the group (clones are taken under this lock): no request
            // is about to use it, so no join can land in a group nothing ticks any more.
            let drop_it = map.get(&id).is_some_and(|g| {
                Arc::strong_count(g) == 1 && {
                    let g = lock(g);
                    g.phase == Phase::Dead
                        || (g.phase == Phase::Empty && !g.has_pending() && !g.has_members())
                }
            });
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
            // A KIP-848 group with members is active too: its offsets stay.
            let active = self
                .group(&id)
                .is_some_and(|g| lock(&g).phase != Phase::Empty)
                || self
                    .consumer
                    .get(&id)
                    .is_some_and(|g| !super::consumer::lock(&g).members.is_empty());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::offset_records::Committed;
    use crate::groups::GroupLimits;

    fn coordinator(dir: &std::path::Path, retention: Duration) -> GroupCoordinator {
        let flusher = fjord_storage::Flusher::new("test").expect("flusher");
        let offsets = OffsetStore::open(dir, flusher, false).expect("offsets");
        GroupCoordinator::new(
            CoordinatorConfig {
                limits: GroupLimits {
                    min_session: Duration::from_millis(1),
                    max_session: Duration::from_secs(60),
                    initial_delay: Duration::ZERO,
                    max_size: 10,
                },
                offsets_retention: retention,
                offsets_retention_check: Duration::ZERO,
                offset_metadata_max_bytes: 4096,
                consumer: crate::groups::consumer::ConsumerGroupConfig::default(),
            },
            offsets,
        )
    }

    fn commit(c: &GroupCoordinator, group: &str, commit_ms: i64) {
        let value = Committed {
            offset: 1,
            leader_epoch: -1,
            metadata: None,
            commit_ms,
        };
        c.offsets
            .write(group, &[(("t".to_string(), 0), Some(value))])
            .expect("commit");
    }

    #[test]
    fn offsets_of_groups_without_members_expire_after_the_retention() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = coordinator(dir.path(), Duration::from_secs(3600));
        commit(&c, "old", now_ms() - 2 * 3_600_000);
        commit(&c, "recent", now_ms());
        // A group with a live member keeps its offsets however old they are.
        commit(&c, "active", now_ms() - 2 * 3_600_000);
        let active = c.group_or_create("active");
        let join = crate::groups::group::JoinParams {
            member_id: String::new(),
            instance_id: None,
            client_id: "c".into(),
            client_host: String::new(),
            session_timeout: Duration::from_secs(30),
            rebalance_timeout: Duration::from_secs(30),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), bytes::Bytes::new())],
            version: 3,
        };
        let _joined = lock(&active).join(join, &c.config.limits, Instant::now());
        c.tick();
        assert!(c.offsets.group("old").is_empty(), "expired");
        assert!(!c.offsets.group("recent").is_empty());
        assert!(!c.offsets.group("active").is_empty());
        let listed: Vec<String> = c.list().into_iter().map(|g| g.id).collect();
        assert_eq!(listed, vec!["active".to_string(), "recent".to_string()]);
    }

    #[test]
    fn only_empty_groups_can_be_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = coordinator(dir.path(), Duration::from_secs(3600));
        assert_eq!(c.delete_group("nothing"), Err(69));
        commit(&c, "stored", now_ms());
        assert_eq!(c.delete_group("stored"), Ok(()));
        assert!(c.offsets.group("stored").is_empty());
        assert!(!c.exists("stored"));
    }
}
