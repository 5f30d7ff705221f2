//! Fetch: long poll until `min_bytes` are there or `max_wait_ms` passes, then a response
//! whose record sets are file regions, spliced into the socket with `sendfile`.
//!
//! The response's record sets are not in memory: `fjord_protocol::fetch_response` lays
//! out the header and partition fields around markers, and each marker becomes the
//! partition's file regions, (file, position, length) sent as they are.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fjord_protocol::fetch_response::{
    self, AbortedTransaction, CurrentLeader, NodeEndpoint, PartitionHead, Piece, TopicKey,
    TOPIC_ID_VERSION,
};
use fjord_protocol::kafka_protocol::messages::fetch_request::FetchRequest;
use fjord_protocol::kafka_protocol::ResponseError as E;
use fjord_storage::FileRegion;

use super::{storage_error_code, Ctx, Fatal, Response};
use crate::state::Broker;

/// A piece of a fetch response.
#[derive(Debug)]
pub enum Part {
    /// Bytes built in memory.
    Bytes(Bytes),
    /// Record bytes to send from a segment file.
    Region(FileRegion),
}

/// A fetch response ready to write: its parts in order, the first starting with the
/// size prefix (which counts every part).
#[derive(Debug)]
pub struct FetchResponse {
    /// The parts, in wire order.
    pub parts: Vec<Part>,
}

/// One partition's answer.
pub(super) struct PartitionData {
    pub(super) index: i32,
    pub(super) error_code: i16,
    pub(super) high_watermark: i64,
    pub(super) last_stable_offset: i64,
    /// read_committed: the aborted transactions of the range (`None` otherwise).
    pub(super) aborted: Option<Vec<AbortedTransaction>>,
    pub(super) log_start_offset: i64,
    pub(super) regions: Vec<FileRegion>,
    /// The leader's epoch, told to a client whose epoch was refused.
    pub(super) leader_epoch: Option<i32>,
}

impl PartitionData {
    fn bytes(&self) -> u64 {
        self.regions.iter().map(|r| r.len).sum()
    }
}

/// How [`collect`] may reach the logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Access {
    /// Wait for locks, open and recover segments, read from disk: only off the reactor.
    Wait,
    /// Only reads that cannot block ([`fjord_storage::Log::read_hot`]: recently appended
    /// data, open files, free locks); anything else gives up the whole collection.
    HotOnly,
}

/// Fetches of more partitions than this are collected on the blocking pool even when
/// every read is hot, so that one request cannot hold a reactor thread for long.
const HOT_MAX_PARTITIONS: usize = 128;

/// A topic of the response: named as the request named it (by name before v13, by ID
/// from v13).
pub(super) struct TopicData {
    pub(super) name: String,
    pub(super) id: uuid::Uuid,
    pub(super) partitions: Vec<PartitionData>,
}

/// Reads every requested partition once. With [`Access::HotOnly`], `None` when some
/// read would need more than memory and a free lock.
///
/// From v13 topics are named by ID: an ID no topic has (deleted, or re-created under a
/// new one) is UNKNOWN_TOPIC_ID, so a client never reads a new topic's records at its
/// old positions.
pub(super) fn collect(
    broker: &Broker,
    req: &FetchRequest,
    version: i16,
    access: Access,
) -> Option<Vec<TopicData>> {
    let cap = u64::try_from(broker.config.fetch_max_bytes).unwrap_or(u64::MAX);
    let mut budget = u64::try_from(req.max_bytes).unwrap_or(0).min(cap);
    let mut any = false;
    let by_id = version >= TOPIC_ID_VERSION;
    let mut out = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let (found, missing) = if by_id {
            (broker.topic_by_id(&topic.topic_id), E::UnknownTopicId)
        } else {
            (
                broker.topic(topic.topic.0.as_str()),
                E::UnknownTopicOrPartition,
            )
        };
        let name = match &found {
            Some(t) => t.name.clone(),
            None => topic.topic.0.as_str().to_string(),
        };
        let mut parts = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let mut data = PartitionData {
                index: p.partition,
                error_code: 0,
                high_watermark: -1,
                last_stable_offset: -1,
                aborted: None,
                log_start_offset: -1,
                regions: Vec::new(),
                leader_epoch: None,
            };
            let Some(found) = &found else {
                data.error_code = missing.code();
                parts.push(data);
                continue;
            };
            let Some(partition) = found.partition(p.partition) else {
                data.error_code = E::UnknownTopicOrPartition.code();
                parts.push(data);
                continue;
            };
            if partition.is_offline() {
                data.error_code = E::KafkaStorageError.code();
                parts.push(data);
                continue;
            }
            if let Err(e) = partition.check_leader_epoch(p.current_leader_epoch) {
                data.error_code = e.code();
                data.leader_epoch = Some(partition.leader_epoch);
                parts.push(data);
                continue;
            }
            // A negative offset is past any log: storage answers it out of range.
            let offset = u64::try_from(p.fetch_offset).unwrap_or(u64::MAX);
            let max = u64::try_from(p.partition_max_bytes)
                .unwrap_or(0)
                .min(budget);
            // Storage applies the range rule and KIP-74 (the first non-empty partition
            // may exceed its limit by one batch; later ones stay within it).
            let first = !any;
            let committed = req.isolation_level == 1;
            let (log_start, log_end, lso, result) = match access {
                Access::Wait => {
                    let log = partition.read();
                    let lso = partition.last_stable_offset(&log);
                    let mut result = log.read_for_fetch(offset, max, first);
                    if committed {
                        result = result.and_then(|r| stable_part(&log, r, lso, &mut data));
                    }
                    (log.log_start_offset(), log.log_end_offset(), lso, result)
                }
                Access::HotOnly => {
                    let log = partition.try_read()?;
                    let lso = partition.last_stable_offset(&log);
                    let (end, mut result) = log.read_hot_for_fetch(offset, max, first)?;
                    if committed {
                        // Cutting at the LSO may read a header: not on the reactor.
                        if lso < end {
                            return None;
                        }
                        result = result.and_then(|r| stable_part(&log, r, lso, &mut data));
                    }
                    (log.log_start_offset(), end, lso, result)
                }
            };
            data.high_watermark = log_end as i64;
            data.last_stable_offset = lso as i64;
            data.log_start_offset = log_start as i64;
            match result {
                Ok(regions) => data.regions = regions,
                Err(e) => data.error_code = storage_error_code(&e),
            }
            let n = data.bytes();
            any |= n > 0;
            budget = budget.saturating_sub(n);
            parts.push(data);
        }
        out.push(TopicData {
            name,
            id: topic.topic_id,
            partitions: parts,
        });
    }
    Some(out)
}

/// What a read_committed fetch gets of `regions`: the records below the last stable
/// offset (the regions only get shorter: still zero-copy), and the list of transactions
/// aborted in that range, from the aborted-transaction index.
fn stable_part(
    log: &fjord_storage::Log,
    mut regions: Vec<FileRegion>,
    lso: u64,
    data: &mut PartitionData,
) -> Result<Vec<FileRegion>, fjord_storage::StorageError> {
    log.cut_regions_at(&mut regions, lso)?;
    let from = regions.first().map_or(lso, |r| r.first_offset);
    data.aborted = Some(
        log.aborted_between(from, lso)
            .into_iter()
            .map(|a| AbortedTransaction {
                producer_id: a.producer_id,
                first_offset: a.first_offset as i64,
            })
            .collect(),
    );
    Ok(regions)
}

pub(super) async fn handle(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: FetchRequest,
) -> Result<Response, Fatal> {
    let min_bytes = u64::try_from(req.min_bytes).unwrap_or(0);
    let wait = Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0));
    let deadline = tokio::time::Instant::now() + wait;
    let mut appends = broker.watch_appends();
    let req = Arc::new(req);
    loop {
        appends.borrow_and_update();
        let data = collect_regions(broker, &req, ctx.version).await?;
        let total: u64 = data
            .iter()
            .flat_map(|t| t.partitions.iter().map(PartitionData::bytes))
            .sum();
        let errors = data
            .iter()
            .flat_map(|t| t.partitions.iter())
            .any(|p| p.error_code != 0);
        if total >= min_bytes || errors || tokio::time::Instant::now() >= deadline {
            tracing::trace!(
                total,
                min_bytes,
                max_bytes = req.max_bytes,
                "fetch answered"
            );
            count_out(broker, &data);
            return Ok(Response::Fetch(write_response(broker, ctx, &data)));
        }
        broker.metrics.fetch_waiting.fetch_add(1, Ordering::Relaxed);
        let waited = tokio::time::timeout_at(deadline, appends.changed()).await;
        broker.metrics.fetch_waiting.fetch_sub(1, Ordering::Relaxed);
        if waited.is_err() {
            let data = collect_regions(broker, &req, ctx.version).await?;
            count_out(broker, &data);
            return Ok(Response::Fetch(write_response(broker, ctx, &data)));
        }
    }
}

/// Record bytes sent, per topic, for /metrics.
fn count_out(broker: &Broker, data: &[TopicData]) {
    for t in data {
        broker
            .metrics
            .fetched(&t.name, t.partitions.iter().map(PartitionData::bytes).sum());
    }
}

/// [`collect`] right here when no read can block (the common case of consumers at the
/// tail: no thread hop between request and response); otherwise on the blocking pool,
/// since finding regions may then open a segment, recover a sealed one on first access,
/// read cold pages or wait for a lock.
async fn collect_regions(
    broker: &Arc<Broker>,
    req: &Arc<FetchRequest>,
    version: i16,
) -> Result<Vec<TopicData>, Fatal> {
    let partitions: usize = req.topics.iter().map(|t| t.partitions.len()).sum();
    if partitions <= HOT_MAX_PARTITIONS {
        if let Some(data) = collect(broker, req, version, Access::HotOnly) {
            return Ok(data);
        }
    }
    let (broker, req) = (Arc::clone(broker), Arc::clone(req));
    tokio::task::spawn_blocking(move || collect(&broker, &req, version, Access::Wait))
        .await
        .map_err(|e| Fatal::Internal(format!("fetch task failed: {e}")))?
        .ok_or_else(|| Fatal::Internal("a waiting fetch gave up".into()))
}

/// Lays out the response (the protocol crate owns the layout and its versions) and
/// puts each partition's file regions where its records go.
///
/// A partition whose leader epoch was refused names its leader (KIP-951), and the
/// response then carries this broker's endpoint, so the client can go on without asking
/// Metadata first.
fn write_response(broker: &Broker, ctx: Ctx, data: &[TopicData]) -> FetchResponse {
    let node = broker.config.node_id;
    let heads: Vec<Vec<PartitionHead<'_>>> = data
        .iter()
        .map(|t| {
            t.partitions
                .iter()
                .map(|p| PartitionHead {
                    index: p.index,
                    error_code: p.error_code,
                    high_watermark: p.high_watermark,
                    last_stable_offset: p.last_stable_offset,
                    aborted: p.aborted.as_deref(),
                    log_start_offset: p.log_start_offset,
                    records_len: p.bytes(),
                    current_leader: p.leader_epoch.map(|leader_epoch| CurrentLeader {
                        leader_id: node,
                        leader_epoch,
                    }),
                })
                .collect()
        })
        .collect();
    let topics: Vec<(TopicKey<'_>, &[PartitionHead<'_>])> = data
        .iter()
        .zip(&heads)
        .map(|(t, h)| {
            let key = TopicKey {
                name: t.name.as_str(),
                id: *t.id.as_bytes(),
            };
            (key, h.as_slice())
        })
        .collect();
    let refused = data
        .iter()
        .any(|t| t.partitions.iter().any(|p| p.leader_epoch.is_some()));
    let nodes: Vec<NodeEndpoint> = if refused {
        let (host, port) = broker.config.advertised(ctx.listener);
        vec![NodeEndpoint {
            node_id: node,
            host,
            port: i32::from(port),
            rack: None,
        }]
    } else {
        Vec::new()
    };
    let mut parts = Vec::new();
    for piece in fetch_response::encode(ctx.version, ctx.correlation_id, &topics, &nodes) {
        match piece {
            Piece::Bytes(b) => parts.push(Part::Bytes(b)),
            Piece::Records { topic, partition } => {
                let regions = &data[topic].partitions[partition].regions;
                parts.extend(regions.iter().cloned().map(Part::Region));
            }
        }
    }
    FetchResponse { parts }
}
