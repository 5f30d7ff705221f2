//! `fjord topics delete-records`: Kafka's DeleteRecords from the command line (what
//! kafka-delete-records.sh does), sent to each partition's leader.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use fjord_client_common::{ClusterMetadata, Connection};
use fjord_protocol::kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsRequest, DeleteRecordsTopic,
};
use fjord_protocol::kafka_protocol::messages::{ApiKey, TopicName};

use super::{connect, error_name, s};

/// Deletes the records of `topic` below `offset` (-1: up to the high watermark) in
/// `partition`, or in every partition; prints each partition's new log start.
pub(crate) async fn run(
    bootstrap: &str,
    topic: &str,
    partition: Option<i32>,
    offset: i64,
) -> Result<()> {
    if offset < -1 {
        bail!("--offset is an offset, or -1 for the high watermark");
    }
    let conn = connect(bootstrap).await?;
    let md = ClusterMetadata::fetch(&conn, Some(&[topic.to_string()]), false).await?;
    let Some(t) = md.topics.get(topic).filter(|t| t.error == 0) else {
        bail!("no such topic: {topic}");
    };
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in t
        .partitions
        .iter()
        .filter(|p| partition.is_none_or(|want| want == p.partition))
    {
        by_leader.entry(p.leader).or_default().push(p.partition);
    }
    if by_leader.is_empty() {
        bail!("{topic} has no partition {}", partition.unwrap_or(-1));
    }
    let mut failed = false;
    for (leader, partitions) in by_leader {
        let other;
        let leader_conn = match md.brokers.get(&leader) {
            Some(addr) if addr != conn.addr() => {
                other = connect(addr).await?;
                &other
            }
            _ => &conn,
        };
        failed |= !delete_at(leader_conn, topic, &partitions, offset).await?;
    }
    if failed {
        bail!("records of some partitions were not deleted");
    }
    Ok(())
}

/// One DeleteRecords request to a leader; false if a partition answered an error.
async fn delete_at(
    conn: &Connection,
    topic: &str,
    partitions: &[i32],
    offset: i64,
) -> Result<bool> {
    let version = conn.version(ApiKey::DeleteRecords, 0, 2)?;
    let mut t = DeleteRecordsTopic::default();
    t.name = TopicName(s(topic));
    t.partitions = partitions
        .iter()
        .map(|&index| {
            let mut p = DeleteRecordsPartition::default();
            p.partition_index = index;
            p.offset = offset;
            p
        })
        .collect();
    let mut req = DeleteRecordsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 30_000;
    let resp = conn.request(&req, version).await?;
    let mut ok = true;
    for p in resp.topics.iter().flat_map(|t| &t.partitions) {
        if p.error_code == 0 {
            println!(
                "{topic} partition {}: log start offset {}",
                p.partition_index, p.low_watermark
            );
        } else {
            eprintln!(
                "{topic} partition {}: {}",
                p.partition_index,
                error_name(p.error_code)
            );
            ok = false;
        }
    }
    Ok(ok)
}
