//! One consumer group on the KIP-848 protocol: the broker computes the assignment and
//! moves each member to it by epochs, one heartbeat at a time (no stop-the-world
//! rebalance: members that keep their partitions never stop).
//!
//! Three epochs (Kafka's): the group epoch moves when membership, subscriptions or the
//! subscribed topics change; the assignment epoch is the group epoch the target
//! assignment was computed at; a member's epoch reaches the assignment epoch once it has
//! revoked what it must give up. A partition goes to its new owner only after the
//! previous one let it go ([`super::reconcile`]).
//!
//! Pure state: the caller passes the clock and the topics; nothing here blocks.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use fjord_protocol::kafka_protocol::ResponseError as E;

use super::assignor::{self, Assignment, AssignorMember};
use super::reconcile::{self, Current, MemberState};

/// The settings a consumer group follows (`group.consumer.*`).
#[derive(Debug, Clone)]
pub struct ConsumerGroupConfig {
    /// `group.consumer.session.timeout.ms`.
    pub session_timeout_ms: u64,
    /// `group.consumer.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: i32,
    /// `group.consumer.assignors`: the assignors a member may ask for, the default first.
    pub assignors: Vec<String>,
    /// `group.consumer.max.size`.
    pub max_size: usize,
    /// `group.consumer.migration.policy`.
    pub migration: crate::groups::routing::MigrationPolicy,
}

impl Default for ConsumerGroupConfig {
    /// Kafka's defaults.
    fn default() -> Self {
        Self {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            assignors: assignor::ASSIGNORS.iter().map(|a| a.to_string()).collect(),
            max_size: i32::MAX as usize,
            migration: crate::groups::routing::MigrationPolicy::Bidirectional,
        }
    }
}

/// The topics that exist: name to (ID, partition count).
pub type Topics = BTreeMap<String, (uuid::Uuid, i32)>;

/// A heartbeat as the group sees it; `None` fields are "unchanged".
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    /// The member ID (v1: the client's; v0: empty on the first join).
    pub member_id: String,
    /// 0 to join, -1 to leave, -2 for a static member's temporary leave.
    pub member_epoch: i32,
    /// Static membership.
    pub instance_id: Option<String>,
    /// The member's rack.
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    /// Topics by name.
    pub topic_names: Option<Vec<String>>,
    /// Topics by regular expression ("" removes it).
    pub topic_regex: Option<String>,
    /// The assignor asked for.
    pub server_assignor: Option<String>,
    /// What the member says it owns.
    pub owned: Option<Assignment>,
    /// The client's ID and host, for describe.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
}

/// The answer to a successful heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The member's ID.
    pub member_id: String,
    /// Its epoch.
    pub member_epoch: i32,
    /// What it may own now, when it must be told.
    pub assignment: Option<Assignment>,
}

/// A refused heartbeat: the error code and its message.
pub type Refusal = (E, String);

/// One member.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its ID.
    pub id: String,
    /// Its static instance ID.
    pub instance_id: Option<String>,
    /// Its rack.
    pub rack_id: Option<String>,
    /// Its client ID.
    pub client_id: String,
    /// Its address.
    pub client_host: String,
    /// Topics it subscribes to by name.
    pub topic_names: Vec<String>,
    /// Its regular expression subscription.
    pub topic_regex: Option<String>,
    /// The assignor it asked for.
    pub server_assignor: Option<String>,
    /// How long it may take to revoke.
    pub rebalance_timeout_ms: i32,
    /// Where it stands.
    pub current: Current,
    /// Its epoch before the last change (a lost response is forgiven once).
    pub previous_epoch: i32,
    /// A static member that left with -2: kept, with its partitions, for a rejoin.
    pub left_temporarily: bool,
    /// Set for a member on the classic protocol (a group in online migration).
    pub classic: Option<super::classic::ClassicMember>,
    pub(super) session_deadline_ms: u64,
    pub(super) revocation_deadline_ms: Option<u64>,
}

impl Member {
    /// A member restored from its records; its session runs until `session_deadline_ms`.
    pub(super) fn restored(
        id: &str,
        meta: super::records::MemberMetadata,
        current: Current,
        previous_epoch: i32,
        left_temporarily: bool,
        session_deadline_ms: u64,
        session_ms: u64,
    ) -> Self {
        // A classic member's session is its own (from its JoinGroup).
        let session_deadline_ms = match &meta.classic {
            Some(c) => session_deadline_ms
                .saturating_sub(session_ms)
                .saturating_add(u64::try_from(c.session_timeout_ms).unwrap_or(0)),
            None => session_deadline_ms,
        };
        Self {
            id: id.to_string(),
            classic: meta.classic.map(super::classic::ClassicMember::new),
            instance_id: meta.instance_id,
            rack_id: meta.rack_id,
            client_id: meta.client_id,
            client_host: meta.client_host,
            topic_names: meta.topic_names,
            topic_regex: meta.topic_regex,
            server_assignor: meta.server_assignor,
            rebalance_timeout_ms: meta.rebalance_timeout_ms,
            revocation_deadline_ms: None,
            current,
            previous_epoch,
            left_temporarily,
            session_deadline_ms,
        }
    }
}

/// A consumer group.
#[derive(Debug, Clone)]
pub struct ConsumerGroup {
    /// Its ID.
    pub id: String,
    /// The group epoch.
    pub group_epoch: i32,
    /// The epoch the target assignment was computed at.
    pub assignment_epoch: i32,
    /// Members by ID.
    pub members: BTreeMap<String, Member>,
    /// The target assignment, by member ID.
    pub targets: BTreeMap<String, Assignment>,
    /// Who holds each partition now (assigned or pending revocation).
    pub(super) owners: HashMap<(uuid::Uuid, i32), String>,
    /// Partition counts of the subscribed topics the target was computed over.
    subscribed: BTreeMap<uuid::Uuid, i32>,
    /// Their names (for the group's records).
    names: BTreeMap<uuid::Uuid, String>,
    /// Compiled subscriptions by regular expression.
    regexes: HashMap<String, regex::Regex>,
    /// Converted to a classic group (or removed) while a request held it: whoever
    /// finds it so looks the group up again.
    pub dead: bool,
    /// A member was removed since the group's records were last looked at by the
    /// timer (which writes them).
    pub(super) unsaved: bool,
}

/// Compiles a subscription regex as Kafka matches it (RE2 syntax, whole names).
pub fn compile_regex(source: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&format!("^(?:{source})$")).map_err(|e| e.to_string())
}

impl ConsumerGroup {
    /// A new, empty group.
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_string(),
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            targets: BTreeMap::new(),
            owners: HashMap::new(),
            subscribed: BTreeMap::new(),
            names: BTreeMap::new(),
            regexes: HashMap::new(),
            dead: false,
            unsaved: false,
        }
    }

    /// Kafka's state name: Empty, Assigning, Reconciling or Stable.
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.group_epoch > self.assignment_epoch {
            "Assigning"
        } else if self.members.values().any(|m| {
            m.current.state != MemberState::Stable || m.current.epoch != self.assignment_epoch
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// The assignor the group uses: the one most members ask for, else the default.
    pub fn assignor(&self, config: &ConsumerGroupConfig) -> String {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.server_assignor {
                *votes.entry(a.as_str()).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(name, n)| (*n, std::cmp::Reverse(*name)))
            .map(|(name, _)| name.to_string())
            .or_else(|| config.assignors.first().cloned())
            .unwrap_or_else(|| assignor::ASSIGNORS[0].to_string())
    }

    /// Handles one heartbeat at `now_ms`.
    pub fn heartbeat(
        &mut self,
        hb: Heartbeat,
        topics: &Topics,
        config: &ConsumerGroupConfig,
        now_ms: u64,
    ) -> Result<Answer, Refusal> {
        self.expire(now_ms);
        if hb.member_epoch == -1 || hb.member_epoch == -2 {
            return self.leave(&hb);
        }
        // Checked before anything changes: a refused heartbeat leaves no trace (no
        // member joined, no static member replaced).
        self.check_fields(&hb, config)?;
        let known = self.members.len();
        let id = self.find_or_join(&hb, config)?;
        let joined = self.members.len() > known;
        let changed = self.update_member(&id, &hb, config);
        // One heartbeat moves the group epoch at most once, whatever changed.
        self.refresh_target(topics, config, joined || changed);
        let before = self.members[&id].current.assigned.clone();
        self.reconcile(&id, hb.owned.as_ref(), now_ms);
        let member = self.members.get_mut(&id).expect("member");
        member.session_deadline_ms = now_ms.saturating_add(config.session_timeout_ms);
        let full = hb.rebalance_timeout_ms != -1
            && (hb.topic_names.is_some() || hb.topic_regex.is_some())
            && hb.owned.is_some();
        let tell = hb.member_epoch == 0 || full || member.current.assigned != before;
        Ok(Answer {
            member_id: id,
            member_epoch: member.current.epoch,
            assignment: tell.then(|| member.current.assigned.clone()),
        })
    }

    /// The member this heartbeat is from, created on a join; Kafka's checks of member
    /// IDs, static instances and epochs.
    fn find_or_join(
        &mut self,
        hb: &Heartbeat,
        config: &ConsumerGroupConfig,
    ) -> Result<String, Refusal> {
        if let Some(instance) = &hb.instance_id {
            let holder = self
                .members
                .values()
                .find(|m| m.instance_id.as_deref() == Some(instance))
                .map(|m| (m.id.clone(), m.left_temporarily));
            if hb.member_epoch == 0 {
                return match holder {
                    Some((_, false)) => Err((
                        E::UnreleasedInstanceId,
                        format!("Static member {instance} is still in use by another member."),
                    )),
                    Some((old, true)) => {
                        let id = if hb.member_id.is_empty() {
                            uuid::Uuid::new_v4().to_string()
                        } else {
                            hb.member_id.clone()
                        };
                        Ok(self.replace_static(&old, &id))
                    }
                    None => self.join(hb, config),
                };
            }
            match holder {
                None => {
                    return Err((
                        E::UnknownMemberId,
                        format!("Instance id {instance} is unknown."),
                    ))
                }
                Some((holder, _)) if holder != hb.member_id => {
                    return Err((
                        E::FencedInstanceId,
                        format!("Static member {instance} is held by another member."),
                    ))
                }
                Some(_) => {}
            }
        } else if hb.member_epoch == 0 {
            return self.join(hb, config);
        }
        let Some(member) = self.members.get(&hb.member_id) else {
            return Err((
                E::UnknownMemberId,
                format!(
                    "Member {} is not a member of group {}.",
                    hb.member_id, self.id
                ),
            ));
        };
        let (epoch, previous) = (member.current.epoch, member.previous_epoch);
        let owned_within = hb.owned.as_ref().is_some_and(|owned| {
            owned.iter().all(|(t, ps)| {
                member
                    .current
                    .assigned
                    .get(t)
                    .is_some_and(|a| ps.is_subset(a))
            })
        });
        if hb.member_epoch > epoch
            || (hb.member_epoch < epoch && !(hb.member_epoch == previous && owned_within))
        {
            return Err((
                E::FencedMemberEpoch,
                format!(
                    "The member epoch {} is not the current one ({epoch}).",
                    hb.member_epoch
                ),
            ));
        }
        Ok(hb.member_id.clone())
    }

    /// A new member at epoch 0 (or the one with this ID rejoining after being fenced:
    /// it keeps its record, and gets its assignment again).
    fn join(&mut self, hb: &Heartbeat, config: &ConsumerGroupConfig) -> Result<String, Refusal> {
        let id = if hb.member_id.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            hb.member_id.clone()
        };
        if self.members.contains_key(&id) {
            return Ok(id);
        }
        if self.members.len() >= config.max_size {
            return Err((
                E::GroupMaxSizeReached,
                format!(
                    "The consumer group has reached its maximum capacity of {} members.",
                    config.max_size
                ),
            ));
        }
        let member = Member {
            id: id.clone(),
            instance_id: hb.instance_id.clone(),
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            topic_names: Vec::new(),
            topic_regex: None,
            server_assignor: None,
            rebalance_timeout_ms: hb.rebalance_timeout_ms,
            current: Current {
                epoch: 0,
                state: MemberState::Stable,
                assigned: Assignment::new(),
                pending_revocation: Assignment::new(),
            },
            previous_epoch: 0,
            left_temporarily: false,
            classic: None,
            session_deadline_ms: 0,
            revocation_deadline_ms: None,
        };
        self.members.insert(id.clone(), member);
        Ok(id)
    }

    /// A static member rejoining (after a temporary leave, or a classic one restarting):
    /// a copy of the old member under the new ID, with its partitions, and no new group
    /// epoch.
    pub(super) fn replace_static(&mut self, old: &str, id: &str) -> String {
        let id = id.to_string();
        let Some(mut member) = self.members.remove(old) else {
            return id;
        };
        member.id = id.clone();
        member.left_temporarily = false;
        member.current.epoch = 0;
        member.previous_epoch = 0;
        if let Some(target) = self.targets.remove(old) {
            self.targets.insert(id.clone(), target);
        }
        for owner in self.owners.values_mut() {
            if owner == old {
                *owner = id.clone();
            }
        }
        self.members.insert(id.clone(), member);
        id
    }

    /// Kafka's checks of the heartbeat's assignor and regex (the regex is compiled and
    /// kept for [`Self::update_member`]).
    fn check_fields(
        &mut self,
        hb: &Heartbeat,
        config: &ConsumerGroupConfig,
    ) -> Result<(), Refusal> {
        if let Some(a) = &hb.server_assignor {
            if !config.assignors.iter().any(|c| c == a) {
                return Err((
                    E::UnsupportedAssignor,
                    format!(
                        "ServerAssignor {a} is not supported. Supported assignors: {}.",
                        config.assignors.join(", ")
                    ),
                ));
            }
        }
        if let Some(r) = hb.topic_regex.as_deref().filter(|r| !r.is_empty()) {
            if !self.regexes.contains_key(r) {
                let compiled = compile_regex(r).map_err(|e| {
                    (
                        E::InvalidRegularExpression,
                        format!(
                            "SubscribedTopicRegex `{r}` is not a valid regular expression: {e}."
                        ),
                    )
                })?;
                self.regexes.insert(r.to_string(), compiled);
            }
        }
        Ok(())
    }

    /// Applies the heartbeat's non-null fields (checked by [`Self::check_fields`]);
    /// whether the subscription changed (which moves the group epoch).
    fn update_member(&mut self, id: &str, hb: &Heartbeat, config: &ConsumerGroupConfig) -> bool {
        let before_assignor = self.assignor(config);
        let member = self.members.get_mut(id).expect("member");
        let mut changed = false;
        if let Some(names) = &hb.topic_names {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            changed |= names != member.topic_names;
            member.topic_names = names;
        }
        if let Some(r) = &hb.topic_regex {
            let r = (!r.is_empty()).then(|| r.clone());
            changed |= r != member.topic_regex;
            member.topic_regex = r;
        }
        if hb.server_assignor.is_some() {
            member.server_assignor = hb.server_assignor.clone();
        }
        if hb.rebalance_timeout_ms != -1 {
            member.rebalance_timeout_ms = hb.rebalance_timeout_ms;
        }
        if hb.rack_id.is_some() {
            member.rack_id = hb.rack_id.clone();
        }
        if !hb.client_id.is_empty() {
            member.client_id = hb.client_id.clone();
        }
        if !hb.client_host.is_empty() {
            member.client_host = hb.client_host.clone();
        }
        let used: BTreeSet<&String> = self
            .members
            .values()
            .filter_map(|m| m.topic_regex.as_ref())
            .collect();
        self.regexes.retain(|r, _| used.contains(r));
        changed || self.assignor(config) != before_assignor
    }

    /// The topics `member` subscribes to that exist, by ID.
    fn resolve(&self, member: &Member, topics: &Topics) -> BTreeSet<uuid::Uuid> {
        let mut out: BTreeSet<uuid::Uuid> = member
            .topic_names
            .iter()
            .filter_map(|n| topics.get(n).map(|(id, _)| *id))
            .collect();
        if let Some(re) = member
            .topic_regex
            .as_ref()
            .and_then(|r| self.regexes.get(r))
        {
            out.extend(
                topics
                    .iter()
                    .filter(|(name, _)| re.is_match(name))
                    .map(|(_, (id, _))| *id),
            );
        }
        out
    }

    /// Moves the group epoch if `bump` (membership or a subscription changed) or the
    /// subscribed topics changed (created, deleted, grown, matched by a regex), then
    /// recomputes the target if the group epoch moved past it.
    pub(super) fn refresh_target(
        &mut self,
        topics: &Topics,
        config: &ConsumerGroupConfig,
        bump: bool,
    ) {
        let (resolved, subscribed) = self.resolve_all(topics);
        if subscribed != self.subscribed || bump {
            self.subscribed = subscribed;
            self.group_epoch += 1;
        }
        if self.group_epoch <= self.assignment_epoch {
            return;
        }
        let members: Vec<AssignorMember> = resolved
            .into_iter()
            .map(|(id, topics)| AssignorMember {
                instance_id: self.members[&id].instance_id.clone(),
                previous: self.targets.get(&id).cloned().unwrap_or_default(),
                member_id: id,
                topics,
            })
            .collect();
        self.targets = assignor::assign(&self.assignor(config), &members, &self.subscribed);
        self.assignment_epoch = self.group_epoch;
    }

    /// Each member's subscribed topics that exist, and their partition counts; notes
    /// their names.
    #[allow(clippy::type_complexity)]
    fn resolve_all(
        &mut self,
        topics: &Topics,
    ) -> (
        Vec<(String, BTreeSet<uuid::Uuid>)>,
        BTreeMap<uuid::Uuid, i32>,
    ) {
        let counts: BTreeMap<uuid::Uuid, i32> = topics.values().map(|(id, n)| (*id, *n)).collect();
        let resolved: Vec<(String, BTreeSet<uuid::Uuid>)> = self
            .members
            .values()
            .map(|m| (m.id.clone(), self.resolve(m, topics)))
            .collect();
        let subscribed: BTreeMap<uuid::Uuid, i32> = resolved
            .iter()
            .flat_map(|(_, ts)| ts.iter())
            .filter_map(|t| counts.get(t).map(|n| (*t, *n)))
            .collect();
        self.names = topics
            .iter()
            .filter(|(_, (id, _))| subscribed.contains_key(id))
            .map(|(name, (id, _))| (*id, name.clone()))
            .collect();
        (resolved, subscribed)
    }

    /// Takes the members' subscribed topics as the ones the target was computed over,
    /// without moving the group epoch (a group just made from a classic one).
    pub(super) fn note_subscribed(&mut self, topics: &Topics) {
        let (_, subscribed) = self.resolve_all(topics);
        self.subscribed = subscribed;
    }

    /// A subscribed topic's name.
    pub(super) fn topic_name(&self, topic: uuid::Uuid) -> Option<String> {
        self.names.get(&topic).cloned()
    }

    /// One reconciliation step of member `id`, keeping [`Self::owners`] in step.
    pub(super) fn reconcile(&mut self, id: &str, owned: Option<&Assignment>, now_ms: u64) {
        let target = self.targets.get(id).cloned().unwrap_or_default();
        let member = &self.members[id];
        let next = reconcile::next(
            &member.current,
            &target,
            self.assignment_epoch,
            owned,
            |t, p| self.owners.get(&(t, p)).is_some_and(|o| o != id),
        );
        self.set_current(id, next, now_ms);
    }

    pub(super) fn set_current(&mut self, id: &str, next: Current, now_ms: u64) {
        let Some(member) = self.members.get_mut(id) else {
            return;
        };
        if next.epoch != member.current.epoch {
            member.previous_epoch = member.current.epoch;
        }
        member.revocation_deadline_ms = match (next.state, member.revocation_deadline_ms) {
            (MemberState::UnrevokedPartitions, Some(d)) => Some(d),
            (MemberState::UnrevokedPartitions, None) => {
                Some(now_ms.saturating_add(u64::try_from(member.rebalance_timeout_ms).unwrap_or(0)))
            }
            _ => None,
        };
        self.owners.retain(|_, owner| owner != id);
        for set in [&next.assigned, &next.pending_revocation] {
            for (t, parts) in set {
                for p in parts {
                    self.owners.insert((*t, *p), id.to_string());
                }
            }
        }
        member.current = next;
    }

    /// The subscribed topics the target was computed over: ID to (name, partitions).
    pub fn subscribed(&self) -> Vec<(uuid::Uuid, String, i32)> {
        self.subscribed
            .iter()
            .map(|(t, n)| (*t, self.names.get(t).cloned().unwrap_or_default(), *n))
            .collect()
    }

    /// Sets them (a group restored from its records).
    pub(super) fn set_subscribed(&mut self, subscribed: BTreeMap<uuid::Uuid, (String, i32)>) {
        self.names = subscribed
            .iter()
            .map(|(t, (name, _))| (*t, name.clone()))
            .collect();
        self.subscribed = subscribed.into_iter().map(|(t, (_, n))| (t, n)).collect();
    }

    /// Adds a member restored from its records, with the partitions it holds, and its
    /// regex compiled again.
    pub(super) fn insert_restored(&mut self, member: Member) {
        if let Some(r) = &member.topic_regex {
            if let Ok(re) = compile_regex(r) {
                self.regexes.insert(r.clone(), re);
            }
        }
        for set in [&member.current.assigned, &member.current.pending_revocation] {
            for (t, parts) in set {
                for p in parts {
                    self.owners.insert((*t, *p), member.id.clone());
                }
            }
        }
        self.members.insert(member.id.clone(), member);
    }

    /// Who holds partition `partition` of `topic` now.
    pub fn owner(&self, topic: uuid::Uuid, partition: i32) -> Option<&str> {
        self.owners.get(&(topic, partition)).map(String::as_str)
    }
}
