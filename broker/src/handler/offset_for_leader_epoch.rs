//! OffsetForLeaderEpoch (API 23): where a leader epoch ends on this broker, so a client
//! that read up to some offset in that epoch can tell whether those records are still
//! here (KIP-101, KIP-320). The Java consumer and librdkafka ask after a leader-epoch
//! change, for instance when this broker restarted after writes.
//!
//! As Kafka: the request's `current_leader_epoch` is checked first (FENCED_LEADER_EPOCH
//! for an older one, UNKNOWN_LEADER_EPOCH for a newer one); then the answer is the
//! largest epoch at or below the one asked for and the start of the next epoch (the log
//! end offset for the newest), or (-1, -1) for an epoch newer than any.

use std::sync::Arc;

use fjord_protocol::kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderEpochRequest;
use fjord_protocol::kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderEpochResponse, OffsetForLeaderTopicResult,
};
use fjord_protocol::kafka_protocol::ResponseError as E;

use super::{encode, Ctx, Fatal, Response};
use crate::state::Broker;

pub(super) fn handle(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: OffsetForLeaderEpochRequest,
) -> Result<Response, Fatal> {
    let mut resp = OffsetForLeaderEpochResponse::default();
    for topic in req.topics {
        let found = broker.topic(topic.topic.0.as_str());
        let mut out = OffsetForLeaderTopicResult::default();
        out.topic = topic.topic.clone();
        for p in topic.partitions {
            let mut r = EpochEndOffset::default();
            r.partition = p.partition;
            r.leader_epoch = -1;
            r.end_offset = -1;
            match found.as_ref().and_then(|t| t.partition(p.partition)) {
                None => r.error_code = E::UnknownTopicOrPartition.code(),
                Some(partition) if partition.is_offline() => {
                    r.error_code = E::KafkaStorageError.code();
                }
                Some(partition) => match partition.check_leader_epoch(p.current_leader_epoch) {
                    Err(e) => r.error_code = e.code(),
                    Ok(()) => {
                        (r.leader_epoch, r.end_offset) =
                            partition.read().end_offset_for_epoch(p.leader_epoch);
                    }
                },
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
    use fjord_protocol::kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use fjord_protocol::kafka_protocol::messages::{ApiKey, TopicName};
    use fjord_protocol::kafka_protocol::protocol::{Decodable, StrBytes};
    use fjord_protocol::record_batch::{BatchBuilder, RecordSpec};

    use super::super::test_support::{body, ctx, open};
    use super::*;

    fn ask(broker: &Arc<Broker>, asks: &[(i32, i32, i32)]) -> Vec<(i16, i32, i64)> {
        let mut t = OffsetForLeaderTopic::default();
        t.topic = TopicName(StrBytes::from_static_str("t"));
        t.partitions = asks
            .iter()
            .map(|&(partition, current, epoch)| {
                let mut p = OffsetForLeaderPartition::default();
                p.partition = partition;
                p.current_leader_epoch = current;
                p.leader_epoch = epoch;
                p
            })
            .collect();
        let mut req = OffsetForLeaderEpochRequest::default();
        req.replica_id = fjord_protocol::kafka_protocol::messages::BrokerId(-1);
        req.topics = vec![t];
        let r = handle(broker, ctx(ApiKey::OffsetForLeaderEpoch, 4), req).expect("answer");
        let mut bytes = body(r);
        bytes.advance(1); // flexible header
        let resp = OffsetForLeaderEpochResponse::decode(&mut bytes, 4).expect("decode");
        resp.topics[0]
            .partitions
            .iter()
            .map(|p| (p.error_code, p.leader_epoch, p.end_offset))
            .collect()
    }

    fn append(broker: &Broker, records: usize) {
        let topic = broker.topic("t").expect("t");
        let mut b = BatchBuilder::new(Compression::None, 1_000);
        for _ in 0..records {
            b.push(RecordSpec::value("v"));
        }
        topic.partitions[0]
            .write()
            .append(&b.build().expect("batch"))
            .expect("append");
    }

    #[test]
    fn end_offsets_per_epoch_across_restarts_and_the_current_epoch_check() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = open(dir.path());
        broker
            .create_topic("t", 1, Default::default(), false)
            .expect("topic");
        append(&broker, 3);
        broker.close();
        drop(broker);
        // A restart after writes leads in epoch 1.
        let broker = open(dir.path());
        assert_eq!(broker.topic("t").expect("t").partitions[0].leader_epoch, 1);
        append(&broker, 2);
        assert_eq!(
            ask(
                &broker,
                &[
                    (0, 1, 0),
                    (0, 1, 1),
                    (0, -1, 2),
                    (0, 0, 0),
                    (0, 2, 0),
                    (7, -1, 0)
                ]
            ),
            vec![
                (0, 0, 3),
                (0, 1, 5),
                (0, -1, -1),
                (E::FencedLeaderEpoch.code(), -1, -1),
                (E::UnknownLeaderEpoch.code(), -1, -1),
                (E::UnknownTopicOrPartition.code(), -1, -1),
            ]
        );
    }
}
