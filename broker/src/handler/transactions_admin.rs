//! The admin side of transactions, what `kafka-transactions.sh` uses (KIP-664):
//! DescribeTransactions (65) and ListTransactions (66), read from the coordinator.

use std::sync::Arc;

use fjord_protocol::kafka_protocol::messages::describe_transactions_request::DescribeTransactionsRequest;
use fjord_protocol::kafka_protocol::messages::describe_transactions_response::{
    DescribeTransactionsResponse, TopicData, TransactionState as Described,
};
use fjord_protocol::kafka_protocol::messages::list_transactions_request::ListTransactionsRequest;
use fjord_protocol::kafka_protocol::messages::list_transactions_response::{
    ListTransactionsResponse, TransactionState as Listed,
};
use fjord_protocol::kafka_protocol::messages::{ProducerId, TopicName, TransactionalId};
use fjord_protocol::kafka_protocol::ResponseError as E;

use super::{encode, s, Ctx, Fatal, Response};
use crate::keyed_log::now_ms;
use crate::state::Broker;
use crate::txn::state::TxnState;

pub(super) fn describe_transactions(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: DescribeTransactionsRequest,
) -> Result<Response, Fatal> {
    let mut resp = DescribeTransactionsResponse::default();
    resp.transaction_states = req
        .transactional_ids
        .into_iter()
        .map(|id| {
            let mut d = Described::default();
            match broker.txn.describe(&id.0) {
                None => d.error_code = E::TransactionalIdNotFound.code(),
                Some(m) => {
                    d.transaction_state = s(m.state.name());
                    d.transaction_timeout_ms = m.timeout_ms;
                    d.transaction_start_time_ms = m.start_ms;
                    d.producer_id = ProducerId(m.producer_id);
                    d.producer_epoch = m.producer_epoch;
                    d.topics = m
                        .partitions
                        .into_iter()
                        .map(|(topic, partitions)| {
                            let mut t = TopicData::default();
                            t.topic = TopicName(s(topic));
                            t.partitions = partitions;
                            t
                        })
                        .collect();
                }
            }
            d.transactional_id = id;
            d
        })
        .collect();
    encode(ctx, &resp)
}

pub(super) fn list_transactions(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: ListTransactionsRequest,
) -> Result<Response, Fatal> {
    let mut resp = ListTransactionsResponse::default();
    let mut wanted = Vec::new();
    for f in &req.state_filters {
        match TxnState::ALL.iter().find(|st| st.name() == f.as_str()) {
            Some(st) => wanted.push(*st),
            None => resp.unknown_state_filters.push(f.clone()),
        }
    }
    // v2: a regular expression the whole id must match (Kafka uses Java's regex; RE2
    // syntax covers what tools send).
    let pattern = match req
        .transactional_id_pattern
        .as_ref()
        .filter(|p| !p.is_empty())
    {
        None => None,
        Some(p) => match regex::Regex::new(&format!("^(?:{})$", p.as_str())) {
            Ok(re) => Some(re),
            Err(_) => {
                resp.error_code = E::InvalidRegularExpression.code();
                return encode(ctx, &resp);
            }
        },
    };
    let now = now_ms();
    resp.transaction_states = broker
        .txn
        .list()
        .into_iter()
        .filter(|(_, m)| wanted.is_empty() || wanted.contains(&m.state))
        .filter(|(_, m)| {
            req.producer_id_filters.is_empty()
                || req.producer_id_filters.contains(&ProducerId(m.producer_id))
        })
        // v1 (KIP-994): only transactions running at least this long.
        .filter(|(_, m)| {
            req.duration_filter < 0
                || (m.start_ms >= 0 && now.saturating_sub(m.start_ms) >= req.duration_filter)
        })
        .filter(|(id, _)| pattern.as_ref().is_none_or(|re| re.is_match(id)))
        .map(|(id, m)| {
            let mut t = Listed::default();
            t.transactional_id = TransactionalId(s(id));
            t.producer_id = ProducerId(m.producer_id);
            t.transaction_state = s(m.state.name());
            t
        })
        .collect();
    encode(ctx, &resp)
}
