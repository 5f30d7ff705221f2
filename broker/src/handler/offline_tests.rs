//! A partition taken offline by a failed fsync answers KAFKA_STORAGE_ERROR to produce,
//! fetch and list-offsets, so a producer's retry is never acknowledged as a duplicate of
//! bytes that may not be on disk.

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

const STORAGE_ERROR: i16 = 56;

fn name(n: &str) -> TopicName {
    TopicName(StrBytes::from_string(n.to_string()))
}

fn produce_request(records: &Bytes) -> ProduceRequest {
    let mut p = PartitionProduceData::default();
    p.records = Some(records.clone());
    let mut t = TopicProduceData::default();
    t.name = name("t");
    t.partition_data = vec![p];
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 1000;
    req.topic_data = vec![t];
    req
}

async fn produce_error(broker: &Arc<Broker>, records: &Bytes) -> i16 {
    let r = produce::handle(broker, ctx(ApiKey::Produce, 8), produce_request(records))
        .await
        .expect("produce");
    let resp = ProduceResponse::decode(&mut body(r), 8).expect("decode");
    resp.responses[0].partition_responses[0].error_code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_partition_answers_storage_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sets = vec![("log.dirs".to_string(), dir.path().display().to_string())];
    let broker = Arc::new(
        Broker::open(BrokerConfig::from_sources(None, &sets).expect("config")).expect("broker"),
    );
    broker
        .create_topic("t", 1, Default::default(), false)
        .expect("topic");
    let mut batch = BatchBuilder::new(Compression::None, 1_000).with_producer(7, 0, 0);
    batch.push(RecordSpec::value("v"));
    let records = Bytes::from(batch.build().expect("batch"));
    assert_eq!(produce_error(&broker, &records).await, 0);
    // Without the offline flag this retry would be acknowledged as a duplicate.
    broker.topic("t").expect("t").partitions[0].mark_offline(&"injected");
    assert_eq!(produce_error(&broker, &records).await, STORAGE_ERROR);
    assert_eq!(E::KafkaStorageError.code(), STORAGE_ERROR);

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
