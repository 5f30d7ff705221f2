//! Group membership APIs: FindCoordinator (Fjord coordinates every group itself),
//! JoinGroup, SyncGroup, Heartbeat, LeaveGroup, and the admin views ListGroups,
//! DescribeGroups and DeleteGroups. The state machine is in [`crate::groups::group`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjord_protocol::kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use fjord_protocol::kafka_protocol::messages::delete_groups_response::{
    DeletableGroupResult, DeleteGroupsResponse,
};
use fjord_protocol::kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use fjord_protocol::kafka_protocol::messages::describe_groups_response::{
    DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};
use fjord_protocol::kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use fjord_protocol::kafka_protocol::messages::find_coordinator_response::{
    Coordinator, FindCoordinatorResponse,
};
use fjord_protocol::kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use fjord_protocol::kafka_protocol::messages::heartbeat_response::HeartbeatResponse;
use fjord_protocol::kafka_protocol::messages::join_group_request::JoinGroupRequest;
use fjord_protocol::kafka_protocol::messages::join_group_response::{
    JoinGroupResponse, JoinGroupResponseMember,
};
use fjord_protocol::kafka_protocol::messages::leave_group_request::LeaveGroupRequest;
use fjord_protocol::kafka_protocol::messages::leave_group_response::{
    LeaveGroupResponse, MemberResponse,
};
use fjord_protocol::kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use fjord_protocol::kafka_protocol::messages::list_groups_response::{
    ListGroupsResponse, ListedGroup,
};
use fjord_protocol::kafka_protocol::messages::sync_group_request::SyncGroupRequest;
use fjord_protocol::kafka_protocol::messages::sync_group_response::SyncGroupResponse;
use fjord_protocol::kafka_protocol::messages::{BrokerId, GroupId};

use super::{encode, mixed_groups, s, Ctx, Fatal, Response};
use crate::groups::coordinator::lock;
use crate::groups::group::{code, JoinParams, JoinResult, Reply, SyncResult};
use crate::groups::routing::Routed;
use crate::state::Broker;

fn ms(v: i32) -> Duration {
    Duration::from_millis(u64::try_from(v).unwrap_or(0))
}

/// Who sent the request, for DescribeGroups and member ids.
#[derive(Debug, Clone, Default)]
pub(super) struct Client {
    /// The header's client id.
    pub(super) client_id: String,
    /// The peer address as Kafka shows it ("/127.0.0.1").
    pub(super) host: String,
}

pub(super) fn find_coordinator(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: FindCoordinatorRequest,
) -> Result<Response, Fatal> {
    let (host, port) = broker.config.advertised(ctx.listener);
    let node = BrokerId(broker.config.node_id);
    // This broker coordinates every group (0) and every transactional id (1).
    let error = match req.key_type {
        0 | 1 => 0,
        _ => fjord_protocol::kafka_protocol::ResponseError::InvalidRequest.code(),
    };
    let message = (error != 0).then(|| s("key type must be 0 (group) or 1 (transaction)"));
    let mut resp = FindCoordinatorResponse::default();
    if ctx.version >= 4 {
        resp.coordinators = req
            .coordinator_keys
            .iter()
            .map(|key| {
                let mut c = Coordinator::default();
                c.key = key.clone();
                c.error_code = error;
                c.error_message = message.clone();
                if error == 0 {
                    c.node_id = node;
                    c.host = s(host.clone());
                    c.port = i32::from(port);
                } else {
                    c.node_id = BrokerId(-1);
                    c.port = -1;
                }
                c
            })
            .collect();
    } else {
        resp.error_code = error;
        if ctx.version >= 1 {
            resp.error_message = message;
        }
        if error == 0 {
            resp.node_id = node;
            resp.host = s(host);
            resp.port = i32::from(port);
        } else {
            resp.node_id = BrokerId(-1);
            resp.port = -1;
        }
    }
    encode(ctx, &resp)
}

fn join_response(ctx: Ctx, r: JoinResult) -> JoinGroupResponse {
    let mut resp = JoinGroupResponse::default();
    resp.error_code = r.error;
    resp.generation_id = r.generation;
    resp.protocol_type = if ctx.version >= 7 {
        r.protocol_type.map(s)
    } else {
        None
    };
    resp.protocol_name = match r.protocol {
        Some(p) => Some(s(p)),
        // Before v7 the name is not nullable.
        None if ctx.version < 7 => Some(s("")),
        None => None,
    };
    resp.leader = s(r.leader);
    resp.member_id = s(r.member_id);
    resp.skip_assignment = ctx.version >= 9 && r.skip_assignment;
    resp.members = r
        .members
        .into_iter()
        .map(|m| {
            let mut out = JoinGroupResponseMember::default();
            out.member_id = s(m.member_id);
            if ctx.version >= 5 {
                out.group_instance_id = m.instance_id.map(s);
            }
            out.metadata = m.metadata;
            out
        })
        .collect();
    resp
}

/// A JoinGroup answered with error `code` for member `member_id`.
fn join_refused(ctx: Ctx, member_id: &str, code: i16) -> Result<Response, Fatal> {
    let r = JoinResult {
        error: code,
        generation: -1,
        member_id: member_id.to_string(),
        ..Default::default()
    };
    encode(ctx, &join_response(ctx, r))
}

pub(super) async fn join_group(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: JoinGroupRequest,
    client: Client,
) -> Result<Response, Fatal> {
    let group_id = req.group_id.0.to_string();
    let fail = |e: i16| join_refused(ctx, &req.member_id, e);
    if group_id.is_empty() {
        return fail(code::INVALID_GROUP_ID);
    }
    let rebalance_timeout_ms = if ctx.version >= 1 {
        req.rebalance_timeout_ms
    } else {
        req.session_timeout_ms
    };
    let protocols: Vec<(String, Bytes)> = req
        .protocols
        .iter()
        .map(|p| (p.name.to_string(), p.metadata.clone()))
        .collect();
    // A group changes kind under a lock the join does not hold: it may be converted
    // between the lookup and the join, then the join looks again.
    for _ in 0..3 {
        // Routing may write a group's records and wait for the disk: off the reactor.
        let (b, id) = (Arc::clone(broker), group_id.clone());
        let routed = tokio::task::spawn_blocking(move || b.groups.route_join(&id))
            .await
            .map_err(|e| Fatal::Internal(format!("join routing failed: {e}")))?;
        let group = match routed {
            Routed::Classic(group) => group,
            Routed::Consumer(group) => {
                let join = mixed_groups::Join {
                    member_id: req.member_id.to_string(),
                    instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
                    session_timeout_ms: req.session_timeout_ms,
                    rebalance_timeout_ms,
                    protocol_type: req.protocol_type.to_string(),
                    protocols: protocols.clone(),
                    version: ctx.version,
                };
                let (b, c) = (Arc::clone(broker), client.clone());
                // It computes the group's assignment: off the reactor.
                let result =
                    tokio::task::spawn_blocking(move || mixed_groups::join(&b, join, c, &group))
                        .await
                        .map_err(|e| Fatal::Internal(format!("join task failed: {e}")))?;
                match result {
                    Some(r) => {
                        tracing::debug!(group = %group_id, member = %r.member_id, generation = r.generation, error = r.error, "join consumer group (classic member)");
                        return encode(ctx, &join_response(ctx, r));
                    }
                    None => continue,
                }
            }
        };
        if lock(&group).phase == crate::groups::Phase::Dead {
            continue;
        }
        return classic_join(
            ctx,
            &req,
            client,
            protocols,
            rebalance_timeout_ms,
            broker,
            &group,
        )
        .await;
    }
    fail(code::COORDINATOR_NOT_AVAILABLE)
}

async fn classic_join(
    ctx: Ctx,
    req: &JoinGroupRequest,
    client: Client,
    protocols: Vec<(String, Bytes)>,
    rebalance_timeout_ms: i32,
    broker: &Arc<Broker>,
    group: &crate::groups::coordinator::SharedGroup,
) -> Result<Response, Fatal> {
    let group_id = req.group_id.0.to_string();
    let fail = |e: i16| join_refused(ctx, &req.member_id, e);
    let params = JoinParams {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
        client_id: client.client_id,
        client_host: client.host,
        session_timeout: ms(req.session_timeout_ms),
        rebalance_timeout: ms(rebalance_timeout_ms),
        protocol_type: req.protocol_type.to_string(),
        protocols,
        version: ctx.version,
    };
    let reply = lock(group).join(params, &broker.groups.config.limits, Instant::now());
    let result = match reply {
        Reply::Now(r) => r,
        Reply::Wait(rx) => match rx.await {
            Ok(r) => r,
            Err(_) => return fail(code::UNKNOWN_MEMBER_ID),
        },
    };
    tracing::debug!(group = %group_id, member = %result.member_id, generation = result.generation, error = result.error, "join group");
    encode(ctx, &join_response(ctx, result))
}

fn sync_response(ctx: Ctx, r: SyncResult) -> SyncGroupResponse {
    let mut resp = SyncGroupResponse::default();
    resp.error_code = r.error;
    if ctx.version >= 5 {
        resp.protocol_type = r.protocol_type.map(s);
        resp.protocol_name = r.protocol.map(s);
    }
    resp.assignment = r.assignment;
    resp
}

pub(super) async fn sync_group(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: SyncGroupRequest,
) -> Result<Response, Fatal> {
    let group_id = req.group_id.0.to_string();
    // A consumer group's lock can be held across a write's fsync: off the reactor.
    let (b, id) = (Arc::clone(broker), group_id.clone());
    let routed = tokio::task::spawn_blocking(move || b.groups.route_existing(&id))
        .await
        .map_err(|e| Fatal::Internal(format!("sync routing failed: {e}")))?;
    if let Some(Routed::Consumer(g)) = routed.clone() {
        let member = req.member_id.to_string();
        let instance = req.group_instance_id.as_ref().map(|i| i.to_string());
        let (generation, protocol_type, protocol) = (
            req.generation_id,
            req.protocol_type.as_ref().map(|t| t.to_string()),
            req.protocol_name.as_ref().map(|p| p.to_string()),
        );
        let result = tokio::task::spawn_blocking(move || {
            mixed_groups::sync(
                &member,
                instance.as_deref(),
                generation,
                protocol_type.as_deref(),
                protocol.as_deref(),
                &g,
            )
        })
        .await
        .map_err(|e| Fatal::Internal(format!("sync failed: {e}")))?
        .unwrap_or(SyncResult {
            error: code::REBALANCE_IN_PROGRESS,
            ..Default::default()
        });
        tracing::debug!(group = %group_id, member = %req.member_id, generation = req.generation_id, error = result.error, "sync consumer group (classic member)");
        return encode(ctx, &sync_response(ctx, result));
    }
    let Some(Routed::Classic(group)) = routed else {
        let code = if group_id.is_empty() {
            code::INVALID_GROUP_ID
        } else {
            code::UNKNOWN_MEMBER_ID
        };
        return encode(
            ctx,
            &sync_response(
                ctx,
                SyncResult {
                    error: code,
                    ..Default::default()
                },
            ),
        );
    };
    let assignments: Vec<(String, Bytes)> = req
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.clone()))
        .collect();
    let reply = lock(&group).sync(
        req.member_id.as_str(),
        req.group_instance_id.as_deref(),
        req.generation_id,
        req.protocol_type.as_deref(),
        req.protocol_name.as_deref(),
        assignments,
        Instant::now(),
    );
    let result = match reply {
        Reply::Now(r) => r,
        Reply::Wait(rx) => rx.await.unwrap_or(SyncResult {
            error: code::UNKNOWN_MEMBER_ID,
            ..Default::default()
        }),
    };
    tracing::debug!(group = %group_id, member = %req.member_id, generation = req.generation_id, error = result.error, "sync group");
    encode(ctx, &sync_response(ctx, result))
}

pub(super) fn heartbeat(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: HeartbeatRequest,
) -> Result<Response, Fatal> {
    let group_id = req.group_id.0.to_string();
    let error = match broker.groups.route_existing(&group_id) {
        None if group_id.is_empty() => code::INVALID_GROUP_ID,
        None => code::UNKNOWN_MEMBER_ID,
        // Converted meanwhile: rejoin, into the group it became.
        Some(Routed::Consumer(g)) => mixed_groups::heartbeat(
            req.member_id.as_str(),
            req.group_instance_id.as_deref(),
            req.generation_id,
            &g,
        )
        .unwrap_or(code::REBALANCE_IN_PROGRESS),
        Some(Routed::Classic(group)) => lock(&group).heartbeat(
            req.member_id.as_str(),
            req.group_instance_id.as_deref(),
            req.generation_id,
            Instant::now(),
        ),
    };
    if error != 0 {
        tracing::debug!(group = %group_id, member = %req.member_id, generation = req.generation_id, error, "heartbeat refused");
    }
    let mut resp = HeartbeatResponse::default();
    resp.error_code = error;
    encode(ctx, &resp)
}

pub(super) fn leave_group(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: LeaveGroupRequest,
) -> Result<Response, Fatal> {
    let group_id = req.group_id.0.to_string();
    // v0-2 name one member; v3+ a batch, each with its own result.
    let leaving: Vec<(String, Option<String>)> = if ctx.version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let mut resp = LeaveGroupResponse::default();
    let routed = broker.groups.route_existing(&group_id);
    let consumer_results = match &routed {
        Some(Routed::Consumer(g)) => Some(
            mixed_groups::leave(broker, &group_id, &leaving, g)
                .unwrap_or_else(|| vec![code::UNKNOWN_MEMBER_ID; leaving.len()]),
        ),
        _ => None,
    };
    if let Some(results) = consumer_results {
        return encode(ctx, &leave_response(ctx, &leaving, &results));
    }
    let Some(Routed::Classic(group)) = routed else {
        if group_id.is_empty() {
            resp.error_code = code::INVALID_GROUP_ID;
        } else if ctx.version >= 3 {
            // Batched leaves answer per member.
            for (member, instance) in leaving {
                let mut r = MemberResponse::default();
                r.member_id = s(member);
                r.group_instance_id = instance.map(s);
                r.error_code = code::UNKNOWN_MEMBER_ID;
                resp.members.push(r);
            }
        } else {
            resp.error_code = code::UNKNOWN_MEMBER_ID;
        }
        return encode(ctx, &resp);
    };
    let now = Instant::now();
    let limits = &broker.groups.config.limits;
    let results: Vec<i16> = {
        let mut g = lock(&group);
        leaving
            .iter()
            .map(|(member, instance)| g.leave(member, instance.as_deref(), limits, now))
            .collect()
    };
    for ((member, _), error) in leaving.iter().zip(&results) {
        tracing::debug!(group = %group_id, %member, error, "leave group");
    }
    encode(ctx, &leave_response(ctx, &leaving, &results))
}

/// A LeaveGroup answer: per member from v3, else the one member's error.
fn leave_response(
    ctx: Ctx,
    leaving: &[(String, Option<String>)],
    results: &[i16],
) -> LeaveGroupResponse {
    let mut resp = LeaveGroupResponse::default();
    if ctx.version >= 3 {
        for ((member, instance), error) in leaving.iter().zip(results) {
            let mut r = MemberResponse::default();
            r.member_id = s(member.clone());
            r.group_instance_id = instance.clone().map(s);
            r.error_code = *error;
            resp.members.push(r);
        }
    } else {
        resp.error_code = results.first().copied().unwrap_or(0);
    }
    resp
}

pub(super) fn list_groups(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: ListGroupsRequest,
) -> Result<Response, Fatal> {
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_lowercase()).collect();
    let mut resp = ListGroupsResponse::default();
    for g in broker.groups.list() {
        if !states.is_empty() && !states.contains(&g.state.to_lowercase()) {
            continue;
        }
        if !types.is_empty() && !types.iter().any(|t| t == g.group_type) {
            continue;
        }
        let mut l = ListedGroup::default();
        l.group_id = GroupId(s(g.id));
        l.protocol_type = s(g.protocol_type);
        if ctx.version >= 4 {
            l.group_state = s(g.state);
        }
        if ctx.version >= 5 {
            l.group_type = s(g.group_type);
        }
        resp.groups.push(l);
    }
    encode(ctx, &resp)
}

/// Kafka's GROUP_ID_NOT_FOUND.
const GROUP_ID_NOT_FOUND: i16 = 69;

pub(super) fn describe_groups(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: DescribeGroupsRequest,
) -> Result<Response, Fatal> {
    let mut resp = DescribeGroupsResponse::default();
    for id in &req.groups {
        let mut d = DescribedGroup::default();
        d.group_id = id.clone();
        d.authorized_operations = i32::MIN;
        let name = id.0.to_string();
        match broker.groups.group(&name) {
            Some(group) => {
                let g = lock(&group);
                d.group_state = s(g.phase.name());
                d.protocol_type = s(g.protocol_type.clone().unwrap_or_default());
                // Kafka names the protocol only once the group is Stable.
                if g.phase == crate::groups::Phase::Stable {
                    d.protocol_data = s(g.protocol.clone().unwrap_or_default());
                }
                d.members = g
                    .members()
                    .into_iter()
                    .map(|m| {
                        let mut out = DescribedGroupMember::default();
                        out.member_id = s(m.member_id);
                        if ctx.version >= 4 {
                            out.group_instance_id = m.instance_id.map(s);
                        }
                        out.client_id = s(m.client_id);
                        out.client_host = s(m.client_host);
                        out.member_metadata = m.metadata;
                        out.member_assignment = m.assignment;
                        out
                    })
                    .collect();
            }
            None if name.is_empty() => d.error_code = code::INVALID_GROUP_ID,
            // A KIP-848 group is not a classic one: ConsumerGroupDescribe shows it.
            None if broker.groups.consumer.get(&name).is_some() => {
                d.group_state = s("Dead");
                if ctx.version >= 6 {
                    d.error_code = GROUP_ID_NOT_FOUND;
                    d.error_message = Some(s(format!("Group {name} is not a classic group.")));
                }
            }
            None if broker.groups.exists(&name) => d.group_state = s("Empty"),
            // Kafka describes an unknown group as Dead, from v6 with GROUP_ID_NOT_FOUND.
            None => {
                d.group_state = s("Dead");
                if ctx.version >= 6 {
                    d.error_code = GROUP_ID_NOT_FOUND;
                    d.error_message = Some(s(format!("Group {name} not found.")));
                }
            }
        }
        resp.groups.push(d);
    }
    encode(ctx, &resp)
}

pub(super) fn delete_groups(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: DeleteGroupsRequest,
) -> Result<Response, Fatal> {
    let mut resp = DeleteGroupsResponse::default();
    for id in req.groups_names {
        let mut r = DeletableGroupResult::default();
        r.error_code = match broker.groups.delete_group(id.0.as_str()) {
            Ok(()) => 0,
            Err(code) => code,
        };
        r.group_id = id;
        resp.results.push(r);
    }
    encode(ctx, &resp)
}
