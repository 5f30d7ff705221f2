//! InitProducerId. Without a transactional id: always a fresh producer id with epoch 0,
//! as Kafka does (also when the client names its old id to bump: trusting that would let
//! any client fence another producer). With one: the transaction coordinator's id and
//! bumped epoch, which fences the id's older producers.

use std::sync::Arc;

use fjord_protocol::kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use fjord_protocol::kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use fjord_protocol::kafka_protocol::messages::ProducerId;
use fjord_protocol::kafka_protocol::ResponseError as E;

use super::{encode, Ctx, Fatal, Response};
use crate::state::Broker;

pub(super) fn handle(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: InitProducerIdRequest,
) -> Result<Response, Fatal> {
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    if let Some(id) = req.transactional_id.as_ref().filter(|id| !id.0.is_empty()) {
        let allocate = || {
            broker.next_producer_id().map_err(|e| {
                tracing::error!(error = %e, "allocating a producer id failed");
                E::KafkaStorageError
            })
        };
        match broker.txn.init_producer_id(
            &id.0,
            req.transaction_timeout_ms,
            (req.producer_id.0, req.producer_epoch),
            &allocate,
            broker.as_ref(),
        ) {
            Ok((producer_id, epoch)) => {
                resp.producer_id = ProducerId(producer_id);
                resp.producer_epoch = epoch;
            }
            Err(e) => resp.error_code = super::transactions::fenced_for(ctx.version, 4, e),
        }
        return encode(ctx, &resp);
    }
    let allocated = broker.next_producer_id().map(|id| (id, 0i16));
    match allocated {
        Ok((id, epoch)) => {
            resp.producer_id = ProducerId(id);
            resp.producer_epoch = epoch;
        }
        Err(e) => {
            tracing::error!(error = %e, "allocating a producer id failed");
            resp.error_code = E::KafkaStorageError.code();
        }
    }
    encode(ctx, &resp)
}
