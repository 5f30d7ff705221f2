//! Every `fjord.fetch.mode` (sendfile, copy, mmap, and auto, which picks mmap for these
//! loopback clients) serves the same bytes: records from 100 B to 300 KB, in regions
//! below and above the size where mmap falls back to copying, read back by librdkafka
//! with its CRC checks on and compared value by value.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_integration_tests::BrokerProcess;
use fjord_producer::{Producer, ProducerRecord};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// Record `i`'s value: its size varies, its bytes depend on `i`.
fn value(i: usize) -> Vec<u8> {
    let len = [100, 3_000, 70_000, 300_000][i % 4] + i;
    (0..len).map(|b| (b * 31 + i * 7) as u8).collect()
}

const RECORDS: usize = 60;

async fn produce(bootstrap: &str) {
    let producer = Producer::builder()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "2")
        .set("batch.size", "200000")
        .build()
        .expect("producer");
    let topic: Arc<str> = "modes".into();
    let mut deliveries = Vec::new();
    for i in 0..RECORDS {
        let mut r = ProducerRecord::new(Arc::clone(&topic), value(i));
        r.partition = Some(0);
        deliveries.push(producer.send(r).await.expect("send"));
    }
    for d in deliveries {
        d.await.expect("delivered");
    }
    producer.close().await;
}

/// Reads every record back with librdkafka; small fetches for some regions, large ones
/// for others, as `max_partition_fetch` allows.
fn consume(bootstrap: &str, max_partition_fetch: &str) -> Vec<Vec<u8>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "modes")
        .set("enable.auto.commit", "false")
        .set("check.crcs", "true")
        .set("fetch.wait.max.ms", "100")
        .set("max.partition.fetch.bytes", max_partition_fetch)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("modes", 0, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < RECORDS {
        assert!(Instant::now() < deadline, "only {} records", out.len());
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                assert_eq!(m.offset(), out.len() as i64);
                out.push(m.payload().unwrap_or_default().to_vec());
            }
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fetch_mode_serves_the_same_bytes() {
    let want: Vec<Vec<u8>> = (0..RECORDS).map(value).collect();
    for mode in ["sendfile", "copy", "mmap", "auto"] {
        let setting = format!("fjord.fetch.mode={mode}");
        let broker = BrokerProcess::start(&[setting.as_str()]);
        produce(&broker.bootstrap).await;
        for max in ["65536", "10485760"] {
            let b = broker.bootstrap.clone();
            let max = max.to_string();
            let got = tokio::task::spawn_blocking(move || consume(&b, &max))
                .await
                .expect("consumer thread");
            assert!(got == want, "{mode}: records differ");
        }
    }
}

#[test]
fn unknown_fetch_modes_are_refused_at_start() {
    let out = std::process::Command::new(fjord_integration_tests::fjord_bin())
        .args([
            "--set",
            "fjord.fetch.mode=splice",
            "--set",
            "listeners=PLAINTEXT://127.0.0.1:0",
        ])
        .output()
        .expect("fjord runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fjord.fetch.mode"), "{err}");
}
