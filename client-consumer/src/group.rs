//! Group membership on Kafka's classic protocol: find the coordinator, join, let the
//! leader assign (range, roundrobin or cooperative-sticky), sync, heartbeat, rejoin when
//! the group rebalances, and commit on the way (auto-commit, revocations).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_client_common::{ClientError, Connection, CoordinatorKey};
use fjord_protocol::kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use fjord_protocol::kafka_protocol::messages::join_group_request::{
    JoinGroupRequest, JoinGroupRequestProtocol,
};
use fjord_protocol::kafka_protocol::messages::leave_group_request::{
    LeaveGroupRequest, MemberIdentity,
};
use fjord_protocol::kafka_protocol::messages::sync_group_request::{
    SyncGroupRequest, SyncGroupRequestAssignment,
};
use fjord_protocol::kafka_protocol::messages::{ApiKey, GroupId};
use fjord_protocol::kafka_protocol::protocol::StrBytes;

use crate::assignors::{self, Member};
use crate::error::{kafka_error_name, ConsumeError};
use crate::inner::Inner;
use crate::record::TopicPartition;

const NOT_COORDINATOR: i16 = 16;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const REBALANCE_IN_PROGRESS: i16 = 27;
const MEMBER_ID_REQUIRED: i16 = 79;
const FENCED_INSTANCE_ID: i16 = 82;

/// This consumer's standing in its group.
#[derive(Debug)]
pub(crate) struct Membership {
    pub(crate) member_id: String,
    /// -1 outside a generation (commits then count as a group without members).
    pub(crate) generation: i32,
    coordinator: Option<Connection>,
}

impl Default for Membership {
    fn default() -> Self {
        Self {
            member_id: String::new(),
            generation: -1,
            coordinator: None,
        }
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// The least wait between two asks of a coordinator that is not ready, whatever
/// `retry.backoff.ms` says (0 would ask back to back).
const MIN_COORDINATOR_BACKOFF: Duration = Duration::from_millis(10);

/// Whether a group error says the coordinator is still loading, not yet available (Apache
/// Kafka answers so while it creates `__consumer_offsets`) or elsewhere: the request is
/// tried again, after finding the coordinator again, as the Java client does.
pub(crate) fn coordinator_not_ready(code: i16) -> bool {
    matches!(
        code,
        NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE | COORDINATOR_LOAD_IN_PROGRESS
    )
}

/// The group coordinator's connection (found with FindCoordinator, kept until it fails).
/// A coordinator that is not ready yet is asked again, backing off from
/// `retry.backoff.ms` to 1 s, for up to `request.timeout.ms`.
pub(crate) async fn coordinator(
    inner: &Arc<Inner>,
    group: &str,
) -> Result<Connection, ConsumeError> {
    {
        let m = inner.membership.lock().await;
        if let Some(c) = m.coordinator.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
    }
    let deadline = Instant::now() + inner.config.request_timeout;
    let mut backoff = inner.config.retry_backoff.max(MIN_COORDINATOR_BACKOFF);
    loop {
        match find_coordinator(inner, group).await {
            Err(ConsumeError::Group { code, .. })
                if coordinator_not_ready(code) && Instant::now() + backoff < deadline =>
            {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            found => return found,
        }
    }
}

async fn find_coordinator(inner: &Arc<Inner>, group: &str) -> Result<Connection, ConsumeError> {
    let any = inner.cluster.any().await?;
    let found =
        match fjord_client_common::find_coordinator(&any, CoordinatorKey::Group(group)).await {
            Ok(found) => found,
            Err(ClientError::Broker { code, .. }) => return Err(group_error(code)),
            Err(e) => return Err(e.into()),
        };
    let conn = inner.cluster.node_at(found.node_id, &found.addr).await?;
    inner.membership.lock().await.coordinator = Some(conn.clone());
    Ok(conn)
}

/// The group's committed offsets for `tps` (`None` where there is none), from its
/// coordinator, asked again while the coordinator is not ready (see [`coordinator`]).
pub(crate) async fn committed_offsets(
    inner: &Arc<Inner>,
    group: &str,
    tps: &[TopicPartition],
) -> Result<HashMap<TopicPartition, Option<i64>>, ConsumeError> {
    let deadline = Instant::now() + inner.config.request_timeout;
    let mut backoff = inner.config.retry_backoff.max(MIN_COORDINATOR_BACKOFF);
    loop {
        let conn = coordinator(inner, group).await?;
        match crate::offsets::fetch_committed(&conn, group, tps).await {
            Err(ConsumeError::Group { code, .. })
                if coordinator_not_ready(code) && Instant::now() + backoff < deadline =>
            {
                forget_coordinator(inner).await;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            fetched => return fetched,
        }
    }
}

pub(crate) async fn forget_coordinator(inner: &Arc<Inner>) {
    inner.membership.lock().await.coordinator = None;
}

/// What a join-and-sync round ended with.
enum Round {
    /// Assigned these partitions in this generation.
    Assigned(Vec<TopicPartition>),
    /// Try again (after a backoff), keeping the member id.
    Retry,
    /// The member id is no longer valid: what we had is lost.
    Lost,
}

pub(crate) fn group_error(code: i16) -> ConsumeError {
    ConsumeError::Group {
        code,
        name: kafka_error_name(code),
    }
}

/// One JoinGroup + SyncGroup round.
async fn join_and_sync(
    inner: &Arc<Inner>,
    group: &str,
    topics: &[String],
    owned: &[TopicPartition],
) -> Result<Round, ConsumeError> {
    let conn = coordinator(inner, group).await?;
    let join_version = conn.version(ApiKey::JoinGroup, 1, 9)?;
    let member_id = inner.membership.lock().await.member_id.clone();
    let metadata = assignors::encode_subscription(topics, owned);
    let mut req = JoinGroupRequest::default();
    req.group_id = GroupId(s(group));
    req.session_timeout_ms = millis(inner.config.session_timeout);
    req.rebalance_timeout_ms = millis(inner.config.max_poll_interval);
    req.member_id = s(&member_id);
    if join_version >= 5 {
        req.group_instance_id = inner.config.group_instance_id.as_deref().map(s);
    }
    req.protocol_type = s("consumer");
    req.protocols = inner
        .config
        .assignment_strategy
        .iter()
        .map(|name| {
            let mut p = JoinGroupRequestProtocol::default();
            p.name = s(name);
            p.metadata = metadata.clone();
            p
        })
        .collect();
    let joined = conn.request(&req, join_version).await?;
    match joined.error_code {
        0 => {}
        MEMBER_ID_REQUIRED => {
            inner.membership.lock().await.member_id = joined.member_id.to_string();
            return Ok(Round::Retry);
        }
        UNKNOWN_MEMBER_ID | ILLEGAL_GENERATION => return Ok(Round::Lost),
        NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE | COORDINATOR_LOAD_IN_PROGRESS => {
            forget_coordinator(inner).await;
            return Ok(Round::Retry);
        }
        REBALANCE_IN_PROGRESS => return Ok(Round::Retry),
        code => return Err(group_error(code)),
    }
    let me = joined.member_id.to_string();
    let generation = joined.generation_id;
    let protocol = joined
        .protocol_name
        .as_ref()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let mut assignments = Vec::new();
    if joined.leader.as_str() == me && !joined.skip_assignment {
        let members: Vec<Member> = joined
            .members
            .iter()
            .filter_map(|m| assignors::decode_subscription(&m.member_id, &m.metadata))
            .collect();
        let mut wanted: Vec<String> = members.iter().flat_map(|m| m.topics.clone()).collect();
        wanted.sort();
        wanted.dedup();
        let md = inner.cluster.metadata(&wanted).await?;
        let counts: HashMap<String, i32> = md
            .topics
            .iter()
            .filter(|(_, t)| t.error == 0)
            .map(|(n, t)| (n.clone(), t.partitions.len() as i32))
            .collect();
        let plan = assignors::assign(&protocol, &members, &counts);
        for (member, partitions) in plan {
            let mut a = SyncGroupRequestAssignment::default();
            a.member_id = s(&member);
            a.assignment = assignors::encode_assignment(&partitions);
            assignments.push(a);
        }
    }
    let sync_version = conn.version(ApiKey::SyncGroup, 0, 5)?;
    let mut sync = SyncGroupRequest::default();
    sync.group_id = GroupId(s(group));
    sync.generation_id = generation;
    sync.member_id = s(&me);
    if sync_version >= 3 {
        sync.group_instance_id = inner.config.group_instance_id.as_deref().map(s);
    }
    if sync_version >= 5 {
        sync.protocol_type = Some(s("consumer"));
        sync.protocol_name = Some(s(&protocol));
    }
    sync.assignments = assignments;
    let synced = conn.request(&sync, sync_version).await?;
    match synced.error_code {
        0 => {}
        REBALANCE_IN_PROGRESS => return Ok(Round::Retry),
        UNKNOWN_MEMBER_ID | ILLEGAL_GENERATION => return Ok(Round::Lost),
        NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE => {
            forget_coordinator(inner).await;
            return Ok(Round::Retry);
        }
        code => return Err(group_error(code)),
    }
    let assigned = assignors::decode_assignment(&synced.assignment).ok_or_else(|| {
        ConsumeError::Client(ClientError::Protocol("undecodable assignment".into()))
    })?;
    {
        let mut m = inner.membership.lock().await;
        m.member_id = me;
        m.generation = generation;
    }
    tracing::debug!(group, generation, %protocol, partitions = assigned.len(), "joined group");
    Ok(Round::Assigned(assigned))
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

fn owned(inner: &Inner) -> Vec<TopicPartition> {
    inner
        .assignment
        .all()
        .iter()
        .map(|p| p.tp.clone())
        .collect()
}

/// Gives partitions up in an orderly way: listener, then (with auto-commit) a commit of
/// their positions, then they stop being fetched.
pub(crate) async fn revoke(inner: &Arc<Inner>, tps: &[TopicPartition]) {
    if tps.is_empty() {
        return;
    }
    if let Some(l) = &inner.listener {
        l.on_revoked(tps);
    }
    if inner.config.enable_auto_commit {
        let parts: Vec<_> = tps
            .iter()
            .filter_map(|tp| inner.assignment.get(tp))
            .collect();
        if let Err(e) = inner.commit_positions(&parts).await {
            tracing::warn!(error = %e, "commit on revocation failed");
        }
    }
    inner.assignment.remove(tps);
}

/// Partitions gone without a rebalance (fenced, expired): no commit.
pub(crate) fn lose(inner: &Arc<Inner>) {
    let all = owned(inner);
    if all.is_empty() {
        return;
    }
    if let Some(l) = &inner.listener {
        l.on_lost(&all);
    }
    inner.assignment.remove(&all);
}

/// The group task: joins, keeps the membership alive, rejoins on rebalances.
pub(crate) async fn run(inner: Arc<Inner>, group: String, topics: Vec<String>) {
    let cooperative = inner.config.cooperative();
    let mut rejoin = true;
    let mut backoff = false;
    let mut last_commit = Instant::now();
    loop {
        if inner.closing.load(Ordering::Acquire) {
            return;
        }
        if backoff {
            tokio::time::sleep(inner.config.retry_backoff).await;
            backoff = false;
        }
        if rejoin {
            if !cooperative {
                // Eager protocols give everything up before joining.
                let all = owned(&inner);
                revoke(&inner, &all).await;
            }
            let current = owned(&inner);
            match join_and_sync(&inner, &group, &topics, &current).await {
                Ok(Round::Assigned(assigned)) => {
                    let now: BTreeSet<&TopicPartition> = assigned.iter().collect();
                    let had: BTreeSet<TopicPartition> = current.iter().cloned().collect();
                    let revoked: Vec<TopicPartition> = current
                        .iter()
                        .filter(|tp| !now.contains(tp))
                        .cloned()
                        .collect();
                    revoke(&inner, &revoked).await;
                    let added: Vec<TopicPartition> = assigned
                        .iter()
                        .filter(|tp| !had.contains(*tp))
                        .cloned()
                        .collect();
                    let states = inner.assignment.add(&added);
                    if let Err(e) = inner.start(&states).await {
                        tracing::warn!(error = %e, "positions for new partitions failed");
                        let _ = inner.items.send(crate::inner::Item::Error(e));
                    }
                    if !added.is_empty() {
                        if let Some(l) = &inner.listener {
                            l.on_assigned(&added);
                        }
                    }
                    // Cooperative: what we gave up goes to others in a follow-up round.
                    rejoin = cooperative && !revoked.is_empty();
                }
                Ok(Round::Retry) => backoff = true,
                Ok(Round::Lost) => {
                    lose(&inner);
                    let mut m = inner.membership.lock().await;
                    m.member_id.clear();
                    m.generation = -1;
                    backoff = true;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "join failed");
                    if matches!(e, ConsumeError::Client(_)) {
                        forget_coordinator(&inner).await;
                    }
                    backoff = true;
                }
            }
            continue;
        }
        tokio::time::sleep(inner.config.heartbeat_interval).await;
        // max.poll.interval.ms: an application that stopped calling recv leaves.
        let idle = inner
            .started
            .elapsed()
            .saturating_sub(Duration::from_millis(
                inner.last_poll_ms.load(Ordering::Relaxed),
            ));
        if idle > inner.config.max_poll_interval && inner.config.group_instance_id.is_none() {
            tracing::warn!(
                group,
                "max.poll.interval.ms passed without recv: leaving the group"
            );
            leave(&inner).await;
            lose(&inner);
            rejoin = true;
            continue;
        }
        match heartbeat(&inner, &group).await {
            Ok(0) => {}
            Ok(REBALANCE_IN_PROGRESS) => rejoin = true,
            Ok(UNKNOWN_MEMBER_ID | ILLEGAL_GENERATION | FENCED_INSTANCE_ID) => {
                lose(&inner);
                let mut m = inner.membership.lock().await;
                m.member_id.clear();
                m.generation = -1;
                rejoin = true;
            }
            Ok(NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE) | Err(_) => {
                forget_coordinator(&inner).await;
            }
            Ok(code) => tracing::debug!(code, "heartbeat error"),
        }
        if inner.config.enable_auto_commit
            && last_commit.elapsed() >= inner.config.auto_commit_interval
        {
            last_commit = Instant::now();
            if let Err(e) = inner.commit_positions(&inner.assignment.all()).await {
                tracing::debug!(error = %e, "auto-commit failed");
            }
        }
    }
}

async fn heartbeat(inner: &Arc<Inner>, group: &str) -> Result<i16, ConsumeError> {
    let conn = coordinator(inner, group).await?;
    let version = conn.version(ApiKey::Heartbeat, 0, 4)?;
    let (member, generation) = {
        let m = inner.membership.lock().await;
        (m.member_id.clone(), m.generation)
    };
    let mut req = HeartbeatRequest::default();
    req.group_id = GroupId(s(group));
    req.generation_id = generation;
    req.member_id = s(&member);
    if version >= 3 {
        req.group_instance_id = inner.config.group_instance_id.as_deref().map(s);
    }
    Ok(conn.request(&req, version).await?.error_code)
}

/// Leaves the group (static members do not: their slot waits for them, KIP-345).
pub(crate) async fn leave(inner: &Arc<Inner>) {
    if inner.config.consumer_protocol() {
        return crate::consumer_protocol::leave(inner).await;
    }
    let Some(group) = inner.config.group_id.clone() else {
        return;
    };
    if inner.config.group_instance_id.is_some() {
        return;
    }
    let member = inner.membership.lock().await.member_id.clone();
    if member.is_empty() {
        return;
    }
    let Ok(conn) = coordinator(inner, &group).await else {
        return;
    };
    let Ok(version) = conn.version(ApiKey::LeaveGroup, 0, 5) else {
        return;
    };
    let mut req = LeaveGroupRequest::default();
    req.group_id = GroupId(s(&group));
    if version >= 3 {
        let mut m = MemberIdentity::default();
        m.member_id = s(&member);
        req.members = vec![m];
    } else {
        req.member_id = s(&member);
    }
    match conn.request(&req, version).await {
        Ok(_) => tracing::debug!(group, %member, "left group"),
        Err(e) => tracing::debug!(group, error = %e, "leave failed"),
    }
    let mut m = inner.membership.lock().await;
    m.member_id.clear();
    m.generation = -1;
}
