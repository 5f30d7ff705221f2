//! One fetch pipeline per broker: it asks for every fetchable partition the broker leads,
//! hands the response's record sets to the application as chunks, and asks again right
//! away while fewer than `fetch.max.bytes` are buffered, so the next response is on its
//! way while the application works through the current one.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fjord_protocol::kafka_protocol::messages::fetch_request::{
    FetchPartition, FetchRequest, FetchTopic,
};
use fjord_protocol::kafka_protocol::messages::fetch_response::FetchResponse;
use fjord_protocol::kafka_protocol::messages::{ApiKey, BrokerId, TopicName};
use fjord_protocol::kafka_protocol::protocol::StrBytes;

use crate::chunk::{Chunk, CrcCheck};
use crate::config::OffsetReset;
use crate::error::ConsumeError;
use crate::inner::{Inner, Item};
use crate::partition::PartitionState;

const OFFSET_OUT_OF_RANGE: i16 = 1;

/// The offset after the last whole batch in `records` (a trailing partial batch is not
/// counted), or `None` if there is no whole batch.
fn next_fetch_offset(records: &Bytes) -> Option<i64> {
    fjord_protocol::record_batch::next_offset_after_whole_batches(records)
}

pub(crate) async fn run(inner: Arc<Inner>, node: i32) {
    loop {
        if inner.closing.load(Ordering::Acquire) {
            return;
        }
        // Bounded memory: wait while a fetch's worth is buffered and unread.
        let limit = usize::try_from(inner.config.fetch_max_bytes)
            .unwrap_or(50 << 20)
            .max(1);
        if inner.buffered.load(Ordering::Acquire) >= limit {
            let drained = inner.drained.notified();
            if inner.buffered.load(Ordering::Acquire) >= limit {
                let _ = tokio::time::timeout(Duration::from_millis(100), drained).await;
                continue;
            }
        }
        let partitions: Vec<Arc<PartitionState>> = inner
            .assignment
            .all()
            .into_iter()
            .filter(|p| p.leader.load(Ordering::Acquire) == node && p.fetchable())
            .collect();
        if partitions.is_empty() {
            let changed = inner.changed.notified();
            let _ = tokio::time::timeout(Duration::from_millis(100), changed).await;
            continue;
        }
        let conn = match inner.cluster.node(node).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(node, error = %e, "fetch: cannot reach the leader");
                inner.refresh_leaders().await;
                tokio::time::sleep(inner.config.retry_backoff).await;
                continue;
            }
        };
        let Ok(version) = conn.version(
            ApiKey::Fetch,
            *FETCH_VERSIONS.start(),
            *FETCH_VERSIONS.end(),
        ) else {
            tracing::error!(node, "broker speaks no Fetch version we know");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        // Topics by ID (v13+) once every partition's topic ID is known; by name before.
        let version = if partitions.iter().any(|p| p.topic_id() == [0; 16]) {
            version.min(12)
        } else {
            version
        };
        let asked: Asked = partitions
            .iter()
            .map(|p| {
                (
                    Arc::clone(p),
                    p.epoch(),
                    p.fetch_position.load(Ordering::Acquire),
                )
            })
            .collect();
        let req = fetch_request(&inner, version, &asked);
        let answer = if inner.config.check_crcs {
            conn.request_with_block_crcs(&req, version)
                .await
                .map(|(r, crcs)| (r, CrcCheck::Blocks(Arc::new(crcs))))
        } else {
            conn.request(&req, version)
                .await
                .map(|r| (r, CrcCheck::Off))
        };
        let (resp, check) = match answer {
            Ok(answer) => answer,
            Err(e) => {
                tracing::debug!(node, error = %e, "fetch failed");
                tokio::time::sleep(inner.config.retry_backoff).await;
                continue;
            }
        };
        let Some(refresh) = deliver(&inner, resp, &asked, &check).await else {
            return; // the consumer is gone
        };
        if refresh {
            inner.refresh_leaders().await;
            tokio::time::sleep(inner.config.retry_backoff).await;
        }
    }
}

/// The Fetch versions this consumer speaks (v13+ name topics by ID).
const FETCH_VERSIONS: std::ops::RangeInclusive<i16> = 4..=18;

/// What a fetcher asks for: each partition, its epoch when asked, and its position.
type Asked = Vec<(Arc<PartitionState>, u64, i64)>;

/// The Fetch request for `asked` at `version` (full fetches: no sessions).
fn fetch_request(inner: &Inner, version: i16, asked: &Asked) -> FetchRequest {
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-1);
    req.max_wait_ms = i32::try_from(inner.config.fetch_max_wait.as_millis()).unwrap_or(500);
    req.min_bytes = inner.config.fetch_min_bytes;
    req.max_bytes = inner.config.fetch_max_bytes;
    req.isolation_level = i8::from(inner.config.read_committed);
    if version >= 7 {
        req.session_id = 0;
        req.session_epoch = -1; // no fetch session: every fetch is a full one
    }
    for (p, _, offset) in asked {
        let mut fp = FetchPartition::default();
        fp.partition = p.tp.partition;
        fp.fetch_offset = *offset;
        fp.partition_max_bytes = inner.config.max_partition_fetch_bytes;
        if version >= 5 {
            fp.log_start_offset = -1;
        }
        if version >= 9 {
            fp.current_leader_epoch = -1;
        }
        let id = uuid::Uuid::from_bytes(p.topic_id());
        let by_id = version >= 13;
        let same = |t: &FetchTopic| {
            if by_id {
                t.topic_id == id
            } else {
                *t.topic.0 == *p.tp.topic
            }
        };
        match req.topics.iter_mut().find(|t| same(t)) {
            Some(t) => t.partitions.push(fp),
            None => {
                let mut t = FetchTopic::default();
                if by_id {
                    t.topic_id = id;
                } else {
                    t.topic = TopicName(StrBytes::from_string(p.tp.topic.to_string()));
                }
                t.partitions.push(fp);
                req.topics.push(t);
            }
        }
    }
    req
}

/// Hands what a fetch brought to the application, moving each partition's fetch
/// position; resets positions out of range. Whether leaders need a refresh, or `None`
/// once the consumer is gone.
async fn deliver(
    inner: &Arc<Inner>,
    resp: FetchResponse,
    asked: &Asked,
    check: &CrcCheck,
) -> Option<bool> {
    let mut refresh = false;
    for t in resp.responses {
        for pd in t.partitions {
            let Some((p, epoch, offset)) = asked.iter().find(|(p, _, _)| {
                let same_topic = if t.topic_id.is_nil() {
                    *p.tp.topic == *t.topic.0
                } else {
                    p.topic_id() == *t.topic_id.as_bytes()
                };
                same_topic && p.tp.partition == pd.partition_index
            }) else {
                continue;
            };
            if p.epoch() != *epoch {
                continue; // seeked, paused or revoked meanwhile
            }
            match pd.error_code {
                0 => {}
                OFFSET_OUT_OF_RANGE => {
                    out_of_range(inner, p, *offset).await;
                    continue;
                }
                code => {
                    tracing::debug!(partition = %p.tp, code, "fetch error");
                    refresh = true;
                    continue;
                }
            }
            p.high_watermark.store(pd.high_watermark, Ordering::Release);
            let Some(records) = pd.records.filter(|r| !r.is_empty()) else {
                continue;
            };
            let Some(next) = next_fetch_offset(&records) else {
                if records.len()
                    >= usize::try_from(inner.config.max_partition_fetch_bytes).unwrap_or(0)
                {
                    tracing::warn!(partition = %p.tp, "a batch is larger than max.partition.fetch.bytes");
                }
                continue;
            };
            // Only this task moves the fetch position while the epoch holds.
            p.fetch_position.store(next.max(*offset), Ordering::Release);
            let mut chunk = Chunk::new(Arc::clone(p), *epoch, records, *offset, check.clone());
            if inner.config.read_committed {
                let aborted = pd.aborted_transactions.as_deref().unwrap_or_default();
                chunk = chunk.without_aborted(
                    aborted
                        .iter()
                        .map(|a| (a.producer_id.0, a.first_offset))
                        .collect(),
                );
            }
            inner.buffered.fetch_add(chunk.size, Ordering::AcqRel);
            if inner.items.send(Item::Chunk(chunk)).is_err() {
                return None; // the consumer is gone
            }
        }
    }
    Some(refresh)
}

/// A position outside the log: `auto.offset.reset` moves it, or (with `none`) the
/// application gets an error and the partition stops until it seeks.
async fn out_of_range(inner: &Arc<Inner>, p: &Arc<PartitionState>, offset: i64) {
    let timestamp = match inner.config.auto_offset_reset {
        OffsetReset::Earliest => -2,
        OffsetReset::Latest => -1,
        OffsetReset::None => {
            p.failed.store(true, Ordering::Release);
            let _ = inner
                .items
                .send(Item::Error(ConsumeError::OffsetOutOfRange {
                    topic: p.tp.topic.to_string(),
                    partition: p.tp.partition,
                    offset,
                }));
            return;
        }
    };
    match inner
        .reset_positions(std::slice::from_ref(p), timestamp)
        .await
    {
        Ok(()) => tracing::info!(partition = %p.tp, offset, "position out of range; reset"),
        Err(e) => tracing::debug!(partition = %p.tp, error = %e, "reset failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_fetch_offset_skips_a_partial_batch() {
        let mut b = fjord_protocol::record_batch::BatchBuilder::new(
            fjord_protocol::compression::Compression::None,
            1,
        );
        for i in 0..3 {
            b.push(fjord_protocol::record_batch::RecordSpec::value(format!(
                "{i}"
            )));
        }
        let mut one = b.build().expect("batch");
        one[0..8].copy_from_slice(&10i64.to_be_bytes());
        let mut two = one.clone();
        two[0..8].copy_from_slice(&13i64.to_be_bytes());
        let whole = [one.clone(), two.clone()].concat();
        assert_eq!(next_fetch_offset(&Bytes::from(whole.clone())), Some(16));
        let cut = Bytes::from(whole[..whole.len() - 5].to_vec());
        assert_eq!(next_fetch_offset(&cut), Some(13));
        assert_eq!(next_fetch_offset(&Bytes::from(one[..30].to_vec())), None);
        // A broker's base offset at the end of the range: no offset after it, no panic.
        let mut last = one.clone();
        last[0..8].copy_from_slice(&(i64::MAX - 1).to_be_bytes());
        assert_eq!(next_fetch_offset(&Bytes::from(last)), None);
    }

    /// The block CRCs help only if decoded records are slices of the response, not
    /// copies: [`fjord_protocol::block_crc::BlockCrcs::crc32c`] finds them by address.
    #[test]
    fn decoded_records_are_slices_of_the_response() {
        use fjord_protocol::kafka_protocol::messages::fetch_response::{
            FetchResponse, FetchableTopicResponse, PartitionData,
        };
        use fjord_protocol::kafka_protocol::protocol::{Decodable, Encodable};
        let records = Bytes::from(vec![5u8; 70_000]);
        for version in [4, 11, 12] {
            let mut pd = PartitionData::default();
            pd.records = Some(records.clone());
            let mut topic = FetchableTopicResponse::default();
            topic.topic = TopicName(StrBytes::from_static_str("t"));
            topic.partitions.push(pd);
            let mut resp = FetchResponse::default();
            resp.responses.push(topic);
            let mut encoded = bytes::BytesMut::new();
            resp.encode(&mut encoded, version).expect("encode");
            let body = encoded.freeze();
            let decoded = FetchResponse::decode(&mut body.clone(), version).expect("decode");
            let got = decoded.responses[0].partitions[0]
                .records
                .clone()
                .expect("records");
            assert_eq!(got, records);
            let (start, base) = (got.as_ptr() as usize, body.as_ptr() as usize);
            assert!(
                start >= base && start + got.len() <= base + body.len(),
                "v{version}: records were copied out of the response"
            );
        }
    }
}
