//! CreateTopics: one node, so replication factor 1 (or -1, "the default").

use std::collections::BTreeMap;
use std::sync::Arc;

use fjord_protocol::kafka_protocol::messages::create_topics_request::CreateTopicsRequest;
use fjord_protocol::kafka_protocol::messages::create_topics_response::{
    CreatableTopicResult, CreateTopicsResponse,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::kafka_protocol::ResponseError as E;

use super::{encode, Ctx, Fatal, Response};
use crate::state::{Broker, CreateError};

pub(super) fn handle(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: CreateTopicsRequest,
) -> Result<Response, Fatal> {
    let mut resp = CreateTopicsResponse::default();
    for topic in req.topics {
        let name = topic.name.0.as_str().to_string();
        let mut result = CreatableTopicResult::default();
        result.name = topic.name.clone();
        let overrides: BTreeMap<String, String> = topic
            .configs
            .iter()
            .filter_map(|c| {
                Some((
                    c.name.as_str().to_string(),
                    c.value.as_ref()?.as_str().to_string(),
                ))
            })
            .collect();
        let outcome = if !matches!(topic.replication_factor, -1 | 1) {
            Err((
                E::InvalidReplicationFactor.code(),
                "replication factor must be 1 on a single node".to_string(),
            ))
        } else if !topic.assignments.is_empty() {
            Err((
                E::InvalidReplicaAssignment.code(),
                "manual assignment is not supported".to_string(),
            ))
        } else {
            broker
                .create_topic(&name, topic.num_partitions, overrides, req.validate_only)
                .map_err(|e| match e {
                    CreateError::Exists => (
                        E::TopicAlreadyExists.code(),
                        format!("topic '{name}' already exists"),
                    ),
                    CreateError::InvalidName(_) => (
                        E::InvalidTopicException.code(),
                        format!("illegal topic name '{name}'"),
                    ),
                    CreateError::InvalidPartitions => (
                        E::InvalidPartitions.code(),
                        "partitions must be 1 to 100000".to_string(),
                    ),
                    CreateError::PartitionLimit { limit, current } => (
                        E::InvalidPartitions.code(),
                        super::admin::partition_limit_message(limit, current),
                    ),
                    CreateError::InvalidConfig(m) => (E::InvalidConfig.code(), m),
                    CreateError::Io(m) => (E::KafkaStorageError.code(), m),
                })
        };
        match outcome {
            Ok(created) => {
                result.topic_id = created.id;
                result.num_partitions = if topic.num_partitions == -1 {
                    broker.config.num_partitions
                } else {
                    topic.num_partitions
                };
                result.replication_factor = 1;
            }
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(StrBytes::from_string(message));
                result.num_partitions = -1;
                result.replication_factor = -1;
            }
        }
        resp.topics.push(result);
    }
    encode(ctx, &resp)
}
