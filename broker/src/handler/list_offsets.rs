//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local (-4),
//! latest tiered (-5), or by timestamp; with the leader epoch of the offset found.

use std::sync::Arc;

use fjord_protocol::kafka_protocol::messages::list_offsets_request::ListOffsetsRequest;
use fjord_protocol::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use fjord_protocol::kafka_protocol::ResponseError as E;

use super::{encode, storage_error_code, Ctx, Fatal, Response};
use crate::state::Broker;
use fjord_storage::{Log, TimestampOffset};

/// ListOffsets v8 "earliest local" (KIP-405): without tiered storage, the log start.
const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;
/// ListOffsets v9 "latest tiered" (KIP-1005): without tiered storage, nothing is tiered.
const LATEST_TIERED_TIMESTAMP: i64 = -5;

/// The offset a ListOffsets timestamp names. Fjord keeps no tiered storage, so the
/// local log is the whole log, as Kafka answers with remote storage off: earliest-local
/// is the log start, latest-tiered is none (offset -1).
fn lookup(log: &Log, timestamp: i64) -> fjord_storage::Result<Option<TimestampOffset>> {
    match timestamp {
        EARLIEST_LOCAL_TIMESTAMP => {
            log.offset_for_timestamp(fjord_storage::log::EARLIEST_TIMESTAMP)
        }
        LATEST_TIERED_TIMESTAMP => Ok(None),
        t => log.offset_for_timestamp(t),
    }
}

/// read_committed (as Kafka's `fetchOffsetByTimestamp`): "latest" is the last stable
/// offset, and an offset found by timestamp at or past it is not there yet.
fn stable_only(hit: Option<TimestampOffset>, timestamp: i64, lso: u64) -> Option<TimestampOffset> {
    if timestamp == fjord_storage::log::LATEST_TIMESTAMP {
        return hit.map(|h| TimestampOffset {
            offset: h.offset.min(lso),
            ..h
        });
    }
    let earliest = matches!(
        timestamp,
        fjord_storage::log::EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP
    );
    hit.filter(|h| h.offset < lso || earliest)
}

pub(super) fn handle(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: ListOffsetsRequest,
) -> Result<Response, Fatal> {
    let mut resp = ListOffsetsResponse::default();
    let committed = req.isolation_level == 1;
    for topic in req.topics {
        let found = broker.topic(topic.name.0.as_str());
        let mut out = ListOffsetsTopicResponse::default();
        out.name = topic.name.clone();
        for p in topic.partitions {
            let mut r = ListOffsetsPartitionResponse::default();
            r.partition_index = p.partition_index;
            r.timestamp = -1;
            r.offset = -1;
            let partition = found.as_ref().and_then(|t| t.partition(p.partition_index));
            match partition {
                None => r.error_code = E::UnknownTopicOrPartition.code(),
                Some(partition) if partition.is_offline() => {
                    r.error_code = E::KafkaStorageError.code();
                }
                Some(partition) => {
                    if let Err(e) = partition.check_leader_epoch(p.current_leader_epoch) {
                        r.error_code = e.code();
                        out.partitions.push(r);
                        continue;
                    }
                    let log = partition.read();
                    let found = lookup(&log, p.timestamp).map(|hit| {
                        if committed {
                            let lso = partition.last_stable_offset(&log);
                            stable_only(hit, p.timestamp, lso)
                        } else {
                            hit
                        }
                    });
                    match found {
                        Ok(Some(hit)) => {
                            r.offset = hit.offset as i64;
                            r.timestamp = hit.timestamp;
                            if ctx.version >= 4 {
                                r.leader_epoch = log.epoch_for_offset(hit.offset).unwrap_or(-1);
                            }
                        }
                        Ok(None) => {}
                        Err(e) => r.error_code = storage_error_code(&e),
                    }
                }
            }
            out.partitions.push(r);
        }
        resp.topics.push(out);
    }
    encode(ctx, &resp)
}

#[cfg(test)]
mod tests {
    use bytes::Buf;
    use fjord_protocol::compression::Compression;
    use fjord_protocol::kafka_protocol::messages::list_offsets_request::{
        ListOffsetsPartition, ListOffsetsTopic,
    };
    use fjord_protocol::kafka_protocol::messages::{ApiKey, TopicName};
    use fjord_protocol::kafka_protocol::protocol::{Decodable, StrBytes};
    use fjord_protocol::record_batch::{BatchBuilder, RecordSpec};

    use super::super::test_support::{body, ctx, open};
    use super::*;

    /// (error, offset, leader epoch) for each (timestamp, current leader epoch).
    fn list(broker: &Arc<Broker>, asks: &[(i64, i32)]) -> Vec<(i16, i64, i32)> {
        let mut t = ListOffsetsTopic::default();
        t.name = TopicName(StrBytes::from_static_str("t"));
        t.partitions = asks
            .iter()
            .map(|&(timestamp, current)| {
                let mut p = ListOffsetsPartition::default();
                p.timestamp = timestamp;
                p.current_leader_epoch = current;
                p
            })
            .collect();
        let mut req = ListOffsetsRequest::default();
        req.topics = vec![t];
        let r = handle(broker, ctx(ApiKey::ListOffsets, 10), req).expect("answer");
        let mut bytes = body(r);
        bytes.advance(1); // flexible header
        let resp = ListOffsetsResponse::decode(&mut bytes, 10).expect("decode");
        resp.topics[0]
            .partitions
            .iter()
            .map(|p| (p.error_code, p.offset, p.leader_epoch))
            .collect()
    }

    fn append(broker: &Broker, records: usize) {
        let mut b = BatchBuilder::new(Compression::None, 1_000);
        for _ in 0..records {
            b.push(RecordSpec::value("v"));
        }
        broker.topic("t").expect("t").partitions[0]
            .write()
            .append(&b.build().expect("batch"))
            .expect("append");
    }

    #[test]
    fn offsets_carry_their_epoch_and_tiered_specs_answer_as_without_remote_storage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = open(dir.path());
        broker
            .create_topic("t", 1, Default::default(), false)
            .expect("topic");
        append(&broker, 2);
        broker.close();
        drop(broker);
        let broker = open(dir.path());
        append(&broker, 3);
        let log_start = broker.topic("t").expect("t").partitions[0]
            .read()
            .log_start_offset();
        assert_eq!(log_start, 0);
        assert_eq!(
            list(
                &broker,
                &[(-2, -1), (-1, 1), (-4, -1), (-5, -1), (-1, 0), (-1, 2)]
            ),
            vec![
                (0, 0, 0),   // earliest: written in epoch 0
                (0, 5, 1),   // latest: the current epoch
                (0, 0, 0),   // earliest local: the log start
                (0, -1, -1), // latest tiered: nothing is tiered
                (E::FencedLeaderEpoch.code(), -1, -1),
                (E::UnknownLeaderEpoch.code(), -1, -1),
            ]
        );
    }
}
