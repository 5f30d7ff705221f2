//! TxnOffsetCommit (28): a consumer's offsets committed inside a producer's transaction
//! (consume-transform-produce, Kafka Streams exactly-once). They are durable at once and
//! visible when the transaction commits; an abort drops them.
//!
//! Checks, as Kafka makes them: the producer is the transaction's at its epoch and the
//! transaction holds the group's offsets (AddOffsetsToTxn came first); from v3 the
//! group's generation and member fence a zombie member (KIP-447). A request without
//! group metadata (v0-2, or generation -1 and no member) is taken as the old producer
//! API's, unchecked against the group.

use std::sync::Arc;
use std::time::Instant;

use fjord_protocol::kafka_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequest;
use fjord_protocol::kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponse, TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use fjord_protocol::kafka_protocol::ResponseError as E;

use super::transactions::{fenced_for, offsets_partition, OFFSETS_TOPIC};
use super::{encode, Ctx, Fatal, Response};
use crate::groups::coordinator::lock;
use crate::groups::group::code;
use crate::groups::offset_records::Committed;
use crate::groups::offset_store::{now_ms, TopicPartition};
use crate::state::Broker;

/// The transaction check: the producer's open transaction holds the group's offsets.
fn verify_transaction(
    broker: &Broker,
    version: i16,
    req: &TxnOffsetCommitRequest,
) -> Result<(), i16> {
    broker
        .txn
        .verify_partition(
            &req.transactional_id.0,
            req.producer_id.0,
            req.producer_epoch,
            OFFSETS_TOPIC,
            offsets_partition(&req.group_id.0),
        )
        .map_err(|e| fenced_for(version, 3, e))
}

/// The group check, the error every partition gets if the request fails as a whole.
fn check(broker: &Broker, version: i16, req: &TxnOffsetCommitRequest) -> Result<(), i16> {
    let group = req.group_id.0.as_str();
    if group.is_empty() || group.len() > i16::MAX as usize {
        return Err(code::INVALID_GROUP_ID);
    }
    verify_transaction(broker, version, req)?;
    let member = req.member_id.as_str();
    if req.generation_id < 0 && member.is_empty() && req.group_instance_id.is_none() {
        return Ok(());
    }
    if let Some(g) = broker.groups.consumer.get(group) {
        return crate::groups::consumer::lock(&g)
            .check_commit(member, req.generation_id)
            .map_err(|e| e.code());
    }
    match broker.groups.group(group) {
        Some(g) => lock(&g).check_commit(
            member,
            req.group_instance_id.as_deref(),
            req.generation_id,
            Instant::now(),
        ),
        None => Err(code::ILLEGAL_GENERATION),
    }
}

pub(super) fn handle(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: TxnOffsetCommitRequest,
) -> Result<Response, Fatal> {
    let failed = check(broker, ctx.version, &req).err();
    let max_metadata = broker
        .groups
        .config
        .offset_metadata_max_bytes
        .min(i16::MAX as usize);
    let now = now_ms();
    let mut entries: Vec<(TopicPartition, Committed)> = Vec::new();
    let mut resp = TxnOffsetCommitResponse::default();
    for topic in &req.topics {
        let name = topic.name.0.to_string();
        let mut t = TxnOffsetCommitResponseTopic::default();
        t.name = topic.name.clone();
        for p in &topic.partitions {
            let known = broker
                .topic(&name)
                .is_some_and(|t| t.partition(p.partition_index).is_some());
            let too_large = p
                .committed_metadata
                .as_ref()
                .is_some_and(|m| m.len() > max_metadata);
            let error = match (failed, known, too_large) {
                (Some(e), _, _) => e,
                (None, false, _) => E::UnknownTopicOrPartition.code(),
                (None, true, true) => E::OffsetMetadataTooLarge.code(),
                (None, true, false) => {
                    entries.push((
                        (name.clone(), p.partition_index),
                        Committed {
                            offset: p.committed_offset,
                            leader_epoch: if ctx.version >= 2 {
                                p.committed_leader_epoch
                            } else {
                                -1
                            },
                            metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                            commit_ms: now,
                        },
                    ));
                    0
                }
            };
            let mut r = TxnOffsetCommitResponsePartition::default();
            r.partition_index = p.partition_index;
            r.error_code = error;
            t.partitions.push(r);
        }
        resp.topics.push(t);
    }
    if failed.is_some() {
        return encode(ctx, &resp);
    }
    let stored = broker.groups.offsets.write_pending(
        (req.producer_id.0, req.producer_epoch),
        req.group_id.0.as_str(),
        &entries,
        || verify_transaction(broker, ctx.version, &req),
    );
    let stored = match stored {
        Ok(Err(code)) => {
            // The transaction ended between the checks and the write.
            for p in resp.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                p.error_code = code;
            }
            return encode(ctx, &resp);
        }
        Ok(Ok(ticket)) => ticket.map_or(Ok(()), |t| t.wait().map_err(Into::into)),
        Err(e) => Err(e),
    };
    if let Err(e) = stored {
        tracing::error!(group = %req.group_id.0, error = %e, "storing transactional offsets failed");
        for p in resp.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
            if p.error_code == 0 {
                p.error_code = E::KafkaStorageError.code();
            }
        }
    }
    encode(ctx, &resp)
}
