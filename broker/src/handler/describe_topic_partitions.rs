//! DescribeTopicPartitions (API 75, what Java's AdminClient 3.8+ uses for describeTopics):
//! topics and their partitions, in name order, paged. As Kafka's broker does, a request
//! without topics means every topic, the page holds at most `response_partition_limit`
//! partitions (capped at [`MAX_PARTITIONS_PER_PAGE`], Kafka's
//! `max.request.partition.size.limit` default), it starts at the request's cursor, and
//! `next_cursor` names where the next page starts (null on the last page). A cursor whose
//! topic is not among the requested ones is INVALID_REQUEST.

use std::sync::Arc;

use fjord_protocol::kafka_protocol::messages::describe_topic_partitions_request::DescribeTopicPartitionsRequest;
use fjord_protocol::kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponse, DescribeTopicPartitionsResponsePartition,
    DescribeTopicPartitionsResponseTopic,
};
use fjord_protocol::kafka_protocol::messages::{BrokerId, TopicName};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::kafka_protocol::ResponseError as E;

use super::{encode, Ctx, Fatal, Response};
use crate::state::{Broker, Topic};

/// Partitions in one answer at most (Kafka's `max.request.partition.size.limit`).
pub(crate) const MAX_PARTITIONS_PER_PAGE: usize = 2000;

pub(super) fn handle(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: DescribeTopicPartitionsRequest,
) -> Result<Response, Fatal> {
    let mut names: Vec<String> = if req.topics.is_empty() {
        broker.all_topics().iter().map(|t| t.name.clone()).collect()
    } else {
        req.topics.iter().map(|t| t.name.0.to_string()).collect()
    };
    names.sort();
    names.dedup();
    let mut resp = DescribeTopicPartitionsResponse::default();
    let (mut first, mut from_partition) = (0, 0);
    if let Some(cursor) = &req.cursor {
        let Some(at) = names
            .iter()
            .position(|n| n.as_str() == cursor.topic_name.0.as_str())
        else {
            return invalid_request(ctx, &names);
        };
        first = at;
        from_partition = usize::try_from(cursor.partition_index).unwrap_or(0);
    }
    let limit = usize::try_from(req.response_partition_limit)
        .unwrap_or(0)
        .clamp(1, MAX_PARTITIONS_PER_PAGE);
    let mut left = limit;
    for (i, name) in names.iter().enumerate().skip(first) {
        let skip = if i == first { from_partition } else { 0 };
        if left == 0 {
            resp.next_cursor = Some(cursor_at(name, skip));
            break;
        }
        let Some(topic) = broker.topic(name) else {
            resp.topics
                .push(unknown(name, E::UnknownTopicOrPartition.code()));
            continue;
        };
        let total = topic.partitions.len();
        let take = (total.saturating_sub(skip)).min(left);
        resp.topics
            .push(entry(&topic, skip, take, broker.config.node_id));
        left -= take;
        if skip + take < total {
            resp.next_cursor = Some(cursor_at(name, skip + take));
            break;
        }
    }
    encode(ctx, &resp)
}

/// The answer to a request whose cursor is not among its topics: INVALID_REQUEST for
/// each of them, as Kafka's error response has it.
fn invalid_request(ctx: Ctx, names: &[String]) -> Result<Response, Fatal> {
    let mut resp = DescribeTopicPartitionsResponse::default();
    resp.topics = names
        .iter()
        .map(|n| unknown(n, E::InvalidRequest.code()))
        .collect();
    encode(ctx, &resp)
}

fn cursor_at(topic: &str, partition: usize) -> Cursor {
    let mut c = Cursor::default();
    c.topic_name = TopicName(StrBytes::from_string(topic.to_string()));
    c.partition_index = i32::try_from(partition).unwrap_or(i32::MAX);
    c
}

/// `name` with an error and no partitions.
fn unknown(name: &str, error_code: i16) -> DescribeTopicPartitionsResponseTopic {
    let mut t = DescribeTopicPartitionsResponseTopic::default();
    t.error_code = error_code;
    t.name = Some(TopicName(StrBytes::from_string(name.to_string())));
    t
}

/// `topic` with its partitions `skip..skip + take`.
fn entry(
    topic: &Topic,
    skip: usize,
    take: usize,
    node: i32,
) -> DescribeTopicPartitionsResponseTopic {
    let mut t = DescribeTopicPartitionsResponseTopic::default();
    t.name = Some(TopicName(StrBytes::from_string(topic.name.clone())));
    t.topic_id = topic.id;
    t.partitions = topic
        .partitions
        .iter()
        .skip(skip)
        .take(take)
        .map(|p| {
            let mut e = DescribeTopicPartitionsResponsePartition::default();
            e.partition_index = p.index;
            e.leader_id = BrokerId(node);
            e.leader_epoch = p.leader_epoch;
            e.replica_nodes = vec![BrokerId(node)];
            e.isr_nodes = vec![BrokerId(node)];
            e.eligible_leader_replicas = Some(Vec::new());
            e.last_known_elr = Some(Vec::new());
            e
        })
        .collect();
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::test_support::{body, ctx, open};
    use fjord_protocol::kafka_protocol::messages::describe_topic_partitions_request::{
        Cursor as RequestCursor, TopicRequest,
    };
    use fjord_protocol::kafka_protocol::messages::ApiKey;
    use fjord_protocol::kafka_protocol::protocol::Decodable;

    fn ask(
        broker: &Arc<Broker>,
        topics: &[&str],
        limit: i32,
        cursor: Option<(&str, i32)>,
    ) -> DescribeTopicPartitionsResponse {
        let mut req = DescribeTopicPartitionsRequest::default();
        req.topics = topics
            .iter()
            .map(|t| {
                let mut r = TopicRequest::default();
                r.name = TopicName(StrBytes::from_string(t.to_string()));
                r
            })
            .collect();
        req.response_partition_limit = limit;
        req.cursor = cursor.map(|(t, p)| {
            let mut c = RequestCursor::default();
            c.topic_name = TopicName(StrBytes::from_string(t.to_string()));
            c.partition_index = p;
            c
        });
        let r = handle(broker, ctx(ApiKey::DescribeTopicPartitions, 0), req).expect("answered");
        let mut b = body(r);
        // v0 is flexible: the response header carries a tagged-field byte.
        let _tagged = bytes::Buf::get_u8(&mut b);
        DescribeTopicPartitionsResponse::decode(&mut b, 0).expect("decodes")
    }

    /// (topic, first partition, partition count, error).
    type Row = (String, i32, usize, i16);

    /// (topic, first partition, partition count, error) per topic, and the next cursor.
    fn pages(r: &DescribeTopicPartitionsResponse) -> (Vec<Row>, Option<(String, i32)>) {
        let topics = r
            .topics
            .iter()
            .map(|t| {
                let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
                let first = t.partitions.first().map_or(-1, |p| p.partition_index);
                (name, first, t.partitions.len(), t.error_code)
            })
            .collect();
        let next = r
            .next_cursor
            .as_ref()
            .map(|c| (c.topic_name.0.to_string(), c.partition_index));
        (topics, next)
    }

    #[test]
    fn pages_follow_the_partition_limit_and_the_cursor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = open(dir.path());
        for (name, n) in [("b", 3), ("a", 2), ("c", 1)] {
            broker
                .create_topic(name, n, Default::default(), false)
                .expect("topic");
        }
        // Everything, in name order, in one page.
        let all = ask(&broker, &[], 100, None);
        assert_eq!(
            pages(&all),
            (
                vec![
                    ("a".into(), 0, 2, 0),
                    ("b".into(), 0, 3, 0),
                    ("c".into(), 0, 1, 0)
                ],
                None
            )
        );
        assert_eq!(all.topics[1].topic_id, broker.topic("b").expect("b").id);
        // Three partitions a page: a's two and b's first, then b from 1, then c.
        let p1 = ask(&broker, &[], 3, None);
        assert_eq!(
            pages(&p1),
            (
                vec![("a".into(), 0, 2, 0), ("b".into(), 0, 1, 0)],
                Some(("b".into(), 1))
            )
        );
        let p2 = ask(&broker, &[], 3, Some(("b", 1)));
        assert_eq!(
            pages(&p2),
            (vec![("b".into(), 1, 2, 0), ("c".into(), 0, 1, 0)], None)
        );
        // A page that ends exactly at a topic's end points at the next topic.
        let p = ask(&broker, &["a", "c"], 2, None);
        assert_eq!(
            pages(&p),
            (vec![("a".into(), 0, 2, 0)], Some(("c".into(), 0)))
        );
        // Unknown topics are answered as such; a cursor outside the request is invalid.
        let unknown = ask(&broker, &["zz", "a"], 10, None);
        assert_eq!(
            pages(&unknown),
            (
                vec![
                    ("a".into(), 0, 2, 0),
                    ("zz".into(), -1, 0, E::UnknownTopicOrPartition.code())
                ],
                None
            )
        );
        let bad = ask(&broker, &["a"], 10, Some(("b", 0)));
        assert_eq!(
            pages(&bad),
            (vec![("a".into(), -1, 0, E::InvalidRequest.code())], None)
        );
    }
}
