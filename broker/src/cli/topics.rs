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
use fjord_protocol::kafka_protocol::messages::describe_log_dirs_request::{
    DescribableLogDirTopic, DescribeLogDirsRequest,
};
use fjord_protocol::kafka_protocol::messages::{ApiKey, TopicName};

use super::cleaner_status;
use super::{connect, ensure_ok, error_name, offsets_at, s};
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

/// Bytes on disk of each partition of `topic`, asked of each partition's leader (the
/// broker that holds it). Partitions whose leader does not answer are left out.
async fn sizes(
    bootstrap: &Connection,
    brokers: &std::collections::HashMap<i32, String>,
    topic: &str,
    leaders: &[(i32, i32)],
) -> BTreeMap<i32, i64> {
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (partition, leader) in leaders {
        by_leader.entry(*leader).or_default().push(*partition);
    }
    let mut out = BTreeMap::new();
    for (leader, partitions) in by_leader {
        let other;
        let conn = match brokers.get(&leader) {
            Some(addr) if addr != bootstrap.addr() => match connect(addr).await {
                Ok(c) => {
                    other = c;
                    &other
                }
                Err(_) => continue,
            },
            _ => bootstrap,
        };
        let Ok(version) = conn.version(ApiKey::DescribeLogDirs, 1, 4) else {
            continue;
        };
        let mut t = DescribableLogDirTopic::default();
        t.topic = TopicName(s(topic));
        t.partitions = partitions;
        let mut req = DescribeLogDirsRequest::default();
        req.topics = Some(vec![t]);
        let Ok(resp) = conn.request(&req, version).await else {
            continue;
        };
        for dir in resp.results.iter().filter(|d| d.error_code == 0) {
            for t in dir.topics.iter().filter(|t| t.name.0.as_str() == topic) {
                // A future log dir (a move in progress) holds a copy, not more data.
                for p in t.partitions.iter().filter(|p| !p.is_future_key) {
                    *out.entry(p.partition_index).or_insert(0) += p.partition_size;
                }
            }
        }
    }
    out
}

/// A compacted partition's cleaner columns: its dirty ratio and last cleaning time, or
/// `unknown` where its leader has no metrics endpoint to read them from. The last
/// cleaning time is the broker's memory: `not-since-start` until its first pass.
fn cleaning_columns(figures: Option<&cleaner_status::PartitionCleaning>) -> String {
    let Some(f) = figures else {
        return "\tDirtyRatio: unknown\tLastCleaned: unknown".to_string();
    };
    let ratio = f
        .dirty_ratio
        .map_or_else(|| "unknown".to_string(), |r| format!("{r:.2}"));
    let cleaned = f
        .last_clean_secs
        .map_or_else(|| "not-since-start".to_string(), cleaner_status::utc_time);
    format!("\tDirtyRatio: {ratio}\tLastCleaned: {cleaned}")
}

/// Bytes in the largest fitting unit, as `du -h` shows them.
fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A topic's configs as describe shows them.
#[derive(Default)]
struct TopicConfigs {
    /// Those that differ from the broker's defaults.
    overrides: Vec<(String, String)>,
    /// Whether its `cleanup.policy`, however it is set, includes `compact`.
    compacted: bool,
}

/// The topic's configs, from DescribeConfigs.
async fn topic_configs(conn: &Connection, topic: &str) -> Result<TopicConfigs> {
    let version = conn.version(ApiKey::DescribeConfigs, 1, 4)?;
    let mut r = DescribeConfigsResource::default();
    r.resource_type = 2;
    r.resource_name = s(topic);
    // Null asks for every config (kafka-protocol's default is an empty list).
    r.configuration_keys = None;
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![r];
    let resp = conn.request(&req, version).await?;
    let mut out = TopicConfigs::default();
    for r in &resp.results {
        for c in &r.configs {
            if c.name.as_str() == "cleanup.policy" {
                let policy = c.value.as_deref().unwrap_or("");
                out.compacted = policy.split(',').any(|p| p.trim() == "compact");
            }
            // Source 1 = a topic-level override (DYNAMIC_TOPIC_CONFIG).
            if c.config_source == 1 {
                out.overrides.push((
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
                let what = format!("cannot create {}", r.name.0);
                ensure_ok(r.error_code, r.error_message.as_deref(), what)?;
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
                let configs = topic_configs(&conn, name).await.unwrap_or_default();
                let compacted = configs.compacted;
                let configs: Vec<String> = configs
                    .overrides
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let ids: Vec<i32> = t.partitions.iter().map(|p| p.partition).collect();
                let leaders: Vec<(i32, i32)> = t
                    .partitions
                    .iter()
                    .map(|p| (p.partition, p.leader))
                    .collect();
                let sizes = sizes(&conn, &md.brokers, name, &leaders).await;
                let total: i64 = sizes.values().sum();
                let size = if sizes.is_empty() && !leaders.is_empty() {
                    "unknown".to_string()
                } else {
                    format!("{total} ({})", human_bytes(total))
                };
                println!(
                    "Topic: {name}\tPartitions: {}\tSize: {size}\tConfigs: {}",
                    t.partitions.len(),
                    configs.join(",")
                );
                let offs = offsets(&conn, name, &ids).await?;
                let cleaning = if compacted {
                    cleaner_status::cleaning(&conn, &md.brokers, name, &leaders).await
                } else {
                    BTreeMap::new()
                };
                for p in &t.partitions {
                    let (start, end) = offs.get(&p.partition).copied().unwrap_or((-1, -1));
                    // -1: the leader did not say (down, or no DescribeLogDirs).
                    let size = sizes.get(&p.partition).copied().unwrap_or(-1);
                    let cleaner = if compacted {
                        cleaning_columns(cleaning.get(&p.partition))
                    } else {
                        String::new()
                    };
                    println!(
                        "\tPartition: {}\tLeader: {}\tLogStartOffset: {start}\tLogEndOffset: {end}\tSize: {size}{cleaner}",
                        p.partition, p.leader
                    );
                }
            }
        }
        TopicsCommand::Alter {
            connect: c,
            topic,
            partitions,
            configs,
        } => {
            let conn = connect(&c.bootstrap_server).await?;
            if !configs.is_empty() {
                let target = super::ConfigsTarget {
                    topic: Some(topic.clone()),
                    broker: None,
                    broker_defaults: false,
                };
                let ops = configs
                    .iter()
                    .map(|kv| key_value(kv).map(|(k, v)| (k, super::configs::SET, Some(v))))
                    .collect::<Result<Vec<_>>>()?;
                super::configs::alter(&conn, &target, ops, false).await?;
            }
            let Some(partitions) = partitions else {
                return Ok(());
            };
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
                let what = format!("cannot grow {}", r.name.0);
                ensure_ok(r.error_code, r.error_message.as_deref(), what)?;
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
        TopicsCommand::DeleteRecords {
            connect: c,
            topic,
            partition,
            offset,
            offset_json_file,
        } => match (offset_json_file, topic, offset) {
            (Some(file), _, _) => {
                super::delete_records::run_json(&c.bootstrap_server, &file).await?
            }
            (None, Some(topic), Some(offset)) => {
                super::delete_records::run(&c.bootstrap_server, &topic, partition, offset).await?
            }
            _ => anyhow::bail!("give --topic and --offset, or --offset-json-file"),
        },
    }
    Ok(())
}
