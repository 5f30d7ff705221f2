//! Topic and cluster administration: DeleteTopics, CreatePartitions, DescribeCluster.

use std::sync::Arc;

use fjord_protocol::kafka_protocol::messages::create_partitions_request::CreatePartitionsRequest;
use fjord_protocol::kafka_protocol::messages::create_partitions_response::{
    CreatePartitionsResponse, CreatePartitionsTopicResult,
};
use fjord_protocol::kafka_protocol::messages::delete_topics_request::DeleteTopicsRequest;
use fjord_protocol::kafka_protocol::messages::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};
use fjord_protocol::kafka_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use fjord_protocol::kafka_protocol::messages::describe_cluster_response::{
    DescribeClusterBroker, DescribeClusterResponse,
};
use fjord_protocol::kafka_protocol::messages::{BrokerId, TopicName};
use fjord_protocol::kafka_protocol::ResponseError as E;

use super::{encode, s, Ctx, Fatal, Response};
use crate::state::{Broker, CreateError};

const CLUSTER_ID: &str = "fjord-single-node";

pub(super) fn delete_topics(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: DeleteTopicsRequest,
    client: &str,
) -> Result<Response, Fatal> {
    // v6 names topics in `topics` (by name or id); older versions in `topic_names`.
    let mut wanted: Vec<(Option<String>, uuid::Uuid)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.0.as_str().to_string()), uuid::Uuid::nil()))
        .collect();
    wanted.extend(req.topics.iter().map(|t| {
        (
            t.name.as_ref().map(|n| n.0.as_str().to_string()),
            t.topic_id,
        )
    }));
    let mut resp = DeleteTopicsResponse::default();
    let mut throttle = std::time::Duration::ZERO;
    for (name, id) in wanted {
        let mut r = DeletableTopicResult::default();
        r.topic_id = id;
        if name.is_some() && !id.is_nil() {
            // Kafka: a topic is named by one or the other.
            r.name = name.map(|n| TopicName(s(n)));
            r.error_code = E::InvalidRequest.code();
            r.error_message = Some(s("You may not specify both topic name and topic id."));
            resp.responses.push(r);
            continue;
        }
        let name = name.or_else(|| broker.topic_by_id(&id).map(|t| t.name.clone()));
        let partitions = name
            .as_deref()
            .and_then(|n| broker.topic(n))
            .map_or(0, |t| t.partitions.len() as i32);
        let mut debit = super::create_topics::Debit::default();
        if partitions > 0 {
            match super::create_topics::charge(
                broker,
                client,
                ctx.version >= 5,
                partitions,
                &mut throttle,
            ) {
                Ok(d) => debit = d,
                Err((code, message)) => {
                    r.name = name.map(|n| TopicName(s(n)));
                    r.error_code = code;
                    if ctx.version >= 5 {
                        r.error_message = Some(s(message));
                    }
                    resp.responses.push(r);
                    continue;
                }
            }
        }
        match name.as_deref().and_then(|n| broker.delete_topic(n)) {
            Some(topic) => {
                r.name = Some(TopicName(s(topic.name.clone())));
                r.topic_id = topic.id;
            }
            None => {
                // Deleted meanwhile by another request: nothing done here, nothing owed.
                debit.refund();
                r.name = name.map(|n| TopicName(s(n)));
                r.error_code = if ctx.version >= 6 && r.name.is_none() {
                    E::UnknownTopicId.code()
                } else {
                    E::UnknownTopicOrPartition.code()
                };
            }
        }
        resp.responses.push(r);
    }
    resp.throttle_time_ms = i32::try_from(throttle.as_millis()).unwrap_or(i32::MAX);
    encode(ctx, &resp)
}

pub(super) fn create_partitions(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: CreatePartitionsRequest,
    client: &str,
) -> Result<Response, Fatal> {
    let mut resp = CreatePartitionsResponse::default();
    let mut throttle = std::time::Duration::ZERO;
    for topic in req.topics {
        let name = topic.name.0.as_str().to_string();
        let mut r = CreatePartitionsTopicResult::default();
        r.name = topic.name.clone();
        let outcome = if broker.topic(&name).is_none() {
            Err((
                E::UnknownTopicOrPartition.code(),
                format!("no topic '{name}'"),
            ))
        } else if topic.assignments.is_some() {
            Err((
                E::InvalidReplicaAssignment.code(),
                "manual assignment is not supported".to_string(),
            ))
        } else {
            let more = broker
                .topic(&name)
                .map_or(0, |t| topic.count - t.partitions.len() as i32);
            // Only a growth that can happen is charged (at most the 100,000 cap), and
            // one that then fails is refunded.
            let more = more.min(100_000);
            let chargeable = more > 0 && topic.count <= 100_000 && !req.validate_only;
            let charged = if chargeable {
                super::create_topics::charge(broker, client, ctx.version >= 3, more, &mut throttle)
            } else {
                Ok(super::create_topics::Debit::default())
            };
            charged.and_then(|debit| {
                broker
                    .add_partitions(&name, topic.count, req.validate_only)
                    .inspect_err(|_| debit.refund())
                    .map_err(|e| match e {
                        CreateError::InvalidPartitions => (
                            E::InvalidPartitions.code(),
                            "the count must grow the topic, up to 100000".to_string(),
                        ),
                        CreateError::PartitionLimit { limit, current } => (
                            E::InvalidPartitions.code(),
                            partition_limit_message(limit, current),
                        ),
                        other => (E::KafkaStorageError.code(), format!("{other:?}")),
                    })
            })
        };
        if let Err((code, message)) = outcome {
            r.error_code = code;
            r.error_message = Some(s(message));
        }
        resp.results.push(r);
    }
    resp.throttle_time_ms = i32::try_from(throttle.as_millis()).unwrap_or(i32::MAX);
    encode(ctx, &resp)
}

/// DescribeCluster's endpoint types (v1+): brokers, or (KIP-919) controllers.
const BROKER_ENDPOINTS: i8 = 1;
const CONTROLLER_ENDPOINTS: i8 = 2;

pub(super) fn describe_cluster(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: DescribeClusterRequest,
) -> Result<Response, Fatal> {
    let mut resp = DescribeClusterResponse::default();
    resp.cluster_id = s(CLUSTER_ID);
    resp.controller_id = BrokerId(broker.config.node_id);
    if ctx.version >= 1 {
        resp.endpoint_type = BROKER_ENDPOINTS;
        // Kafka's answers on a broker listener: controllers are asked elsewhere, other
        // types do not exist (v0 has no field).
        let refused = match req.endpoint_type {
            BROKER_ENDPOINTS => None,
            CONTROLLER_ENDPOINTS => Some(E::MismatchedEndpointType),
            _ => Some(E::UnsupportedEndpointType),
        };
        if let Some(e) = refused {
            resp.error_code = e.code();
            resp.error_message = Some(s(format!(
                "endpoint type {} is not served by a broker listener",
                req.endpoint_type
            )));
            return encode(ctx, &resp);
        }
    }
    // v2's include_fenced_brokers changes nothing: a single node is never fenced.
    let mut me = DescribeClusterBroker::default();
    me.broker_id = BrokerId(broker.config.node_id);
    let (host, port) = broker.config.advertised(ctx.listener);
    me.host = s(host);
    me.port = i32::from(port);
    resp.brokers.push(me);
    encode(ctx, &resp)
}

/// The error message for a creation past `fjord.max.partitions`.
pub(super) fn partition_limit_message(limit: usize, current: usize) -> String {
    format!("the broker holds {current} partitions and fjord.max.partitions is {limit}")
}

#[cfg(test)]
mod tests {
    use bytes::Buf;
    use fjord_protocol::kafka_protocol::messages::delete_topics_request::DeleteTopicState;
    use fjord_protocol::kafka_protocol::messages::ApiKey;
    use fjord_protocol::kafka_protocol::protocol::{Decodable, StrBytes};

    use super::super::test_support::{body, ctx, open};
    use super::*;

    fn by(name: Option<&str>, id: uuid::Uuid) -> DeleteTopicState {
        let mut t = DeleteTopicState::default();
        t.name = name.map(|n| TopicName(StrBytes::from_string(n.to_string())));
        t.topic_id = id;
        t
    }

    #[test]
    fn delete_topics_v6_by_id_by_name_and_never_both() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = open(dir.path());
        for name in ["a", "b"] {
            broker
                .create_topic(name, 1, Default::default(), false)
                .expect("topic");
        }
        let a = broker.topic("a").expect("a").id;
        let b = broker.topic("b").expect("b").id;
        let mut req = DeleteTopicsRequest::default();
        req.topics = vec![
            by(None, a),
            by(Some("b"), b),
            by(None, uuid::Uuid::new_v4()),
        ];
        let r = delete_topics(&broker, ctx(ApiKey::DeleteTopics, 6), req, "test").expect("ok");
        let mut bytes = body(r);
        bytes.advance(1); // the flexible header's tagged fields
        let resp = DeleteTopicsResponse::decode(&mut bytes, 6).expect("decode");
        let got: Vec<(Option<&str>, i16)> = resp
            .responses
            .iter()
            .map(|r| (r.name.as_ref().map(|n| n.0.as_str()), r.error_code))
            .collect();
        assert_eq!(
            got,
            vec![
                (Some("a"), 0),
                (Some("b"), E::InvalidRequest.code()),
                (None, E::UnknownTopicId.code()),
            ]
        );
        assert_eq!(resp.responses[0].topic_id, a);
        assert!(broker.topic("a").is_none());
        assert!(broker.topic("b").is_some(), "both named: nothing deleted");
    }
}
