//! The group APIs' part of `every_advertised_version_encodes`: each version answered
//! along its success path (a real join, sync, commit) and an error path.

use std::sync::Arc;

use bytes::{Buf, Bytes};
use fjord_protocol::kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use fjord_protocol::kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use fjord_protocol::kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use fjord_protocol::kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use fjord_protocol::kafka_protocol::messages::join_group_request::{
    JoinGroupRequest, JoinGroupRequestProtocol,
};
use fjord_protocol::kafka_protocol::messages::join_group_response::JoinGroupResponse;
use fjord_protocol::kafka_protocol::messages::leave_group_request::{
    LeaveGroupRequest, MemberIdentity,
};
use fjord_protocol::kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use fjord_protocol::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use fjord_protocol::kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequest, OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use fjord_protocol::kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequest, OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use fjord_protocol::kafka_protocol::messages::sync_group_request::{
    SyncGroupRequest, SyncGroupRequestAssignment,
};
use fjord_protocol::kafka_protocol::messages::{ApiKey, GroupId, TopicName};
use fjord_protocol::kafka_protocol::protocol::{Decodable, StrBytes};

use super::test_support::*;
use super::{groups, offsets, Fatal, Response};
use crate::state::Broker;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn join_request(group: &str, member: &str) -> JoinGroupRequest {
    let mut p = JoinGroupRequestProtocol::default();
    p.name = s("range");
    p.metadata = Bytes::from_static(b"\0\0\0\0\0\0\xff\xff\xff\xff");
    let mut req = JoinGroupRequest::default();
    req.group_id = GroupId(s(group));
    req.session_timeout_ms = 10_000;
    req.rebalance_timeout_ms = 10_000;
    req.member_id = s(member);
    req.protocol_type = s("consumer");
    req.protocols = vec![p];
    req
}

/// Decodes a JoinGroup response frame.
fn decode_join(r: &Result<Response, Fatal>, version: i16) -> JoinGroupResponse {
    let Ok(Response::Frame(frame)) = r else {
        panic!("JoinGroup v{version}: {r:?}");
    };
    let mut body = Bytes::copy_from_slice(&frame[8..]);
    if ApiKey::JoinGroup.response_header_version(version) >= 1 {
        body.advance(1); // no tagged fields
    }
    JoinGroupResponse::decode(&mut body, version).expect("decode join")
}

/// Joins `group` as its only member: (member id, generation).
async fn join(broker: &Arc<Broker>, group: &str, version: i16) -> (String, i32) {
    let c = ctx(ApiKey::JoinGroup, version);
    let client = || groups::Client {
        client_id: "test".into(),
        host: "/127.0.0.1".into(),
    };
    let first = groups::join_group(broker, c, join_request(group, ""), client()).await;
    let first = decode_join(&first, version);
    let member = first.member_id.to_string();
    let done = if first.error_code == 79 {
        let second = groups::join_group(broker, c, join_request(group, &member), client()).await;
        decode_join(&second, version)
    } else {
        first
    };
    assert_eq!(done.error_code, 0, "JoinGroup v{version}");
    assert_eq!(done.leader.as_str(), member.as_str());
    (member, done.generation_id)
}

/// Runs one group API at version `v`; `None` for other APIs.
pub(super) async fn exercise(
    broker: &Arc<Broker>,
    key: ApiKey,
    v: i16,
) -> Option<Result<Response, Fatal>> {
    let c = ctx(key, v);
    Some(match key {
        ApiKey::FindCoordinator => {
            let mut req = FindCoordinatorRequest::default();
            req.key = s("g");
            if v >= 4 {
                req.coordinator_keys = vec![s("g"), s("h")];
            }
            groups::find_coordinator(broker, c, req)
        }
        ApiKey::JoinGroup => {
            join(broker, &format!("join-{v}"), v).await;
            groups::join_group(
                broker,
                c,
                join_request(&format!("join-{v}"), "stranger"),
                groups::Client::default(),
            )
            .await
        }
        ApiKey::SyncGroup => {
            let group = format!("sync-{v}");
            let (member, generation) = join(broker, &group, 5).await;
            let mut a = SyncGroupRequestAssignment::default();
            a.member_id = s(&member);
            a.assignment = Bytes::from_static(b"\0\0\0\0\0\0\0\0\0\0");
            let mut req = SyncGroupRequest::default();
            req.group_id = GroupId(s(&group));
            req.generation_id = generation;
            req.member_id = s(&member);
            if v >= 5 {
                req.protocol_type = Some(s("consumer"));
                req.protocol_name = Some(s("range"));
            }
            req.assignments = vec![a];
            groups::sync_group(broker, c, req).await
        }
        ApiKey::Heartbeat => {
            let mut req = HeartbeatRequest::default();
            req.group_id = GroupId(s("nobody"));
            req.member_id = s("m");
            groups::heartbeat(broker, c, req)
        }
        ApiKey::LeaveGroup => {
            let group = format!("leave-{v}");
            let (member, _) = join(broker, &group, 5).await;
            let mut req = LeaveGroupRequest::default();
            req.group_id = GroupId(s(&group));
            if v >= 3 {
                let mut m = MemberIdentity::default();
                m.member_id = s(&member);
                let mut stranger = MemberIdentity::default();
                stranger.member_id = s("stranger");
                req.members = vec![m, stranger];
            } else {
                req.member_id = s(&member);
            }
            groups::leave_group(broker, c, req)
        }
        ApiKey::OffsetCommit => {
            let mut p = OffsetCommitRequestPartition::default();
            p.committed_offset = 1;
            p.committed_metadata = Some(s("meta"));
            let mut missing = OffsetCommitRequestPartition::default();
            missing.partition_index = 99;
            let mut t = OffsetCommitRequestTopic::default();
            t.name = TopicName(s("t"));
            t.partitions = vec![p, missing];
            let mut req = OffsetCommitRequest::default();
            req.group_id = GroupId(s("committer"));
            req.generation_id_or_member_epoch = -1;
            req.retention_time_ms = -1;
            req.topics = vec![t];
            // As in production (off the reactor): a durable commit blocks for its sync.
            tokio::task::block_in_place(|| offsets::offset_commit(broker, c, req))
        }
        ApiKey::OffsetFetch => {
            let mut req = OffsetFetchRequest::default();
            if v >= 8 {
                let mut t = OffsetFetchRequestTopics::default();
                t.name = TopicName(s("t"));
                t.partition_indexes = vec![0, 1];
                let mut g = OffsetFetchRequestGroup::default();
                g.group_id = GroupId(s("committer"));
                g.topics = Some(vec![t]);
                let mut all = OffsetFetchRequestGroup::default();
                all.group_id = GroupId(s("committer"));
                req.groups = vec![g, all];
            } else {
                let mut t = OffsetFetchRequestTopic::default();
                t.name = TopicName(s("t"));
                t.partition_indexes = vec![0, 1];
                req.group_id = GroupId(s("committer"));
                req.topics = Some(vec![t]);
            }
            offsets::offset_fetch(broker, c, req)
        }
        ApiKey::ListGroups => groups::list_groups(broker, c, ListGroupsRequest::default()),
        ApiKey::DescribeGroups => {
            let mut req = DescribeGroupsRequest::default();
            req.groups = vec![
                GroupId(s("committer")),
                GroupId(s("sync-5")),
                GroupId(s("unknown")),
            ];
            groups::describe_groups(broker, c, req)
        }
        ApiKey::DeleteGroups => {
            let mut req = DeleteGroupsRequest::default();
            req.groups_names = vec![GroupId(s("unknown")), GroupId(s("sync-5"))];
            groups::delete_groups(broker, c, req)
        }
        ApiKey::OffsetDelete => {
            let mut p = OffsetDeleteRequestPartition::default();
            p.partition_index = 0;
            let mut t = OffsetDeleteRequestTopic::default();
            t.name = TopicName(s("t"));
            t.partitions = vec![p];
            let mut req = OffsetDeleteRequest::default();
            req.group_id = GroupId(s("committer"));
            req.topics = vec![t];
            offsets::offset_delete(broker, c, req)
        }
        _ => return None,
    })
}
