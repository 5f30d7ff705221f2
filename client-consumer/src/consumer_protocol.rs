//! Group membership on KIP-848's consumer protocol (`group.protocol=consumer`): the
//! broker assigns, and this member reconciles one ConsumerGroupHeartbeat at a time.
//! Each answer may carry the member's whole assignment: partitions no longer in it are
//! revoked (listener, auto-commit, stop fetching) before the next heartbeat says what
//! the member owns; new ones start at once (the broker only hands out partitions their
//! previous owner let go). Members that keep their partitions never stop.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_protocol::kafka_protocol::messages::consumer_group_heartbeat_request::{
    ConsumerGroupHeartbeatRequest, TopicPartitions,
};
use fjord_protocol::kafka_protocol::messages::consumer_group_heartbeat_response::ConsumerGroupHeartbeatResponse;
use fjord_protocol::kafka_protocol::messages::{ApiKey, GroupId, TopicName};
use fjord_protocol::kafka_protocol::protocol::StrBytes;

use crate::error::ConsumeError;
use crate::group::{self, coordinator_not_ready};
use crate::inner::{Inner, Item};
use crate::record::TopicPartition;

const UNKNOWN_MEMBER_ID: i16 = 25;
const FENCED_MEMBER_EPOCH: i16 = 110;
const UNRELEASED_INSTANCE_ID: i16 = 111;

/// Epoch -1 leaves the group; -2 is a static member's temporary leave (its partitions
/// wait for it, KIP-345's idea on the new protocol).
const LEAVE: i32 = -1;
const STATIC_LEAVE: i32 = -2;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Topic names and IDs of the subscription, as Metadata last gave them.
#[derive(Debug, Default)]
struct TopicIds {
    by_name: HashMap<String, uuid::Uuid>,
    by_id: HashMap<uuid::Uuid, String>,
}

impl TopicIds {
    async fn refresh(&mut self, inner: &Arc<Inner>, topics: &[String]) {
        match inner.cluster.metadata(topics).await {
            Ok(md) => {
                for (name, t) in md.topics.iter().filter(|(_, t)| t.error == 0) {
                    let id = uuid::Uuid::from_bytes(t.id);
                    if !id.is_nil() {
                        self.by_name.insert(name.clone(), id);
                        self.by_id.insert(id, name.clone());
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "metadata for topic IDs failed"),
        }
    }
}

/// This member's side of the protocol.
#[derive(Debug)]
struct Member {
    id: String,
    epoch: i32,
    interval: Duration,
    /// Send the whole subscription (on a join, and after any error).
    full: bool,
    ids: TopicIds,
    /// The last assignment, while part of it names topics not resolved yet: tried
    /// again after every heartbeat (the broker sends an assignment only when it
    /// changes).
    unresolved: Option<Vec<(uuid::Uuid, Vec<i32>)>>,
}

/// What a heartbeat came back with.
enum Beat {
    Answer(ConsumerGroupHeartbeatResponse),
    Failed(ConsumeError),
}

/// The group task on the consumer protocol: joins, heartbeats, reconciles, rejoins
/// after being fenced; leaves when the application stops polling.
pub(crate) async fn run(inner: Arc<Inner>, group: String, topics: Vec<String>) {
    // A new subscription carries on as the same member (Kafka's client does not leave
    // and rejoin for it): its ID and epoch, with the whole new subscription.
    let (id, epoch) = {
        let m = inner.membership.lock().await;
        if m.member_id.is_empty() {
            (uuid::Uuid::new_v4().to_string(), 0)
        } else {
            (m.member_id.clone(), m.generation.max(0))
        }
    };
    let mut me = Member {
        id,
        epoch,
        interval: inner.config.heartbeat_interval,
        full: true,
        ids: TopicIds::default(),
        unresolved: None,
    };
    me.ids.refresh(&inner, &topics).await;
    let mut last_commit = Instant::now();
    loop {
        if inner.closing.load(Ordering::Acquire) {
            return;
        }
        if polled_too_long(&inner) {
            tracing::warn!(
                group,
                "max.poll.interval.ms passed without recv: leaving the group"
            );
            leave_with(&inner, &group, &me.id, leave_epoch(&inner)).await;
            group::lose(&inner);
            me.epoch = 0;
            me.full = true;
            wait_for_poll(&inner).await;
            continue;
        }
        let pause = match heartbeat(&inner, &group, &me, &topics).await {
            Beat::Answer(r) if r.error_code == 0 => {
                me.epoch = r.member_epoch;
                if let Some(id) = r.member_id.as_ref().filter(|i| !i.is_empty()) {
                    me.id = id.to_string();
                }
                if r.heartbeat_interval_ms > 0 {
                    me.interval =
                        Duration::from_millis(r.heartbeat_interval_ms.unsigned_abs().into());
                }
                me.full = false;
                set_membership(&inner, &me).await;
                let target = r.assignment.map(|a| {
                    a.topic_partitions
                        .into_iter()
                        .map(|t| (t.topic_id, t.partitions))
                        .collect::<Vec<_>>()
                });
                match target.or_else(|| me.unresolved.take()) {
                    // Tell the broker at once what it now owns.
                    Some(target) => {
                        reconcile(&inner, &mut me, &topics, target).await;
                        Duration::ZERO
                    }
                    None => me.interval,
                }
            }
            Beat::Answer(r) => on_error(&inner, &group, &mut me, r.error_code).await,
            Beat::Failed(e) => {
                tracing::debug!(group, error = %e, "consumer group heartbeat failed");
                group::forget_coordinator(&inner).await;
                inner.config.retry_backoff
            }
        };
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
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

/// Whether the application went `max.poll.interval.ms` without calling recv.
fn polled_too_long(inner: &Inner) -> bool {
    let idle = inner
        .started
        .elapsed()
        .saturating_sub(Duration::from_millis(
            inner.last_poll_ms.load(Ordering::Relaxed),
        ));
    idle > inner.config.max_poll_interval
}

/// Waits until the application polls again (or the consumer closes).
async fn wait_for_poll(inner: &Inner) {
    while polled_too_long(inner) && !inner.closing.load(Ordering::Acquire) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn set_membership(inner: &Inner, me: &Member) {
    let mut m = inner.membership.lock().await;
    m.member_id = me.id.clone();
    m.generation = me.epoch;
}

/// Handles a heartbeat error; how long to wait before the next one.
async fn on_error(inner: &Arc<Inner>, group: &str, me: &mut Member, code: i16) -> Duration {
    match code {
        // Fenced: what it had is gone; it rejoins at epoch 0 at once, same member ID.
        FENCED_MEMBER_EPOCH | UNKNOWN_MEMBER_ID => {
            tracing::info!(
                group,
                code,
                epoch = me.epoch,
                "fenced from the group: rejoining"
            );
            group::lose(inner);
            me.epoch = 0;
            me.full = true;
            set_membership(inner, me).await;
            Duration::ZERO
        }
        c if coordinator_not_ready(c) => {
            group::forget_coordinator(inner).await;
            me.full = true;
            inner.config.retry_backoff
        }
        // The static instance's previous member has not left yet: ask again.
        UNRELEASED_INSTANCE_ID => inner.config.retry_backoff.max(me.interval),
        code => {
            // GROUP_MAX_SIZE_REACHED, UNSUPPORTED_ASSIGNOR, GROUP_ID_NOT_FOUND (a
            // classic group now), FENCED_INSTANCE_ID, ...: fatal to the membership, as
            // in Kafka's client. Its partitions are others' now; the application hears
            // of it, and the member starts over later, as after a restart.
            tracing::warn!(group, code, "consumer group heartbeat refused");
            group::lose(inner);
            me.epoch = 0;
            me.full = true;
            set_membership(inner, me).await;
            let _ = inner.items.send(Item::Error(group::group_error(code)));
            me.interval.max(inner.config.retry_backoff)
        }
    }
}

async fn heartbeat(inner: &Arc<Inner>, group: &str, me: &Member, topics: &[String]) -> Beat {
    let conn = match group::coordinator(inner, group).await {
        Ok(c) => c,
        Err(e) => return Beat::Failed(e),
    };
    let version = match conn.version(ApiKey::ConsumerGroupHeartbeat, 0, 1) {
        Ok(v) => v,
        Err(e) => return Beat::Failed(e.into()),
    };
    let mut req = ConsumerGroupHeartbeatRequest::default();
    req.group_id = GroupId(s(group));
    req.member_id = s(&me.id);
    req.member_epoch = me.epoch;
    req.instance_id = inner.config.group_instance_id.as_deref().map(s);
    req.rebalance_timeout_ms = if me.full {
        i32::try_from(inner.config.max_poll_interval.as_millis()).unwrap_or(i32::MAX)
    } else {
        -1
    };
    if me.full {
        req.subscribed_topic_names = Some(topics.iter().map(|t| TopicName(s(t))).collect());
        req.server_assignor = inner.config.group_remote_assignor.as_deref().map(s);
    }
    req.topic_partitions = Some(if me.epoch == 0 {
        Vec::new()
    } else {
        owned_by_id(inner, &me.ids)
    });
    match conn.request(&req, version).await {
        Ok(r) => Beat::Answer(r),
        Err(e) => Beat::Failed(e.into()),
    }
}

/// What this member owns, by topic ID.
fn owned_by_id(inner: &Inner, ids: &TopicIds) -> Vec<TopicPartitions> {
    let mut by_topic: HashMap<uuid::Uuid, Vec<i32>> = HashMap::new();
    for p in inner.assignment.all() {
        if let Some(id) = ids.by_name.get(&*p.tp.topic) {
            by_topic.entry(*id).or_default().push(p.tp.partition);
        }
    }
    by_topic
        .into_iter()
        .map(|(topic_id, mut partitions)| {
            partitions.sort_unstable();
            let mut tp = TopicPartitions::default();
            tp.topic_id = topic_id;
            tp.partitions = partitions;
            tp
        })
        .collect()
}

/// Moves to the assignment the broker sent: revokes what is gone, starts what is new.
async fn reconcile(
    inner: &Arc<Inner>,
    me: &mut Member,
    topics: &[String],
    assigned: Vec<(uuid::Uuid, Vec<i32>)>,
) {
    if assigned.iter().any(|(t, _)| !me.ids.by_id.contains_key(t)) {
        me.ids.refresh(inner, topics).await;
    }
    let mut target: BTreeSet<TopicPartition> = BTreeSet::new();
    let mut unnamed = false;
    for (topic, partitions) in &assigned {
        let Some(name) = me.ids.by_id.get(topic) else {
            tracing::debug!(%topic, "assigned a topic this consumer cannot name yet");
            unnamed = true;
            continue;
        };
        target.extend(
            partitions
                .iter()
                .map(|p| TopicPartition::new(name.as_str(), *p)),
        );
    }
    // Kept, and tried again after the next heartbeat.
    me.unresolved = unnamed.then_some(assigned);
    let current: Vec<TopicPartition> = inner
        .assignment
        .all()
        .iter()
        .map(|p| p.tp.clone())
        .collect();
    let revoked: Vec<TopicPartition> = current
        .iter()
        .filter(|tp| !target.contains(*tp))
        .cloned()
        .collect();
    group::revoke(inner, &revoked).await;
    let had: BTreeSet<&TopicPartition> = current.iter().collect();
    let added: Vec<TopicPartition> = target
        .iter()
        .filter(|tp| !had.contains(tp))
        .cloned()
        .collect();
    if added.is_empty() {
        return;
    }
    let states = inner.assignment.add(&added);
    if let Err(e) = inner.start(&states).await {
        tracing::warn!(error = %e, "positions for new partitions failed");
        let _ = inner.items.send(Item::Error(e));
    }
    if let Some(l) = &inner.listener {
        l.on_assigned(&added);
    }
    tracing::debug!(
        epoch = me.epoch,
        revoked = revoked.len(),
        added = added.len(),
        "reconciled"
    );
}

async fn leave_with(inner: &Arc<Inner>, group: &str, member: &str, epoch: i32) {
    let Ok(conn) = group::coordinator(inner, group).await else {
        return;
    };
    let Ok(version) = conn.version(ApiKey::ConsumerGroupHeartbeat, 0, 1) else {
        return;
    };
    let mut req = ConsumerGroupHeartbeatRequest::default();
    req.group_id = GroupId(s(group));
    req.member_id = s(member);
    req.member_epoch = epoch;
    req.instance_id = inner.config.group_instance_id.as_deref().map(s);
    req.rebalance_timeout_ms = -1;
    match conn.request(&req, version).await {
        Ok(r) if r.error_code == 0 => tracing::debug!(group, member, epoch, "left group"),
        Ok(r) => tracing::debug!(group, code = r.error_code, "leave refused"),
        Err(e) => tracing::debug!(group, error = %e, "leave failed"),
    }
}

/// The leave epoch: -1, or -2 for a static member (its partitions wait for it to come
/// back within the session timeout).
fn leave_epoch(inner: &Inner) -> i32 {
    if inner.config.group_instance_id.is_some() {
        STATIC_LEAVE
    } else {
        LEAVE
    }
}

/// Leaves the group on close.
pub(crate) async fn leave(inner: &Arc<Inner>) {
    let Some(group) = inner.config.group_id.clone() else {
        return;
    };
    let member = inner.membership.lock().await.member_id.clone();
    if member.is_empty() {
        return;
    }
    leave_with(inner, &group, &member, leave_epoch(inner)).await;
    let mut m = inner.membership.lock().await;
    m.member_id.clear();
    m.generation = -1;
}
