//! Metadata: this one broker, and the topics asked for (all when the list is null).

use std::sync::Arc;

use fjord_protocol::kafka_protocol::messages::metadata_request::MetadataRequest;
use fjord_protocol::kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use fjord_protocol::kafka_protocol::messages::{BrokerId, TopicName};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::kafka_protocol::ResponseError;

use super::{encode, Ctx, Fatal, Response};
use crate::state::{valid_topic_name, Broker, Topic};

fn topic_entry(topic: &Topic, node: i32) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.name = Some(TopicName(StrBytes::from_string(topic.name.clone())));
    t.topic_id = topic.id;
    t.partitions = topic
        .partitions
        .iter()
        .map(|p| {
            let mut e = MetadataResponsePartition::default();
            e.partition_index = p.index;
            e.leader_id = BrokerId(node);
            e.leader_epoch = 0;
            e.replica_nodes = vec![BrokerId(node)];
            e.isr_nodes = vec![BrokerId(node)];
            e
        })
        .collect();
    t
}

fn error_entry(name: &str, code: i16) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.name = Some(TopicName(StrBytes::from_string(name.to_string())));
    t.error_code = code;
    t
}

pub(super) fn handle(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: MetadataRequest,
) -> Result<Response, Fatal> {
    let node = broker.config.node_id;
    let mut resp = MetadataResponse::default();
    let mut me = MetadataResponseBroker::default();
    me.node_id = BrokerId(node);
    let (host, port) = broker.config.advertised(ctx.listener);
    me.host = StrBytes::from_string(host);
    me.port = i32::from(port);
    resp.brokers = vec![me];
    resp.cluster_id = Some(StrBytes::from_static_str("fjord-single-node"));
    resp.controller_id = BrokerId(node);
    // v1-v3 have no allow_auto_topic_creation field: Kafka treats them as allowing it.
    let auto_create = req.allow_auto_topic_creation || ctx.version < 4;
    resp.topics = match req.topics {
        None => broker
            .all_topics()
            .iter()
            .map(|t| topic_entry(t, node))
            .collect(),
        Some(requested) => requested
            .iter()
            .map(|r| {
                let name = r
                    .name
                    .as_ref()
                    .map(|n| n.0.as_str().to_string())
                    .unwrap_or_default();
                if !valid_topic_name(&name) {
                    return error_entry(&name, ResponseError::InvalidTopicException.code());
                }
                let topic = if auto_create {
                    broker.topic_or_auto_create(&name)
                } else {
                    broker.topic(&name)
                };
                match topic {
                    Some(t) => topic_entry(&t, node),
                    None => error_entry(&name, ResponseError::UnknownTopicOrPartition.code()),
                }
            })
            .collect(),
    };
    encode(ctx, &resp)
}
