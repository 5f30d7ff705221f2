//! librdkafka (through the rdkafka crate) produces to and consumes from the real broker.

use std::time::Duration;

use fjord_integration_tests::{create_topic, BrokerProcess};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

type Got = (
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    i64,
    Vec<(String, Vec<u8>)>,
);

fn producer(bootstrap: &str, codec: &str, acks: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("compression.type", codec)
        .set("acks", acks)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer")
}

fn consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "fjord-test")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer")
}

/// Reads `count` messages of `topic`/0 from `from`, with a deadline.
fn consume(bootstrap: &str, topic: &str, from: i64, count: usize) -> Vec<Got> {
    let c = consumer(bootstrap);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(from))
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while out.len() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {count} messages arrived",
            out.len()
        );
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| (x.key.to_string(), x.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((
                    m.offset(),
                    m.key().map(<[u8]>::to_vec),
                    m.payload().map(<[u8]>::to_vec),
                    m.timestamp().to_millis().unwrap_or(-1),
                    headers,
                ));
            }
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_round_trips_keys_values_headers_and_timestamps() {
    let broker = BrokerProcess::start(&[]);
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        create_topic(&broker.bootstrap, &topic, 1).await;
        let p = producer(&broker.bootstrap, codec, "all");
        let mut deliveries = Vec::new();
        for i in 0..200i64 {
            let key = format!("key-{i}");
            let value = format!("value-{i}-{}", "x".repeat((i % 50) as usize));
            let headers = OwnedHeaders::new().insert(Header {
                key: "h",
                value: Some(&i.to_be_bytes()[..]),
            });
            let record = FutureRecord::to(&topic)
                .partition(0)
                .key(&key)
                .payload(&value)
                .timestamp(1_700_000_000_000 + i)
                .headers(headers);
            deliveries.push(p.send_result(record).expect("queue"));
        }
        for (i, d) in deliveries.into_iter().enumerate() {
            let delivery = d.await.expect("delivered").expect("acked");
            let (partition, offset) = (delivery.partition, delivery.offset);
            assert_eq!((partition, offset), (0, i as i64), "{codec}");
        }
        let got = consume(&broker.bootstrap, &topic, 0, 200);
        for (i, (offset, key, value, ts, headers)) in got.iter().enumerate() {
            assert_eq!(*offset, i as i64);
            assert_eq!(key.as_deref(), Some(format!("key-{i}").as_bytes()));
            assert_eq!(
                value.as_deref(),
                Some(format!("value-{i}-{}", "x".repeat(i % 50)).as_bytes())
            );
            assert_eq!(*ts, 1_700_000_000_000 + i as i64);
            assert_eq!(
                headers,
                &vec![("h".to_string(), (i as i64).to_be_bytes().to_vec())]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_keys_and_values_and_auto_created_topics() {
    let broker = BrokerProcess::start(&[]);
    let p = producer(&broker.bootstrap, "none", "1");
    let d1 = p
        .send_result(FutureRecord::<str, str>::to("auto").partition(0))
        .expect("queue");
    let d2 = p
        .send_result(FutureRecord::<str, str>::to("auto").partition(0).key("k"))
        .expect("queue");
    assert_eq!(d1.await.expect("delivered").expect("acked").offset, 0);
    assert_eq!(d2.await.expect("delivered").expect("acked").offset, 1);
    let got = consume(&broker.bootstrap, "auto", 0, 2);
    assert_eq!((got[0].1.clone(), got[0].2.clone()), (None, None));
    assert_eq!(
        (got[1].1.clone(), got[1].2.clone()),
        (Some(b"k".to_vec()), None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_and_long_poll() {
    let broker = BrokerProcess::start(&[]);
    create_topic(&broker.bootstrap, "offsets", 1).await;
    let p = producer(&broker.bootstrap, "lz4", "1");
    for i in 0..10i64 {
        let r = FutureRecord::<str, str>::to("offsets")
            .partition(0)
            .payload("v")
            .timestamp(1_000_000 + i * 1000);
        p.send_result(r)
            .expect("queue")
            .await
            .expect("delivered")
            .expect("acked");
    }
    let bootstrap = broker.bootstrap.clone();
    let (low, high, at) = tokio::task::spawn_blocking(move || {
        let c = consumer(&bootstrap);
        let marks = c
            .fetch_watermarks("offsets", 0, Duration::from_secs(5))
            .expect("watermarks");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("offsets", 0, Offset::Offset(1_004_500))
            .expect("tpl");
        let found = c
            .offsets_for_times(tpl, Duration::from_secs(5))
            .expect("offsets for times");
        (
            marks.0,
            marks.1,
            found
                .find_partition("offsets", 0)
                .expect("partition")
                .offset(),
        )
    })
    .await
    .expect("lookup task");
    assert_eq!((low, high), (0, 10));
    assert_eq!(at, Offset::Offset(5));

    // A consumer waiting at the end gets a record produced later.
    let waiter = tokio::task::spawn_blocking({
        let bootstrap = broker.bootstrap.clone();
        move || consume(&bootstrap, "offsets", 10, 1)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let late = FutureRecord::<str, str>::to("offsets")
        .partition(0)
        .payload("late");
    p.send_result(late)
        .expect("queue")
        .await
        .expect("delivered")
        .expect("acked");
    let got = waiter.await.expect("consumer");
    assert_eq!((got[0].0, got[0].2.as_deref()), (10, Some(&b"late"[..])));
    p.flush(Duration::from_secs(5)).expect("flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill_dash_nine() {
    let mut broker = BrokerProcess::start(&[]);
    let keep = broker.take_data_dir().expect("data dir");
    let port = broker.port();
    create_topic(&broker.bootstrap, "durable", 1).await;
    let p = producer(&broker.bootstrap, "snappy", "all");
    let mut acked = Vec::new();
    for i in 0..300 {
        let value = format!("record-{i}");
        let r = FutureRecord::<str, str>::to("durable")
            .partition(0)
            .payload(&value);
        acked.push((
            p.send_result(r)
                .expect("queue")
                .await
                .expect("delivered")
                .expect("acked")
                .offset,
            value,
        ));
    }
    drop(p);
    broker.kill();
    let broker = BrokerProcess::start_in(keep.path(), port, &[]);
    let bootstrap = broker.bootstrap.clone();
    let count = acked.len();
    let got = tokio::task::spawn_blocking(move || consume(&bootstrap, "durable", 0, count))
        .await
        .expect("consume");
    for ((offset, value), (got_offset, _, got_value, _, _)) in acked.iter().zip(&got) {
        assert_eq!(offset, got_offset);
        assert_eq!(Some(value.as_bytes()), got_value.as_deref());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_and_values_at_the_size_limit() {
    // message.max.bytes counts the whole batch; leave room for its headers.
    let broker = BrokerProcess::start(&["message.max.bytes=200000"]);
    create_topic(&broker.bootstrap, "limits", 1).await;
    let fire_and_forget = producer(&broker.bootstrap, "none", "0");
    for i in 0..100 {
        let v = format!("a0-{i}");
        fire_and_forget
            .send_result(
                FutureRecord::<str, str>::to("limits")
                    .partition(0)
                    .payload(&v),
            )
            .expect("queue");
    }
    fire_and_forget
        .flush(Duration::from_secs(10))
        .expect("flush");
    let near = "n".repeat(199_000);
    let p = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("message.max.bytes", "1000000")
        .set("batch.size", "1000000")
        .set("message.timeout.ms", "5000")
        .create::<FutureProducer>()
        .expect("producer");
    let d = p
        .send_result(
            FutureRecord::<str, str>::to("limits")
                .partition(0)
                .payload(&near),
        )
        .expect("queue");
    assert_eq!(
        d.await
            .expect("delivered")
            .expect("near the limit is accepted")
            .offset,
        100
    );
    let over = "o".repeat(201_000);
    let d = p
        .send_result(
            FutureRecord::<str, str>::to("limits")
                .partition(0)
                .payload(&over),
        )
        .expect("queue");
    let err = d
        .await
        .expect("delivered")
        .expect_err("over the limit is refused");
    assert_eq!(
        err.0.rdkafka_error_code(),
        Some(rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge)
    );
    let bootstrap = broker.bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || consume(&bootstrap, "limits", 0, 101))
        .await
        .expect("consume");
    assert_eq!(got[0].2.as_deref(), Some(&b"a0-0"[..]));
    assert_eq!(got[100].2.as_ref().map(Vec::len), Some(199_000));
}
