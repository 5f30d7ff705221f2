//! One client floods the broker with Produce requests naming 100,000 distinct new
//! topics (auto-creation on, the default) while another produces steadily to a topic
//! that exists. The flood must not stall anyone: the steady producer keeps >= 99% of
//! its deliveries, the flood's requests are answered at once (unknown topics are
//! queued, never created on the request path), creation stays within the controller
//! mutation quota, and Metadata answers right after.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use fjord_integration_tests::{create_topic, BrokerProcess};
use fjord_protocol::compression::Compression;
use fjord_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use fjord_protocol::kafka_protocol::messages::produce_response::ProduceResponse;
use fjord_protocol::kafka_protocol::messages::{ProduceRequest, RequestHeader, TopicName};
use fjord_protocol::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use fjord_protocol::record_batch::{BatchBuilder, RecordSpec};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

const PRODUCE_VERSION: i16 = 7;
const REQUESTS: usize = 100;
const NAMES_PER_REQUEST: usize = 1000;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// A Produce v7 frame naming `names`, one small batch each.
fn flood_request(correlation: i32, names: &[String], records: &bytes::Bytes) -> Vec<u8> {
    let mut req = ProduceRequest::default();
    req.acks = 1;
    req.timeout_ms = 5000;
    req.topic_data = names
        .iter()
        .map(|n| {
            let mut p = PartitionProduceData::default();
            p.records = Some(records.clone());
            let mut t = TopicProduceData::default();
            t.name = TopicName(StrBytes::from_string(n.clone()));
            t.partition_data = vec![p];
            t
        })
        .collect();
    let mut header = RequestHeader::default();
    header.request_api_key = 0;
    header.request_api_version = PRODUCE_VERSION;
    header.correlation_id = correlation;
    let mut body = BytesMut::new();
    header.encode(&mut body, 1).expect("header");
    req.encode(&mut body, PRODUCE_VERSION).expect("request");
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    frame.to_vec()
}

/// Sends the flood on one connection, each request answered before the next; returns
/// how many topics were answered UNKNOWN_TOPIC_OR_PARTITION and the slowest answer.
fn flood(bootstrap: &str) -> (usize, Duration) {
    let mut s = TcpStream::connect(bootstrap).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut batch = BatchBuilder::new(Compression::None, 1_000);
    batch.push(RecordSpec::value("flood"));
    let records = bytes::Bytes::from(batch.build().expect("batch"));
    let (mut unknown, mut slowest) = (0, Duration::ZERO);
    for r in 0..REQUESTS {
        let names: Vec<String> = (0..NAMES_PER_REQUEST)
            .map(|i| format!("flood-{}-{r}-{i}", std::process::id()))
            .collect();
        let started = Instant::now();
        s.write_all(&flood_request(r as i32, &names, &records))
            .expect("send");
        let mut size = [0u8; 4];
        s.read_exact(&mut size).expect("answered");
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        s.read_exact(&mut body).expect("body");
        slowest = slowest.max(started.elapsed());
        let mut buf = bytes::Bytes::from(body.split_off(4));
        let resp = ProduceResponse::decode(&mut buf, PRODUCE_VERSION).expect("decode");
        unknown += resp
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .filter(|p| p.error_code == UNKNOWN_TOPIC_OR_PARTITION)
            .count();
    }
    (unknown, slowest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_new_topic_names_stalls_no_other_client() {
    let b = BrokerProcess::start(&[]);
    create_topic(&b.bootstrap, "steady", 1).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &b.bootstrap)
        .set("message.timeout.ms", "10000")
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, delivered) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let steady = {
        let (stop, sent, delivered) = (stop.clone(), sent.clone(), delivered.clone());
        tokio::spawn(async move {
            let mut pending = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let p = producer.clone();
                let delivered = delivered.clone();
                sent.fetch_add(1, Ordering::Relaxed);
                pending.push(tokio::spawn(async move {
                    let record = FutureRecord::<(), str>::to("steady").payload("steady");
                    if p.send(record, Duration::from_secs(10)).await.is_ok() {
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                }));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            for p in pending {
                let _ = p.await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bootstrap = b.bootstrap.clone();
    let started = Instant::now();
    let (unknown, slowest) = tokio::task::spawn_blocking(move || flood(&bootstrap))
        .await
        .expect("flood");
    let flood_time = started.elapsed();
    // Every name was new: all are answered unknown (queued or refused), none waited for.
    assert_eq!(unknown, REQUESTS * NAMES_PER_REQUEST);
    eprintln!("flood: {REQUESTS} requests in {flood_time:?}, slowest answer {slowest:?}");

    // Right after the flood, Metadata answers.
    let bootstrap = b.bootstrap.clone();
    let topics = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .expect("consumer");
        let md = consumer
            .fetch_metadata(None, Duration::from_secs(5))
            .expect("metadata answered right after the flood");
        md.topics().len()
    })
    .await
    .expect("metadata");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    steady.await.expect("steady producer");
    let (sent, delivered) = (
        sent.load(Ordering::Relaxed),
        delivered.load(Ordering::Relaxed),
    );
    eprintln!("steady producer: {delivered} of {sent} delivered; {topics} topics after the flood");
    assert!(sent >= 100, "the steady producer ran ({sent} sent)");
    assert!(
        delivered * 100 >= sent * 99,
        "the steady producer lost more than 1%: {delivered} of {sent}"
    );
    // Creation stayed within the quota (1000 partitions a second, one second banked)
    // and each request's share (100): far from the 100,000 names sent.
    let bound = 1000.0 * (flood_time.as_secs_f64() + 2.5) + 1000.0;
    assert!(
        (topics as f64) <= bound.min((REQUESTS * 100 + 1) as f64),
        "{topics} topics created in {flood_time:?}"
    );
}
