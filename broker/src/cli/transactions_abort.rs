//! `fjord transactions describe-producers` and `fjord transactions abort`: finding and
//! ending a hanging transaction (KIP-664), as `kafka-transactions.sh` does. A
//! transaction hangs when a partition holds its records but no coordinator will ever
//! write its marker; its last stable offset stops there, so read_committed consumers
//! stall. DescribeProducers shows where each producer's open transaction starts;
//! `abort` has the partition's leader write the ABORT marker (WriteTxnMarkers).

use anyhow::{bail, Result};
use clap::Args;
use fjord_client_common::{ClusterMetadata, Connection};
use fjord_protocol::kafka_protocol::messages::describe_producers_request::{
    DescribeProducersRequest, TopicRequest,
};
use fjord_protocol::kafka_protocol::messages::describe_producers_response::ProducerState;
use fjord_protocol::kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic, WriteTxnMarkersRequest,
};
use fjord_protocol::kafka_protocol::messages::{ApiKey, ProducerId, TopicName};

use super::{connect, error_name, s, Connect};

/// The partition a command is about, and where to connect.
#[derive(Debug, Args)]
pub(crate) struct PartitionArgs {
    #[command(flatten)]
    connect: Connect,
    /// The topic.
    #[arg(long)]
    topic: String,
    /// The partition.
    #[arg(long)]
    partition: i32,
}

/// `fjord transactions abort`'s arguments (kafka-transactions.sh's names).
#[derive(Debug, Args)]
pub(crate) struct AbortArgs {
    #[command(flatten)]
    at: PartitionArgs,
    /// The first offset of the transaction to abort (as describe-producers shows it).
    #[arg(long, conflicts_with_all = ["producer_id", "producer_epoch", "coordinator_epoch"])]
    start_offset: Option<i64>,
    /// The producer id of the transaction (with --producer-epoch and
    /// --coordinator-epoch, instead of --start-offset).
    #[arg(long, requires_all = ["producer_epoch", "coordinator_epoch"])]
    producer_id: Option<i64>,
    /// The producer's epoch.
    #[arg(long, requires = "producer_id")]
    producer_epoch: Option<i16>,
    /// The coordinator epoch for the marker.
    #[arg(long, requires = "producer_id")]
    coordinator_epoch: Option<i32>,
}

/// A connection to the leader of `topic`-`partition`.
async fn leader_of(bootstrap: &str, topic: &str, partition: i32) -> Result<Connection> {
    let conn = connect(bootstrap).await?;
    let md = ClusterMetadata::fetch(&conn, Some(&[topic.to_string()]), false).await?;
    let Some(t) = md.topics.get(topic).filter(|t| t.error == 0) else {
        bail!("no such topic: {topic}");
    };
    let Some(p) = t.partitions.iter().find(|p| p.partition == partition) else {
        bail!("{topic} has no partition {partition}");
    };
    if !md.brokers.contains_key(&p.leader) {
        bail!("{topic}-{partition} has no leader now");
    }
    node(&md, &conn, p.leader).await
}

/// A connection to broker `id` of `md` (`bootstrap` itself if it is that broker).
pub(crate) async fn node(
    md: &ClusterMetadata,
    bootstrap: &Connection,
    id: i32,
) -> Result<Connection> {
    match md.brokers.get(&id) {
        Some(addr) if addr != bootstrap.addr() => connect(addr).await,
        Some(_) => Ok(bootstrap.clone()),
        None => bail!("broker {id} is not in the cluster's metadata"),
    }
}

/// DescribeProducers of one partition, from its leader.
async fn producers(conn: &Connection, topic: &str, partition: i32) -> Result<Vec<ProducerState>> {
    let version = conn.version(ApiKey::DescribeProducers, 0, 0)?;
    let mut t = TopicRequest::default();
    t.name = TopicName(s(topic));
    t.partition_indexes = vec![partition];
    let mut req = DescribeProducersRequest::default();
    req.topics = vec![t];
    let resp = conn.request(&req, version).await?;
    let Some(p) = resp.topics.iter().flat_map(|t| &t.partitions).next() else {
        bail!("DescribeProducers: no answer for {topic}-{partition}");
    };
    if p.error_code != 0 {
        bail!("{topic}-{partition}: {}", error_name(p.error_code));
    }
    Ok(p.active_producers.clone())
}

/// Prints the producers of the partition (kafka-transactions.sh's columns).
pub(crate) async fn describe_producers(at: &PartitionArgs) -> Result<()> {
    let (topic, partition) = (at.topic.as_str(), at.partition);
    let conn = leader_of(&at.connect.bootstrap_server, topic, partition).await?;
    println!("ProducerId\tProducerEpoch\tLatestCoordinatorEpoch\tLastSequence\tLastTimestamp\tCurrentTransactionStartOffset");
    for p in producers(&conn, topic, partition).await? {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            p.producer_id.0,
            p.producer_epoch,
            p.coordinator_epoch,
            p.last_sequence,
            p.last_timestamp,
            p.current_txn_start_offset
        );
    }
    Ok(())
}

/// Which transaction to abort: (producer id, epoch, coordinator epoch).
async fn target(conn: &Connection, a: &AbortArgs) -> Result<(i64, i16, i32)> {
    if let (Some(id), Some(epoch), Some(coordinator)) =
        (a.producer_id, a.producer_epoch, a.coordinator_epoch)
    {
        return Ok((id, epoch, coordinator));
    }
    let Some(start) = a.start_offset else {
        bail!("name the transaction: --start-offset, or --producer-id, --producer-epoch and --coordinator-epoch");
    };
    let (topic, partition) = (&a.at.topic, a.at.partition);
    let all = producers(conn, topic, partition).await?;
    let Some(p) = all.iter().find(|p| p.current_txn_start_offset == start) else {
        bail!("no open transaction starts at offset {start} in {topic}-{partition} (see describe-producers)");
    };
    let Ok(epoch) = i16::try_from(p.producer_epoch) else {
        bail!(
            "the broker reported epoch {} for producer {}",
            p.producer_epoch,
            p.producer_id.0
        );
    };
    // As kafka-transactions.sh: a producer without a marker yet reports -1; 0 fences
    // nothing newer.
    Ok((p.producer_id.0, epoch, p.coordinator_epoch.max(0)))
}

/// Has the partition's leader write the ABORT marker of the named transaction.
pub(crate) async fn abort(a: &AbortArgs) -> Result<()> {
    let (topic, partition) = (&a.at.topic, a.at.partition);
    let conn = leader_of(&a.at.connect.bootstrap_server, topic, partition).await?;
    let (producer_id, epoch, coordinator_epoch) = target(&conn, a).await?;
    let version = conn.version(ApiKey::WriteTxnMarkers, 1, 1)?;
    let mut t = WritableTxnMarkerTopic::default();
    t.name = TopicName(s(topic));
    t.partition_indexes = vec![partition];
    let mut m = WritableTxnMarker::default();
    m.producer_id = ProducerId(producer_id);
    m.producer_epoch = epoch;
    m.transaction_result = false;
    m.coordinator_epoch = coordinator_epoch;
    m.topics = vec![t];
    let mut req = WriteTxnMarkersRequest::default();
    req.markers = vec![m];
    let resp = conn.request(&req, version).await?;
    let code = resp
        .markers
        .iter()
        .flat_map(|m| &m.topics)
        .flat_map(|t| &t.partitions)
        .map(|p| p.error_code)
        .next();
    match code {
        Some(0) => {
            println!("aborted the transaction of producer {producer_id} (epoch {epoch}) in {topic}-{partition}");
            Ok(())
        }
        Some(code) => bail!("{topic}-{partition}: {}", error_name(code)),
        None => bail!("WriteTxnMarkers: no answer for {topic}-{partition}"),
    }
}
