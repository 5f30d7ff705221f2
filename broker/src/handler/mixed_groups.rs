//! The classic group APIs (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) addressed to a
//! consumer group: its classic-protocol members during an online migration. The state
//! machine is in [`crate::groups::consumer::classic`]; here the requests become its
//! calls and its answers the classic results the encoders know.

use std::sync::Arc;

use bytes::Bytes;

use super::consumer_groups::topics;
use super::groups::Client;
use crate::groups::consumer::classic::ClassicJoin;
use crate::groups::consumer::{self, SharedConsumerGroup};
use crate::groups::group::{code, JoinResult, SyncResult};
use crate::state::Broker;

/// A JoinGroup as the consumer group takes it.
pub(super) struct Join {
    pub(super) member_id: String,
    pub(super) instance_id: Option<String>,
    pub(super) session_timeout_ms: i32,
    pub(super) rebalance_timeout_ms: i32,
    pub(super) protocol_type: String,
    pub(super) protocols: Vec<(String, Bytes)>,
    pub(super) version: i16,
}

/// A JoinGroup from a classic member of consumer group `group`; `None` if the group
/// changed kind meanwhile (look it up again).
pub(super) fn join(
    broker: &Arc<Broker>,
    j: Join,
    client: Client,
    group: &SharedConsumerGroup,
) -> Option<JoinResult> {
    let limits = &broker.groups.config.limits;
    let session =
        std::time::Duration::from_millis(u64::try_from(j.session_timeout_ms).unwrap_or(0));
    if session < limits.min_session || session > limits.max_session {
        return Some(JoinResult {
            error: code::INVALID_SESSION_TIMEOUT,
            generation: -1,
            member_id: j.member_id,
            ..Default::default()
        });
    }
    let topics = topics(broker);
    let mut g = consumer::lock(group);
    if g.dead {
        return None;
    }
    let join = ClassicJoin {
        member_id: j.member_id,
        instance_id: j.instance_id,
        client_id: client.client_id,
        client_host: client.host,
        session_timeout_ms: j.session_timeout_ms,
        rebalance_timeout_ms: j.rebalance_timeout_ms,
        protocol_type: j.protocol_type,
        protocols: j.protocols,
        version: j.version,
    };
    let result = g.classic_join(
        join,
        &topics,
        &broker.groups.consumer.config,
        consumer::now_ms(),
    );
    broker.groups.persist_consumer(&g);
    Some(match result {
        Ok(joined) => JoinResult {
            error: code::NONE,
            generation: joined.generation,
            protocol_type: Some("consumer".to_string()),
            protocol: Some(joined.protocol),
            // The broker assigned: no member leads.
            leader: String::new(),
            member_id: joined.member_id,
            members: Vec::new(),
            skip_assignment: false,
        },
        Err((error, member_id)) => JoinResult {
            error,
            generation: -1,
            member_id,
            ..Default::default()
        },
    })
}

/// A SyncGroup from a classic member; `None` if the group changed kind meanwhile.
pub(super) fn sync(
    member_id: &str,
    instance_id: Option<&str>,
    generation: i32,
    protocol_type: Option<&str>,
    protocol: Option<&str>,
    group: &SharedConsumerGroup,
) -> Option<SyncResult> {
    let mut g = consumer::lock(group);
    if g.dead {
        return None;
    }
    let result = g.classic_sync(
        member_id,
        instance_id,
        generation,
        protocol_type,
        protocol,
        consumer::now_ms(),
    );
    let name = g
        .members
        .get(member_id)
        .and_then(|m| m.classic.as_ref())
        .and_then(|c| c.meta.protocols.first())
        .map(|(n, _)| n.clone());
    Some(match result {
        Ok(assignment) => SyncResult {
            error: code::NONE,
            protocol_type: Some("consumer".to_string()),
            protocol: name,
            assignment,
        },
        Err(error) => SyncResult {
            error,
            ..Default::default()
        },
    })
}

/// A Heartbeat from a classic member; `None` if the group changed kind meanwhile.
pub(super) fn heartbeat(
    member_id: &str,
    instance_id: Option<&str>,
    generation: i32,
    group: &SharedConsumerGroup,
) -> Option<i16> {
    let mut g = consumer::lock(group);
    if g.dead {
        return None;
    }
    Some(g.classic_heartbeat(member_id, instance_id, generation, consumer::now_ms()))
}

/// A LeaveGroup's members leaving consumer group `id`; `None` if the group changed
/// kind meanwhile. A group left with classic members only becomes a classic group.
pub(super) fn leave(
    broker: &Arc<Broker>,
    id: &str,
    leaving: &[(String, Option<String>)],
    group: &SharedConsumerGroup,
) -> Option<Vec<i16>> {
    let mut g = consumer::lock(group);
    if g.dead {
        return None;
    }
    let results = leaving
        .iter()
        .map(|(member, instance)| g.classic_leave(member, instance.as_deref()))
        .collect();
    broker.groups.persist_consumer(&g);
    drop(g);
    broker.groups.downgrade_if_classic(id);
    Some(results)
}
