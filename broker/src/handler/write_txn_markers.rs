//! WriteTxnMarkers (API 27) from an administrator: `kafka-transactions.sh abort` and
//! `Admin.abortTransaction` (KIP-664) end a hanging transaction in a partition by
//! having its leader write the ABORT marker the coordinator never wrote. Kafka's
//! coordinators send the same request to partition leaders; Fjord's coordinator writes
//! its markers in-process, so here it only comes from tools. A marker of an epoch older
//! than the producer's in the partition is refused (INVALID_PRODUCER_EPOCH): it must
//! not end a newer producer's transaction.

use std::sync::Arc;

use fjord_protocol::kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WriteTxnMarkersRequest,
};
use fjord_protocol::kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
    WriteTxnMarkersResponse,
};
use fjord_protocol::kafka_protocol::ResponseError as E;

use super::{encode, Ctx, Fatal, Response};
use crate::state::Broker;
use crate::txn::coordinator::MarkerError;
use crate::txn::markers::{AdminMarkerError, Marker};

/// Writes each marker to each of its partitions; waits for the disk like the
/// partitions' writes (so it runs on the blocking pool).
pub(super) fn handle(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: WriteTxnMarkersRequest,
) -> Result<Response, Fatal> {
    let mut resp = WriteTxnMarkersResponse::default();
    resp.markers = req.markers.iter().map(|m| write(broker, m)).collect();
    encode(ctx, &resp)
}

fn write(broker: &Broker, m: &WritableTxnMarker) -> WritableTxnMarkerResult {
    let marker = Marker {
        producer_id: m.producer_id.0,
        epoch: m.producer_epoch,
        commit: m.transaction_result,
        coordinator_epoch: m.coordinator_epoch,
        refuse_stale: true,
    };
    let mut out = WritableTxnMarkerResult::default();
    out.producer_id = m.producer_id;
    for topic in &m.topics {
        let mut t = WritableTxnMarkerTopicResult::default();
        t.name = topic.name.clone();
        for &index in &topic.partition_indexes {
            let code = write_one(broker, topic.name.0.as_str(), index, marker);
            let mut p = WritableTxnMarkerPartitionResult::default();
            p.partition_index = index;
            p.error_code = code;
            t.partitions.push(p);
        }
        out.topics.push(t);
    }
    out
}

/// One partition's marker: its error code (0 when written).
fn write_one(broker: &Broker, topic: &str, partition: i32, marker: Marker) -> i16 {
    if marker.producer_id < 0 || marker.epoch < 0 {
        tracing::warn!(
            topic,
            partition,
            producer_id = marker.producer_id,
            epoch = marker.epoch,
            "WriteTxnMarkers without a producer id and epoch refused"
        );
        return E::InvalidRequest.code();
    }
    let result = broker.append_marker(topic, partition, marker);
    let code = match &result {
        Ok(()) => 0,
        Err(AdminMarkerError::StaleEpoch) => E::InvalidProducerEpoch.code(),
        Err(AdminMarkerError::Marker(MarkerError::Gone)) => E::UnknownTopicOrPartition.code(),
        Err(AdminMarkerError::Marker(MarkerError::Failed(_))) => E::KafkaStorageError.code(),
    };
    let kind = if marker.commit { "COMMIT" } else { "ABORT" };
    match result {
        Ok(()) => tracing::info!(
            topic,
            partition,
            producer_id = marker.producer_id,
            epoch = marker.epoch,
            coordinator_epoch = marker.coordinator_epoch,
            "{kind} marker written on an administrator's request"
        ),
        Err(e) => tracing::warn!(topic, partition, producer_id = marker.producer_id,
            epoch = marker.epoch, error = ?e, "{kind} marker of an administrator refused"),
    }
    code
}
