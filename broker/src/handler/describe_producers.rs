//! DescribeProducers (API 61): the idempotent producers with state in each partition,
//! with their epoch, last sequence, last timestamp and the first offset of their open
//! transaction (what kafka-transactions.sh describe-producers shows, and what its
//! `abort --start-offset` looks for). The coordinator epoch is -1: a single node's one
//! coordinator writes its markers at epoch 0, and no older coordinator is to be fenced.

use std::sync::Arc;

use fjord_protocol::kafka_protocol::messages::describe_producers_request::DescribeProducersRequest;
use fjord_protocol::kafka_protocol::messages::describe_producers_response::{
    DescribeProducersResponse, PartitionResponse, ProducerState, TopicResponse,
};
use fjord_protocol::kafka_protocol::messages::ProducerId;
use fjord_protocol::kafka_protocol::ResponseError as E;

use super::{encode, Ctx, Fatal, Response};
use crate::state::{Broker, Partition};

pub(super) fn handle(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: DescribeProducersRequest,
) -> Result<Response, Fatal> {
    let mut resp = DescribeProducersResponse::default();
    for topic in req.topics {
        let found = broker.topic(topic.name.0.as_str());
        let mut out = TopicResponse::default();
        out.name = topic.name.clone();
        for index in topic.partition_indexes {
            let partition = found.as_ref().and_then(|t| t.partition(index));
            out.partitions
                .push(describe(partition.map(Arc::as_ref), index));
        }
        resp.topics.push(out);
    }
    encode(ctx, &resp)
}

fn describe(partition: Option<&Partition>, index: i32) -> PartitionResponse {
    let mut r = PartitionResponse::default();
    r.partition_index = index;
    let Some(partition) = partition else {
        r.error_code = E::UnknownTopicOrPartition.code();
        return r;
    };
    if partition.is_offline() {
        r.error_code = E::KafkaStorageError.code();
        return r;
    }
    let states = partition
        .producers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    r.active_producers = states
        .active()
        .into_iter()
        .map(|a| {
            let mut p = ProducerState::default();
            p.producer_id = ProducerId(a.producer_id);
            p.producer_epoch = i32::from(a.epoch);
            p.last_sequence = a.last_sequence;
            p.last_timestamp = a.last_timestamp;
            p.coordinator_epoch = -1;
            p.current_txn_start_offset = a.txn_start_offset;
            p
        })
        .collect();
    r
}
