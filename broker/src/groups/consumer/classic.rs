//! Classic-protocol members inside a consumer group: KIP-848's online migration. A
//! classic group of consumers becomes a consumer group when a member on the new
//! protocol joins, and its classic members carry on in it through JoinGroup, SyncGroup,
//! Heartbeat and LeaveGroup, as in Kafka's GroupMetadataManager:
//!
//! - a JoinGroup is one reconciliation step: the member's subscription (and what it says
//!   it owns) comes from its embedded consumer protocol, the answer's generation is its
//!   member epoch, and SyncGroup hands it its assignment (the broker assigned; the
//!   member is never the leader);
//! - a Heartbeat answers REBALANCE_IN_PROGRESS when the member must rejoin: the group
//!   epoch moved past it, it has partitions to revoke, or partitions it waits for were
//!   released;
//! - a member that does not rejoin or sync within its rebalance timeout, or whose
//!   session ends, is removed.

use bytes::{Buf, Bytes, BytesMut};
use fjord_protocol::kafka_protocol::messages::consumer_protocol_assignment::{
    ConsumerProtocolAssignment, TopicPartition as AssignedTopic,
};
use fjord_protocol::kafka_protocol::messages::{ConsumerProtocolSubscription, TopicName};
use fjord_protocol::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::assignor::Assignment;
use super::group::{ConsumerGroup, ConsumerGroupConfig, Member, Topics};
use super::reconcile::{Current, MemberState};
use super::records::ClassicMetadata;
use crate::groups::group::{code, MovedMember};

/// A member on the classic protocol: how it joined, and its classic deadlines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicMember {
    /// Its session timeout and protocols (persisted with the member).
    pub meta: ClassicMetadata,
    /// Told to rejoin: it must, by then.
    pub(super) join_deadline_ms: Option<u64>,
    /// Joined: it must sync, by then.
    pub(super) sync_deadline_ms: Option<u64>,
}

impl ClassicMember {
    /// A member that joined with `meta`, no deadline pending.
    pub fn new(meta: ClassicMetadata) -> Self {
        Self {
            meta,
            join_deadline_ms: None,
            sync_deadline_ms: None,
        }
    }

    fn session_ms(&self) -> u64 {
        u64::try_from(self.meta.session_timeout_ms).unwrap_or(0)
    }

    /// Whether a classic deadline passed.
    pub(super) fn overdue(&self, now_ms: u64) -> bool {
        [self.join_deadline_ms, self.sync_deadline_ms]
            .into_iter()
            .flatten()
            .any(|d| d < now_ms)
    }
}

/// A JoinGroup to a consumer group.
#[derive(Debug, Clone)]
pub struct ClassicJoin {
    /// Member ID ("" on a first join).
    pub member_id: String,
    /// Static instance ID.
    pub instance_id: Option<String>,
    /// Client ID.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Session timeout (already checked against the broker's bounds).
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Protocol type: must be "consumer".
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup version (a dynamic member gets MEMBER_ID_REQUIRED from v4).
    pub version: i16,
}

/// A JoinGroup answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicJoined {
    /// The member's ID.
    pub member_id: String,
    /// Its member epoch, the classic generation.
    pub generation: i32,
    /// The protocol it is on: its first.
    pub protocol: String,
}

/// A refused classic request: (error code, member ID for the answer).
pub type ClassicRefusal = (i16, String);

/// A consumer protocol subscription, by topic name.
struct Subscription {
    topics: Vec<String>,
    owned: Vec<(String, Vec<i32>)>,
    rack: Option<String>,
}

/// The embedded protocol's version: the first two bytes.
fn version_of(metadata: &[u8]) -> i16 {
    match metadata {
        [a, b, ..] => i16::from_be_bytes([*a, *b]).clamp(0, 3),
        _ => 0,
    }
}

fn decode_subscription(metadata: &Bytes) -> Option<Subscription> {
    let version = version_of(metadata);
    let mut buf = metadata.clone();
    if buf.remaining() < 2 {
        return None;
    }
    buf.advance(2);
    let sub = ConsumerProtocolSubscription::decode(&mut buf, version).ok()?;
    Some(Subscription {
        topics: sub.topics.iter().map(|t| t.to_string()).collect(),
        owned: sub
            .owned_partitions
            .iter()
            .map(|t| (t.topic.0.to_string(), t.partitions.clone()))
            .collect(),
        rack: sub.rack_id.map(|r| r.to_string()),
    })
}

fn decode_assignment(bytes: &Bytes) -> Option<Vec<(String, Vec<i32>)>> {
    let version = version_of(bytes);
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        return None;
    }
    buf.advance(2);
    let a = ConsumerProtocolAssignment::decode(&mut buf, version).ok()?;
    Some(
        a.assigned_partitions
            .iter()
            .map(|t| (t.topic.0.to_string(), t.partitions.clone()))
            .collect(),
    )
}

/// Partitions by name as an assignment by topic ID (unknown topics dropped).
fn by_id(parts: &[(String, Vec<i32>)], topics: &Topics) -> Assignment {
    let mut out = Assignment::new();
    for (name, ps) in parts {
        if let Some((id, _)) = topics.get(name) {
            out.entry(*id).or_default().extend(ps.iter().copied());
        }
    }
    out
}

impl ConsumerGroup {
    /// Whether every member (and there is one) is on the classic protocol: the group
    /// can go back to being a classic group.
    pub fn all_classic(&self) -> bool {
        !self.members.is_empty() && self.members.values().all(|m| m.classic.is_some())
    }

    /// `assigned` in the consumer protocol's encoding at `version`, topics by name.
    fn encode_assignment(&self, assigned: &Assignment, version: i16) -> Bytes {
        let mut a = ConsumerProtocolAssignment::default();
        for (topic, parts) in assigned {
            // A topic deleted meanwhile has no name: left out, as Kafka does.
            let Some(name) = self.topic_name(*topic) else {
                continue;
            };
            let mut t = AssignedTopic::default();
            t.topic = TopicName(StrBytes::from_string(name));
            t.partitions = parts.iter().copied().collect();
            a.assigned_partitions.push(t);
        }
        let mut out = BytesMut::new();
        out.extend_from_slice(&version.to_be_bytes());
        // Every field is valid at versions 0-3: encoding cannot fail.
        if a.encode(&mut out, version).is_err() {
            out.truncate(2);
        }
        out.freeze()
    }

    /// A consumer group made of a classic group's members (Kafka's online upgrade):
    /// epochs at its generation, each member Stable with what its assignment gave it,
    /// which is also its target. `None` if a member's embedded protocol does not decode.
    pub fn from_classic(
        id: &str,
        generation: i32,
        members: Vec<MovedMember>,
        topics: &Topics,
        now_ms: u64,
    ) -> Option<Self> {
        let mut g = ConsumerGroup::new(id);
        g.group_epoch = generation;
        g.assignment_epoch = generation;
        for m in members {
            let sub = decode_subscription(&m.protocols.first()?.1)?;
            let assigned = if m.assignment.is_empty() {
                Assignment::new()
            } else {
                by_id(&decode_assignment(&m.assignment)?, topics)
            };
            let classic = ClassicMember::new(ClassicMetadata {
                session_timeout_ms: m.session_timeout_ms,
                protocols: m.protocols,
            });
            let mut names = sub.topics;
            names.sort();
            names.dedup();
            let member = Member {
                id: m.id.clone(),
                instance_id: m.instance_id,
                rack_id: sub.rack,
                client_id: m.client_id,
                client_host: m.client_host,
                topic_names: names,
                topic_regex: None,
                server_assignor: None,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                current: Current {
                    epoch: generation,
                    state: MemberState::Stable,
                    assigned: assigned.clone(),
                    pending_revocation: Assignment::new(),
                },
                previous_epoch: generation,
                left_temporarily: false,
                session_deadline_ms: now_ms.saturating_add(classic.session_ms()),
                revocation_deadline_ms: None,
                classic: Some(classic),
            };
            g.targets.insert(m.id, assigned);
            g.insert_restored(member);
        }
        g.note_subscribed(topics);
        Some(g)
    }

    /// Hands every member to a classic group (Kafka's online downgrade): each with
    /// what it holds now, encoded as its protocol expects. Returns the generation (the
    /// highest member epoch) and the members; the group is dead afterwards.
    pub fn take_for_downgrade(&mut self) -> (i32, Vec<MovedMember>) {
        let generation = self
            .members
            .values()
            .map(|m| m.current.epoch)
            .max()
            .unwrap_or(0);
        let moved = self
            .members
            .values()
            .filter_map(|m| {
                let classic = m.classic.as_ref()?;
                let version = classic
                    .meta
                    .protocols
                    .first()
                    .map_or(0, |(_, meta)| version_of(meta));
                Some(MovedMember {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: classic.meta.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols: classic.meta.protocols.clone(),
                    assignment: self.encode_assignment(&m.current.assigned, version),
                })
            })
            .collect();
        self.dead = true;
        (generation, moved)
    }

    /// Handles a JoinGroup from a classic member: one reconciliation step.
    pub fn classic_join(
        &mut self,
        j: ClassicJoin,
        topics: &Topics,
        config: &ConsumerGroupConfig,
        now_ms: u64,
    ) -> Result<ClassicJoined, ClassicRefusal> {
        self.expire(now_ms);
        let refuse = |code: i16| Err((code, j.member_id.clone()));
        let Some((protocol, metadata)) = j.protocols.first().cloned() else {
            return refuse(code::INCONSISTENT_GROUP_PROTOCOL);
        };
        if j.protocol_type != "consumer" {
            return refuse(code::INCONSISTENT_GROUP_PROTOCOL);
        }
        let Some(sub) = decode_subscription(&metadata) else {
            return refuse(code::INCONSISTENT_GROUP_PROTOCOL);
        };
        if !self.supports_protocols(&j.member_id, &j.protocols) {
            return refuse(code::INCONSISTENT_GROUP_PROTOCOL);
        }
        let unknown = j.member_id.is_empty();
        let new_id = if unknown {
            uuid::Uuid::new_v4().to_string()
        } else {
            j.member_id.clone()
        };
        if unknown && j.instance_id.is_none() && j.version >= 4 {
            return Err((code::MEMBER_ID_REQUIRED, new_id));
        }
        let mut replaced = false;
        let id = match &j.instance_id {
            Some(instance) => match self.static_holder(instance) {
                None if unknown => new_id,
                // A member ID this instance never had (Kafka's answer).
                None => return refuse(code::UNKNOWN_MEMBER_ID),
                // A static member restarting with an empty member ID takes over the
                // instance, whichever protocol the old one spoke.
                Some(old) if unknown => {
                    replaced = true;
                    self.replace_static(&old, &new_id)
                }
                Some(old) if old == new_id => old,
                Some(_) => return refuse(code::FENCED_INSTANCE_ID),
            },
            None => new_id,
        };
        let joined = match self.members.get(&id) {
            Some(m) if m.classic.is_none() && !replaced => {
                return refuse(code::INCONSISTENT_GROUP_PROTOCOL)
            }
            Some(_) => false,
            None if self.members.len() >= config.max_size => {
                return refuse(code::GROUP_MAX_SIZE_REACHED)
            }
            None => {
                self.insert_classic_member(&id, &j);
                true
            }
        };
        let changed = self.update_classic_member(&id, &j, sub.topics, sub.rack);
        self.refresh_target(topics, config, joined || changed);
        let owned = by_id(&sub.owned, topics);
        self.reconcile(&id, Some(&owned), now_ms);
        let member = self.members.get_mut(&id).expect("member joined");
        member.left_temporarily = false;
        if let Some(c) = member.classic.as_mut() {
            member.session_deadline_ms = now_ms.saturating_add(c.session_ms());
            c.join_deadline_ms = None;
            c.sync_deadline_ms =
                Some(now_ms.saturating_add(u64::try_from(j.rebalance_timeout_ms).unwrap_or(0)));
        }
        Ok(ClassicJoined {
            member_id: id,
            generation: member.current.epoch,
            protocol,
        })
    }

    /// Whether a member with `protocols` can join: one of them is supported by every
    /// other classic member (Kafka's check), so the group can always go back to being a
    /// classic group with a protocol all its members share.
    fn supports_protocols(&self, member_id: &str, protocols: &[(String, Bytes)]) -> bool {
        let others: Vec<&ClassicMember> = self
            .members
            .values()
            .filter(|m| m.id != member_id)
            .filter_map(|m| m.classic.as_ref())
            .collect();
        protocols.iter().any(|(name, _)| {
            others
                .iter()
                .all(|c| c.meta.protocols.iter().any(|(n, _)| n == name))
        })
    }

    fn static_holder(&self, instance: &str) -> Option<String> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance))
            .map(|m| m.id.clone())
    }

    fn insert_classic_member(&mut self, id: &str, j: &ClassicJoin) {
        let member = Member {
            id: id.to_string(),
            instance_id: j.instance_id.clone(),
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            topic_names: Vec::new(),
            topic_regex: None,
            server_assignor: None,
            rebalance_timeout_ms: j.rebalance_timeout_ms,
            current: Current {
                epoch: 0,
                state: MemberState::Stable,
                assigned: Assignment::new(),
                pending_revocation: Assignment::new(),
            },
            previous_epoch: 0,
            left_temporarily: false,
            session_deadline_ms: 0,
            revocation_deadline_ms: None,
            classic: None,
        };
        self.members.insert(id.to_string(), member);
    }

    /// Applies a JoinGroup to the member; whether its subscription changed.
    fn update_classic_member(
        &mut self,
        id: &str,
        j: &ClassicJoin,
        mut topics: Vec<String>,
        rack: Option<String>,
    ) -> bool {
        let Some(m) = self.members.get_mut(id) else {
            return false;
        };
        topics.sort();
        topics.dedup();
        let changed = topics != m.topic_names || m.topic_regex.is_some();
        m.topic_names = topics;
        m.topic_regex = None;
        m.server_assignor = None;
        m.rack_id = rack;
        m.rebalance_timeout_ms = j.rebalance_timeout_ms;
        m.instance_id = j.instance_id.clone();
        m.client_id = j.client_id.clone();
        m.client_host = j.client_host.clone();
        let meta = ClassicMetadata {
            session_timeout_ms: j.session_timeout_ms,
            protocols: j.protocols.clone(),
        };
        match m.classic.as_mut() {
            Some(c) => c.meta = meta,
            None => m.classic = Some(ClassicMember::new(meta)),
        }
        changed
    }

    /// The classic member a request names (Kafka's checks: an instance must be held by
    /// this member ID, except for an admin's LeaveGroup by instance alone; the member
    /// must be on the classic protocol).
    fn classic_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        by_instance_alone: bool,
    ) -> Result<String, i16> {
        let id = match instance_id {
            Some(instance) => {
                let holder = self
                    .static_holder(instance)
                    .ok_or(code::UNKNOWN_MEMBER_ID)?;
                let admin = by_instance_alone && member_id.is_empty();
                if !admin && holder != member_id {
                    return Err(code::FENCED_INSTANCE_ID);
                }
                holder
            }
            None => member_id.to_string(),
        };
        match self.members.get(&id) {
            Some(m) if m.classic.is_some() => Ok(id),
            _ => Err(code::UNKNOWN_MEMBER_ID),
        }
    }

    /// Whether the member waits for partitions another member still holds.
    fn waits_on_others(&self, id: &str) -> bool {
        let (Some(m), Some(target)) = (self.members.get(id), self.targets.get(id)) else {
            return false;
        };
        target.iter().any(|(t, parts)| {
            parts.iter().any(|p| {
                !m.current.assigned.get(t).is_some_and(|a| a.contains(p))
                    && self.owner(*t, *p).is_some_and(|o| o != id)
            })
        })
    }

    /// Whether the member must rejoin to move on (and if so, its join deadline starts).
    fn must_rejoin(&mut self, id: &str, now_ms: u64) -> bool {
        let Some(m) = self.members.get(id) else {
            return false;
        };
        let rejoin = m.current.epoch < self.group_epoch
            || m.current.state == MemberState::UnrevokedPartitions
            || (m.current.state == MemberState::UnreleasedPartitions && !self.waits_on_others(id));
        if rejoin {
            if let Some(m) = self.members.get_mut(id) {
                let timeout = u64::try_from(m.rebalance_timeout_ms).unwrap_or(0);
                if let Some(c) = m.classic.as_mut() {
                    c.join_deadline_ms
                        .get_or_insert(now_ms.saturating_add(timeout));
                }
            }
        }
        rejoin
    }

    /// Handles a SyncGroup from a classic member: its assignment.
    #[allow(clippy::too_many_arguments)]
    pub fn classic_sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol: Option<&str>,
        now_ms: u64,
    ) -> Result<Bytes, i16> {
        self.expire(now_ms);
        let id = self.classic_member(member_id, instance_id, false)?;
        let m = &self.members[&id];
        if generation != m.current.epoch {
            return Err(code::ILLEGAL_GENERATION);
        }
        let first = m
            .classic
            .as_ref()
            .and_then(|c| c.meta.protocols.first())
            .cloned()
            .unwrap_or_default();
        if protocol_type.is_some_and(|t| t != "consumer") || protocol.is_some_and(|p| p != first.0)
        {
            return Err(code::INCONSISTENT_GROUP_PROTOCOL);
        }
        // A member still revoking has rejoined already: it syncs, revokes, then rejoins.
        if self.group_epoch > m.current.epoch
            && m.current.state != MemberState::UnrevokedPartitions
            && self.must_rejoin(&id, now_ms)
        {
            return Err(code::REBALANCE_IN_PROGRESS);
        }
        let member = self.members.get_mut(&id).expect("member");
        let assigned = member.current.assigned.clone();
        if let Some(c) = member.classic.as_mut() {
            c.sync_deadline_ms = None;
            member.session_deadline_ms = now_ms.saturating_add(c.session_ms());
        }
        Ok(self.encode_assignment(&assigned, version_of(&first.1)))
    }

    /// Handles a Heartbeat from a classic member: 0, or REBALANCE_IN_PROGRESS when it
    /// must rejoin to move on.
    pub fn classic_heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: u64,
    ) -> i16 {
        self.expire(now_ms);
        let id = match self.classic_member(member_id, instance_id, false) {
            Ok(id) => id,
            Err(code) => return code,
        };
        let member = self.members.get_mut(&id).expect("member");
        if generation != member.current.epoch {
            return code::ILLEGAL_GENERATION;
        }
        if let Some(c) = member.classic.as_ref() {
            member.session_deadline_ms = now_ms.saturating_add(c.session_ms());
        }
        if self.must_rejoin(&id, now_ms) {
            code::REBALANCE_IN_PROGRESS
        } else {
            code::NONE
        }
    }

    /// Handles one member of a LeaveGroup from a classic member.
    pub fn classic_leave(&mut self, member_id: &str, instance_id: Option<&str>) -> i16 {
        match self.classic_member(member_id, instance_id, true) {
            Ok(id) => {
                self.remove(&id);
                code::NONE
            }
            Err(code) => code,
        }
    }
}

#[cfg(test)]
#[path = "classic_tests.rs"]
mod tests;
