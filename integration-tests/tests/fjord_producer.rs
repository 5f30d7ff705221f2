//! Fjord's own producer (`fjord-producer`) against the real broker, cross-checked with
//! librdkafka: every codec decodes in librdkafka, keys land where librdkafka puts them,
//! idempotent retries survive a broker restart exactly once, back-pressure bounds memory,
//! linger and batch size shape the batches on disk, bad records fail alone.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjord_integration_tests::reading::reader_from_start;
use fjord_integration_tests::BrokerProcess;
use fjord_producer::{ProduceError, Producer, ProducerRecord};
use fjord_protocol::record_batch::batches;
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};

fn producer(bootstrap: &str, settings: &[(&str, &str)]) -> Producer {
    let mut b = Producer::builder().set("bootstrap.servers", bootstrap);
    for (k, v) in settings {
        b = b.set(k, v);
    }
    b.build().expect("producer")
}

/// (key, value, headers, timestamp) of every record of `topic`/`partition` from offset 0.
type Got = (
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Vec<u8>)>,
    i64,
);

fn consume(bootstrap: &str, topic: &str, partition: i32, count: usize) -> Vec<Got> {
    let c = reader_from_start(bootstrap, topic, partition, false);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < count {
        assert!(Instant::now() < deadline, "{} of {count}", out.len());
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.expect("message");
            let headers = m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            out.push((
                m.key().map(<[u8]>::to_vec),
                m.payload().map(<[u8]>::to_vec),
                headers,
                m.timestamp().to_millis().unwrap_or(-1),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_round_trips_through_librdkafka() {
    let broker = BrokerProcess::start(&[]);
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        let p = producer(&broker.bootstrap, &[("compression.type", codec)]);
        let mut deliveries = Vec::new();
        for i in 0..300i64 {
            let mut r = ProducerRecord::new(topic.clone(), format!("value-{i}"))
                .partition(0)
                .timestamp(1_700_000_000_000 + i)
                .header("n", i.to_string());
            if i % 3 != 0 {
                r = r.key(format!("key-{i}"));
            }
            if i == 7 {
                r.value = None; // a tombstone
            }
            deliveries.push(p.send(r).await.expect("queued"));
        }
        for (i, d) in deliveries.into_iter().enumerate() {
            let md = d.await.expect("delivered");
            assert_eq!((md.partition, md.offset), (0, i as i64), "{codec}");
            assert_eq!(md.timestamp, 1_700_000_000_000 + i as i64);
        }
        p.close().await;
        let got = consume(&broker.bootstrap, &topic, 0, 300);
        for (i, (key, value, headers, ts)) in got.into_iter().enumerate() {
            let expected_key = (i % 3 != 0).then(|| format!("key-{i}").into_bytes());
            let expected_value = (i != 7).then(|| format!("value-{i}").into_bytes());
            assert_eq!(key, expected_key, "{codec} record {i}");
            assert_eq!(value, expected_value, "{codec} record {i}");
            assert_eq!(headers, vec![("n".to_string(), i.to_string().into_bytes())]);
            assert_eq!(ts, 1_700_000_000_000 + i as i64);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_land_where_librdkafka_puts_them() {
    let broker = BrokerProcess::start(&["num.partitions=7"]);
    let ours = producer(&broker.bootstrap, &[]);
    let theirs: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("partitioner", "murmur2_random")
        .create()
        .expect("rdkafka producer");
    for i in 0..200 {
        let key = format!("customer-{i}-{}", "x".repeat(i % 13));
        let mine = ours
            .send(ProducerRecord::new("keys", "v").key(key.clone()))
            .await
            .expect("queued")
            .await
            .expect("delivered");
        let their_partition = theirs
            .send(
                FutureRecord::to("keys").key(&key).payload("v"),
                Duration::from_secs(10),
            )
            .await
            .expect("rdkafka delivered")
            .partition;
        assert_eq!(mine.partition, their_partition, "key {key}");
    }
    ours.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_across_a_broker_restart_deliver_exactly_once() {
    let mut broker = BrokerProcess::start(&["num.partitions=2"]);
    let port = broker.port();
    let keep = broker.take_data_dir().expect("data dir");
    let bootstrap = broker.bootstrap.clone();
    let p = producer(
        &bootstrap,
        &[
            ("linger.ms", "2"),
            ("batch.size", "4096"),
            ("retry.backoff.ms", "50"),
        ],
    );
    const N: usize = 20_000;
    let mut deliveries = Vec::with_capacity(N);
    for i in 0..N {
        let r = ProducerRecord::new("restart", format!("{i:08}")).partition((i % 2) as i32);
        deliveries.push(p.send(r).await.expect("queued"));
        if i == N / 2 {
            // Mid-stream: the broker dies with requests in flight and comes back.
            broker.kill();
            tokio::time::sleep(Duration::from_millis(300)).await;
            broker = BrokerProcess::start_in(keep.path(), port, &["num.partitions=2"]);
        }
    }
    let mut offsets = BTreeMap::new();
    for d in deliveries {
        let md = d.await.expect("delivered despite the restart");
        assert!(
            offsets.insert((md.partition, md.offset), ()).is_none(),
            "two records reported at {md:?}"
        );
    }
    p.close().await;
    for partition in 0..2 {
        let got = consume(&broker.bootstrap, "restart", partition, N / 2);
        let values: Vec<String> = got
            .into_iter()
            .map(|(_, v, _, _)| String::from_utf8(v.expect("value")).expect("utf-8"))
            .collect();
        let expected: Vec<String> = (0..N)
            .filter(|i| i % 2 == partition as usize)
            .map(|i| format!("{i:08}"))
            .collect();
        assert_eq!(
            values, expected,
            "partition {partition}: in order, once each"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_pressure_bounds_buffered_memory() {
    let broker = BrokerProcess::start(&[]);
    let limit = 256 * 1024;
    let p = producer(
        &broker.bootstrap,
        &[
            ("buffer.memory", &limit.to_string()),
            ("batch.size", "16384"),
            ("linger.ms", "50"),
        ],
    );
    let value = Bytes::from(vec![b'x'; 1000]);
    let mut deliveries = Vec::new();
    let mut peak = 0;
    for _ in 0..3000 {
        let d = p
            .send(ProducerRecord::new("pressure", value.clone()).partition(0))
            .await
            .expect("queued");
        peak = peak.max(p.buffered_bytes());
        deliveries.push(d);
    }
    assert!(
        peak <= limit,
        "buffered {peak} bytes with buffer.memory={limit}"
    );
    assert!(
        peak > limit / 2,
        "the buffer never filled ({peak}): nothing was tested"
    );
    for d in deliveries {
        d.await.expect("delivered");
    }
    // With the broker gone, a full buffer makes send fail after max.block.ms.
    drop(broker);
    let p = producer(
        "127.0.0.1:1",
        &[
            ("buffer.memory", "65536"),
            ("batch.size", "16384"),
            ("max.block.ms", "300"),
        ],
    );
    let err = p
        .send(ProducerRecord::new("pressure", value.clone()))
        .await
        .expect_err("no metadata, no broker");
    assert!(
        matches!(err, ProduceError::UnknownTopic(_) | ProduceError::Client(_)),
        "{err:?}"
    );
}

/// (records, bytes) of each batch in the broker's log of `topic`/0.
fn batches_on_disk(data: &std::path::Path, topic: &str) -> Vec<(i32, usize)> {
    let log = std::fs::read(
        data.join(format!("{topic}-0"))
            .join("00000000000000000000.log"),
    )
    .expect("segment");
    batches(&log)
        .map(|b| {
            let (h, bytes) = b.expect("valid batch");
            (h.records_count, bytes.len())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linger_and_batch_size_shape_the_batches() {
    let broker = BrokerProcess::start(&[]);
    // linger.ms holds a small batch back that long, then sends it as one.
    let p = producer(
        &broker.bootstrap,
        &[("linger.ms", "300"), ("batch.size", "100000")],
    );
    let start = Instant::now();
    let mut deliveries = Vec::new();
    for i in 0..5 {
        deliveries.push(
            p.send(ProducerRecord::new("linger", format!("v{i}")).partition(0))
                .await
                .expect("queued"),
        );
    }
    for d in deliveries {
        d.await.expect("delivered");
    }
    assert!(
        start.elapsed() >= Duration::from_millis(280),
        "{:?}",
        start.elapsed()
    );
    let lingered = batches_on_disk(&broker.data, "linger");
    assert_eq!(lingered.len(), 1, "{lingered:?}");
    assert_eq!(lingered[0].0, 5);
    p.close().await;

    // batch.size closes batches: none larger than it (but for one oversized record).
    let p = producer(
        &broker.bootstrap,
        &[("linger.ms", "1000"), ("batch.size", "2000")],
    );
    let mut deliveries = Vec::new();
    for i in 0..100 {
        deliveries.push(
            p.send(ProducerRecord::new("sized", format!("{i:0>100}")).partition(0))
                .await
                .expect("queued"),
        );
    }
    let start = Instant::now();
    // The first half are in full batches (about 17 records of 110 bytes fill 2000).
    for d in deliveries.drain(..50) {
        d.await.expect("delivered");
    }
    assert!(
        start.elapsed() < Duration::from_millis(900),
        "full batches waited for linger.ms"
    );
    p.flush().await;
    let on_disk = batches_on_disk(&broker.data, "sized");
    assert_eq!(on_disk.iter().map(|(n, _)| n).sum::<i32>(), 100);
    assert!(on_disk.len() >= 6, "{on_disk:?}");
    assert!(
        on_disk.iter().all(|(_, bytes)| *bytes <= 2000),
        "{on_disk:?}"
    );
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_fail_alone_and_the_producer_stays_usable() {
    let broker =
        BrokerProcess::start(&["auto.create.topics.enable=false", "message.max.bytes=10000"]);
    let p = producer(
        &broker.bootstrap,
        &[("max.request.size", "100000"), ("max.block.ms", "500")],
    );
    let huge = Bytes::from(vec![b'x'; 200_000]);
    let err = p
        .send(ProducerRecord::new("missing", huge.clone()))
        .await
        .expect_err("unknown topic");
    assert!(matches!(err, ProduceError::UnknownTopic(_)), "{err:?}");
    assert!(err.is_retriable());

    let admin_topic = {
        let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
            ClientConfig::new()
                .set("bootstrap.servers", &broker.bootstrap)
                .create()
                .expect("admin");
        let t = rdkafka::admin::NewTopic::new("bad", 1, rdkafka::admin::TopicReplication::Fixed(1));
        admin
            .create_topics(&[t], &rdkafka::admin::AdminOptions::new())
            .await
            .expect("create");
        "bad"
    };
    let err = p
        .send(ProducerRecord::new(admin_topic, huge))
        .await
        .expect_err("over max.request.size");
    assert!(
        matches!(err, ProduceError::RecordTooLarge { .. }),
        "{err:?}"
    );
    assert!(!err.is_retriable());
    // Within max.request.size but over the broker's message.max.bytes: a broker error.
    let big = p
        .send(ProducerRecord::new(admin_topic, vec![b'y'; 50_000]))
        .await
        .expect("queued");
    let err = big.await.expect_err("broker refuses it");
    assert!(
        matches!(err, ProduceError::Broker { code: 10, .. }),
        "{err:?}"
    );
    // And the next record goes through.
    let ok = p
        .send(ProducerRecord::new(admin_topic, "small"))
        .await
        .expect("queued")
        .await
        .expect("delivered");
    assert_eq!(&*ok.topic, "bad");
    p.close().await;
}
