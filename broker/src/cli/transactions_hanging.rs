//! `fjord transactions find-hanging`: the transactions a partition holds open that no
//! coordinator will ever finish (KIP-664), found as `kafka-transactions.sh find-hanging`
//! finds them:
//!
//! 1. the partitions to search: one, a topic's, or every partition on a broker;
//! 2. DescribeProducers on each partition's leader: the producers with a transaction
//!    open there whose last write is older than `--max-transaction-timeout` (no live
//!    transaction can be, since the coordinator aborts at its timeout);
//! 3. ListTransactions on every broker, filtered by those producer ids, names their
//!    transactional ids (and, by who answers, their coordinators);
//! 4. DescribeTransactions on each coordinator: an open transaction hangs if its
//!    producer has no transactional id any more, the coordinator does not know the id,
//!    or the coordinator's transaction does not include the partition (so it will
//!    write no marker there).
//!
//! What it prints is what `fjord transactions abort --start-offset` takes.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{bail, Result};
use clap::Args;
use fjord_client_common::{ClusterMetadata, Connection};
use fjord_protocol::kafka_protocol::messages::describe_producers_request::{
    DescribeProducersRequest, TopicRequest,
};
use fjord_protocol::kafka_protocol::messages::describe_producers_response::ProducerState;
use fjord_protocol::kafka_protocol::messages::describe_transactions_request::DescribeTransactionsRequest;
use fjord_protocol::kafka_protocol::messages::list_transactions_request::ListTransactionsRequest;
use fjord_protocol::kafka_protocol::messages::{ApiKey, ProducerId, TopicName, TransactionalId};
use fjord_protocol::kafka_protocol::ResponseError;

use super::transactions_abort::node;
use super::{connect, error_name, s, Connect};

/// Partitions per DescribeProducers request (Kafka's batch size).
const BATCH: usize = 500;

/// `fjord transactions find-hanging`'s arguments (kafka-transactions.sh's names).
#[derive(Debug, Args)]
pub(crate) struct FindHangingArgs {
    #[command(flatten)]
    connect: Connect,
    /// Search the partitions this broker holds (until replication, those it leads).
    #[arg(long)]
    broker_id: Option<i32>,
    /// Only transactions whose producer last wrote longer ago than this (minutes;
    /// Kafka's default is transaction.max.timeout.ms's).
    #[arg(long, default_value_t = 15)]
    max_transaction_timeout: i64,
    /// Search this topic only.
    #[arg(long)]
    topic: Option<String>,
    /// Search this partition of --topic only.
    #[arg(long, requires = "topic")]
    partition: Option<i32>,
}

/// A transaction a partition holds open.
#[derive(Debug, Clone)]
struct OpenTxn {
    topic: String,
    partition: i32,
    producer: ProducerState,
}

/// Runs the search (see the module doc) and prints what hangs.
pub(crate) async fn find_hanging(a: &FindHangingArgs) -> Result<()> {
    if a.topic.is_none() && a.broker_id.is_none() {
        bail!("find-hanging needs --topic or --broker-id to limit the search");
    }
    let conn = connect(&a.connect.bootstrap_server).await?;
    let topics = a.topic.clone().map(|t| vec![t]);
    let md = ClusterMetadata::fetch(&conn, topics.as_deref(), false).await?;
    let by_leader = partitions_to_search(&md, a)?;
    let now = now_ms();
    let max_ms = a.max_transaction_timeout.saturating_mul(60_000);
    let mut candidates = Vec::new();
    for (leader, partitions) in &by_leader {
        let leader_conn = node(&md, &conn, *leader).await?;
        for batch in partitions.chunks(BATCH) {
            for open in open_transactions(&leader_conn, batch).await? {
                if now.saturating_sub(open.producer.last_timestamp) > max_ms {
                    candidates.push(open);
                }
            }
        }
    }
    let hanging = if candidates.is_empty() {
        Vec::new()
    } else {
        filter_hanging(&md, &conn, candidates).await?
    };
    print_rows(&hanging, now);
    Ok(())
}

/// The partitions to search, by leader.
fn partitions_to_search(
    md: &ClusterMetadata,
    a: &FindHangingArgs,
) -> Result<BTreeMap<i32, Vec<(String, i32)>>> {
    let mut out: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
    if let Some(topic) = &a.topic {
        if md.topics.get(topic).is_none_or(|t| t.error != 0) {
            bail!("no such topic: {topic}");
        }
    }
    let mut names: Vec<&String> = md.topics.keys().collect();
    names.sort();
    for name in names {
        let t = &md.topics[name];
        for p in &t.partitions {
            let wanted = a.partition.is_none_or(|want| want == p.partition)
                && a.broker_id.is_none_or(|id| id == p.leader);
            if wanted && p.leader >= 0 {
                out.entry(p.leader)
                    .or_default()
                    .push((name.clone(), p.partition));
            }
        }
    }
    if let (Some(topic), Some(partition)) = (&a.topic, a.partition) {
        if out.is_empty() {
            bail!("{topic} has no partition {partition} with a leader now");
        }
    }
    Ok(out)
}

/// The transactions open in `partitions` (DescribeProducers on their leader).
async fn open_transactions(
    conn: &Connection,
    partitions: &[(String, i32)],
) -> Result<Vec<OpenTxn>> {
    let version = conn.version(ApiKey::DescribeProducers, 0, 0)?;
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        by_topic.entry(topic).or_default().push(*partition);
    }
    let mut req = DescribeProducersRequest::default();
    for (topic, indexes) in by_topic {
        let mut t = TopicRequest::default();
        t.name = TopicName(s(topic));
        t.partition_indexes = indexes;
        req.topics.push(t);
    }
    let resp = conn.request(&req, version).await?;
    let mut out = Vec::new();
    for t in &resp.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                bail!(
                    "{}-{}: {}",
                    t.name.0,
                    p.partition_index,
                    error_name(p.error_code)
                );
            }
            for producer in &p.active_producers {
                if producer.current_txn_start_offset >= 0 {
                    out.push(OpenTxn {
                        topic: t.name.0.to_string(),
                        partition: p.partition_index,
                        producer: producer.clone(),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Those of `candidates` no coordinator will finish (see the module doc).
async fn filter_hanging(
    md: &ClusterMetadata,
    bootstrap: &Connection,
    candidates: Vec<OpenTxn>,
) -> Result<Vec<OpenTxn>> {
    let producers: HashSet<i64> = candidates
        .iter()
        .map(|c| c.producer.producer_id.0)
        .collect();
    let mut ids: HashMap<i64, String> = HashMap::new();
    let mut described = Described::new();
    let mut brokers: Vec<i32> = md.brokers.keys().copied().collect();
    brokers.sort_unstable();
    for id in brokers {
        let conn = node(md, bootstrap, id).await?;
        let listed = list_transactional_ids(&conn, &producers).await?;
        let names: Vec<String> = listed.values().cloned().collect();
        described.extend(describe(&conn, &names).await?);
        ids.extend(listed);
    }
    let hanging = candidates
        .into_iter()
        .filter(|c| {
            let partition = (c.topic.clone(), c.partition);
            let pending = ids
                .get(&c.producer.producer_id.0)
                .and_then(|id| described.get(id)?.as_ref());
            !pending.is_some_and(|partitions| partitions.contains(&partition))
        })
        .collect();
    Ok(hanging)
}

/// Producer id to transactional id, for those of `producers` this broker coordinates.
async fn list_transactional_ids(
    conn: &Connection,
    producers: &HashSet<i64>,
) -> Result<HashMap<i64, String>> {
    let version = conn.version(ApiKey::ListTransactions, 0, 1)?;
    let mut req = ListTransactionsRequest::default();
    req.producer_id_filters = producers.iter().map(|p| ProducerId(*p)).collect();
    let resp = conn.request(&req, version).await?;
    if resp.error_code != 0 {
        bail!("ListTransactions: {}", error_name(resp.error_code));
    }
    Ok(resp
        .transaction_states
        .iter()
        .filter(|t| producers.contains(&t.producer_id.0))
        .map(|t| (t.producer_id.0, t.transactional_id.0.to_string()))
        .collect())
}

/// Each transactional id as its coordinator describes it: the partitions of its
/// transaction (those it writes to, or still has to write markers to), or `None` if
/// the coordinator does not know it.
type Described = HashMap<String, Option<HashSet<(String, i32)>>>;

async fn describe(conn: &Connection, ids: &[String]) -> Result<Described> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let version = conn.version(ApiKey::DescribeTransactions, 0, 0)?;
    let mut req = DescribeTransactionsRequest::default();
    req.transactional_ids = ids.iter().map(|id| TransactionalId(s(id))).collect();
    let resp = conn.request(&req, version).await?;
    let mut out = HashMap::new();
    for t in &resp.transaction_states {
        let id = t.transactional_id.0.to_string();
        // The coordinator forgot it (since it listed it): its transactions hang.
        if t.error_code == ResponseError::TransactionalIdNotFound.code() {
            out.insert(id, None);
            continue;
        }
        if t.error_code != 0 {
            bail!("DescribeTransactions {id}: {}", error_name(t.error_code));
        }
        let partitions = t
            .topics
            .iter()
            .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.0.to_string(), *p)))
            .collect();
        out.insert(id, Some(partitions));
    }
    Ok(out)
}

/// Prints `hanging` with kafka-transactions.sh's columns.
fn print_rows(hanging: &[OpenTxn], now: i64) {
    println!("Topic\tPartition\tProducerId\tProducerEpoch\tCoordinatorEpoch\tStartOffset\tLastTimestamp\tDuration(min)");
    for h in hanging {
        let p = &h.producer;
        let minutes = now.saturating_sub(p.last_timestamp) / 60_000;
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{minutes}",
            h.topic,
            h.partition,
            p.producer_id.0,
            p.producer_epoch,
            p.coordinator_epoch,
            p.current_txn_start_offset,
            p.last_timestamp
        );
    }
}

/// Wall-clock milliseconds (what producers stamp their batches with).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
