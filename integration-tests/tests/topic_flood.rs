//! One client floods the broker with Produce requests naming 100,000 distinct new
//! topics, then with Metadata requests asking to auto-create thousands more
//! (auto-creation on, the default), while another produces steadily to a topic that
//! exists. The flood must not stall anyone: the steady producer keeps >= 99% of its
//! deliveries; Produce never creates a topic and answers unknown ones at once; Metadata
//! queues at most its share and waits at most a second; creation keeps to the
//! controller mutation quota; and Metadata answers right after.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_client_common::connection::ConnectionOptions;
use fjord_client_common::Connection;
use fjord_integration_tests::{create_topic, BrokerProcess};
use fjord_protocol::compression::Compression;
use fjord_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use fjord_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use fjord_protocol::kafka_protocol::messages::{MetadataRequest, ProduceRequest, TopicName};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::record_batch::{BatchBuilder, RecordSpec};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

const PRODUCE_VERSION: i16 = 7;
const REQUESTS: usize = 100;
const NAMES_PER_REQUEST: usize = 1000;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const METADATA_VERSION: i16 = 8;
const METADATA_REQUESTS: usize = 5;
/// The broker's controller mutation quota in this test, partitions a second.
const RATE: f64 = 50.0;

/// A Metadata request asking for `names`, auto-creation allowed.
fn metadata_request(names: &[String]) -> MetadataRequest {
    let mut req = MetadataRequest::default();
    req.allow_auto_topic_creation = true;
    req.topics = Some(
        names
            .iter()
            .map(|n| {
                let mut t = MetadataRequestTopic::default();
                t.name = Some(TopicName(StrBytes::from_string(n.clone())));
                t
            })
            .collect(),
    );
    req
}

/// A Produce request naming `names`, one small batch each.
fn flood_request(names: &[String], records: &bytes::Bytes) -> ProduceRequest {
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
    req
}

/// What the flood saw.
#[derive(Debug)]
struct Flooded {
    /// Topics answered UNKNOWN_TOPIC_OR_PARTITION by Produce.
    unknown: usize,
    /// The slowest Produce answer.
    slowest_produce: Duration,
    /// The slowest Metadata answer.
    slowest_metadata: Duration,
}

/// Sends the flood on one connection (Fjord's client connection), each request
/// answered before the next.
async fn flood(bootstrap: &str) -> Flooded {
    let conn = Connection::connect(bootstrap, ConnectionOptions::default())
        .await
        .expect("connect");
    let mut batch = BatchBuilder::new(Compression::None, 1_000);
    batch.push(RecordSpec::value("flood"));
    let records = bytes::Bytes::from(batch.build().expect("batch"));
    let (mut unknown, mut slowest) = (0, Duration::ZERO);
    for r in 0..REQUESTS {
        let names: Vec<String> = (0..NAMES_PER_REQUEST)
            .map(|i| format!("flood-{}-{r}-{i}", std::process::id()))
            .collect();
        let started = Instant::now();
        let resp = conn
            .request(&flood_request(&names, &records), PRODUCE_VERSION)
            .await
            .expect("produce answered");
        slowest = slowest.max(started.elapsed());
        unknown += resp
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .filter(|p| p.error_code == UNKNOWN_TOPIC_OR_PARTITION)
            .count();
    }
    let mut slowest_metadata = Duration::ZERO;
    for r in 0..METADATA_REQUESTS {
        let names: Vec<String> = (0..NAMES_PER_REQUEST)
            .map(|i| format!("auto-{}-{r}-{i}", std::process::id()))
            .collect();
        let started = Instant::now();
        conn.request(&metadata_request(&names), METADATA_VERSION)
            .await
            .expect("metadata answered");
        slowest_metadata = slowest_metadata.max(started.elapsed());
    }
    Flooded {
        unknown,
        slowest_produce: slowest,
        slowest_metadata,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_new_topic_names_stalls_no_other_client() {
    let b = BrokerProcess::start(&["fjord.controller.mutation.rate=50"]);
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
    let flooded = flood(&bootstrap).await;
    let flood_time = started.elapsed();
    eprintln!("flood in {flood_time:?}: {flooded:?}");
    // Every name was new: all answered unknown by Produce, at once (a liveness bound:
    // the stall this guards against lasted minutes).
    assert_eq!(flooded.unknown, REQUESTS * NAMES_PER_REQUEST);
    assert!(
        flooded.slowest_produce < Duration::from_secs(5),
        "{flooded:?}"
    );
    // Metadata waits at most a second for what it queued, then answers.
    assert!(
        flooded.slowest_metadata < Duration::from_secs(5),
        "{flooded:?}"
    );

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
    // Produce created nothing; Metadata queued at most 100 names a request, and they
    // were created no faster than the quota: one second banked plus RATE a second.
    let created = topics.saturating_sub(1); // "steady"
    let bound = RATE * (started.elapsed().as_secs_f64() + 1.0) + 1.0;
    assert!(created >= 1, "auto-creation works under the flood");
    assert!(
        (created as f64) <= bound && created <= METADATA_REQUESTS * 100,
        "{created} topics created in {:?} (quota bound {bound:.0})",
        started.elapsed()
    );
}
