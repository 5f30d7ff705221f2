//! Which kind a group ID is, and the conversions between the kinds (KIP-848's online
//! migration, as Kafka's GroupMetadataManager does it):
//!
//! - a ConsumerGroupHeartbeat joining a classic group of consumers converts it to a
//!   consumer group (policy `upgrade` or `bidirectional`); its members carry on in it on
//!   the classic protocol;
//! - a consumer group whose members are all on the classic protocol again (the last
//!   consumer-protocol member left or was fenced) goes back to a classic group (policy
//!   `downgrade` or `bidirectional`), which rebalances at once;
//! - empty groups change kind whatever the policy.
//!
//! Every decision of kind is made under one lock (`kinds`), taken before any group's
//! lock, so a JoinGroup and a ConsumerGroupHeartbeat racing on a new ID make one group,
//! not two. A group converted away is marked dead; a request that locked it meanwhile
//! looks the ID up again.

use std::sync::{MutexGuard, PoisonError};
use std::time::Instant;

use fjord_protocol::kafka_protocol::ResponseError as E;

use super::consumer::{self, ConsumerGroup, SharedConsumerGroup};
use super::coordinator::{lock, GroupCoordinator, SharedGroup};
use super::group::{Group, Phase};

/// `group.consumer.migration.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationPolicy {
    /// Both ways (Kafka's default).
    Bidirectional,
    /// Classic to consumer only.
    Upgrade,
    /// Consumer to classic only.
    Downgrade,
    /// Only empty groups change kind.
    Disabled,
}

impl MigrationPolicy {
    /// The policy a config value names (the config table checks the choices).
    pub fn parse(value: &str) -> Self {
        match value {
            "upgrade" => Self::Upgrade,
            "downgrade" => Self::Downgrade,
            "disabled" => Self::Disabled,
            _ => Self::Bidirectional,
        }
    }

    fn upgrades(self) -> bool {
        matches!(self, Self::Bidirectional | Self::Upgrade)
    }

    fn downgrades(self) -> bool {
        matches!(self, Self::Bidirectional | Self::Downgrade)
    }
}

/// The group an ID names, of either kind.
#[derive(Debug, Clone)]
pub enum Routed {
    /// A classic group.
    Classic(SharedGroup),
    /// A consumer group (its classic members use the classic APIs).
    Consumer(SharedConsumerGroup),
}

impl GroupCoordinator {
    pub(super) fn kinds(&self) -> MutexGuard<'_, ()> {
        self.kinds.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where a JoinGroup goes: a consumer group with members takes it (a classic member
    /// of a mixed group); an empty one gives way to a classic group.
    pub fn route_join(&self, id: &str) -> Routed {
        let _kinds = self.kinds();
        if let Some(g) = self.consumer.get(id) {
            if !consumer::lock(&g).members.is_empty() {
                return Routed::Consumer(g);
            }
            self.consumer.remove_if_empty(id, |c| self.write(c));
        }
        Routed::Classic(self.group_or_create(id))
    }

    /// Where a SyncGroup, Heartbeat or LeaveGroup goes: the group, of either kind.
    pub fn route_existing(&self, id: &str) -> Option<Routed> {
        let _kinds = self.kinds();
        match self.consumer.get(id) {
            Some(g) => Some(Routed::Consumer(g)),
            None => self.group(id).map(Routed::Classic),
        }
    }

    /// Where a ConsumerGroupHeartbeat goes: a consumer group (created by a join), or,
    /// for a join to a classic group of consumers the policy lets upgrade, the answer
    /// of the upgraded group.
    fn route_consumer_heartbeat(
        &self,
        id: &str,
        hb: &consumer::Heartbeat,
        topics: &consumer::Topics,
        now_ms: u64,
    ) -> Result<HeartbeatTarget, consumer::Refusal> {
        let _kinds = self.kinds();
        if let Some(g) = self.consumer.get(id) {
            return Ok(HeartbeatTarget::Group(g));
        }
        if let Some(classic) = self.group(id) {
            let mut c = lock(&classic);
            let empty = !c.has_members() && matches!(c.phase, Phase::Empty | Phase::Dead);
            if hb.member_epoch != 0 {
                return Err(not_consumer(id));
            } else if empty {
                c.kill();
                drop(c);
                self.forget_classic(id);
            } else {
                return self
                    .upgrade(id, &mut c, hb, topics, now_ms)
                    .map(HeartbeatTarget::Upgraded);
            }
        }
        self.consumer
            .get_or_join(id, hb.member_epoch)
            .map(HeartbeatTarget::Group)
    }

    /// Converts classic group `c` to a consumer group with the joining heartbeat `hb`,
    /// if the policy and its members allow (Kafka's checks: embedded consumer protocol,
    /// at most the consumer group size). As in Kafka, the conversion and the heartbeat
    /// are one step: a refused heartbeat leaves the classic group as it was.
    fn upgrade(
        &self,
        id: &str,
        c: &mut Group,
        hb: &consumer::Heartbeat,
        topics: &consumer::Topics,
        now_ms: u64,
    ) -> Result<consumer::Answer, consumer::Refusal> {
        let config = &self.consumer.config;
        if !config.migration.upgrades()
            || !c.uses_consumer_protocol()
            || c.member_count() > config.max_size
        {
            tracing::info!(
                group = id,
                "a classic group with members cannot become a consumer group"
            );
            return Err(not_consumer(id));
        }
        let (generation, members) = c.members_to_move();
        let Some(mut group) = ConsumerGroup::from_classic(id, generation, members, topics, now_ms)
        else {
            tracing::warn!(
                group = id,
                "not upgraded: a member's embedded consumer protocol does not decode"
            );
            return Err((
                E::GroupIdNotFound,
                format!("Cannot upgrade the classic group {id}: malformed consumer protocol."),
            ));
        };
        let answer = group.heartbeat(hb.clone(), topics, config, now_ms)?;
        c.retire();
        self.forget_classic(id);
        self.consumer
            .persist(&group, false, |changes| self.write(changes));
        tracing::info!(
            group = id,
            generation,
            members = group.members.len(),
            "classic group upgraded to a consumer group"
        );
        self.consumer.insert(group);
        Ok(answer)
    }

    /// A KIP-848 heartbeat to group `id`, its changes made durable as Kafka's
    /// `__consumer_offsets` records. A leave that leaves only classic members downgrades
    /// the group.
    pub fn consumer_heartbeat(
        &self,
        id: &str,
        hb: consumer::Heartbeat,
        topics: &consumer::Topics,
        now_ms: u64,
    ) -> Result<consumer::Answer, consumer::Refusal> {
        let leaving = hb.member_epoch == -1;
        for _ in 0..3 {
            let group = match self.route_consumer_heartbeat(id, &hb, topics, now_ms)? {
                HeartbeatTarget::Group(g) => g,
                HeartbeatTarget::Upgraded(answer) => return Ok(answer),
            };
            let mut g = consumer::lock(&group);
            if g.dead {
                continue;
            }
            let answer = g.heartbeat(hb.clone(), topics, &self.consumer.config, now_ms);
            // Written under the group's lock, so the records follow the state in order.
            self.consumer
                .persist(&g, false, |changes| self.write(changes));
            drop(g);
            if leaving {
                self.downgrade_if_classic(id);
            }
            return answer;
        }
        Err((
            E::CoordinatorNotAvailable,
            format!("Group {id} is changing kind."),
        ))
    }

    /// Converts consumer group `id` back to a classic group if every member is on the
    /// classic protocol and the policy allows.
    pub fn downgrade_if_classic(&self, id: &str) {
        let _kinds = self.kinds();
        let Some(shared) = self.consumer.get(id) else {
            return;
        };
        let mut g = consumer::lock(&shared);
        let config = &self.consumer.config;
        if g.dead
            || !g.all_classic()
            || !config.migration.downgrades()
            || g.members.len() > self.config.limits.max_size
        {
            return;
        }
        let (generation, members) = g.take_for_downgrade();
        let n = members.len();
        let classic =
            Group::from_downgrade(id, generation, members, &self.config.limits, Instant::now());
        self.consumer.forget(id);
        self.consumer
            .persist(&g, true, |changes| self.write(changes));
        self.adopt_classic(classic);
        tracing::info!(
            group = id,
            generation,
            members = n,
            "consumer group downgraded to a classic group"
        );
    }

    /// Writes what changed in consumer group `g` (call under its lock).
    pub fn persist_consumer(&self, g: &ConsumerGroup) {
        self.consumer
            .persist(g, false, |changes| self.write(changes));
    }

    /// Runs the consumer groups' deadlines; groups left with only classic members go
    /// back to being classic groups.
    pub(super) fn tick_consumer_groups(&self) {
        self.consumer.expire(consumer::now_ms(), |c| self.write(c));
        for id in self.consumer.ids() {
            let classic_only = self
                .consumer
                .get(&id)
                .is_some_and(|g| consumer::lock(&g).all_classic());
            if classic_only {
                self.downgrade_if_classic(&id);
            }
        }
    }
}

/// Where a ConsumerGroupHeartbeat went.
enum HeartbeatTarget {
    /// To this consumer group (the heartbeat is still to run).
    Group(SharedConsumerGroup),
    /// It upgraded a classic group, and this is its answer.
    Upgraded(consumer::Answer),
}

fn not_consumer(id: &str) -> consumer::Refusal {
    (
        E::GroupIdNotFound,
        format!("Group {id} is not a consumer group."),
    )
}

#[cfg(test)]
#[path = "routing_tests.rs"]
mod tests;
