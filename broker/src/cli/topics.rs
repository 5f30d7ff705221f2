//! `fjord topics`: topic administration over the Kafka protocol (so it works against any
//! Kafka-compatible broker).

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use fjord_client_common::{ClusterMetadata, Connection};
use fjord_protocol::kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsRequest, CreatePartitionsTopic,
};
use fjord_protocol::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig, CreateTopicsRequest,
};
use fjord_protocol::kafka_protocol::messages::delete_topics_request::DeleteTopicsRequest;
use fjord_protocol::kafka_protocol::messages::describe_configs_request::{
    DescribeConfigsRequest, DescribeConfigsResource,
};
use fjord_protocol::kafka_protocol::messages::{ApiKey, TopicName};

use super::{connect, error_name, offsets_at, s};
use super::{key_value, TopicsCommand};

/// (log start, log end) of every partition of `topic`, from its leader (`conn`).
async fn offsets(
    conn: &Connection,
    topic: &str,
    partitions: &[i32],
) -> Result<BTreeMap<i32, (i64, i64)>> {
    let tps: Vec<(String, i32)> = partitions.iter().map(|p| (topic.to_string(), *p)).collect();
    let starts = offsets_at(conn, &tps, -2).await?;
    let ends = offsets_at(conn, &tps, -1).await?;
    Ok(tps
        .iter()
        .map(|tp| {
            let start = starts.get(tp).copied().unwrap_or(-1);
            (tp.1, (start, ends.get(tp).copied().unwrap_or(-1)))
        })
        .collect())
}

/// Topic configs that differ from the broker's defaults.
async fn overrides(conn: &Connection, topic: &str) -> Result<Vec<(String, String)>> {
    let version = conn.version(ApiKey::DescribeConfigs, 1, 4)?;
    let mut r = DescribeConfigsResource::default();
    r.resource_type = 2;
    r.resource_name = s(topic);
    // kafka-protocol defaults the key list to an empty one, which asks for nothing.
    r.configuration_keys = None;
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![r];
    let resp = conn.request(&req, version).await?;
    let mut out = Vec::new();
    for r in &resp.results {
        for c in &r.configs {
            // Source 1 = a topic-level override (DYNAMIC_TOPIC_CONFIG).
            if c.config_source == 1 {
                out.push((
                    c.name.to_string(),
                    c.value.as_deref().unwrap_or("").to_string(),
                ));
            }
        }
    }
    Ok(out)
}

pub(crate) async fn run(cmd: TopicsCommand) -> Result<()> {
    match cmd {
        TopicsCommand::Create {
            connect: c,
            topic,
            partitions,
            configs,
        } => {
            let conn = connect(&c.bootstrap_server).await?;
            let version = conn.version(ApiKey::CreateTopics, 2, 7)?;
            let mut t = CreatableTopic::default();
            t.name = TopicName(s(&topic));
            t.num_partitions = partitions.unwrap_or(if version >= 4 { -1 } else { 1 });
            t.replication_factor = if version >= 4 { -1 } else { 1 };
            for kv in &configs {
                let (k, v) = key_value(kv)?;
                let mut cfg = CreatableTopicConfig::default();
                cfg.name = s(&k);
                cfg.value = Some(s(&v));
                t.configs.push(cfg);
            }
            let mut req = CreateTopicsRequest::default();
            req.topics = vec![t];
            req.timeout_ms = 30_000;
            let resp = conn.request(&req, version).await?;
            for r in &resp.topics {
                if r.error_code != 0 {
                    bail!(
                        "cannot create {}: {} {}",
                        r.name.0,
                        error_name(r.error_code),
                        r.error_message.as_deref().unwrap_or("")
                    );
                }
                println!("created topic {}", r.name.0);
            }
        }
        TopicsCommand::List { connect: c } => {
            let conn = connect(&c.bootstrap_server).await?;
            let md = ClusterMetadata::fetch(&conn, None, false).await?;
            let mut names: Vec<&String> = md.topics.keys().collect();
            names.sort();
            for n in names {
                println!("{n}");
            }
        }
        TopicsCommand::Describe { connect: c, topic } => {
            let conn = connect(&c.bootstrap_server).await?;
            let wanted = topic.clone().map(|t| vec![t]);
            let md = ClusterMetadata::fetch(&conn, wanted.as_deref(), false).await?;
            let mut names: Vec<&String> = md.topics.keys().collect();
            names.sort();
            if names.is_empty() {
                bail!("no such topic");
            }
            for name in names {
                let t = &md.topics[name];
                if t.error != 0 {
                    bail!("{name}: {}", error_name(t.error));
                }
                let configs = overrides(&conn, name).await.unwrap_or_default();
                let configs: Vec<String> =
                    configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!(
                    "Topic: {name}\tPartitions: {}\tConfigs: {}",
                    t.partitions.len(),
                    configs.join(",")
                );
                let ids: Vec<i32> = t.partitions.iter().map(|p| p.partition).collect();
                let offs = offsets(&conn, name, &ids).await?;
                for p in &t.partitions {
                    let (start, end) = offs.get(&p.partition).copied().unwrap_or((-1, -1));
                    println!(
                        "\tPartition: {}\tLeader: {}\tLogStartOffset: {start}\tLogEndOffset: {end}",
                        p.partition, p.leader
                    );
                }
            }
        }
        TopicsCommand::Alter {
            connect: c,
            topic,
            partitions,
        } => {
            let conn = connect(&c.bootstrap_server).await?;
            let version = conn.version(ApiKey::CreatePartitions, 0, 3)?;
            let mut t = CreatePartitionsTopic::default();
            t.name = TopicName(s(&topic));
            t.count = partitions;
            // kafka-protocol defaults this to an empty list, which is a manual assignment.
            t.assignments = None;
            let mut req = CreatePartitionsRequest::default();
            req.topics = vec![t];
            req.timeout_ms = 30_000;
            let resp = conn.request(&req, version).await?;
            for r in &resp.results {
                if r.error_code != 0 {
                    bail!(
                        "cannot grow {}: {} {}",
                        r.name.0,
                        error_name(r.error_code),
                        r.error_message.as_deref().unwrap_or("")
                    );
                }
                println!("topic {} now has {partitions} partitions", r.name.0);
            }
        }
        TopicsCommand::Delete { connect: c, topic } => {
            let conn = connect(&c.bootstrap_server).await?;
            let version = conn.version(ApiKey::DeleteTopics, 1, 5)?;
            let mut req = DeleteTopicsRequest::default();
            req.topic_names = vec![TopicName(s(&topic))];
            req.timeout_ms = 30_000;
            let resp = conn.request(&req, version).await?;
            for r in &resp.responses {
                if r.error_code != 0 {
                    bail!("cannot delete {topic}: {}", error_name(r.error_code));
                }
            }
            println!("deleted topic {topic}");
        }
    }
    Ok(())
}
