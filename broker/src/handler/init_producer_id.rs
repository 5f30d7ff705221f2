//! InitProducerId for idempotent (not transactional) producers: always a fresh producer
//! id with epoch 0, as Kafka does without a transactional id (also when the client names
//! its old id to bump: trusting that would let any client fence another producer).

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
