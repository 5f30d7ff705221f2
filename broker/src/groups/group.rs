//! One consumer group on the classic protocol: its members and the state machine Kafka's
//! group coordinator runs (Empty, PreparingRebalance, CompletingRebalance, Stable, Dead).
//!
//! Pure state: no I/O, no locks, no clocks of its own (callers pass `now`). JoinGroup and
//! SyncGroup answers that must wait for other members are delivered through oneshot
//! channels when the rebalance step completes, or by [`Group::tick`] at a deadline.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

mod migration;
pub use migration::MovedMember;

/// Kafka error codes used by the coordinator.
pub mod code {
    /// No error.
    pub const NONE: i16 = 0;
    /// The coordinator cannot serve this group (it was deleted meanwhile).
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    /// The generation in the request is not the group's.
    pub const ILLEGAL_GENERATION: i16 = 22;
    /// The member's protocols do not match the group's.
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    /// The group id is empty.
    pub const INVALID_GROUP_ID: i16 = 24;
    /// The member id is not in the group.
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    /// The session timeout is outside the broker's bounds.
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    /// The group is rebalancing: rejoin.
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    /// This broker no longer coordinates the group (it is stopping).
    pub const NOT_COORDINATOR: i16 = 16;
    /// Another member took this static member's instance id.
    pub const FENCED_INSTANCE_ID: i16 = 82;
    /// First join: rejoin with the member id in the response.
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    /// The group has `group.max.size` members.
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
}

/// The coordinator's limits, from the broker config.
#[derive(Debug, Clone)]
pub struct GroupLimits {
    /// `group.min.session.timeout.ms`.
    pub min_session: Duration,
    /// `group.max.session.timeout.ms`.
    pub max_session: Duration,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_delay: Duration,
    /// `group.max.size`.
    pub max_size: usize,
}

/// The classic protocol's group states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No members (offsets may be stored).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Assigned and running.
    Stable,
    /// Deleted.
    Dead,
}

impl Phase {
    /// The name Kafka's DescribeGroups and ListGroups use.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Empty => "Empty",
            Phase::PreparingRebalance => "PreparingRebalance",
            Phase::CompletingRebalance => "CompletingRebalance",
            Phase::Stable => "Stable",
            Phase::Dead => "Dead",
        }
    }
}

/// A JoinGroup request, as the group needs it.
#[derive(Debug, Clone)]
pub struct JoinParams {
    /// Member id ("" on the first join).
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// The client's id, for DescribeGroups and new member ids.
    pub client_id: String,
    /// The client's address, for DescribeGroups.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout: Duration,
    /// Rebalance timeout (v0: the session timeout).
    pub rebalance_timeout: Duration,
    /// Usually "consumer".
    pub protocol_type: String,
    /// (assignor name, subscription metadata), in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup version (MEMBER_ID_REQUIRED from v4, leader fields from v9).
    pub version: i16,
}

/// A member as the leader sees it in the JoinGroup response.
#[derive(Debug, Clone)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Its metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// A JoinGroup answer.
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    /// Error code.
    pub error: i16,
    /// The new generation.
    pub generation: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen assignor.
    pub protocol: Option<String>,
    /// Leader's member id.
    pub leader: String,
    /// The member's id.
    pub member_id: String,
    /// Every member, for the leader only.
    pub members: Vec<JoinedMember>,
    /// The leader must not reassign (a static leader rejoining, v9+).
    pub skip_assignment: bool,
}

impl JoinResult {
    fn error(error: i16, member_id: &str) -> Self {
        Self {
            error,
            generation: -1,
            member_id: member_id.to_string(),
            ..Self::default()
        }
    }
}

/// A SyncGroup answer.
#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    /// Error code.
    pub error: i16,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen assignor.
    pub protocol: Option<String>,
    /// This member's assignment.
    pub assignment: Bytes,
}

impl SyncResult {
    fn error(error: i16) -> Self {
        Self {
            error,
            ..Self::default()
        }
    }
}

/// An answer now, or one that comes when the rebalance step completes.
#[derive(Debug)]
pub enum Reply<T> {
    /// Ready.
    Now(T),
    /// Await it (a dropped sender means the group went away: answer with an error).
    Wait(oneshot::Receiver<T>),
}

#[derive(Debug)]
struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
    /// Sent SyncGroup in this generation.
    synced: bool,
    session_deadline: Instant,
    /// Join order, for choosing a leader.
    seq: u64,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberSummary {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Metadata for the chosen protocol (Stable groups only).
    pub metadata: Bytes,
    /// Assignment (Stable groups only).
    pub assignment: Bytes,
}

/// Waiting for members to join a group that was empty: `group.initial.rebalance.delay.ms`,
/// extended while new members keep arriving, up to the rebalance timeout.
#[derive(Debug)]
struct InitialDelay {
    delay: Duration,
    remaining: Duration,
    new_member_joined: bool,
}

/// One group.
#[derive(Debug)]
pub struct Group {
    /// Group id.
    pub id: String,
    /// Current state.
    pub phase: Phase,
    /// Generation (bumped by each completed join).
    pub generation: i32,
    /// Members' protocol type.
    pub protocol_type: Option<String>,
    /// Chosen assignor.
    pub protocol: Option<String>,
    /// Leader's member id.
    pub leader: Option<String>,
    /// When the group last became Empty (ms since the epoch), for offset expiry.
    pub empty_since_ms: Option<i64>,
    members: BTreeMap<String, Member>,
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they join or time out.
    pending: HashMap<String, Instant>,
    join_deadline: Option<Instant>,
    initial: Option<InitialDelay>,
    sync_deadline: Option<Instant>,
    next_seq: u64,
}

fn new_member_id(prefix: &str) -> String {
    let prefix = if prefix.is_empty() { "member" } else { prefix };
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

impl Group {
    /// An empty group.
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_string(),
            phase: Phase::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            empty_since_ms: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending: HashMap::new(),
            join_deadline: None,
            initial: None,
            sync_deadline: None,
            next_seq: 0,
        }
    }

    /// Members, in join order.
    pub fn members(&self) -> Vec<MemberSummary> {
        let stable = self.phase == Phase::Stable;
        let protocol = self.protocol.clone().unwrap_or_default();
        let mut all: Vec<&Member> = self.members.values().collect();
        all.sort_by_key(|m| m.seq);
        all.into_iter()
            .map(|m| MemberSummary {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable {
                    m.metadata_for(&protocol)
                } else {
                    Bytes::new()
                },
                assignment: if stable {
                    m.assignment.clone()
                } else {
                    Bytes::new()
                },
            })
            .collect()
    }

    /// Whether the group has members.
    pub fn has_members(&self) -> bool {
        !self.members.is_empty()
    }

    /// Whether member ids handed out with MEMBER_ID_REQUIRED are still awaited.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whether `member_id` is a member.
    pub fn has_member(&self, member_id: &str) -> bool {
        self.members.contains_key(member_id)
    }

    /// Every member's metadata for the chosen protocol (for OffsetDelete's subscription
    /// check).
    pub fn member_metadata(&self) -> Vec<Bytes> {
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| m.metadata_for(&protocol))
            .collect()
    }

    /// Whether `instance_id` belongs to a different member than `member_id`.
    fn fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        instance_id
            .and_then(|i| self.static_members.get(i))
            .is_some_and(|owner| owner != member_id)
    }

    /// Protocols every member supports.
    fn candidate_protocols(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return Vec::new();
        };
        let rest: Vec<&Member> = members.collect();
        first
            .protocols
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| rest.iter().all(|m| m.protocols.iter().any(|(p, _)| p == n)))
            .collect()
    }

    /// Kafka's vote: each member picks its most preferred candidate; most votes wins.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: Vec<(String, usize)> = candidates.iter().map(|c| (c.clone(), 0)).collect();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                if let Some(v) = votes.iter_mut().find(|(c, _)| c == name) {
                    v.1 += 1;
                }
            }
        }
        // Ties go to the earlier candidate (the first member's preference order).
        let mut best: Option<(String, usize)> = None;
        for (name, n) in votes {
            if best.as_ref().is_none_or(|(_, b)| n > *b) {
                best = Some((name, n));
            }
        }
        best.map(|(name, _)| name)
    }

    /// Whether a member with these protocols can join.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        let candidates = self.candidate_protocols();
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(n, _)| candidates.contains(n))
    }

    fn current_join_result(&self, member_id: &str) -> JoinResult {
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if leader == member_id {
            let mut all: Vec<&Member> = self.members.values().collect();
            all.sort_by_key(|m| m.seq);
            all.into_iter()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata_for(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: code::NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader,
            member_id: member_id.to_string(),
            members,
            skip_assignment: false,
        }
    }

    /// Handles a JoinGroup.
    pub fn join(&mut self, p: JoinParams, limits: &GroupLimits, now: Instant) -> Reply<JoinResult> {
        let fail = |e: i16| Reply::Now(JoinResult::error(e, &p.member_id));
        if self.phase == Phase::Dead {
            return fail(code::COORDINATOR_NOT_AVAILABLE);
        }
        if p.session_timeout < limits.min_session || p.session_timeout > limits.max_session {
            return fail(code::INVALID_SESSION_TIMEOUT);
        }
        if !self.supports(&p.protocol_type, &p.protocols) {
            return fail(code::INCONSISTENT_GROUP_PROTOCOL);
        }
        if p.member_id.is_empty() {
            if let Some(instance) = p.instance_id.clone() {
                if let Some(old) = self.static_members.get(&instance).cloned() {
                    return self.replace_static_member(&old, p, limits, now);
                }
                return self.add_member(new_member_id(&instance), p, limits, now);
            }
            let id = new_member_id(&p.client_id);
            if p.version >= 4 {
                if self.members.len() + self.pending.len() >= limits.max_size {
                    return fail(code::GROUP_MAX_SIZE_REACHED);
                }
                self.pending.insert(id.clone(), now + p.session_timeout);
                return Reply::Now(JoinResult::error(code::MEMBER_ID_REQUIRED, &id));
            }
            return self.add_member(id, p, limits, now);
        }
        if self.pending.remove(&p.member_id).is_some() {
            let id = p.member_id.clone();
            return self.add_member(id, p, limits, now);
        }
        // Fencing first, as Kafka: a replaced static instance must learn it is a zombie
        // (and stop), not that it is unknown (and rejoin, displacing its successor).
        if self.fenced(p.instance_id.as_deref(), &p.member_id) {
            return fail(code::FENCED_INSTANCE_ID);
        }
        if !self.members.contains_key(&p.member_id) {
            return fail(code::UNKNOWN_MEMBER_ID);
        }
        match self.phase {
            Phase::PreparingRebalance => self.await_join(p, now),
            Phase::CompletingRebalance => {
                let same = self
                    .members
                    .get(&p.member_id)
                    .is_some_and(|m| m.same_protocols(&p.protocols));
                if same {
                    // A retry of a join that already completed: the same answer again.
                    Reply::Now(self.current_join_result(&p.member_id))
                } else {
                    self.prepare_rebalance(limits, now);
                    self.await_join(p, now)
                }
            }
            Phase::Stable => {
                let is_leader = self.leader.as_deref() == Some(p.member_id.as_str());
                let same = self
                    .members
                    .get(&p.member_id)
                    .is_some_and(|m| m.same_protocols(&p.protocols));
                if is_leader || !same {
                    self.prepare_rebalance(limits, now);
                    self.await_join(p, now)
                } else {
                    Reply::Now(self.current_join_result(&p.member_id))
                }
            }
            Phase::Empty | Phase::Dead => fail(code::UNKNOWN_MEMBER_ID),
        }
    }

    /// Registers a known member's (re)join and completes the join if it was the last.
    fn await_join(&mut self, p: JoinParams, now: Instant) -> Reply<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(&p.member_id) {
            m.protocols = p.protocols;
            m.session_timeout = p.session_timeout;
            m.rebalance_timeout = p.rebalance_timeout;
            m.client_id = p.client_id;
            m.client_host = p.client_host;
            // A join overtaken by a newer one from the same member gets a retriable error.
            if let Some(old) = m.join_waiter.replace(tx) {
                let _ = old.send(JoinResult::error(code::REBALANCE_IN_PROGRESS, &m.id));
            }
        }
        self.maybe_complete_join(now);
        Reply::Wait(rx)
    }

    fn add_member(
        &mut self,
        id: String,
        p: JoinParams,
        limits: &GroupLimits,
        now: Instant,
    ) -> Reply<JoinResult> {
        if self.members.len() >= limits.max_size {
            return Reply::Now(JoinResult::error(code::GROUP_MAX_SIZE_REACHED, &id));
        }
        if self.members.is_empty() {
            self.protocol_type = Some(p.protocol_type.clone());
        }
        let (tx, rx) = oneshot::channel();
        if let Some(instance) = &p.instance_id {
            self.static_members.insert(instance.clone(), id.clone());
        }
        self.next_seq += 1;
        self.members.insert(
            id.clone(),
            Member {
                id,
                instance_id: p.instance_id,
                client_id: p.client_id,
                client_host: p.client_host,
                session_timeout: p.session_timeout,
                rebalance_timeout: p.rebalance_timeout,
                protocols: p.protocols,
                assignment: Bytes::new(),
                join_waiter: Some(tx),
                sync_waiter: None,
                synced: false,
                session_deadline: now + p.session_timeout,
                seq: self.next_seq,
            },
        );
        if self.phase == Phase::PreparingRebalance && self.generation == 0 {
            if let Some(initial) = &mut self.initial {
                initial.new_member_joined = true;
            }
        }
        if matches!(
            self.phase,
            Phase::Empty | Phase::Stable | Phase::CompletingRebalance
        ) {
            self.prepare_rebalance(limits, now);
        }
        self.maybe_complete_join(now);
        Reply::Wait(rx)
    }

    /// KIP-345: a static member rejoining with an empty member id takes over its old
    /// identity under a new member id. A Stable group whose chosen protocol would not
    /// change does not rebalance: the member gets the current generation and, on
    /// SyncGroup, its old assignment.
    fn replace_static_member(
        &mut self,
        old_id: &str,
        p: JoinParams,
        limits: &GroupLimits,
        now: Instant,
    ) -> Reply<JoinResult> {
        let Some(mut member) = self.members.remove(old_id) else {
            return Reply::Now(JoinResult::error(code::UNKNOWN_MEMBER_ID, ""));
        };
        if let Some(w) = member.join_waiter.take() {
            let _ = w.send(JoinResult::error(code::FENCED_INSTANCE_ID, old_id));
        }
        if let Some(w) = member.sync_waiter.take() {
            let _ = w.send(SyncResult::error(code::FENCED_INSTANCE_ID));
        }
        let instance = p.instance_id.clone().unwrap_or_default();
        let new_id = new_member_id(&instance);
        let old_leader = self.leader.clone().unwrap_or_default();
        let was_leader = self.leader.as_deref() == Some(old_id);
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        self.static_members.insert(instance, new_id.clone());
        member.id = new_id.clone();
        member.client_id = p.client_id.clone();
        member.client_host = p.client_host.clone();
        member.session_timeout = p.session_timeout;
        member.rebalance_timeout = p.rebalance_timeout;
        member.session_deadline = now + p.session_timeout;
        member.protocols = p.protocols.clone();
        self.members.insert(new_id.clone(), member);
        match self.phase {
            Phase::Stable if self.select_protocol() == self.protocol => {
                let mut result = self.current_join_result(&new_id);
                if p.version >= 9 {
                    // KIP-814: a rejoining static leader gets the members but must not
                    // reassign.
                    result.skip_assignment = was_leader;
                } else {
                    // Before v9 the answer names the old leader, so a rejoining leader
                    // does not run an assignment.
                    result.leader = old_leader;
                    result.members.clear();
                }
                Reply::Now(result)
            }
            phase => {
                if matches!(phase, Phase::Stable | Phase::CompletingRebalance) {
                    self.prepare_rebalance(limits, now);
                }
                let mut p = p;
                p.member_id = new_id;
                self.await_join(p, now)
            }
        }
    }

    fn max_rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }

    /// Starts a rebalance: every member must rejoin.
    fn prepare_rebalance(&mut self, limits: &GroupLimits, now: Instant) {
        if self.phase == Phase::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncResult::error(code::REBALANCE_IN_PROGRESS));
                }
            }
        }
        let was_empty = self.phase == Phase::Empty;
        self.phase = Phase::PreparingRebalance;
        self.sync_deadline = None;
        let timeout = self.max_rebalance_timeout();
        if was_empty && !limits.initial_delay.is_zero() {
            let delay = limits.initial_delay.min(timeout);
            self.initial = Some(InitialDelay {
                delay,
                remaining: timeout.saturating_sub(delay),
                new_member_joined: false,
            });
            self.join_deadline = Some(now + delay);
        } else {
            self.initial = None;
            self.join_deadline = Some(now + timeout);
        }
    }

    /// Completes the join once every member (and no pending one) is waiting in JoinGroup.
    fn maybe_complete_join(&mut self, now: Instant) {
        if self.phase != Phase::PreparingRebalance || self.initial.is_some() {
            return;
        }
        let all_joined =
            self.pending.is_empty() && self.members.values().all(|m| m.join_waiter.is_some());
        if all_joined {
            self.complete_join(now);
        }
    }

    /// Ends the join phase: members that did not rejoin are dropped, the generation is
    /// bumped, a protocol and a leader are chosen, and every waiting member is answered.
    fn complete_join(&mut self, now: Instant) {
        // Dynamic members that did not rejoin are gone; static ones keep their place
        // (KIP-345) until their session expires.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.initial = None;
        if self.members.is_empty() {
            self.join_deadline = None;
            self.generation += 1;
            self.become_empty();
            return;
        }
        if self.members.values().all(|m| m.join_waiter.is_none()) {
            // Only absent static members: wait another rebalance timeout for them (their
            // sessions expire meanwhile), as Kafka does.
            self.join_deadline = Some(now + self.max_rebalance_timeout());
            return;
        }
        self.join_deadline = None;
        self.generation += 1;
        self.protocol = self.select_protocol();
        let leader_joined = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .is_some_and(|m| m.join_waiter.is_some());
        if !leader_joined {
            self.leader = self
                .members
                .values()
                .filter(|m| m.join_waiter.is_some())
                .min_by_key(|m| m.seq)
                .map(|m| m.id.clone());
        }
        self.phase = Phase::CompletingRebalance;
        self.sync_deadline = Some(now + self.max_rebalance_timeout());
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.current_join_result(&id);
            if let Some(m) = self.members.get_mut(&id) {
                m.synced = false;
                // Absent static members keep their old deadline: it is what removes them.
                if let Some(w) = m.join_waiter.take() {
                    m.session_deadline = now + m.session_timeout;
                    let _ = w.send(result);
                }
            }
        }
    }

    fn become_empty(&mut self) {
        self.phase = Phase::Empty;
        self.protocol = None;
        self.protocol_type = None;
        self.leader = None;
        self.join_deadline = None;
        self.sync_deadline = None;
        self.initial = None;
        self.empty_since_ms = Some(super::offset_store::now_ms());
    }

    /// Drops a member, answering its waiting requests with UNKNOWN_MEMBER_ID.
    fn remove_member(&mut self, id: &str) {
        if let Some(mut m) = self.members.remove(id) {
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResult::error(code::UNKNOWN_MEMBER_ID, id));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResult::error(code::UNKNOWN_MEMBER_ID));
            }
            if let Some(instance) = &m.instance_id {
                if self.static_members.get(instance).is_some_and(|o| o == id) {
                    self.static_members.remove(instance);
                }
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    /// After members left or expired: rebalance (or become Empty) as their absence needs.
    fn after_departure(&mut self, limits: &GroupLimits, now: Instant) {
        match self.phase {
            Phase::Stable | Phase::CompletingRebalance => {
                self.prepare_rebalance(limits, now);
                // Nobody waits on an initial delay after a departure.
                self.initial = None;
                self.maybe_complete_join(now);
            }
            Phase::PreparingRebalance => self.maybe_complete_join(now),
            Phase::Empty | Phase::Dead => {}
        }
    }

    /// Handles a SyncGroup.
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Reply<SyncResult> {
        let fail = |e: i16| Reply::Now(SyncResult::error(e));
        if self.phase == Phase::Dead {
            return fail(code::COORDINATOR_NOT_AVAILABLE);
        }
        if self.fenced(instance_id, member_id) {
            return fail(code::FENCED_INSTANCE_ID);
        }
        if !self.members.contains_key(member_id) {
            return fail(code::UNKNOWN_MEMBER_ID);
        }
        if generation != self.generation {
            return fail(code::ILLEGAL_GENERATION);
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol.is_some_and(|n| Some(n) != self.protocol.as_deref())
        {
            return fail(code::INCONSISTENT_GROUP_PROTOCOL);
        }
        let (protocol_type, protocol) = (self.protocol_type.clone(), self.protocol.clone());
        match self.phase {
            Phase::PreparingRebalance => fail(code::REBALANCE_IN_PROGRESS),
            Phase::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.members.get_mut(member_id) {
                    m.synced = true;
                    m.session_deadline = now + m.session_timeout;
                    if let Some(old) = m.sync_waiter.replace(tx) {
                        let _ = old.send(SyncResult::error(code::REBALANCE_IN_PROGRESS));
                    }
                }
                if self.leader.as_deref() == Some(member_id) {
                    for m in self.members.values_mut() {
                        m.assignment = Bytes::new();
                    }
                    for (id, assignment) in assignments {
                        if let Some(m) = self.members.get_mut(&id) {
                            m.assignment = assignment;
                        }
                    }
                    self.phase = Phase::Stable;
                    self.sync_deadline = None;
                    for m in self.members.values_mut() {
                        if let Some(w) = m.sync_waiter.take() {
                            let _ = w.send(SyncResult {
                                error: code::NONE,
                                protocol_type: protocol_type.clone(),
                                protocol: protocol.clone(),
                                assignment: m.assignment.clone(),
                            });
                        }
                    }
                }
                Reply::Wait(rx)
            }
            Phase::Stable => {
                let m = self.members.get_mut(member_id);
                let assignment = m.map_or_else(Bytes::new, |m| {
                    m.session_deadline = now + m.session_timeout;
                    m.assignment.clone()
                });
                Reply::Now(SyncResult {
                    error: code::NONE,
                    protocol_type,
                    protocol,
                    assignment,
                })
            }
            Phase::Empty | Phase::Dead => fail(code::UNKNOWN_MEMBER_ID),
        }
    }

    /// Handles a Heartbeat.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> i16 {
        if self.phase == Phase::Dead {
            return code::COORDINATOR_NOT_AVAILABLE;
        }
        if self.fenced(instance_id, member_id) {
            return code::FENCED_INSTANCE_ID;
        }
        let Some(m) = self.members.get_mut(member_id) else {
            return code::UNKNOWN_MEMBER_ID;
        };
        if generation != self.generation {
            return code::ILLEGAL_GENERATION;
        }
        m.session_deadline = now + m.session_timeout;
        match self.phase {
            Phase::PreparingRebalance => code::REBALANCE_IN_PROGRESS,
            Phase::CompletingRebalance | Phase::Stable => code::NONE,
            Phase::Empty | Phase::Dead => code::UNKNOWN_MEMBER_ID,
        }
    }

    /// Handles one member of a LeaveGroup (by member id, or by instance id alone).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        limits: &GroupLimits,
        now: Instant,
    ) -> i16 {
        if self.phase == Phase::Dead {
            return code::COORDINATOR_NOT_AVAILABLE;
        }
        let id = if member_id.is_empty() {
            match instance_id.and_then(|i| self.static_members.get(i)) {
                Some(id) => id.clone(),
                None => return code::UNKNOWN_MEMBER_ID,
            }
        } else {
            member_id.to_string()
        };
        if self.pending.remove(&id).is_some() {
            self.maybe_complete_join(now);
            return code::NONE;
        }
        if self.fenced(instance_id, &id) {
            return code::FENCED_INSTANCE_ID;
        }
        if !self.members.contains_key(&id) {
            return code::UNKNOWN_MEMBER_ID;
        }
        self.remove_member(&id);
        self.after_departure(limits, now);
        code::NONE
    }

    /// Checks an offset commit against the group; `Ok` means the commit may proceed.
    pub fn check_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<(), i16> {
        if self.phase == Phase::Dead {
            return Err(code::COORDINATOR_NOT_AVAILABLE);
        }
        if self.fenced(instance_id, member_id) {
            return Err(code::FENCED_INSTANCE_ID);
        }
        if generation < 0 && self.phase == Phase::Empty {
            // A group that uses Fjord only to store offsets (manual assignment).
            return Ok(());
        }
        let Some(m) = self.members.get_mut(member_id) else {
            return Err(code::UNKNOWN_MEMBER_ID);
        };
        if generation != self.generation {
            return Err(code::ILLEGAL_GENERATION);
        }
        m.session_deadline = now + m.session_timeout;
        match self.phase {
            Phase::Stable | Phase::PreparingRebalance => Ok(()),
            Phase::CompletingRebalance => Err(code::REBALANCE_IN_PROGRESS),
            Phase::Empty | Phase::Dead => Err(code::UNKNOWN_MEMBER_ID),
        }
    }

    /// Answers every waiting JoinGroup and SyncGroup with `error` (the broker is stopping:
    /// clients find the coordinator again and rejoin).
    pub fn abort_waiters(&mut self, error: i16) {
        for m in self.members.values_mut() {
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResult::error(error, &m.id));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResult::error(error));
            }
        }
    }

    /// Marks the group deleted, answering anything waiting.
    pub fn kill(&mut self) {
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            self.remove_member(&id);
        }
        self.pending.clear();
        self.phase = Phase::Dead;
    }

    /// Applies deadlines: expired sessions and pending members, the end of the join
    /// phase, members that never synced.
    pub fn tick(&mut self, limits: &GroupLimits, now: Instant) {
        if self.phase == Phase::Dead {
            return;
        }
        let pending_before = self.pending.len();
        self.pending.retain(|_, deadline| *deadline > now);
        // Members with a join or sync in flight are alive: their request is waiting on us.
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.join_waiter.is_none() && m.sync_waiter.is_none() && m.session_deadline <= now
            })
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.remove_member(id);
        }
        if !expired.is_empty() {
            self.after_departure(limits, now);
        } else if self.pending.len() != pending_before {
            self.maybe_complete_join(now);
        }
        if self.phase == Phase::PreparingRebalance && self.join_deadline.is_some_and(|d| d <= now) {
            if let Some(initial) = &mut self.initial {
                if initial.new_member_joined && !initial.remaining.is_zero() {
                    let delay = initial.delay.min(initial.remaining);
                    initial.remaining = initial.remaining.saturating_sub(delay);
                    initial.new_member_joined = false;
                    self.join_deadline = Some(now + delay);
                    return;
                }
            }
            self.complete_join(now);
        }
        if self.phase == Phase::CompletingRebalance && self.sync_deadline.is_some_and(|d| d <= now)
        {
            let unsynced: Vec<String> = self
                .members
                .values()
                .filter(|m| !m.synced)
                .map(|m| m.id.clone())
                .collect();
            for id in &unsynced {
                tracing::info!(group = %self.id, member = %id, "member did not sync in time");
                self.remove_member(id);
            }
            self.after_departure(limits, now);
        }
    }
}
