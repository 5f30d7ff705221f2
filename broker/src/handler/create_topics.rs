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

/// What a charge took from a client's bucket, to give back if nothing is created.
#[derive(Debug, Default)]
pub(super) struct Debit(Option<(Arc<crate::state::MutationQuota>, u32)>);

impl Debit {
    /// Gives the charge back (the mutation did not happen).
    pub(super) fn refund(&self) {
        if let Some((bucket, amount)) = &self.0 {
            bucket.refund(*amount);
        }
    }
}

/// Charges `partitions` created or deleted to `client`'s controller mutation quota.
/// With `strict` (CreateTopics v6+, CreatePartitions v3+, DeleteTopics v5+) a mutation
/// over the quota is refused with THROTTLING_QUOTA_EXCEEDED (KIP-599); older versions
/// are admitted and the response's throttle time (the longest earned) says how long to
/// back off.
pub(super) fn charge(
    broker: &Broker,
    client: &str,
    strict: bool,
    partitions: i32,
    throttle: &mut Duration,
) -> Result<Debit, Refusal> {
    let partitions = u32::try_from(partitions).unwrap_or(1);
    let bucket = broker.client_quotas.for_client(client);
    if !strict {
        let (earned, debited) = bucket.record(partitions);
        *throttle = (*throttle).max(earned);
        return Ok(Debit(Some((bucket, debited))));
    }
    match bucket.try_admit(partitions) {
        Ok(debited) => Ok(Debit(Some((bucket, debited)))),
        Err(wait) => {
            *throttle = (*throttle).max(wait);
            Err((
                E::ThrottlingQuotaExceeded.code(),
                format!(
                    "the controller mutation quota ({} partitions a second) is exceeded",
                    broker.config.controller_mutation_rate.unwrap_or(0)
                ),
            ))
        }
    }
}

/// Names the request gives more than once: Kafka refuses every copy (INVALID_REQUEST).
fn repeated_names(req: &CreateTopicsRequest) -> std::collections::HashSet<&str> {
    let mut seen = std::collections::HashSet::new();
    req.topics
        .iter()
        .map(|t| t.name.0.as_str())
        .filter(|n| !seen.insert(*n))
        .collect()
}

pub(super) fn handle(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: CreateTopicsRequest,
    client: &str,
) -> Result<Response, Fatal> {
    let mut throttle = Duration::ZERO;
    let repeated = repeated_names(&req);
    // Every topic is checked and charged first, then the admitted ones are created as
    // one batch (one pair of directory syncs for the request). Only what could be
    // created is charged, and what then fails is refunded: the quota counts creations.
    let asked: Vec<Result<(NewTopic, Debit), Refusal>> = req
        .topics
        .iter()
        .map(|t| {
            if repeated.contains(t.name.0.as_str()) {
                return Err((
                    E::InvalidRequest.code(),
                    format!(
                        "topic '{}' appears more than once in the request",
                        t.name.0.as_str()
                    ),
                ));
            }
            let new = requested(t)?;
            let partitions = if new.partitions == -1 {
                broker.config.num_partitions
            } else {
                new.partitions
            };
            let chargeable = !req.validate_only
                && (1..=100_000).contains(&partitions)
                && crate::state::valid_topic_name(&new.name)
                && broker.topic(&new.name).is_none();
            if !chargeable {
                return Ok((new, Debit::default()));
            }
            let debit = charge(broker, client, ctx.version >= 6, partitions, &mut throttle)?;
            Ok((new, debit))
        })
        .collect();
    let batch: Vec<NewTopic> = asked.iter().flatten().map(|(t, _)| t.clone()).collect();
    let outcomes = broker.create_topics(batch, req.validate_only);
    for ((_, debit), outcome) in asked.iter().flatten().zip(&outcomes) {
        if outcome.is_err() {
            debit.refund();
        }
    }
    let asked: Vec<Result<NewTopic, Refusal>> =
        asked.into_iter().map(|a| a.map(|(t, _)| t)).collect();
    let mut created = outcomes.into_iter();
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

#[cfg(test)]
mod tests {
    use fjord_protocol::kafka_protocol::messages::create_topics_request::CreatableTopic;
    use fjord_protocol::kafka_protocol::messages::{ApiKey, TopicName};
    use fjord_protocol::kafka_protocol::protocol::Decodable;

    use super::super::test_support::{body, ctx};
    use super::*;
    use crate::config::BrokerConfig;

    fn broker(dir: &std::path::Path, rate: &str) -> Arc<Broker> {
        let sets = vec![
            ("log.dirs".to_string(), dir.display().to_string()),
            (
                "fjord.controller.mutation.rate".to_string(),
                rate.to_string(),
            ),
        ];
        Arc::new(
            Broker::open(BrokerConfig::from_sources(None, &sets).expect("config")).expect("broker"),
        )
    }

    fn create(broker: &Arc<Broker>, version: i16, topics: &[(&str, i32)]) -> CreateTopicsResponse {
        create_as(broker, "test", version, topics)
    }

    fn create_as(
        broker: &Arc<Broker>,
        client: &str,
        version: i16,
        topics: &[(&str, i32)],
    ) -> CreateTopicsResponse {
        let mut req = CreateTopicsRequest::default();
        req.timeout_ms = 1000;
        req.topics = topics
            .iter()
            .map(|(name, partitions)| {
                let mut t = CreatableTopic::default();
                t.name = TopicName(StrBytes::from_string(name.to_string()));
                t.num_partitions = *partitions;
                t.replication_factor = -1;
                t
            })
            .collect();
        let r = handle(broker, ctx(ApiKey::CreateTopics, version), req, client).expect("handled");
        let mut bytes = body(r);
        if version >= 5 {
            // Flexible versions: the response header's (empty) tagged fields.
            bytes = bytes.slice(1..);
        }
        CreateTopicsResponse::decode(&mut bytes, version).expect("decode")
    }

    fn codes(resp: &CreateTopicsResponse) -> Vec<i16> {
        resp.topics.iter().map(|t| t.error_code).collect()
    }

    #[test]
    fn over_the_quota_v6_refuses_and_older_versions_are_told_to_back_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = broker(dir.path(), "10");
        // Ten a second, one second banked: the first request is admitted (and goes into
        // debt), the next is refused with the time to wait.
        let first = create(&b, 7, &[("a", 8), ("b", 8)]);
        assert_eq!(codes(&first), [0, 0]);
        let refused = create(&b, 7, &[("c", 1)]);
        assert_eq!(codes(&refused), [E::ThrottlingQuotaExceeded.code()]);
        assert!(refused.throttle_time_ms > 0);
        assert!(b.topic("c").is_none());
        // v5 has no THROTTLING_QUOTA_EXCEEDED: created, and throttled afterwards.
        let old = create(&b, 5, &[("d", 1)]);
        assert_eq!(codes(&old), [0]);
        assert!(old.throttle_time_ms > 0);
    }

    #[test]
    fn refused_topics_cost_nothing_and_repeated_names_are_invalid_requests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = broker(dir.path(), "10");
        // Bad counts and existing topics are not charged: nothing was created.
        for _ in 0..3 {
            let resp = create(&b, 7, &[("huge", 2_000_000_000), ("bad/name", 1)]);
            assert_eq!(
                codes(&resp),
                [E::InvalidPartitions.code(), E::InvalidTopicException.code()]
            );
        }
        assert_eq!(codes(&create(&b, 7, &[("x", 5)])), [0]);
        assert_eq!(
            codes(&create(&b, 7, &[("x", 5)])),
            [E::TopicAlreadyExists.code()]
        );
        assert_eq!(codes(&create(&b, 7, &[("y", 4)])), [0]);
        let twice = create(&b, 7, &[("z", 1), ("z", 1)]);
        assert_eq!(
            codes(&twice),
            [E::InvalidRequest.code(), E::InvalidRequest.code()]
        );
        assert!(b.topic("z").is_none());
    }

    #[test]
    fn one_client_over_its_quota_does_not_hold_up_another() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = broker(dir.path(), "10");
        assert_eq!(codes(&create_as(&b, "flooder", 7, &[("f1", 10)])), [0]);
        assert_eq!(
            codes(&create_as(&b, "flooder", 7, &[("f2", 1)])),
            [E::ThrottlingQuotaExceeded.code()]
        );
        // Another client id has a bucket of its own.
        assert_eq!(codes(&create_as(&b, "app", 7, &[("a1", 5)])), [0]);
    }
}
