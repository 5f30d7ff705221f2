//! The transaction requests through their handlers: every advertised version encodes,
//! and a Produce is held to the coordinator's record of the transaction (KIP-890
//! part 1) and may not carry a control batch.

use std::sync::Arc;

use bytes::{Buf, Bytes};
use fjord_protocol::compression::Compression;
use fjord_protocol::kafka_protocol::messages::add_offsets_to_txn_request::AddOffsetsToTxnRequest;
use fjord_protocol::kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use fjord_protocol::kafka_protocol::messages::add_partitions_to_txn_response::AddPartitionsToTxnResponse;
use fjord_protocol::kafka_protocol::messages::describe_transactions_request::DescribeTransactionsRequest;
use fjord_protocol::kafka_protocol::messages::describe_transactions_response::DescribeTransactionsResponse;
use fjord_protocol::kafka_protocol::messages::end_txn_request::EndTxnRequest;
use fjord_protocol::kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use fjord_protocol::kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use fjord_protocol::kafka_protocol::messages::list_transactions_request::ListTransactionsRequest;
use fjord_protocol::kafka_protocol::messages::list_transactions_response::ListTransactionsResponse;
use fjord_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use fjord_protocol::kafka_protocol::messages::produce_response::ProduceResponse;
use fjord_protocol::kafka_protocol::messages::{ApiKey, ProducerId, TopicName, TransactionalId};
use fjord_protocol::kafka_protocol::protocol::{Decodable, StrBytes};
use fjord_protocol::kafka_protocol::ResponseError as E;
use fjord_protocol::record_batch::{end_txn_batch, BatchBuilder, EndTxnMarker, RecordSpec};

use super::test_support::{body, ctx, open};
use super::{init_producer_id, produce, transactions, transactions_admin, Ctx, Fatal, Response};
use crate::state::Broker;

fn tid(s: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(s.into()))
}

fn topic(name: &str, partitions: Vec<i32>) -> AddPartitionsToTxnTopic {
    let mut t = AddPartitionsToTxnTopic::default();
    t.name = TopicName(StrBytes::from_string(name.into()));
    t.partitions = partitions;
    t
}

/// InitProducerId for `id` through the handler at `version`: (error, id, epoch).
fn init(broker: &Arc<Broker>, id: &str, version: i16) -> (i16, i64, i16) {
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = Some(tid(id));
    req.transaction_timeout_ms = 60_000;
    req.producer_id = ProducerId(-1);
    req.producer_epoch = -1;
    let r = init_producer_id::handle(broker, ctx(ApiKey::InitProducerId, version), req)
        .expect("answer");
    let mut b = body(r);
    if version >= 2 {
        b.advance(1);
    }
    let resp = InitProducerIdResponse::decode(&mut b, version).expect("decode");
    (resp.error_code, resp.producer_id.0, resp.producer_epoch)
}

/// AddPartitionsToTxn v3 for `id`: the error of each partition named.
fn add(broker: &Arc<Broker>, id: &str, pid: i64, epoch: i16, parts: Vec<i32>) -> Vec<i16> {
    let mut req = AddPartitionsToTxnRequest::default();
    req.v3_and_below_transactional_id = tid(id);
    req.v3_and_below_producer_id = ProducerId(pid);
    req.v3_and_below_producer_epoch = epoch;
    req.v3_and_below_topics = vec![topic("t", parts)];
    let r = transactions::add_partitions_to_txn(broker, ctx(ApiKey::AddPartitionsToTxn, 3), req)
        .expect("answer");
    let mut b = body(r);
    b.advance(1);
    let resp = AddPartitionsToTxnResponse::decode(&mut b, 3).expect("decode");
    resp.results_by_topic_v3_and_below[0]
        .results_by_partition
        .iter()
        .map(|p| p.partition_error_code)
        .collect()
}

/// One of every request kind this file covers, at `c`'s version (for the
/// every-advertised-version test).
pub(super) fn exercise(
    broker: &Arc<Broker>,
    key: ApiKey,
    c: Ctx,
) -> Option<Result<Response, Fatal>> {
    let (_, pid, epoch) = init(broker, "exercise", 0);
    Some(match key {
        ApiKey::AddPartitionsToTxn => {
            let mut req = AddPartitionsToTxnRequest::default();
            if c.version <= 3 {
                req.v3_and_below_transactional_id = tid("exercise");
                req.v3_and_below_producer_id = ProducerId(pid);
                req.v3_and_below_producer_epoch = epoch;
                req.v3_and_below_topics = vec![topic("t", vec![0]), topic("missing", vec![0])];
            } else {
                let mut t = AddPartitionsToTxnTransaction::default();
                t.transactional_id = tid("exercise");
                t.producer_id = ProducerId(pid);
                t.producer_epoch = epoch;
                t.verify_only = true;
                t.topics = vec![topic("t", vec![0])];
                req.transactions = vec![t];
            }
            transactions::add_partitions_to_txn(broker, c, req)
        }
        ApiKey::AddOffsetsToTxn => {
            let mut req = AddOffsetsToTxnRequest::default();
            req.transactional_id = tid("exercise");
            req.producer_id = ProducerId(pid);
            req.producer_epoch = epoch;
            req.group_id = fjord_protocol::kafka_protocol::messages::GroupId(
                StrBytes::from_string("g".into()),
            );
            transactions::add_offsets_to_txn(broker, c, req)
        }
        ApiKey::EndTxn => {
            let mut req = EndTxnRequest::default();
            req.transactional_id = tid("exercise");
            req.producer_id = ProducerId(pid);
            req.producer_epoch = epoch;
            req.committed = true; // nothing under way: INVALID_TXN_STATE must encode too
            transactions::end_txn(broker, c, req)
        }
        ApiKey::TxnOffsetCommit => {
            use fjord_protocol::kafka_protocol::messages::txn_offset_commit_request::{
                TxnOffsetCommitRequest, TxnOffsetCommitRequestPartition,
                TxnOffsetCommitRequestTopic,
            };
            let mut p = TxnOffsetCommitRequestPartition::default();
            p.committed_offset = 1;
            let mut t = TxnOffsetCommitRequestTopic::default();
            t.name = TopicName(StrBytes::from_string("t".into()));
            t.partitions = vec![p];
            let mut req = TxnOffsetCommitRequest::default();
            req.transactional_id = tid("exercise");
            req.group_id = fjord_protocol::kafka_protocol::messages::GroupId(
                StrBytes::from_string("g".into()),
            );
            req.producer_id = ProducerId(pid);
            req.producer_epoch = epoch;
            req.generation_id = -1;
            req.topics = vec![t];
            super::txn_offset_commit::handle(broker, c, req)
        }
        ApiKey::DescribeTransactions => {
            let mut req = DescribeTransactionsRequest::default();
            req.transactional_ids = vec![tid("exercise"), tid("unknown")];
            transactions_admin::describe_transactions(broker, c, req)
        }
        ApiKey::ListTransactions => {
            let mut req = ListTransactionsRequest::default();
            req.state_filters = vec![StrBytes::from_string("Empty".into())];
            req.duration_filter = -1;
            transactions_admin::list_transactions(broker, c, req)
        }
        _ => return None,
    })
}

/// A Produce of `batch` to t-0 naming transactional id "p", as clients send it.
fn produce_one(broker: &Arc<Broker>, batch: Vec<u8>) -> i16 {
    produce_with(broker, batch, Some("p"))
}

fn produce_with(broker: &Arc<Broker>, batch: Vec<u8>, transactional_id: Option<&str>) -> i16 {
    let mut p = PartitionProduceData::default();
    p.index = 0;
    p.records = Some(Bytes::from(batch));
    let mut t = TopicProduceData::default();
    t.name = TopicName(StrBytes::from_string("t".into()));
    t.partition_data = vec![p];
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 5_000;
    req.topic_data = vec![t];
    req.transactional_id = transactional_id.map(tid);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let r = rt
        .block_on(produce::handle(broker, ctx(ApiKey::Produce, 9), req))
        .expect("answer");
    let mut b = body(r);
    b.advance(1);
    let resp = ProduceResponse::decode(&mut b, 9).expect("decode");
    resp.responses[0].partition_responses[0].error_code
}

fn txn_batch(pid: i64, epoch: i16, seq: i32) -> Vec<u8> {
    let mut b = BatchBuilder::new(Compression::None, 1_000)
        .with_producer(pid, epoch, seq)
        .transactional();
    b.push(RecordSpec::value("v"));
    b.build().expect("batch")
}

#[test]
fn transactional_produce_needs_the_partition_in_an_ongoing_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    broker
        .create_topic("t", 2, Default::default(), false)
        .expect("topic");
    let (error, pid, epoch) = init(&broker, "p", 3);
    assert_eq!(error, 0);
    assert_eq!(
        produce_one(&broker, txn_batch(pid, epoch, 0)),
        E::InvalidTxnState.code(),
        "no transaction under way"
    );
    assert_eq!(add(&broker, "p", pid, epoch, vec![1]), vec![0]);
    assert_eq!(
        produce_one(&broker, txn_batch(pid, epoch, 0)),
        E::InvalidTxnState.code(),
        "partition 0 was never added"
    );
    assert_eq!(add(&broker, "p", pid, epoch, vec![0]), vec![0]);
    assert_eq!(
        produce_with(&broker, txn_batch(pid, epoch, 0), None),
        E::TransactionalIdAuthorizationFailed.code(),
        "a transactional batch in a request without the transactional id (as Kafka)"
    );
    assert_eq!(produce_one(&broker, txn_batch(pid, epoch, 0)), 0);
    // An unknown partition fails the whole add, as in Kafka.
    assert_eq!(
        add(&broker, "p", pid, epoch, vec![1, 9]),
        vec![
            E::OperationNotAttempted.code(),
            E::UnknownTopicOrPartition.code()
        ]
    );
    // A client may never write a marker itself.
    let marker = EndTxnMarker {
        commit: true,
        coordinator_epoch: 0,
    };
    assert_eq!(
        produce_one(
            &broker,
            end_txn_batch(pid, epoch, marker, 1).expect("marker")
        ),
        E::InvalidRecord.code()
    );
    // A second init fences: the open transaction is aborted and the client retries.
    assert_eq!(init(&broker, "p", 3).0, E::ConcurrentTransactions.code());
    let (error, pid2, epoch2) = init(&broker, "p", 3);
    assert_eq!((error, pid2), (0, pid));
    assert_eq!(
        epoch2,
        epoch + 2,
        "one bump to fence, one for the new producer"
    );
    assert_eq!(
        produce_one(&broker, txn_batch(pid, epoch, 1)),
        E::InvalidProducerEpoch.code(),
        "the fenced producer's late write"
    );
    assert_eq!(
        add(&broker, "p", pid, epoch, vec![0]),
        vec![E::ProducerFenced.code()]
    );
    // Before KIP-588 (InitProducerId v0-3) the same is INVALID_PRODUCER_EPOCH.
    assert_eq!(
        transactions::fenced_for(3, 4, E::ProducerFenced),
        E::InvalidProducerEpoch.code()
    );
}

#[test]
fn admins_list_and_describe_transactions_with_kafkas_filters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    broker
        .create_topic("t", 2, Default::default(), false)
        .expect("topic");
    let (_, pid, epoch) = init(&broker, "orders-1", 3);
    let (_, other, _) = init(&broker, "audit", 3);
    assert_eq!(add(&broker, "orders-1", pid, epoch, vec![1, 0]), vec![0, 0]);

    let list = |states: &[&str], pids: &[i64], duration: i64, pattern: Option<&str>, v: i16| {
        let mut req = ListTransactionsRequest::default();
        req.state_filters = states
            .iter()
            .map(|s| StrBytes::from_string((*s).into()))
            .collect();
        req.producer_id_filters = pids.iter().map(|p| ProducerId(*p)).collect();
        req.duration_filter = duration;
        req.transactional_id_pattern = pattern.map(|p| StrBytes::from_string(p.into()));
        let r =
            transactions_admin::list_transactions(&broker, ctx(ApiKey::ListTransactions, v), req)
                .expect("answer");
        let mut b = body(r);
        b.advance(1);
        let resp = ListTransactionsResponse::decode(&mut b, v).expect("decode");
        let ids: Vec<(String, i64, String)> = resp
            .transaction_states
            .iter()
            .map(|t| {
                (
                    t.transactional_id.0.to_string(),
                    t.producer_id.0,
                    t.transaction_state.to_string(),
                )
            })
            .collect();
        let unknown: Vec<String> = resp
            .unknown_state_filters
            .iter()
            .map(|s| s.to_string())
            .collect();
        (resp.error_code, ids, unknown)
    };
    let ongoing = ("orders-1".to_string(), pid, "Ongoing".to_string());
    let empty = ("audit".to_string(), other, "Empty".to_string());
    assert_eq!(
        list(&[], &[], -1, None, 0).1,
        vec![empty.clone(), ongoing.clone()]
    );
    assert_eq!(
        list(&["Ongoing"], &[], -1, None, 0).1,
        vec![ongoing.clone()]
    );
    assert_eq!(list(&[], &[other], -1, None, 0).1, vec![empty.clone()]);
    let (_, none, unknown) = list(&["Nonsense"], &[], -1, None, 0);
    assert_eq!((none.len(), unknown), (2, vec!["Nonsense".to_string()]));
    // Running at least an hour: none is; at least 0 ms: the one with a start time.
    assert!(list(&[], &[], 3_600_000, None, 1).1.is_empty());
    assert_eq!(list(&[], &[], 0, None, 1).1, vec![ongoing.clone()]);
    assert_eq!(list(&[], &[], -1, Some("orders-.*"), 2).1, vec![ongoing]);
    assert_eq!(
        list(&[], &[], -1, Some("("), 2).0,
        E::InvalidRegularExpression.code()
    );

    let mut req = DescribeTransactionsRequest::default();
    req.transactional_ids = vec![tid("orders-1"), tid("nobody")];
    let r = transactions_admin::describe_transactions(
        &broker,
        ctx(ApiKey::DescribeTransactions, 0),
        req,
    )
    .expect("answer");
    let mut b = body(r);
    b.advance(1);
    let resp = DescribeTransactionsResponse::decode(&mut b, 0).expect("decode");
    let d = &resp.transaction_states[0];
    assert_eq!(
        (d.error_code, d.producer_id.0, d.producer_epoch),
        (0, pid, epoch)
    );
    assert_eq!(d.transaction_state.as_str(), "Ongoing");
    assert_eq!(d.transaction_timeout_ms, 60_000);
    assert!(d.transaction_start_time_ms > 0);
    assert_eq!(d.topics.len(), 1);
    assert_eq!(d.topics[0].partitions, vec![1, 0]);
    assert_eq!(
        resp.transaction_states[1].error_code,
        E::TransactionalIdNotFound.code()
    );
}

/// ListOffsets for partition 0 of "t" at `timestamp`, read_committed or not: the offset.
fn list_offset(broker: &Arc<Broker>, timestamp: i64, committed: bool) -> i64 {
    use fjord_protocol::kafka_protocol::messages::list_offsets_request::{
        ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
    };
    use fjord_protocol::kafka_protocol::messages::list_offsets_response::ListOffsetsResponse;
    let mut p = ListOffsetsPartition::default();
    p.timestamp = timestamp;
    p.current_leader_epoch = -1;
    let mut t = ListOffsetsTopic::default();
    t.name = TopicName(StrBytes::from_string("t".into()));
    t.partitions = vec![p];
    let mut req = ListOffsetsRequest::default();
    req.isolation_level = i8::from(committed);
    req.topics = vec![t];
    let r = super::list_offsets::handle(broker, ctx(ApiKey::ListOffsets, 10), req).expect("answer");
    let mut b = body(r);
    b.advance(1);
    let resp = ListOffsetsResponse::decode(&mut b, 10).expect("decode");
    resp.topics[0].partitions[0].offset
}

#[test]
fn read_committed_list_offsets_answer_the_last_stable_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    broker
        .create_topic("t", 1, Default::default(), false)
        .expect("topic");
    let plain = |ts: i64| {
        let mut b = BatchBuilder::new(Compression::None, ts);
        b.push(RecordSpec::value("v"));
        b.build().expect("batch")
    };
    assert_eq!(produce_one(&broker, plain(1_000)), 0);
    let (_, pid, epoch) = init(&broker, "lso", 3);
    assert_eq!(add(&broker, "lso", pid, epoch, vec![0]), vec![0]);
    assert_eq!(produce_one(&broker, txn_batch(pid, epoch, 0)), 0); // offset 1, ts 1000
    assert_eq!(produce_one(&broker, plain(5_000)), 0); // offset 2
    assert_eq!(list_offset(&broker, -1, false), 3);
    assert_eq!(list_offset(&broker, -1, true), 1, "latest is the LSO");
    assert_eq!(
        list_offset(&broker, -2, true),
        0,
        "earliest is the log start"
    );
    assert_eq!(list_offset(&broker, 4_000, false), 2);
    assert_eq!(
        list_offset(&broker, 4_000, true),
        -1,
        "past the LSO: not there yet"
    );
    broker
        .txn
        .end_txn("lso", pid, epoch, true, broker.as_ref())
        .expect("commit");
    assert_eq!(list_offset(&broker, -1, true), 4, "the marker is at 3");
    assert_eq!(list_offset(&broker, 4_000, true), 2);
}
