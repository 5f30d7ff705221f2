//! Metadata: this one broker, and the topics asked for (all when the list is null).
//! Unknown topics are queued for auto-creation (never created on the request path) and
//! awaited for a moment.

use std::sync::Arc;
use std::time::Duration;

use fjord_protocol::kafka_protocol::messages::metadata_request::MetadataRequest;
use fjord_protocol::kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use fjord_protocol::kafka_protocol::messages::{BrokerId, TopicName};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::kafka_protocol::ResponseError;

use super::{encode, Ctx, Fatal, Response};
use crate::state::{valid_topic_name, AutoCreated, Broker, Topic};

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
            e.leader_epoch = p.leader_epoch;
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

/// How long a Metadata request waits for the topics it queued for auto-creation
/// before answering LEADER_NOT_AVAILABLE for those not there yet (clients retry).
const AUTO_CREATE_WAIT: Duration = Duration::from_secs(1);

/// A topic a Metadata request names: by name, or (v10+, KIP-516) by ID only.
#[derive(Debug, Clone)]
enum Wanted {
    Name(String),
    Id(uuid::Uuid),
}

/// The topics a Metadata request asks for, and whether it may auto-create them.
fn requested(req: &MetadataRequest, ctx: &Ctx) -> (Option<Vec<Wanted>>, bool) {
    // v1-v3 have no allow_auto_topic_creation field: Kafka treats them as allowing it.
    let auto_create = req.allow_auto_topic_creation || ctx.version < 4;
    let wanted = req.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|r| {
                let name = r.name.as_ref().map_or("", |n| n.0.as_str());
                // Lookups by ID came with v12 (v10-11 had the field, unused); the
                // name is then null (or empty, as some clients send it).
                if name.is_empty() && !r.topic_id.is_nil() && ctx.version >= 12 {
                    Wanted::Id(r.topic_id)
                } else {
                    Wanted::Name(name.to_string())
                }
            })
            .collect()
    });
    (wanted, auto_create)
}

/// Queues the unknown topics among `names` for auto-creation, then waits (without
/// holding a thread) until they exist or [`AUTO_CREATE_WAIT`] passes.
async fn auto_create_and_wait(broker: &Arc<Broker>, names: &[String], client: &str) {
    let unknown: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| valid_topic_name(n) && broker.topic(n).is_none())
        .collect();
    if unknown.is_empty() {
        return;
    }
    let mut signal = broker.auto_created_signal();
    let outcomes = broker.auto_create(&unknown, client);
    let waiting: Vec<&str> = unknown
        .into_iter()
        .zip(outcomes)
        .filter(|(_, o)| *o == AutoCreated::Pending)
        .map(|(n, _)| n)
        .collect();
    let _ = tokio::time::timeout(AUTO_CREATE_WAIT, async {
        while waiting.iter().any(|n| broker.auto_create_pending(n)) {
            if signal.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
}

/// Answers Metadata: auto-creation is queued and awaited first, then the response is
/// built on the blocking pool (listing every topic sorts them all).
pub(super) async fn handle(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: MetadataRequest,
    client: &str,
) -> Result<Response, Fatal> {
    let (wanted, auto_create) = requested(&req, &ctx);
    if let (Some(wanted), true) = (&wanted, auto_create) {
        let names: Vec<String> = wanted
            .iter()
            .filter_map(|w| match w {
                Wanted::Name(n) => Some(n.clone()),
                Wanted::Id(_) => None,
            })
            .collect();
        auto_create_and_wait(broker, &names, client).await;
    }
    super::off_reactor(broker, move |b| answer(b, ctx, wanted)).await
}

fn answer(broker: &Arc<Broker>, ctx: Ctx, wanted: Option<Vec<Wanted>>) -> Result<Response, Fatal> {
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
    resp.topics = match wanted {
        None => broker
            .all_topics()
            .iter()
            .map(|t| topic_entry(t, node))
            .collect(),
        Some(wanted) => wanted
            .iter()
            .map(|w| {
                let name = match w {
                    Wanted::Name(name) => name,
                    // By ID (what the Java consumer asks for the topics a KIP-848
                    // assignment names): an unknown one is UNKNOWN_TOPIC_ID.
                    Wanted::Id(id) => {
                        return match broker.topic_by_id(id) {
                            Some(t) => topic_entry(&t, node),
                            None => {
                                let mut e = MetadataResponseTopic::default();
                                e.topic_id = *id;
                                e.error_code = ResponseError::UnknownTopicId.code();
                                e
                            }
                        };
                    }
                };
                if !valid_topic_name(name) {
                    return error_entry(name, ResponseError::InvalidTopicException.code());
                }
                match broker.topic(name) {
                    Some(t) => topic_entry(&t, node),
                    // Being created: Kafka's answer, which clients retry.
                    None if broker.auto_create_pending(name) => {
                        error_entry(name, ResponseError::LeaderNotAvailable.code())
                    }
                    None => error_entry(name, ResponseError::UnknownTopicOrPartition.code()),
                }
            })
            .collect(),
    };
    encode(ctx, &resp)
}

#[cfg(test)]
mod tests {
    use bytes::Buf;
    use fjord_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use fjord_protocol::kafka_protocol::messages::ApiKey;
    use fjord_protocol::kafka_protocol::protocol::Decodable;

    use super::super::test_support::{body, ctx, open};
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn v12_finds_topics_by_id_and_names_unknown_ids() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = open(dir.path());
        broker
            .create_topic("t", 2, Default::default(), false)
            .expect("topic");
        let id = broker.topic("t").expect("t").id;
        let stale = uuid::Uuid::new_v4();
        let mut req = MetadataRequest::default();
        req.topics = Some(
            [id, stale]
                .into_iter()
                .map(|topic_id| {
                    let mut t = MetadataRequestTopic::default();
                    t.topic_id = topic_id;
                    t
                })
                .collect(),
        );
        let r = handle(&broker, ctx(ApiKey::Metadata, 12), req, "test")
            .await
            .expect("answer");
        let mut bytes = body(r);
        bytes.advance(1);
        let resp = MetadataResponse::decode(&mut bytes, 12).expect("decode");
        assert_eq!(
            resp.topics[0].name.as_ref().map(|n| n.0.as_str()),
            Some("t")
        );
        assert_eq!(
            (resp.topics[0].topic_id, resp.topics[0].partitions.len()),
            (id, 2)
        );
        assert_eq!(
            (resp.topics[1].topic_id, resp.topics[1].error_code),
            (stale, ResponseError::UnknownTopicId.code())
        );
    }
}
