//! InitProducerId for idempotent (not transactional) producers: a new producer id, or the
//! same id with the next epoch when the client asks to bump it (KIP-360).

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
    if req.transactional_id.is_some() {
        // No transaction coordinator yet: say so instead of handing out an id that
        // transactions would then fail on.
        tracing::info!("transactional producer refused: transactions are not supported yet");
        resp.error_code = E::TransactionalIdAuthorizationFailed.code();
        return encode(ctx, &resp);
    }
    let bump =
        req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1;
    let allocated = if bump {
        Ok((req.producer_id.0, req.producer_epoch + 1))
    } else {
        broker.next_producer_id().map(|id| (id, 0))
    };
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
