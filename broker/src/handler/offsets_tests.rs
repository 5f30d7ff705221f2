//! OffsetCommit and OffsetFetch through the handlers: per-partition errors for bad
//! commits, fencing by generation, and commits that survive reopening the broker.

use std::sync::Arc;

use fjord_protocol::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use fjord_protocol::kafka_protocol::messages::offset_commit_response::OffsetCommitResponse;
use fjord_protocol::kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequest, OffsetFetchRequestTopic,
};
use fjord_protocol::kafka_protocol::messages::offset_fetch_response::OffsetFetchResponse;
use fjord_protocol::kafka_protocol::messages::{ApiKey, GroupId, TopicName};
use fjord_protocol::kafka_protocol::protocol::{Decodable, StrBytes};
use fjord_protocol::kafka_protocol::ResponseError as E;

use super::offsets;
use super::test_support::*;
use crate::state::Broker;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn commit(broker: &Arc<Broker>, generation: i32, parts: &[(i32, i64, &str)]) -> Vec<i16> {
    let mut t = OffsetCommitRequestTopic::default();
    t.name = TopicName(s("t"));
    t.partitions = parts
        .iter()
        .map(|(p, o, m)| {
            let mut x = OffsetCommitRequestPartition::default();
            x.partition_index = *p;
            x.committed_offset = *o;
            x.committed_metadata = Some(s(m));
            x
        })
        .collect();
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(s("g"));
    req.generation_id_or_member_epoch = generation;
    req.member_id = s("");
    req.topics = vec![t];
    let r = offsets::offset_commit(broker, ctx(ApiKey::OffsetCommit, 7), req).expect("commit");
    let resp = OffsetCommitResponse::decode(&mut body(r), 7).expect("decode");
    resp.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect()
}

fn fetch(broker: &Arc<Broker>, partitions: Vec<i32>) -> Vec<(i64, String)> {
    let mut t = OffsetFetchRequestTopic::default();
    t.name = TopicName(s("t"));
    t.partition_indexes = partitions;
    let mut req = OffsetFetchRequest::default();
    req.group_id = GroupId(s("g"));
    req.topics = Some(vec![t]);
    let r = offsets::offset_fetch(broker, ctx(ApiKey::OffsetFetch, 5), req).expect("fetch");
    let resp = OffsetFetchResponse::decode(&mut body(r), 5).expect("decode");
    resp.topics[0]
        .partitions
        .iter()
        .map(|p| {
            (
                p.committed_offset,
                p.metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn bad_commits_fail_per_partition_and_good_ones_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    broker
        .create_topic("t", 2, Default::default(), false)
        .expect("topic");
    let huge = "m".repeat(5000);
    let errors = commit(&broker, -1, &[(0, 42, "ok"), (1, 7, &huge), (9, 1, "")]);
    assert_eq!(
        errors,
        vec![
            0,
            E::OffsetMetadataTooLarge.code(),
            E::UnknownTopicOrPartition.code()
        ]
    );
    // A member and generation the group never had: fenced (Kafka checks the member
    // first), nothing stored.
    let fenced = commit(&broker, 5, &[(0, 99, "")]);
    assert_eq!(fenced, vec![E::UnknownMemberId.code()]);
    assert_eq!(
        fetch(&broker, vec![0, 1]),
        vec![(42, "ok".to_string()), (-1, String::new())]
    );
    broker.close();
    drop(broker);
    let broker = open(dir.path());
    assert_eq!(
        fetch(&broker, vec![0, 1]),
        vec![(42, "ok".to_string()), (-1, String::new())]
    );
}
