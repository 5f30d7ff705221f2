//! DeleteRecords: moves partitions' log start offsets forward, durably, deleting the
//! segments wholly below the new start. As in Kafka, -1 means "up to the high
//! watermark", an offset past the high watermark (or below -1) is OFFSET_OUT_OF_RANGE,
//! and one at or below the current start changes nothing; each partition answers its
//! log start offset (`low_watermark`) after the call. Fjord's high watermark is its log
//! end offset (one replica).

use std::sync::Arc;

use fjord_protocol::kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsRequest,
};
use fjord_protocol::kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsResponse, DeleteRecordsTopicResult,
};
use fjord_protocol::kafka_protocol::ResponseError as E;

use super::{encode, storage_error_code, Ctx, Fatal, Response};
use crate::state::{Broker, Partition};

/// Kafka's "delete up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

pub(super) fn handle(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: DeleteRecordsRequest,
) -> Result<Response, Fatal> {
    let mut resp = DeleteRecordsResponse::default();
    for topic in req.topics {
        let found = broker.topic(topic.name.0.as_str());
        let mut out = DeleteRecordsTopicResult::default();
        out.name = topic.name.clone();
        for p in topic.partitions {
            let partition = found.as_ref().and_then(|t| t.partition(p.partition_index));
            out.partitions
                .push(delete_in(partition.map(Arc::as_ref), &p));
        }
        resp.topics.push(out);
    }
    encode(ctx, &resp)
}

/// One partition's answer.
fn delete_in(
    partition: Option<&Partition>,
    p: &DeleteRecordsPartition,
) -> DeleteRecordsPartitionResult {
    let mut r = DeleteRecordsPartitionResult::default();
    r.partition_index = p.partition_index;
    r.low_watermark = -1;
    let Some(partition) = partition else {
        r.error_code = E::UnknownTopicOrPartition.code();
        return r;
    };
    if partition.is_offline() {
        r.error_code = E::KafkaStorageError.code();
        return r;
    }
    let mut log = partition.write();
    let high_watermark = log.log_end_offset();
    let target = match p.offset {
        HIGH_WATERMARK => high_watermark,
        o if o < 0 || o as u64 > high_watermark => {
            r.error_code = E::OffsetOutOfRange.code();
            return r;
        }
        o => o as u64,
    };
    match log.delete_records_before(target) {
        Ok(start) => r.low_watermark = start as i64,
        Err(e) => {
            tracing::warn!(partition = partition.index, error = %e, "delete records failed");
            r.error_code = storage_error_code(&e);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::test_support::{body, ctx, open};
    use std::collections::BTreeMap;

    use bytes::Buf;
    use fjord_protocol::compression::Compression;
    use fjord_protocol::kafka_protocol::messages::delete_records_request::DeleteRecordsTopic;
    use fjord_protocol::kafka_protocol::messages::{ApiKey, TopicName};
    use fjord_protocol::kafka_protocol::protocol::{Decodable, StrBytes};
    use fjord_protocol::record_batch::{BatchBuilder, RecordSpec};

    fn request(topic: &str, offsets: &[(i32, i64)]) -> DeleteRecordsRequest {
        let mut t = DeleteRecordsTopic::default();
        t.name = TopicName(StrBytes::from_string(topic.into()));
        t.partitions = offsets
            .iter()
            .map(|&(i, o)| {
                let mut p = DeleteRecordsPartition::default();
                p.partition_index = i;
                p.offset = o;
                p
            })
            .collect();
        let mut req = DeleteRecordsRequest::default();
        req.topics = vec![t];
        req
    }

    /// (error, low watermark) per partition, in request order (v1: a response header
    /// without tagged fields, so the body starts right after the correlation id).
    fn answers(broker: &Arc<Broker>, req: DeleteRecordsRequest) -> Vec<(i16, i64)> {
        let r = handle(broker, ctx(ApiKey::DeleteRecords, 1), req).expect("answered");
        let mut b = body(r);
        let resp = DeleteRecordsResponse::decode(&mut b, 1).expect("decodes");
        assert!(!b.has_remaining());
        resp.topics[0]
            .partitions
            .iter()
            .map(|p| (p.error_code, p.low_watermark))
            .collect()
    }

    /// Topic `t` of 2 partitions of small segments; 10 records of 100 B in partition 0,
    /// one a batch, so that several segments are sealed.
    fn filled(broker: &Arc<Broker>) {
        let small = BTreeMap::from([("segment.bytes".to_string(), "400".to_string())]);
        broker.create_topic("t", 2, small, false).expect("topic");
        let topic = broker.topic("t").expect("t");
        let mut log = topic.partitions[0].write();
        for i in 0..10 {
            let mut b = BatchBuilder::new(Compression::None, i);
            b.push(RecordSpec::value(vec![b'v'; 100]));
            log.append(&b.build().expect("batch")).expect("append");
        }
        assert!(log.segment_count() > 3, "the test needs sealed segments");
    }

    #[test]
    fn records_are_deleted_up_to_an_offset_or_the_high_watermark_and_it_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = open(dir.path());
        filled(&broker);
        let segments = broker.topic("t").expect("t").partitions[0]
            .read()
            .segment_count();
        // Partition 0 to offset 4; partition 1 (empty) to its high watermark, 0; an
        // offset past the high watermark and one below -1 are out of range; a partition
        // that is not there is unknown.
        let got = answers(
            &broker,
            request("t", &[(0, 4), (1, -1), (0, 11), (0, -2), (7, 1)]),
        );
        assert_eq!(
            got,
            vec![
                (0, 4),
                (0, 0),
                (E::OffsetOutOfRange.code(), -1),
                (E::OffsetOutOfRange.code(), -1),
                (E::UnknownTopicOrPartition.code(), -1),
            ]
        );
        // Below the start: nothing changes, the start is answered.
        assert_eq!(answers(&broker, request("t", &[(0, 2)])), vec![(0, 4)]);
        assert_eq!(
            answers(&broker, request("nope", &[(0, 0)])),
            vec![(E::UnknownTopicOrPartition.code(), -1)]
        );
        // -1: everything up to the high watermark, and the segments below go.
        assert_eq!(answers(&broker, request("t", &[(0, -1)])), vec![(0, 10)]);
        let left = broker.topic("t").expect("t").partitions[0]
            .read()
            .segment_count();
        assert!(
            left < segments && left >= 1,
            "{segments} segments, {left} left"
        );
        drop(broker);
        let reopened = open(dir.path());
        let t = reopened.topic("t").expect("topic");
        assert_eq!(t.partitions[0].read().log_start_offset(), 10);
        assert_eq!(t.partitions[0].read().log_end_offset(), 10);
    }
}
