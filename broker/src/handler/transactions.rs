//! The transactional producer's requests to its coordinator: AddPartitionsToTxn (24),
//! AddOffsetsToTxn (25) and EndTxn (26). InitProducerId is in `init_producer_id.rs`.
//!
//! Each runs off the reactor: the coordinator's writes wait for the disk, and EndTxn
//! writes a marker into every partition of the transaction.

use std::sync::Arc;

use fjord_protocol::kafka_protocol::messages::add_offsets_to_txn_request::AddOffsetsToTxnRequest;
use fjord_protocol::kafka_protocol::messages::add_offsets_to_txn_response::AddOffsetsToTxnResponse;
use fjord_protocol::kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnTopic,
};
use fjord_protocol::kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResponse, AddPartitionsToTxnResult,
    AddPartitionsToTxnTopicResult,
};
use fjord_protocol::kafka_protocol::messages::end_txn_request::EndTxnRequest;
use fjord_protocol::kafka_protocol::messages::end_txn_response::EndTxnResponse;
use fjord_protocol::kafka_protocol::ResponseError as E;

use super::{encode, Ctx, Fatal, Response};
use crate::state::Broker;

/// Partitions of `__consumer_offsets` in Kafka (`offsets.topic.num.partitions`): a
/// group's offsets join a transaction as the partition Kafka would keep them in.
const OFFSETS_PARTITIONS: i32 = 50;
/// The internal topic committed offsets live in, as transactions name it.
pub(crate) const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Kafka answered PRODUCER_FENCED from these versions on (KIP-588); older clients
/// know it as INVALID_PRODUCER_EPOCH.
pub(super) fn fenced_for(version: i16, since: i16, e: E) -> i16 {
    if e == E::ProducerFenced && version < since {
        E::InvalidProducerEpoch.code()
    } else {
        e.code()
    }
}

/// Java's `String.hashCode`, which places a group in `__consumer_offsets`.
pub(crate) fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The `__consumer_offsets` partition of `group`.
pub(crate) fn offsets_partition(group: &str) -> i32 {
    (java_hash(group) & 0x7fff_ffff) % OFFSETS_PARTITIONS
}

/// The answer for one topic: every partition with `code`, or, for a topic the broker
/// lacks, UNKNOWN_TOPIC_OR_PARTITION.
fn topic_result(topic: &AddPartitionsToTxnTopic, code: i16) -> AddPartitionsToTxnTopicResult {
    let mut t = AddPartitionsToTxnTopicResult::default();
    t.name = topic.name.clone();
    t.results_by_partition = topic
        .partitions
        .iter()
        .map(|&p| {
            let mut r = AddPartitionsToTxnPartitionResult::default();
            r.partition_index = p;
            r.partition_error_code = code;
            r
        })
        .collect();
    t
}

/// Adds (or, verify-only, checks) one transaction's partitions. As in Kafka, one
/// unknown partition fails the lot: it is UNKNOWN_TOPIC_OR_PARTITION and the others
/// OPERATION_NOT_ATTEMPTED.
#[allow(clippy::too_many_arguments)]
fn add_one(
    broker: &Broker,
    version: i16,
    id: &str,
    producer_id: i64,
    epoch: i16,
    verify_only: bool,
    topics: &[AddPartitionsToTxnTopic],
) -> Vec<AddPartitionsToTxnTopicResult> {
    let known = |t: &AddPartitionsToTxnTopic, p: i32| {
        broker
            .topic(t.name.0.as_str())
            .is_some_and(|topic| topic.partition(p).is_some())
    };
    let missing = topics
        .iter()
        .any(|t| t.partitions.iter().any(|&p| !known(t, p)));
    if missing {
        return topics
            .iter()
            .map(|t| {
                let mut r = topic_result(t, E::OperationNotAttempted.code());
                for (pr, &p) in r.results_by_partition.iter_mut().zip(&t.partitions) {
                    if !known(t, p) {
                        pr.partition_error_code = E::UnknownTopicOrPartition.code();
                    }
                }
                r
            })
            .collect();
    }
    let wanted: Vec<(String, i32)> = topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|&p| (t.name.0.to_string(), p)))
        .collect();
    if verify_only {
        return topics
            .iter()
            .map(|t| {
                let mut r = topic_result(t, 0);
                for (pr, &p) in r.results_by_partition.iter_mut().zip(&t.partitions) {
                    pr.partition_error_code = broker
                        .txn
                        .verify_partition(id, producer_id, epoch, &t.name.0, p)
                        .err()
                        .map_or(0, |e| fenced_for(version, 2, e));
                }
                r
            })
            .collect();
    }
    let code = broker
        .txn
        .add_partitions(id, producer_id, epoch, &wanted)
        .err()
        .map_or(0, |e| fenced_for(version, 2, e));
    topics.iter().map(|t| topic_result(t, code)).collect()
}

pub(super) fn add_partitions_to_txn(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: AddPartitionsToTxnRequest,
) -> Result<Response, Fatal> {
    let mut resp = AddPartitionsToTxnResponse::default();
    if ctx.version <= 3 {
        resp.results_by_topic_v3_and_below = add_one(
            broker,
            ctx.version,
            &req.v3_and_below_transactional_id.0,
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            false,
            &req.v3_and_below_topics,
        );
    } else {
        resp.results_by_transaction = req
            .transactions
            .iter()
            .map(|t| {
                let mut r = AddPartitionsToTxnResult::default();
                r.transactional_id = t.transactional_id.clone();
                r.topic_results = add_one(
                    broker,
                    ctx.version,
                    &t.transactional_id.0,
                    t.producer_id.0,
                    t.producer_epoch,
                    t.verify_only,
                    &t.topics,
                );
                r
            })
            .collect();
    }
    encode(ctx, &resp)
}

pub(super) fn add_offsets_to_txn(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: AddOffsetsToTxnRequest,
) -> Result<Response, Fatal> {
    let partition = (
        OFFSETS_TOPIC.to_string(),
        offsets_partition(&req.group_id.0),
    );
    let mut resp = AddOffsetsToTxnResponse::default();
    resp.error_code = broker
        .txn
        .add_partitions(
            &req.transactional_id.0,
            req.producer_id.0,
            req.producer_epoch,
            &[partition],
        )
        .err()
        .map_or(0, |e| fenced_for(ctx.version, 2, e));
    encode(ctx, &resp)
}

pub(super) fn end_txn(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: EndTxnRequest,
) -> Result<Response, Fatal> {
    let mut resp = EndTxnResponse::default();
    resp.error_code = broker
        .txn
        .end_txn(
            &req.transactional_id.0,
            req.producer_id.0,
            req.producer_epoch,
            req.committed,
            broker.as_ref(),
        )
        .err()
        .map_or(0, |e| fenced_for(ctx.version, 2, e));
    resp.producer_id = req.producer_id;
    resp.producer_epoch = req.producer_epoch;
    encode(ctx, &resp)
}
