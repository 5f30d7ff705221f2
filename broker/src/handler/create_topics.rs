//! CreateTopics: one node, so replication factor 1 (or -1, "the default"). The topics
//! of a request are created as one batch, charged to the controller mutation quota.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fjord_protocol::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreateTopicsRequest,
};
use fjord_protocol::kafka_protocol::messages::create_topics_response::{
    CreatableTopicResult, CreateTopicsResponse,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::kafka_protocol::ResponseError as E;

use super::{encode, Ctx, Fatal, Response};
use crate::state::{Broker, CreateError, NewTopic};

/// A refusal: (error code, message).
pub(super) type Refusal = (i16, String);

fn refusal(name: &str, e: CreateError) -> Refusal {
    match e {
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
    }
}

/// What a topic of the request asks for, or why it is refused before the broker looks.
fn requested(topic: &CreatableTopic) -> Result<NewTopic, Refusal> {
    if !matches!(topic.replication_factor, -1 | 1) {
        return Err((
            E::InvalidReplicationFactor.code(),
            "replication factor must be 1 on a single node".to_string(),
        ));
    }
    if !topic.assignments.is_empty() {
        return Err((
            E::InvalidReplicaAssignment.code(),
            "manual assignment is not supported".to_string(),
        ));
    }
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
    Ok(NewTopic {
        name: topic.name.0.as_str().to_string(),
        partitions: topic.num_partitions,
        overrides,
    })
}

/// Charges `partitions` created or deleted to the controller mutation quota. With
/// `strict` (CreateTopics v6+, CreatePartitions v3+, DeleteTopics v5+) a mutation over
/// the quota is refused with THROTTLING_QUOTA_EXCEEDED (KIP-599); older versions are
/// admitted and the response's throttle time (the longest earned) says how long to back
/// off.
pub(super) fn charge(
    broker: &Broker,
    strict: bool,
    partitions: i32,
    throttle: &mut Duration,
) -> Result<(), Refusal> {
    let partitions = u32::try_from(partitions).unwrap_or(1);
    if !strict {
        *throttle = (*throttle).max(broker.mutation_quota.record(partitions));
        return Ok(());
    }
    broker.mutation_quota.try_admit(partitions).map_err(|wait| {
        *throttle = (*throttle).max(wait);
        (
            E::ThrottlingQuotaExceeded.code(),
            format!(
                "the controller mutation quota ({} partitions a second) is exceeded",
                broker.config.controller_mutation_rate.unwrap_or(0)
            ),
        )
    })
}

pub(super) fn handle(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: CreateTopicsRequest,
) -> Result<Response, Fatal> {
    let mut throttle = Duration::ZERO;
    // Every topic is checked and charged first, then the admitted ones are created as
    // one batch (one pair of directory syncs for the request).
    let asked: Vec<Result<NewTopic, Refusal>> = req
        .topics
        .iter()
        .map(|t| {
            let new = requested(t)?;
            if !req.validate_only {
                let partitions = if new.partitions == -1 {
                    broker.config.num_partitions
                } else {
                    new.partitions
                };
                charge(broker, ctx.version >= 6, partitions, &mut throttle)?;
            }
            Ok(new)
        })
        .collect();
    let batch: Vec<NewTopic> = asked.iter().flatten().cloned().collect();
    let mut created = broker.create_topics(batch, req.validate_only).into_iter();
    let mut resp = CreateTopicsResponse::default();
    resp.throttle_time_ms = i32::try_from(throttle.as_millis()).unwrap_or(i32::MAX);
    for (topic, asked) in req.topics.iter().zip(asked) {
        let mut result = CreatableTopicResult::default();
        result.name = topic.name.clone();
        let outcome = asked.and_then(|new| {
            created
                .next()
                .unwrap_or(Err(CreateError::Io("no outcome".into())))
                .map_err(|e| refusal(&new.name, e))
        });
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
