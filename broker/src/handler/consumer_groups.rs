//! KIP-848 consumer groups on the wire: ConsumerGroupHeartbeat (68) and
//! ConsumerGroupDescribe (69). The state machine is in [`crate::groups::consumer`]; here
//! are Kafka's request checks, the topics the group sees, and the encodings.

use std::sync::Arc;

use fjord_protocol::kafka_protocol::messages::consumer_group_describe_request::ConsumerGroupDescribeRequest;
use fjord_protocol::kafka_protocol::messages::consumer_group_describe_response::{
    self as describe, ConsumerGroupDescribeResponse, DescribedGroup,
};
use fjord_protocol::kafka_protocol::messages::consumer_group_heartbeat_request::ConsumerGroupHeartbeatRequest;
use fjord_protocol::kafka_protocol::messages::consumer_group_heartbeat_response::{
    self as heartbeat, ConsumerGroupHeartbeatResponse,
};
use fjord_protocol::kafka_protocol::messages::TopicName;
use fjord_protocol::kafka_protocol::ResponseError as E;

use super::{encode, s, Ctx, Fatal, Response};
use crate::groups::consumer::assignor::Assignment;
use crate::groups::consumer::{self, Heartbeat, Topics};
use crate::state::Broker;

/// The topics as a group sees them: name to (ID, partitions).
pub(super) fn topics(broker: &Broker) -> Topics {
    broker
        .all_topics()
        .into_iter()
        .map(|t| {
            let n = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
            (t.name.clone(), (t.id, n))
        })
        .collect()
}

/// Kafka's checks of a heartbeat that need no group state (INVALID_REQUEST).
fn invalid(req: &ConsumerGroupHeartbeatRequest, version: i16) -> Option<&'static str> {
    let blank = |v: &Option<_>| {
        v.as_ref()
            .is_some_and(|x: &fjord_protocol::kafka_protocol::protocol::StrBytes| {
                x.trim().is_empty()
            })
    };
    let epoch = req.member_epoch;
    if req.group_id.0.trim().is_empty() {
        return Some("GroupId can't be empty.");
    }
    // The group's records store IDs with an int16 length.
    let too_long = |s: &str| s.len() > i16::MAX as usize;
    if too_long(&req.group_id.0)
        || too_long(&req.member_id)
        || req.instance_id.as_deref().is_some_and(too_long)
    {
        return Some("An ID is longer than 32767 bytes.");
    }
    if blank(&req.instance_id) {
        return Some("InstanceId can't be empty.");
    }
    if blank(&req.rack_id) {
        return Some("RackId can't be empty.");
    }
    if req.member_id.trim().is_empty() && (version >= 1 || epoch > 0 || epoch == -1) {
        return Some("MemberId can't be empty.");
    }
    match epoch {
        0 if req.rebalance_timeout_ms == -1 => {
            Some("RebalanceTimeoutMs must be provided in first request.")
        }
        0 if req.topic_partitions.as_ref().is_none_or(|tp| !tp.is_empty()) => {
            Some("TopicPartitions must be empty when (re-)joining.")
        }
        0 if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() => {
            Some("Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.")
        }
        -2 if req.instance_id.is_none() => Some("InstanceId can't be null."),
        e if e < -2 => Some("MemberEpoch is invalid."),
        _ => None,
    }
}

fn assignment_of(
    tps: &[fjord_protocol::kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions],
) -> Assignment {
    let mut out = Assignment::new();
    for tp in tps {
        out.entry(tp.topic_id)
            .or_default()
            .extend(tp.partitions.iter().copied());
    }
    out
}

pub(super) fn heartbeat(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: ConsumerGroupHeartbeatRequest,
    client_id: String,
    client_host: String,
) -> Result<Response, Fatal> {
    let mut resp = ConsumerGroupHeartbeatResponse::default();
    let refuse = |mut resp: ConsumerGroupHeartbeatResponse, code: E, message: String| {
        resp.error_code = code.code();
        resp.error_message = Some(s(message));
        resp.member_epoch = -1;
        encode(ctx, &resp)
    };
    if let Some(why) = invalid(&req, ctx.version) {
        return refuse(resp, E::InvalidRequest, why.to_string());
    }
    let group_id = req.group_id.0.to_string();
    let hb = Heartbeat {
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|i| i.to_string()),
        rack_id: req.rack_id.as_ref().map(|r| r.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        topic_names: req
            .subscribed_topic_names
            .as_ref()
            .map(|ns| ns.iter().map(|n| n.0.to_string()).collect()),
        topic_regex: req.subscribed_topic_regex.as_ref().map(|r| r.to_string()),
        server_assignor: req.server_assignor.as_ref().map(|a| a.to_string()),
        owned: req.topic_partitions.as_deref().map(assignment_of),
        client_id,
        client_host,
    };
    let topics = topics(broker);
    tracing::debug!(group = %group_id, member = %hb.member_id, epoch = hb.member_epoch, names = ?hb.topic_names, regex = ?hb.topic_regex, owned = ?hb.owned, "consumer group heartbeat");
    match broker
        .groups
        .consumer_heartbeat(&group_id, hb, &topics, consumer::now_ms())
    {
        Err((code, message)) => {
            tracing::debug!(group = %group_id, error = ?code, %message, "consumer group heartbeat refused");
            refuse(resp, code, message)
        }
        Ok(answer) => {
            resp.member_id = Some(s(answer.member_id));
            resp.member_epoch = answer.member_epoch;
            if answer.member_epoch >= 0 {
                resp.heartbeat_interval_ms = broker.groups.consumer.config.heartbeat_interval_ms;
            }
            resp.assignment = answer.assignment.map(|a| {
                let mut out = heartbeat::Assignment::default();
                out.topic_partitions = a
                    .into_iter()
                    .map(|(topic_id, parts)| {
                        let mut tp = heartbeat::TopicPartitions::default();
                        tp.topic_id = topic_id;
                        tp.partitions = parts.into_iter().collect();
                        tp
                    })
                    .collect();
                out
            });
            encode(ctx, &resp)
        }
    }
}

/// An assignment as ConsumerGroupDescribe shows it: topics by ID and name (topics that
/// no longer exist are left out, as Kafka does).
fn described(
    a: &Assignment,
    names: &std::collections::HashMap<uuid::Uuid, String>,
) -> describe::Assignment {
    let mut out = describe::Assignment::default();
    out.topic_partitions = a
        .iter()
        .filter_map(|(id, parts)| {
            let name = names.get(id)?;
            let mut tp = describe::TopicPartitions::default();
            tp.topic_id = *id;
            tp.topic_name = TopicName(s(name.clone()));
            tp.partitions = parts.iter().copied().collect();
            Some(tp)
        })
        .collect();
    out
}

pub(super) fn describe_groups(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: ConsumerGroupDescribeRequest,
) -> Result<Response, Fatal> {
    let names: std::collections::HashMap<uuid::Uuid, String> = topics(broker)
        .into_iter()
        .map(|(name, (id, _))| (id, name))
        .collect();
    let mut resp = ConsumerGroupDescribeResponse::default();
    for id in req.group_ids {
        let mut d = DescribedGroup::default();
        d.group_id = id.clone();
        d.authorized_operations = i32::MIN;
        let name = id.0.to_string();
        let Some(group) = broker.groups.consumer.get(&name) else {
            (d.error_code, d.error_message) = if name.is_empty() {
                (E::InvalidGroupId.code(), None)
            } else if broker.groups.exists(&name) {
                (
                    E::GroupIdNotFound.code(),
                    Some(s(format!("Group {name} is not a consumer group."))),
                )
            } else {
                (
                    E::GroupIdNotFound.code(),
                    Some(s(format!("Group {name} not found."))),
                )
            };
            resp.groups.push(d);
            continue;
        };
        let g = consumer::lock(&group);
        d.group_state = s(g.state());
        d.group_epoch = g.group_epoch;
        d.assignment_epoch = g.assignment_epoch;
        d.assignor_name = s(g.assignor(&broker.groups.consumer.config));
        d.members = g
            .members
            .values()
            .map(|m| {
                let mut out = describe::Member::default();
                out.member_id = s(m.id.clone());
                out.instance_id = m.instance_id.clone().map(s);
                out.rack_id = m.rack_id.clone().map(s);
                out.member_epoch = m.current.epoch;
                out.client_id = s(m.client_id.clone());
                out.client_host = s(m.client_host.clone());
                out.subscribed_topic_names = m
                    .topic_names
                    .iter()
                    .map(|n| TopicName(s(n.clone())))
                    .collect();
                out.subscribed_topic_regex = m.topic_regex.clone().map(s);
                let mut owned = m.current.assigned.clone();
                for (t, parts) in &m.current.pending_revocation {
                    owned.entry(*t).or_default().extend(parts);
                }
                out.assignment = described(&owned, &names);
                out.target_assignment =
                    described(&g.targets.get(&m.id).cloned().unwrap_or_default(), &names);
                if ctx.version >= 1 {
                    // Kafka's MemberType: 0 classic protocol, 1 consumer protocol.
                    out.member_type = if m.classic.is_some() { 0 } else { 1 };
                }
                out
            })
            .collect();
        resp.groups.push(d);
    }
    encode(ctx, &resp)
}
