//! ConsumerGroupHeartbeat and ConsumerGroupDescribe as clients see them, and what the
//! classic group APIs say of KIP-848 groups.

use std::sync::Arc;

use fjord_protocol::kafka_protocol::messages::consumer_group_describe_request::ConsumerGroupDescribeRequest;
use fjord_protocol::kafka_protocol::messages::consumer_group_describe_response::ConsumerGroupDescribeResponse;
use fjord_protocol::kafka_protocol::messages::consumer_group_heartbeat_request::ConsumerGroupHeartbeatRequest;
use fjord_protocol::kafka_protocol::messages::consumer_group_heartbeat_response::ConsumerGroupHeartbeatResponse;
use fjord_protocol::kafka_protocol::messages::TopicName;
use fjord_protocol::kafka_protocol::ResponseError as E;

use super::{Fatal, Response};
use crate::state::Broker;

#[cfg(test)]
mod tests {
    use bytes::Buf;
    use fjord_protocol::kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
    use fjord_protocol::kafka_protocol::messages::{ApiKey, GroupId};
    use fjord_protocol::kafka_protocol::protocol::{Decodable, StrBytes};

    use super::super::consumer_groups::*;
    use super::super::test_support::{body, ctx, open};
    use super::*;

    fn join(member: &str) -> ConsumerGroupHeartbeatRequest {
        let mut req = ConsumerGroupHeartbeatRequest::default();
        req.group_id = GroupId(StrBytes::from_static_str("g"));
        req.member_id = StrBytes::from_string(member.to_string());
        req.rebalance_timeout_ms = 30_000;
        req.subscribed_topic_names = Some(vec![TopicName(StrBytes::from_static_str("t"))]);
        req.topic_partitions = Some(Vec::new());
        req
    }

    fn beat(
        broker: &Arc<Broker>,
        req: ConsumerGroupHeartbeatRequest,
    ) -> ConsumerGroupHeartbeatResponse {
        let r = heartbeat(
            broker,
            ctx(ApiKey::ConsumerGroupHeartbeat, 1),
            req,
            "c".into(),
            "/h".into(),
        )
        .expect("answer");
        let mut bytes = body(r);
        bytes.advance(1);
        ConsumerGroupHeartbeatResponse::decode(&mut bytes, 1).expect("decode")
    }

    fn owned(resp: &ConsumerGroupHeartbeatResponse) -> Vec<TopicPartitions> {
        resp.assignment
            .as_ref()
            .map(|a| {
                a.topic_partitions
                    .iter()
                    .map(|tp| {
                        let mut o = TopicPartitions::default();
                        o.topic_id = tp.topic_id;
                        o.partitions = tp.partitions.clone();
                        o
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn count(resp: &ConsumerGroupHeartbeatResponse) -> usize {
        owned(resp).iter().map(|t| t.partitions.len()).sum()
    }

    #[test]
    fn two_members_split_a_topic_by_heartbeats_and_describe_shows_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = open(dir.path());
        broker
            .create_topic("t", 4, Default::default(), false)
            .expect("topic");
        let a = beat(&broker, join("a"));
        assert_eq!((a.error_code, a.member_epoch, count(&a)), (0, 1, 4));
        assert_eq!(a.heartbeat_interval_ms, 5_000);
        // b joins: it gets nothing until a revoked two partitions.
        let b = beat(&broker, join("b"));
        assert_eq!((b.error_code, b.member_epoch, count(&b)), (0, 2, 0));
        let mut again = join("a");
        again.member_epoch = 1;
        again.topic_partitions = Some(owned(&a));
        again.rebalance_timeout_ms = -1;
        again.subscribed_topic_names = None;
        let a2 = beat(&broker, again.clone());
        assert_eq!(
            (a2.member_epoch, count(&a2)),
            (1, 2),
            "revoke first, same epoch"
        );
        again.topic_partitions = Some(owned(&a2));
        let a3 = beat(&broker, again);
        assert_eq!(a3.member_epoch, 2, "revocation acknowledged: the new epoch");
        let mut b_again = join("b");
        b_again.member_epoch = 2;
        b_again.topic_partitions = Some(Vec::new());
        let b2 = beat(&broker, b_again);
        assert_eq!(
            (b2.member_epoch, count(&b2)),
            (2, 2),
            "the released partitions"
        );

        let mut req = ConsumerGroupDescribeRequest::default();
        req.group_ids = vec![
            GroupId(StrBytes::from_static_str("g")),
            GroupId(StrBytes::from_static_str("nope")),
        ];
        let r =
            describe_groups(&broker, ctx(ApiKey::ConsumerGroupDescribe, 1), req).expect("answer");
        let mut bytes = body(r);
        bytes.advance(1);
        let d = ConsumerGroupDescribeResponse::decode(&mut bytes, 1).expect("decode");
        let g = &d.groups[0];
        assert_eq!(
            (g.group_state.as_str(), g.group_epoch, g.assignment_epoch),
            ("Stable", 2, 2)
        );
        assert_eq!(g.assignor_name.as_str(), "uniform");
        assert_eq!(g.members.len(), 2);
        assert!(g
            .members
            .iter()
            .all(|m| m.member_epoch == 2 && m.member_type == 1));
        assert_eq!(d.groups[1].error_code, E::GroupIdNotFound.code());
    }

    #[test]
    fn bad_heartbeats_get_kafkas_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = open(dir.path());
        let mut no_timeout = join("a");
        no_timeout.rebalance_timeout_ms = -1;
        assert_eq!(
            beat(&broker, no_timeout).error_code,
            E::InvalidRequest.code()
        );
        let mut no_member = join("");
        no_member.member_epoch = 0;
        assert_eq!(
            beat(&broker, no_member).error_code,
            E::InvalidRequest.code(),
            "v1 needs a member id"
        );
        let mut assignor = join("a");
        assignor.server_assignor = Some(StrBytes::from_static_str("sticky"));
        assert_eq!(
            beat(&broker, assignor).error_code,
            E::UnsupportedAssignor.code()
        );
        let mut regex = join("a");
        regex.subscribed_topic_names = None;
        regex.subscribed_topic_regex = Some(StrBytes::from_static_str("(unclosed"));
        assert_eq!(
            beat(&broker, regex).error_code,
            E::InvalidRegularExpression.code()
        );
        let joined = beat(&broker, join("a"));
        let mut fenced = join("a");
        fenced.member_epoch = joined.member_epoch + 5;
        assert_eq!(
            beat(&broker, fenced).error_code,
            E::FencedMemberEpoch.code()
        );
        let mut stranger = join("x");
        stranger.member_epoch = 3;
        assert_eq!(
            beat(&broker, stranger).error_code,
            E::UnknownMemberId.code()
        );
    }

    #[test]
    fn a_group_survives_a_restart_with_its_epochs_and_assignments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = open(dir.path());
        broker
            .create_topic("t", 4, Default::default(), false)
            .expect("topic");
        let a = beat(&broker, join("a"));
        let mut static_join = join("b");
        static_join.instance_id = Some(StrBytes::from_static_str("inst"));
        let b = beat(&broker, static_join);
        // a revokes two, then b gets them.
        let mut again = join("a");
        again.member_epoch = a.member_epoch;
        again.topic_partitions = Some(owned(&a));
        let a2 = beat(&broker, again.clone());
        again.topic_partitions = Some(owned(&a2));
        let a3 = beat(&broker, again);
        let mut b_again = join("b");
        b_again.instance_id = Some(StrBytes::from_static_str("inst"));
        b_again.member_epoch = b.member_epoch;
        let b2 = beat(&broker, b_again.clone());
        assert_eq!((count(&a3), count(&b2)), (2, 2));
        broker.close();
        drop(broker);

        let broker = open(dir.path());
        let group = broker.groups.consumer.get("g").expect("restored");
        {
            let g = crate::groups::consumer::lock(&group);
            assert_eq!(
                (g.group_epoch, g.assignment_epoch, g.state()),
                (2, 2, "Stable")
            );
            assert_eq!(g.members["b"].instance_id.as_deref(), Some("inst"));
            assert_eq!(g.members["a"].current.epoch, a3.member_epoch);
        }
        // Both carry on at their epochs: no fencing, the same partitions.
        let mut a_next = join("a");
        a_next.member_epoch = a3.member_epoch;
        a_next.topic_partitions = Some(owned(&a3));
        let a4 = beat(&broker, a_next);
        assert_eq!(
            (a4.error_code, a4.member_epoch, count(&a4)),
            (0, a3.member_epoch, 2)
        );
        b_again.member_epoch = b2.member_epoch;
        b_again.topic_partitions = Some(owned(&b2));
        let b3 = beat(&broker, b_again);
        assert_eq!((b3.error_code, count(&b3)), (0, 2));
        // An unknown group is Kafka's GROUP_ID_NOT_FOUND.
        let mut stranger = join("x");
        stranger.group_id =
            fjord_protocol::kafka_protocol::messages::GroupId(StrBytes::from_static_str("nope"));
        stranger.member_epoch = 3;
        assert_eq!(
            beat(&broker, stranger).error_code,
            E::GroupIdNotFound.code()
        );
    }
}

#[cfg(test)]
mod regex_tests {
    use bytes::Buf;
    use fjord_protocol::kafka_protocol::messages::{ApiKey, GroupId};
    use fjord_protocol::kafka_protocol::protocol::{Decodable, StrBytes};

    use super::super::consumer_groups::*;
    use super::super::test_support::{body, ctx, open};
    use super::*;

    #[test]
    fn a_regex_subscription_gets_the_matching_topics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = open(dir.path());
        for t in ["rx-a", "other"] {
            broker
                .create_topic(t, 2, Default::default(), false)
                .expect("topic");
        }
        let mut req = ConsumerGroupHeartbeatRequest::default();
        req.group_id = GroupId(StrBytes::from_static_str("g"));
        req.member_id = StrBytes::from_static_str("m");
        req.rebalance_timeout_ms = 30_000;
        req.subscribed_topic_names = Some(Vec::new());
        req.subscribed_topic_regex = Some(StrBytes::from_static_str("rx-.*"));
        req.topic_partitions = Some(Vec::new());
        let r = heartbeat(
            &broker,
            ctx(ApiKey::ConsumerGroupHeartbeat, 1),
            req,
            String::new(),
            String::new(),
        )
        .expect("answer");
        let mut bytes = body(r);
        bytes.advance(1);
        let resp = ConsumerGroupHeartbeatResponse::decode(&mut bytes, 1).expect("decode");
        let a = resp.assignment.expect("assignment");
        let id = broker.topic("rx-a").expect("t").id;
        assert_eq!(a.topic_partitions.len(), 1);
        assert_eq!(a.topic_partitions[0].topic_id, id);
        assert_eq!(a.topic_partitions[0].partitions, vec![0, 1]);
    }
}

#[cfg(test)]
mod listing_tests {
    use bytes::Buf;
    use fjord_protocol::kafka_protocol::messages::describe_cluster_request::DescribeClusterRequest;
    use fjord_protocol::kafka_protocol::messages::describe_cluster_response::DescribeClusterResponse;
    use fjord_protocol::kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
    use fjord_protocol::kafka_protocol::messages::describe_groups_response::DescribeGroupsResponse;
    use fjord_protocol::kafka_protocol::messages::list_groups_request::ListGroupsRequest;
    use fjord_protocol::kafka_protocol::messages::list_groups_response::ListGroupsResponse;
    use fjord_protocol::kafka_protocol::messages::{ApiKey, GroupId};
    use fjord_protocol::kafka_protocol::protocol::{Decodable, StrBytes};

    use super::super::consumer_groups::*;
    use super::super::test_support::{body, ctx, open};
    use super::*;

    fn decode<T: Decodable>(r: Result<Response, Fatal>, version: i16) -> T {
        let mut bytes = body(r.expect("answer"));
        bytes.advance(1);
        T::decode(&mut bytes, version).expect("decode")
    }

    #[test]
    fn list_describe_and_cluster_answer_as_kafka_4() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = open(dir.path());
        let mut join = ConsumerGroupHeartbeatRequest::default();
        join.group_id = GroupId(StrBytes::from_static_str("kip848"));
        join.member_id = StrBytes::from_static_str("m");
        join.rebalance_timeout_ms = 30_000;
        join.subscribed_topic_names = Some(Vec::new());
        join.topic_partitions = Some(Vec::new());
        heartbeat(
            &broker,
            ctx(ApiKey::ConsumerGroupHeartbeat, 1),
            join,
            String::new(),
            String::new(),
        )
        .expect("joined");
        // ListGroups v5: the type, and the filter by it.
        for (filter, expect) in [("consumer", 1), ("classic", 0), ("CONSUMER", 1)] {
            let mut req = ListGroupsRequest::default();
            req.types_filter = vec![StrBytes::from_static_str(filter)];
            let resp: ListGroupsResponse = decode(
                super::super::groups::list_groups(&broker, ctx(ApiKey::ListGroups, 5), req),
                5,
            );
            assert_eq!(resp.groups.len(), expect, "filter {filter}");
            if let Some(g) = resp.groups.first() {
                assert_eq!(
                    (g.group_type.as_str(), g.protocol_type.as_str()),
                    ("consumer", "consumer")
                );
            }
        }
        // DescribeGroups v6: not a classic group, or not found.
        let mut req = DescribeGroupsRequest::default();
        req.groups = vec![
            GroupId(StrBytes::from_static_str("kip848")),
            GroupId(StrBytes::from_static_str("none")),
        ];
        let resp: DescribeGroupsResponse = decode(
            super::super::groups::describe_groups(
                &broker,
                ctx(ApiKey::DescribeGroups, 6),
                req.clone(),
            ),
            6,
        );
        for g in &resp.groups {
            assert_eq!(
                (g.error_code, g.group_state.as_str()),
                (E::GroupIdNotFound.code(), "Dead")
            );
        }
        let mut bytes = body(
            super::super::groups::describe_groups(&broker, ctx(ApiKey::DescribeGroups, 5), req)
                .expect("v5"),
        );
        bytes.advance(1);
        let old = DescribeGroupsResponse::decode(&mut bytes, 5).expect("decode");
        assert!(
            old.groups.iter().all(|g| g.error_code == 0),
            "before v6: Dead, no error"
        );
        // DescribeCluster v2: brokers only, as on a broker listener.
        for (endpoint, code) in [
            (1, 0),
            (2, E::MismatchedEndpointType.code()),
            (9, E::UnsupportedEndpointType.code()),
        ] {
            let mut req = DescribeClusterRequest::default();
            req.endpoint_type = endpoint;
            req.include_fenced_brokers = true;
            let resp: DescribeClusterResponse = decode(
                super::super::admin::describe_cluster(
                    &broker,
                    ctx(ApiKey::DescribeCluster, 2),
                    req,
                ),
                2,
            );
            assert_eq!(resp.error_code, code, "endpoint type {endpoint}");
            assert_eq!(resp.brokers.len(), usize::from(code == 0));
        }
    }
}
