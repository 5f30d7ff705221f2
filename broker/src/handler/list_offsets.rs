//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), or by timestamp.

use std::sync::Arc;

use fjord_protocol::kafka_protocol::messages::list_offsets_request::ListOffsetsRequest;
use fjord_protocol::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use fjord_protocol::kafka_protocol::ResponseError as E;

use super::{encode, storage_error_code, Ctx, Fatal, Response};
use crate::state::Broker;

pub(super) fn handle(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: ListOffsetsRequest,
) -> Result<Response, Fatal> {
    let mut resp = ListOffsetsResponse::default();
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
                Some(partition) => match partition.read().offset_for_timestamp(p.timestamp) {
                    Ok(Some(hit)) => {
                        r.offset = hit.offset as i64;
                        r.timestamp = hit.timestamp;
                        if ctx.version >= 4 {
                            r.leader_epoch = 0;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => r.error_code = storage_error_code(&e),
                },
            }
            out.partitions.push(r);
        }
        resp.topics.push(out);
    }
    encode(ctx, &resp)
}
