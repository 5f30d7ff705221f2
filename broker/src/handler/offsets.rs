//! Committed offsets: OffsetCommit (fenced by generation and member), OffsetFetch (one
//! group, or many from v8) and OffsetDelete.

use std::sync::Arc;
use std::time::Instant;

use fjord_protocol::kafka_protocol::messages::offset_commit_request::OffsetCommitRequest;
use fjord_protocol::kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use fjord_protocol::kafka_protocol::messages::offset_delete_request::OffsetDeleteRequest;
use fjord_protocol::kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponse, OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use fjord_protocol::kafka_protocol::messages::offset_fetch_request::OffsetFetchRequest;
use fjord_protocol::kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponseGroup, OffsetFetchResponsePartition,
    OffsetFetchResponsePartitions, OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use fjord_protocol::kafka_protocol::messages::{ConsumerProtocolSubscription, TopicName};
use fjord_protocol::kafka_protocol::protocol::{Decodable, StrBytes};
use fjord_protocol::kafka_protocol::ResponseError as E;

use super::{encode, Ctx, Fatal, Response};
use crate::groups::coordinator::lock;
use crate::groups::group::code;
use crate::groups::offset_records::Committed;
use crate::groups::offset_store::{now_ms, TopicPartition};
use crate::groups::Phase;
use crate::state::Broker;

const GROUP_ID_NOT_FOUND: i16 = 69;
const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;

fn partition_exists(broker: &Broker, topic: &str, partition: i32) -> bool {
    broker
        .topic(topic)
        .is_some_and(|t| usize::try_from(partition).is_ok_and(|p| p < t.partitions.len()))
}

/// Checks the commit against the group (creating an Empty one for a first
/// manual-assignment commit, as Kafka does). `Ok` or the error for every partition.
fn check_group(broker: &Broker, req: &OffsetCommitRequest, version: i16) -> Result<(), i16> {
    let group_id = req.group_id.0.as_str();
    if group_id.is_empty() {
        return Err(code::INVALID_GROUP_ID);
    }
    let generation = req.generation_id_or_member_epoch;
    if let Some(group) = broker.groups.consumer.get(group_id) {
        // A KIP-848 member commits with its member epoch, from v9 on (Kafka refuses
        // older versions from such members).
        if version < 9 && generation >= 0 {
            return Err(fjord_protocol::kafka_protocol::ResponseError::UnsupportedVersion.code());
        }
        let g = crate::groups::consumer::lock(&group);
        return g
            .check_commit(req.member_id.as_str(), generation)
            .map_err(|e| e.code());
    }
    let group = match broker.groups.group(group_id) {
        Some(g) => g,
        None if generation < 0 => broker.groups.group_or_create(group_id),
        None => return Err(code::ILLEGAL_GENERATION),
    };
    let result = lock(&group).check_commit(
        req.member_id.as_str(),
        req.group_instance_id.as_deref(),
        generation,
        Instant::now(),
    );
    result
}

pub(super) fn offset_commit(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: OffsetCommitRequest,
) -> Result<Response, Fatal> {
    let group_error = if req.group_id.0.len() > i16::MAX as usize {
        // The offsets record stores the group id with an i16 length.
        Some(code::INVALID_GROUP_ID)
    } else {
        check_group(broker, &req, ctx.version).err()
    };
    let max_metadata = broker
        .groups
        .config
        .offset_metadata_max_bytes
        .min(i16::MAX as usize);
    let now = now_ms();
    let mut entries: Vec<(TopicPartition, Option<Committed>)> = Vec::new();
    let mut resp = OffsetCommitResponse::default();
    for topic in &req.topics {
        let name = topic.name.0.to_string();
        let mut t = OffsetCommitResponseTopic::default();
        t.name = topic.name.clone();
        for p in &topic.partitions {
            let error = if let Some(e) = group_error {
                e
            } else if !partition_exists(broker, &name, p.partition_index) {
                E::UnknownTopicOrPartition.code()
            } else if p
                .committed_metadata
                .as_ref()
                .is_some_and(|m| m.len() > max_metadata)
            {
                E::OffsetMetadataTooLarge.code()
            } else {
                entries.push((
                    (name.clone(), p.partition_index),
                    Some(Committed {
                        offset: p.committed_offset,
                        leader_epoch: if ctx.version >= 6 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                        commit_ms: now,
                    }),
                ));
                0
            };
            let mut r = OffsetCommitResponsePartition::default();
            r.partition_index = p.partition_index;
            r.error_code = error;
            t.partitions.push(r);
        }
        resp.topics.push(t);
    }
    let stored = broker
        .groups
        .offsets
        .write(req.group_id.0.as_str(), &entries)
        .and_then(|ticket| match ticket {
            // With fjord.fsync.on.ack the commit is answered once it is on disk (this
            // handler runs on the blocking pool).
            Some(ticket) => ticket.wait().map_err(Into::into),
            None => Ok(()),
        });
    if let Err(e) = stored {
        tracing::error!(group = %req.group_id.0, error = %e, "storing offsets failed");
        for t in &mut resp.topics {
            for p in &mut t.partitions {
                if p.error_code == 0 {
                    p.error_code = E::KafkaStorageError.code();
                }
            }
        }
    }
    encode(ctx, &resp)
}

/// KIP-447: a consumer asking for stable offsets (OffsetFetch v7+ `require_stable`, what
/// read_committed consumers send) is told to retry while an open transaction holds an
/// offset for the partition.
const UNSTABLE_OFFSET_COMMIT: i16 = 88;

fn unstable(broker: &Broker, require_stable: bool, group: &str, topic: &str, p: i32) -> bool {
    require_stable && broker.groups.offsets.has_pending(group, topic, p)
}

/// One partition's committed offset, or -1 with no metadata.
fn fetched(broker: &Broker, group: &str, topic: &str, partition: i32) -> (i64, i32, String) {
    match broker.groups.offsets.committed(group, topic, partition) {
        Some(c) => (c.offset, c.leader_epoch, c.metadata.unwrap_or_default()),
        None => (-1, -1, String::new()),
    }
}

/// The partitions to answer for: the ones asked, or (topics = null) all committed.
fn wanted(
    broker: &Broker,
    group: &str,
    asked: Option<Vec<(String, Vec<i32>)>>,
) -> Vec<(String, Vec<i32>)> {
    match asked {
        Some(topics) => topics,
        None => {
            let mut by_topic: Vec<(String, Vec<i32>)> = Vec::new();
            for (topic, partition) in broker.groups.offsets.group(group).into_keys() {
                match by_topic.last_mut() {
                    Some((t, ps)) if *t == topic => ps.push(partition),
                    _ => by_topic.push((topic, vec![partition])),
                }
            }
            by_topic
        }
    }
}

pub(super) fn offset_fetch(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: OffsetFetchRequest,
) -> Result<Response, Fatal> {
    let mut resp = OffsetFetchResponse::default();
    let epoch = |e: i32| if ctx.version >= 5 { e } else { -1 };
    if ctx.version >= 8 {
        for g in &req.groups {
            let group = g.group_id.0.to_string();
            let asked = g.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                    .collect()
            });
            let mut out = OffsetFetchResponseGroup::default();
            out.group_id = g.group_id.clone();
            if group.is_empty() {
                out.error_code = code::INVALID_GROUP_ID;
            }
            if let Some(cg) = broker.groups.consumer.get(&group) {
                let member = g.member_id.as_ref().map(|m| m.as_str());
                if let Err(e) =
                    crate::groups::consumer::lock(&cg).check_fetch(member, g.member_epoch)
                {
                    out.error_code = e.code();
                    resp.groups.push(out);
                    continue;
                }
            }
            for (topic, partitions) in wanted(broker, &group, asked) {
                let mut t = OffsetFetchResponseTopics::default();
                t.name = TopicName(StrBytes::from_string(topic.clone()));
                for p in partitions {
                    let (offset, leader_epoch, metadata) = fetched(broker, &group, &topic, p);
                    let mut r = OffsetFetchResponsePartitions::default();
                    r.partition_index = p;
                    r.committed_offset = offset;
                    r.committed_leader_epoch = leader_epoch;
                    r.metadata = Some(StrBytes::from_string(metadata));
                    if unstable(broker, req.require_stable, &group, &topic, p) {
                        (r.error_code, r.committed_offset) = (UNSTABLE_OFFSET_COMMIT, -1);
                    }
                    t.partitions.push(r);
                }
                out.topics.push(t);
            }
            resp.groups.push(out);
        }
        return encode(ctx, &resp);
    }
    let group = req.group_id.0.to_string();
    let asked = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    if group.is_empty() && ctx.version >= 2 {
        resp.error_code = code::INVALID_GROUP_ID;
    }
    for (topic, partitions) in wanted(broker, &group, asked) {
        let mut t = OffsetFetchResponseTopic::default();
        t.name = TopicName(StrBytes::from_string(topic.clone()));
        for p in partitions {
            let (offset, leader_epoch, metadata) = fetched(broker, &group, &topic, p);
            let mut r = OffsetFetchResponsePartition::default();
            r.partition_index = p;
            r.committed_offset = offset;
            r.committed_leader_epoch = epoch(leader_epoch);
            r.metadata = Some(StrBytes::from_string(metadata));
            if unstable(broker, req.require_stable, &group, &topic, p) {
                (r.error_code, r.committed_offset) = (UNSTABLE_OFFSET_COMMIT, -1);
            }
            t.partitions.push(r);
        }
        resp.topics.push(t);
    }
    encode(ctx, &resp)
}

/// Topics the group's members subscribe to (consumer protocol groups only): a KIP-848
/// group's by name and by regex, a classic group's from their embedded subscriptions.
fn subscribed_topics(broker: &Broker, group: &str) -> Vec<String> {
    if let Some(g) = broker.groups.consumer.get(group) {
        let g = crate::groups::consumer::lock(&g);
        return g
            .subscribed()
            .into_iter()
            .map(|(_, name, _)| name)
            .chain(
                g.members
                    .values()
                    .flat_map(|m| m.topic_names.iter().cloned()),
            )
            .collect();
    }
    let Some(g) = broker.groups.group(group) else {
        return Vec::new();
    };
    let g = lock(&g);
    if g.phase == Phase::Empty || g.protocol_type.as_deref() != Some("consumer") {
        return Vec::new();
    }
    let mut topics = Vec::new();
    for metadata in g.member_metadata() {
        let mut buf = metadata;
        if buf.len() < 2 {
            continue;
        }
        let version = i16::from_be_bytes([buf[0], buf[1]]);
        let _ = bytes::Buf::get_i16(&mut buf);
        // Subscriptions of a newer version than we know decode as the newest we know.
        let version = version.clamp(0, 3);
        if let Ok(sub) = ConsumerProtocolSubscription::decode(&mut buf, version) {
            topics.extend(sub.topics.iter().map(|t| t.to_string()));
        }
    }
    topics
}

pub(super) fn offset_delete(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: OffsetDeleteRequest,
) -> Result<Response, Fatal> {
    let group = req.group_id.0.to_string();
    let mut resp = OffsetDeleteResponse::default();
    if !broker.groups.exists(&group) {
        resp.error_code = GROUP_ID_NOT_FOUND;
        return encode(ctx, &resp);
    }
    let subscribed = subscribed_topics(broker, &group);
    let mut doomed: Vec<(TopicPartition, Option<Committed>)> = Vec::new();
    for topic in &req.topics {
        let name = topic.name.0.to_string();
        let mut t = OffsetDeleteResponseTopic::default();
        t.name = topic.name.clone();
        for p in &topic.partitions {
            let error = if subscribed.contains(&name) {
                GROUP_SUBSCRIBED_TO_TOPIC
            } else if !partition_exists(broker, &name, p.partition_index) {
                E::UnknownTopicOrPartition.code()
            } else {
                if broker
                    .groups
                    .offsets
                    .committed(&group, &name, p.partition_index)
                    .is_some()
                {
                    doomed.push(((name.clone(), p.partition_index), None));
                }
                0
            };
            let mut r = OffsetDeleteResponsePartition::default();
            r.partition_index = p.partition_index;
            r.error_code = error;
            t.partitions.push(r);
        }
        resp.topics.push(t);
    }
    if let Err(e) = broker.groups.offsets.write(&group, &doomed) {
        tracing::error!(%group, error = %e, "deleting offsets failed");
        resp.error_code = E::KafkaStorageError.code();
    }
    encode(ctx, &resp)
}
