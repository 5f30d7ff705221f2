//! `fjord groups`: consumer groups over the Kafka protocol: list them, describe one with
//! each partition's committed offset, log end offset and lag, delete one.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use fjord_client_common::Connection;
use fjord_protocol::kafka_protocol::messages::consumer_protocol_assignment::ConsumerProtocolAssignment;
use fjord_protocol::kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use fjord_protocol::kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use fjord_protocol::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use fjord_protocol::kafka_protocol::messages::{ApiKey, GroupId, TopicName};
use fjord_protocol::kafka_protocol::protocol::Decodable;

use super::GroupsCommand;
use super::{connect, error_name, offsets_at, s};

/// The partitions in a member's assignment (consumer protocol bytes).
pub(super) fn assigned(bytes: &Bytes) -> Vec<(String, i32)> {
    let mut buf = bytes.clone();
    if buf.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]).clamp(0, 3);
    let _ = bytes::Buf::get_i16(&mut buf);
    ConsumerProtocolAssignment::decode(&mut buf, version)
        .map(|a| {
            a.assigned_partitions
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
                .collect()
        })
        .unwrap_or_default()
}

/// Log start offsets of `partitions`.
async fn log_starts(
    conn: &Connection,
    partitions: &[(String, i32)],
) -> Result<BTreeMap<(String, i32), i64>> {
    offsets_at(conn, partitions, -2).await
}

/// Log end offsets of `partitions`.
pub(super) async fn log_ends(
    conn: &Connection,
    partitions: &[(String, i32)],
) -> Result<BTreeMap<(String, i32), i64>> {
    offsets_at(conn, partitions, -1).await
}

pub(crate) async fn run(cmd: GroupsCommand) -> Result<()> {
    match cmd {
        GroupsCommand::List { connect: c } => {
            let conn = connect(&c.bootstrap_server).await?;
            let version = conn.version(ApiKey::ListGroups, 0, 4)?;
            let resp = conn.request(&ListGroupsRequest::default(), version).await?;
            if resp.error_code != 0 {
                bail!("ListGroups: {}", error_name(resp.error_code));
            }
            let mut groups: Vec<(String, String)> = resp
                .groups
                .iter()
                .map(|g| (g.group_id.0.to_string(), g.group_state.to_string()))
                .collect();
            groups.sort();
            for (g, state) in groups {
                if state.is_empty() {
                    println!("{g}");
                } else {
                    println!("{g}\t{state}");
                }
            }
        }
        GroupsCommand::Describe { connect: c, group } => {
            let conn = connect(&c.bootstrap_server).await?;
            super::groups_describe::run(&conn, &group).await?;
        }
        GroupsCommand::ResetOffsets {
            connect: c,
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            execute,
        } => {
            let conn = connect(&c.bootstrap_server).await?;
            let md = fjord_client_common::ClusterMetadata::fetch(
                &conn,
                Some(std::slice::from_ref(&topic)),
                false,
            )
            .await?;
            let t = md
                .topics
                .get(&topic)
                .filter(|t| t.error == 0)
                .with_context(|| format!("no topic {topic}"))?;
            let tps: Vec<(String, i32)> = t
                .partitions
                .iter()
                .map(|p| (topic.clone(), p.partition))
                .collect();
            let targets: Vec<(i32, i64)> = if let Some(o) = to_offset {
                tps.iter().map(|(_, p)| (*p, o)).collect()
            } else if to_earliest || to_latest {
                let ends = if to_latest {
                    log_ends(&conn, &tps).await?
                } else {
                    log_starts(&conn, &tps).await?
                };
                tps.iter()
                    .map(|tp| (tp.1, ends.get(tp).copied().unwrap_or(0)))
                    .collect()
            } else {
                bail!("say where to: --to-earliest, --to-latest or --to-offset N");
            };
            println!("TOPIC\tPARTITION\tNEW-OFFSET");
            for (p, o) in &targets {
                println!("{topic}\t{p}\t{o}");
            }
            if !execute {
                println!("(dry run: add --execute to commit these offsets)");
                return Ok(());
            }
            let version = conn.version(ApiKey::OffsetCommit, 2, 8)?;
            let mut req = OffsetCommitRequest::default();
            req.group_id = GroupId(s(&group));
            req.generation_id_or_member_epoch = -1; // only a group without members
            let mut ct = OffsetCommitRequestTopic::default();
            ct.name = TopicName(s(&topic));
            ct.partitions = targets
                .iter()
                .map(|(p, o)| {
                    let mut x = OffsetCommitRequestPartition::default();
                    x.partition_index = *p;
                    x.committed_offset = *o;
                    x.committed_metadata = Some(s(""));
                    x
                })
                .collect();
            req.topics = vec![ct];
            if version <= 4 {
                req.retention_time_ms = -1;
            }
            let resp = conn.request(&req, version).await?;
            for t in &resp.topics {
                for p in &t.partitions {
                    if p.error_code != 0 {
                        bail!(
                            "cannot reset {group} (does it still have members?): {}",
                            error_name(p.error_code)
                        );
                    }
                }
            }
            println!("reset group {group} on {topic}");
        }
        GroupsCommand::Delete { connect: c, group } => {
            let conn = connect(&c.bootstrap_server).await?;
            let version = conn.version(ApiKey::DeleteGroups, 0, 2)?;
            let mut req = DeleteGroupsRequest::default();
            req.groups_names = vec![GroupId(s(&group))];
            let resp = conn.request(&req, version).await?;
            for r in &resp.results {
                if r.error_code != 0 {
                    bail!("cannot delete {group}: {}", error_name(r.error_code));
                }
            }
            println!("deleted group {group}");
        }
    }
    Ok(())
}
