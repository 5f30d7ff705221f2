//! `fjord topics delete-records`: Kafka's DeleteRecords from the command line (what
//! kafka-delete-records.sh does, its JSON file included), sent to each partition's
//! leader.

use std::collections::BTreeMap;

use std::path::Path;

use anyhow::{bail, Context, Result};
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
    let wanted: Vec<(i32, i64)> = t
        .partitions
        .iter()
        .filter(|p| partition.is_none_or(|want| want == p.partition))
        .map(|p| (p.partition, offset))
        .collect();
    if wanted.is_empty() {
        bail!("{topic} has no partition {}", partition.unwrap_or(-1));
    }
    let targets = BTreeMap::from([(topic.to_string(), wanted)]);
    delete_all(&conn, &md, &targets).await
}

/// kafka-delete-records' `--offset-json-file`: `{"partitions": [{"topic": T,
/// "partition": P, "offset": O}, ...], "version": 1}`, each partition to its own offset.
pub(crate) async fn run_json(bootstrap: &str, file: &Path) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
    let targets = parse_offsets_json(&text)?;
    let conn = connect(bootstrap).await?;
    let topics: Vec<String> = targets.keys().cloned().collect();
    let md = ClusterMetadata::fetch(&conn, Some(&topics), false).await?;
    for (topic, partitions) in &targets {
        let Some(t) = md.topics.get(topic).filter(|t| t.error == 0) else {
            bail!("no such topic: {topic}");
        };
        if let Some((p, _)) = partitions
            .iter()
            .find(|(p, _)| !t.partitions.iter().any(|m| m.partition == *p))
        {
            bail!("{topic} has no partition {p}");
        }
    }
    delete_all(&conn, &md, &targets).await
}

/// The partitions and offsets of a kafka-delete-records JSON file, by topic.
fn parse_offsets_json(text: &str) -> Result<BTreeMap<String, Vec<(i32, i64)>>> {
    let doc: serde_json::Value = serde_json::from_str(text).context("not JSON")?;
    let Some(partitions) = doc.get("partitions").and_then(|p| p.as_array()) else {
        bail!("the JSON needs a \"partitions\" array");
    };
    let mut out: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
    for (i, entry) in partitions.iter().enumerate() {
        let topic = entry.get("topic").and_then(|t| t.as_str());
        let partition = entry
            .get("partition")
            .and_then(serde_json::Value::as_i64)
            .and_then(|p| i32::try_from(p).ok());
        let offset = entry.get("offset").and_then(serde_json::Value::as_i64);
        let (Some(topic), Some(partition), Some(offset)) = (topic, partition, offset) else {
            bail!("partitions[{i}] needs \"topic\", \"partition\" and \"offset\"");
        };
        if offset < -1 {
            bail!("partitions[{i}]: the offset is an offset, or -1 for the high watermark");
        }
        out.entry(topic.to_string())
            .or_default()
            .push((partition, offset));
    }
    if out.is_empty() {
        bail!("the JSON names no partition");
    }
    Ok(out)
}

/// One DeleteRecords request per (leader, topic); fails if any partition answered an
/// error.
async fn delete_all(
    conn: &Connection,
    md: &ClusterMetadata,
    targets: &BTreeMap<String, Vec<(i32, i64)>>,
) -> Result<()> {
    let mut failed = false;
    for (topic, partitions) in targets {
        let mut by_leader: BTreeMap<i32, Vec<(i32, i64)>> = BTreeMap::new();
        let leaders = md.topics.get(topic).map(|t| &t.partitions);
        for &(p, offset) in partitions {
            let leader = leaders
                .and_then(|ps| ps.iter().find(|m| m.partition == p))
                .map_or(-1, |m| m.leader);
            by_leader.entry(leader).or_default().push((p, offset));
        }
        for (leader, partitions) in by_leader {
            let other;
            let leader_conn = match md.brokers.get(&leader) {
                Some(addr) if addr != conn.addr() => {
                    other = connect(addr).await?;
                    &other
                }
                _ => conn,
            };
            failed |= !delete_at(leader_conn, topic, &partitions).await?;
        }
    }
    if failed {
        bail!("records of some partitions were not deleted");
    }
    Ok(())
}

/// One DeleteRecords request to a leader; false if a partition answered an error.
async fn delete_at(conn: &Connection, topic: &str, partitions: &[(i32, i64)]) -> Result<bool> {
    let version = conn.version(ApiKey::DeleteRecords, 0, 2)?;
    let mut t = DeleteRecordsTopic::default();
    t.name = TopicName(s(topic));
    t.partitions = partitions
        .iter()
        .map(|&(index, offset)| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_delete_records_json_is_read_and_bad_files_refused() {
        let got = parse_offsets_json(
            r#"{"partitions": [{"topic": "a", "partition": 0, "offset": 3},
                               {"topic": "a", "partition": 2, "offset": -1},
                               {"topic": "b", "partition": 1, "offset": 0}], "version": 1}"#,
        )
        .expect("parsed");
        assert_eq!(got["a"], vec![(0, 3), (2, -1)]);
        assert_eq!(got["b"], vec![(1, 0)]);
        for bad in [
            "not json",
            r#"{"version": 1}"#,
            r#"{"partitions": []}"#,
            r#"{"partitions": [{"topic": "a", "offset": 1}]}"#,
            r#"{"partitions": [{"topic": "a", "partition": 0, "offset": -2}]}"#,
        ] {
            assert!(parse_offsets_json(bad).is_err(), "{bad}");
        }
    }
}
