//! `fjord groups describe`: a group's kind, state and members, then per partition its
//! committed offset, log end offset, lag and owner. KIP-848 groups come from
//! ConsumerGroupDescribe (epochs, assignor, each member's epoch and current and target
//! assignments); classic groups from DescribeGroups.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use fjord_client_common::Connection;
use fjord_protocol::kafka_protocol::messages::consumer_group_describe_request::ConsumerGroupDescribeRequest;
use fjord_protocol::kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup,
};
use fjord_protocol::kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use fjord_protocol::kafka_protocol::messages::offset_fetch_request::OffsetFetchRequest;
use fjord_protocol::kafka_protocol::messages::{ApiKey, GroupId};

use super::{error_name, s};

/// Who owns which partition: (topic, partition) to a member's description.
type Owners = BTreeMap<(String, i32), String>;

/// GROUP_ID_NOT_FOUND: ConsumerGroupDescribe's answer for a classic (or no) group.
const GROUP_ID_NOT_FOUND: i16 = 69;

fn partitions(a: &Assignment) -> Vec<(String, i32)> {
    a.topic_partitions
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.topic_name.0.to_string(), *p))
        })
        .collect()
}

fn list(a: &Assignment) -> String {
    let parts: Vec<String> = partitions(a)
        .iter()
        .map(|(t, p)| format!("{t}-{p}"))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(",")
    }
}

/// The KIP-848 group `group`, if it is one.
async fn consumer_group(conn: &Connection, group: &str) -> Result<Option<DescribedGroup>> {
    let Ok(version) = conn.version(ApiKey::ConsumerGroupDescribe, 0, 1) else {
        return Ok(None);
    };
    let mut req = ConsumerGroupDescribeRequest::default();
    req.group_ids = vec![GroupId(s(group))];
    let resp = conn.request(&req, version).await?;
    match resp.groups.into_iter().next() {
        Some(d) if d.error_code == 0 => Ok(Some(d)),
        Some(d) if d.error_code == GROUP_ID_NOT_FOUND => Ok(None),
        Some(d) => bail!("{group}: {}", error_name(d.error_code)),
        None => Ok(None),
    }
}

fn print_consumer_group(group: &str, d: &DescribedGroup) -> Owners {
    println!(
        "Group: {group}\tType: consumer\tState: {}\tGroup epoch: {}\tAssignment epoch: {}\tAssignor: {}\tMembers: {}",
        d.group_state,
        d.group_epoch,
        d.assignment_epoch,
        d.assignor_name,
        d.members.len()
    );
    println!("MEMBER\tINSTANCE\tEPOCH\tCLIENT\tASSIGNED\tTARGET");
    let mut owners = Owners::new();
    for m in &d.members {
        println!(
            "{}\t{}\t{}\t{} {}\t{}\t{}",
            m.member_id,
            m.instance_id.as_deref().unwrap_or("-"),
            m.member_epoch,
            m.client_id,
            m.client_host,
            list(&m.assignment),
            list(&m.target_assignment)
        );
        for tp in partitions(&m.assignment) {
            owners.insert(tp, format!("{} {}", m.member_id, m.client_host));
        }
    }
    owners
}

async fn classic_group(conn: &Connection, group: &str) -> Result<Owners> {
    let version = conn.version(ApiKey::DescribeGroups, 0, 5)?;
    let mut req = DescribeGroupsRequest::default();
    req.groups = vec![GroupId(s(group))];
    let resp = conn.request(&req, version).await?;
    let Some(d) = resp.groups.first() else {
        bail!("no answer for group {group}");
    };
    if d.error_code != 0 {
        bail!("{group}: {}", error_name(d.error_code));
    }
    let mut owners = Owners::new();
    for m in &d.members {
        for tp in super::groups::assigned(&m.member_assignment) {
            owners.insert(tp, format!("{} {}", m.member_id, m.client_host));
        }
    }
    println!(
        "Group: {group}\tType: classic\tState: {}\tProtocol: {}\tMembers: {}",
        d.group_state,
        d.protocol_data,
        d.members.len()
    );
    Ok(owners)
}

/// Prints the group, then its partitions' offsets, lag and owners.
pub(crate) async fn run(conn: &Connection, group: &str) -> Result<()> {
    let owners = match consumer_group(conn, group).await? {
        Some(d) => print_consumer_group(group, &d),
        None => classic_group(conn, group).await?,
    };
    let fetch_version = conn.version(ApiKey::OffsetFetch, 1, 7)?;
    let mut of = OffsetFetchRequest::default();
    of.group_id = GroupId(s(group));
    of.topics = None; // all committed partitions
    let committed = conn.request(&of, fetch_version).await?;
    let mut rows: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for t in &committed.topics {
        for p in &t.partitions {
            rows.insert(
                (t.name.0.to_string(), p.partition_index),
                p.committed_offset,
            );
        }
    }
    for tp in owners.keys() {
        rows.entry(tp.clone()).or_insert(-1);
    }
    let tps: Vec<(String, i32)> = rows.keys().cloned().collect();
    let ends = super::groups::log_ends(conn, &tps).await?;
    let show = |v: i64| {
        if v < 0 {
            "-".to_string()
        } else {
            v.to_string()
        }
    };
    println!("TOPIC\tPARTITION\tCURRENT-OFFSET\tLOG-END-OFFSET\tLAG\tCONSUMER");
    for ((topic, p), current) in &rows {
        let end = ends.get(&(topic.clone(), *p)).copied().unwrap_or(-1);
        let lag = if *current >= 0 && end >= 0 {
            (end - current).max(0).to_string()
        } else {
            "-".to_string()
        };
        let consumer = owners.get(&(topic.clone(), *p)).map_or("-", String::as_str);
        println!(
            "{topic}\t{p}\t{}\t{}\t{lag}\t{consumer}",
            show(*current),
            show(end)
        );
    }
    Ok(())
}
