//! Offsets on the broker: committed ones (OffsetFetch, OffsetCommit at the group
//! coordinator) and the log's ends (ListOffsets at the leader), for positions.

use std::collections::HashMap;

use fjord_client_common::{ClientError, Connection};
use fjord_protocol::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use fjord_protocol::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use fjord_protocol::kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequest, OffsetFetchRequestTopic,
};
use fjord_protocol::kafka_protocol::messages::{ApiKey, BrokerId, GroupId, TopicName};
use fjord_protocol::kafka_protocol::protocol::StrBytes;

use crate::error::{kafka_error_name, ConsumeError};
use crate::record::TopicPartition;

fn by_topic(tps: &[TopicPartition]) -> Vec<(String, Vec<i32>)> {
    let mut out: Vec<(String, Vec<i32>)> = Vec::new();
    for tp in tps {
        match out.iter_mut().find(|(t, _)| **t == *tp.topic) {
            Some((_, ps)) => ps.push(tp.partition),
            None => out.push((tp.topic.to_string(), vec![tp.partition])),
        }
    }
    out
}

/// Committed offsets of `tps` for `group` (`None` where nothing is committed).
pub(crate) async fn fetch_committed(
    conn: &Connection,
    group: &str,
    tps: &[TopicPartition],
) -> Result<HashMap<TopicPartition, Option<i64>>, ConsumeError> {
    let version = conn.version(ApiKey::OffsetFetch, 1, 7)?;
    let mut req = OffsetFetchRequest::default();
    req.group_id = GroupId(StrBytes::from_string(group.to_string()));
    req.topics = Some(
        by_topic(tps)
            .into_iter()
            .map(|(t, ps)| {
                let mut x = OffsetFetchRequestTopic::default();
                x.name = TopicName(StrBytes::from_string(t));
                x.partition_indexes = ps;
                x
            })
            .collect(),
    );
    let resp = conn.request(&req, version).await?;
    if resp.error_code != 0 {
        return Err(ConsumeError::Group {
            code: resp.error_code,
            name: kafka_error_name(resp.error_code),
        });
    }
    let mut out = HashMap::new();
    for t in &resp.topics {
        for p in &t.partitions {
            let tp = TopicPartition::new(t.name.0.as_str(), p.partition_index);
            let offset =
                (p.error_code == 0 && p.committed_offset >= 0).then_some(p.committed_offset);
            out.insert(tp, offset);
        }
    }
    Ok(out)
}

/// Commits `offsets` for `group` as `member` of `generation` (-1 and "" outside group
/// management). Any partition's error fails the commit.
pub(crate) async fn commit(
    conn: &Connection,
    group: &str,
    generation: i32,
    member: &str,
    instance: Option<&str>,
    offsets: &[(TopicPartition, i64)],
) -> Result<(), ConsumeError> {
    if offsets.is_empty() {
        return Ok(());
    }
    // v9 carries a consumer-protocol member's epoch (Kafka refuses older versions
    // from such members); it is v8 otherwise.
    let version = conn.version(ApiKey::OffsetCommit, 2, 9)?;
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(StrBytes::from_string(group.to_string()));
    req.generation_id_or_member_epoch = generation;
    req.member_id = StrBytes::from_string(member.to_string());
    if version >= 7 {
        req.group_instance_id = instance.map(|i| StrBytes::from_string(i.to_string()));
    }
    if version <= 4 {
        req.retention_time_ms = -1;
    }
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (tp, offset) in offsets {
        let mut p = OffsetCommitRequestPartition::default();
        p.partition_index = tp.partition;
        p.committed_offset = *offset;
        p.committed_leader_epoch = -1;
        p.committed_metadata = Some(StrBytes::from_static_str(""));
        match topics.iter_mut().find(|t| *t.name.0 == *tp.topic) {
            Some(t) => t.partitions.push(p),
            None => {
                let mut t = OffsetCommitRequestTopic::default();
                t.name = TopicName(StrBytes::from_string(tp.topic.to_string()));
                t.partitions.push(p);
                topics.push(t);
            }
        }
    }
    req.topics = topics;
    let resp = conn.request(&req, version).await?;
    for t in &resp.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                return Err(ConsumeError::CommitFailed {
                    code: p.error_code,
                    name: kafka_error_name(p.error_code),
                });
            }
        }
    }
    Ok(())
}

/// The offset of `tps` at `timestamp` (-2 earliest, -1 latest) on their leader.
pub(crate) async fn list_offsets(
    conn: &Connection,
    tps: &[TopicPartition],
    timestamp: i64,
    read_committed: bool,
) -> Result<HashMap<TopicPartition, i64>, ConsumeError> {
    let version = conn.version(ApiKey::ListOffsets, 1, 7)?;
    let mut req = ListOffsetsRequest::default();
    req.replica_id = BrokerId(-1);
    if version >= 2 {
        req.isolation_level = i8::from(read_committed);
    }
    req.topics = by_topic(tps)
        .into_iter()
        .map(|(t, ps)| {
            let mut x = ListOffsetsTopic::default();
            x.name = TopicName(StrBytes::from_string(t));
            x.partitions = ps
                .into_iter()
                .map(|p| {
                    let mut lp = ListOffsetsPartition::default();
                    lp.partition_index = p;
                    lp.timestamp = timestamp;
                    if version >= 4 {
                        lp.current_leader_epoch = -1;
                    }
                    lp
                })
                .collect();
            x
        })
        .collect();
    let resp = conn.request(&req, version).await?;
    let mut out = HashMap::new();
    for t in &resp.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                return Err(ConsumeError::Client(ClientError::Broker {
                    code: p.error_code,
                    message: format!("ListOffsets {}-{}", t.name.0, p.partition_index),
                }));
            }
            out.insert(
                TopicPartition::new(t.name.0.as_str(), p.partition_index),
                p.offset,
            );
        }
    }
    Ok(out)
}
