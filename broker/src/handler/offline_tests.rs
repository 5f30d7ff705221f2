//! Storage failures through the real path, with the fault-injecting file system under
//! the broker: a failed fsync takes its partition offline (KAFKA_STORAGE_ERROR to
//! produce, fetch and list-offsets, so a producer's retry is never acknowledged as a
//! duplicate of bytes that may not be on disk) while other partitions keep serving;
//! ENOSPC fails a produce and the broker takes appends again once space is back; a power
//! loss after acks=all produces loses none of them.

use std::sync::Arc;

use bytes::Bytes;
use fjord_protocol::compression::Compression;
use fjord_protocol::kafka_protocol::messages::fetch_request::{
    FetchPartition, FetchRequest, FetchTopic,
};
use fjord_protocol::kafka_protocol::messages::fetch_response::FetchResponse;
use fjord_protocol::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use fjord_protocol::kafka_protocol::messages::list_offsets_response::ListOffsetsResponse;
use fjord_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use fjord_protocol::kafka_protocol::messages::produce_response::ProduceResponse;
use fjord_protocol::kafka_protocol::messages::{ApiKey, TopicName};
use fjord_protocol::kafka_protocol::protocol::{Decodable, StrBytes};
use fjord_protocol::kafka_protocol::ResponseError as E;
use fjord_protocol::record_batch::{BatchBuilder, RecordSpec};

use super::test_support::*;
use super::{fetch, list_offsets, produce};
use crate::config::BrokerConfig;
use crate::state::Broker;
use fjord_storage::fault::{FaultIo, Op as IoOp, Torn};
use fjord_storage::Io;

const STORAGE_ERROR: i16 = 56;

fn name(n: &str) -> TopicName {
    TopicName(StrBytes::from_string(n.to_string()))
}

fn produce_request(topic: &str, acks: i16, records: &Bytes) -> ProduceRequest {
    let mut p = PartitionProduceData::default();
    p.records = Some(records.clone());
    let mut t = TopicProduceData::default();
    t.name = name(topic);
    t.partition_data = vec![p];
    let mut req = ProduceRequest::default();
    req.acks = acks;
    req.timeout_ms = 1000;
    req.topic_data = vec![t];
    req
}

/// An acks=all produce of `records` to partition 0 of `topic`: (error, base offset).
async fn produce_to(broker: &Arc<Broker>, topic: &str, acks: i16, records: &Bytes) -> (i16, i64) {
    let req = produce_request(topic, acks, records);
    let r = produce::handle(broker, ctx(ApiKey::Produce, 8), req)
        .await
        .expect("produce");
    let resp = ProduceResponse::decode(&mut body(r), 8).expect("decode");
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

async fn produce_error(broker: &Arc<Broker>, records: &Bytes) -> i16 {
    produce_to(broker, "t", -1, records).await.0
}

fn faulty_broker(dir: &std::path::Path, fault: &Arc<FaultIo>) -> Arc<Broker> {
    faulty_broker_with(dir, fault, &[])
}

fn faulty_broker_with(
    dir: &std::path::Path,
    fault: &Arc<FaultIo>,
    more: &[(&str, &str)],
) -> Arc<Broker> {
    let mut sets = vec![("log.dirs".to_string(), dir.display().to_string())];
    sets.extend(more.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = BrokerConfig::from_sources(None, &sets).expect("config");
    Arc::new(Broker::open_with_io(config, Io::new(fault.clone())).expect("broker"))
}

/// Base offsets of the batches stored in partition 0 of `topic`, every one valid.
fn stored_offsets(broker: &Broker, topic: &str) -> Vec<i64> {
    let topic = broker.topic(topic).expect("the topic exists");
    let bytes = topic.partitions[0]
        .read()
        .read_to_vec(0, 1 << 20)
        .expect("read");
    fjord_protocol::record_batch::batches(&bytes)
        .map(|b| b.expect("only valid batches").0.base_offset)
        .collect()
}

fn one_record(value: &str) -> Bytes {
    let mut batch = BatchBuilder::new(Compression::None, 1_000);
    batch.push(RecordSpec::value(value));
    Bytes::from(batch.build().expect("batch"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_takes_its_partition_offline_and_no_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fault = Arc::new(FaultIo::new());
    let broker = faulty_broker(dir.path(), &fault);
    for topic in ["t", "other"] {
        broker
            .create_topic(topic, 1, Default::default(), false)
            .expect("topic");
    }
    let mut first = BatchBuilder::new(Compression::None, 1_000).with_producer(7, 0, 0);
    first.push(RecordSpec::value("v"));
    let first = Bytes::from(first.build().expect("batch"));
    assert_eq!(produce_error(&broker, &first).await, 0);
    let mut next = BatchBuilder::new(Compression::None, 1_000).with_producer(7, 0, 1);
    next.push(RecordSpec::value("w"));
    let next = Bytes::from(next.build().expect("batch"));
    // The disk fails the sync of t-0's segment: the acks=all produce is not acknowledged.
    fault.fail(IoOp::Sync, "/t-0/", libc::EIO, false);
    assert_eq!(produce_error(&broker, &next).await, STORAGE_ERROR);
    assert_eq!(E::KafkaStorageError.code(), STORAGE_ERROR);
    // The producer retries: without the offline flag this would be acknowledged as a
    // duplicate of bytes that never reached the disk. Even with the disk back.
    fault.clear();
    assert_eq!(produce_error(&broker, &next).await, STORAGE_ERROR);
    // Other partitions keep serving.
    assert_eq!(
        produce_to(&broker, "other", -1, &one_record("o")).await,
        (0, 0)
    );

    let mut p = FetchPartition::default();
    p.partition_max_bytes = 1 << 20;
    let mut t = FetchTopic::default();
    t.topic = name("t");
    t.partitions = vec![p];
    let mut req = FetchRequest::default();
    req.max_bytes = 1 << 20;
    req.topics = vec![t];
    let r = fetch::handle(&broker, ctx(ApiKey::Fetch, 11), req)
        .await
        .expect("fetch");
    let resp = FetchResponse::decode(&mut body(r), 11).expect("decode");
    assert_eq!(resp.responses[0].partitions[0].error_code, STORAGE_ERROR);

    let mut p = ListOffsetsPartition::default();
    p.timestamp = -1;
    let mut t = ListOffsetsTopic::default();
    t.name = name("t");
    t.partitions = vec![p];
    let mut req = ListOffsetsRequest::default();
    req.topics = vec![t];
    let r = list_offsets::handle(&broker, ctx(ApiKey::ListOffsets, 5), req).expect("list");
    let resp = ListOffsetsResponse::decode(&mut body(r), 5).expect("decode");
    assert_eq!(resp.topics[0].partitions[0].error_code, STORAGE_ERROR);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_produce_and_appends_resume_once_space_is_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fault = Arc::new(FaultIo::new());
    let broker = faulty_broker(dir.path(), &fault);
    broker
        .create_topic("t", 1, Default::default(), false)
        .expect("topic");
    assert_eq!(produce_to(&broker, "t", -1, &one_record("a")).await, (0, 0));
    fault.fail(IoOp::Write, "/t-0/", libc::ENOSPC, false);
    for acks in [1, -1] {
        let (code, _) = produce_to(&broker, "t", acks, &one_record("lost")).await;
        assert_eq!(code, STORAGE_ERROR, "acks={acks}");
    }
    // A short write that then fails must not leave a torn batch behind either.
    fault.clear();
    fault.short_writes("/t-0/");
    // The first (short) write goes through; the one finishing it hits the full disk.
    fault.fail_after(IoOp::Write, "/t-0/", libc::ENOSPC, 1);
    let fired = fault.fired();
    assert_eq!(
        produce_to(&broker, "t", -1, &one_record("torn")).await.0,
        STORAGE_ERROR
    );
    assert_eq!(
        fault.fired(),
        fired + 1,
        "the write after the short one failed"
    );
    fault.clear();
    // Space is back: the next offset follows the last acknowledged one, no gap, no torn
    // bytes in between.
    assert_eq!(produce_to(&broker, "t", -1, &one_record("b")).await, (0, 1));
    assert_eq!(stored_offsets(&broker, "t"), vec![0, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_loss_after_acks_all_produces_loses_none_of_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fault = Arc::new(FaultIo::new());
    let broker = faulty_broker(dir.path(), &fault);
    broker
        .create_topic("t", 1, Default::default(), false)
        .expect("topic");
    let mut acked = Vec::new();
    for i in 0..20 {
        // Durable by default: acks=all waits for the fsync; acks=1 does not.
        let (code, offset) = produce_to(&broker, "t", -1, &one_record(&format!("r{i}"))).await;
        assert_eq!(code, 0);
        acked.push(offset);
        produce_to(&broker, "t", 1, &one_record("page-cache")).await;
    }
    drop(broker);
    fault.power_loss(Torn::Pages(1)).expect("power loss");
    let broker = faulty_broker(dir.path(), &fault);
    let offsets = stored_offsets(&broker, "t");
    for offset in acked {
        assert!(
            offsets.contains(&offset),
            "acknowledged offset {offset} lost"
        );
    }

    // The control: with Kafka's page-cache acknowledgements the same produces are lost,
    // so the power loss above was real.
    let dir = tempfile::tempdir().expect("tempdir");
    let fault = Arc::new(FaultIo::new());
    let broker = faulty_broker_with(dir.path(), &fault, &[("fjord.fsync.on.ack", "false")]);
    broker
        .create_topic("t", 1, Default::default(), false)
        .expect("topic");
    for i in 0..5 {
        let (code, _) = produce_to(&broker, "t", -1, &one_record(&format!("r{i}"))).await;
        assert_eq!(code, 0);
    }
    drop(broker);
    fault.power_loss(Torn::Nothing).expect("power loss");
    let broker = faulty_broker_with(dir.path(), &fault, &[("fjord.fsync.on.ack", "false")]);
    let log_end = broker.topic("t").expect("t").partitions[0]
        .read()
        .log_end_offset();
    assert_eq!(
        log_end, 0,
        "unsynced acknowledgements do not survive a power loss"
    );
}
