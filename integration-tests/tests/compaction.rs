//! Compacted topics end to end: created with `cleanup.policy=compact` through
//! librdkafka's admin API, written by librdkafka, cleaned by the broker's log cleaner in
//! the background, and read back by librdkafka and by Fjord's consumer stepping over
//! the gaps: below the active segment only the latest value of each key is left, at
//! its original offset. A record without a key is refused with INVALID_RECORD, as
//! Kafka does.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fjord_integration_tests::metrics::{free_metrics_listener, http_get, sample};
use fjord_integration_tests::reading::read_partition;
use fjord_integration_tests::topics::{create_topic, describe_topic};
use fjord_integration_tests::BrokerProcess;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

// Two cleaner threads here; the other compaction tests run the default one.
const SETS: &[&str] = &["log.cleaner.backoff.ms=100", "log.cleaner.threads=2"];

/// The broker's `/metrics` text.
fn scrape(addr: &str) -> String {
    http_get(addr, "/metrics").1
}

/// A compacted topic in small segments, cleaned as soon as anything is dirty.
async fn create(bootstrap: &str, name: &str) {
    let configs = [
        ("cleanup.policy", "compact"),
        ("segment.bytes", "2048"),
        ("min.cleanable.dirty.ratio", "0.01"),
        ("delete.retention.ms", "86400000"),
    ];
    create_topic(bootstrap, name, &configs).await;
}

/// Every record of partition 0 as (offset, key, value), read by librdkafka.
fn read_all(bootstrap: &str, topic: &str) -> Vec<(i64, String, Option<String>)> {
    read_partition(bootstrap, topic, 0)
        .into_iter()
        .map(|(offset, key, value)| {
            let key = String::from_utf8_lossy(&key.expect("keyed")).into_owned();
            let value = value.map(|v| String::from_utf8_lossy(&v).into_owned());
            (offset, key, value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cleaner_keeps_the_latest_value_per_key_and_clients_read_across_the_gaps() {
    let (metrics, metrics_addr) = free_metrics_listener();
    let mut sets = SETS.to_vec();
    sets.push(&metrics);
    let broker = BrokerProcess::start(&sets);
    let b = broker.bootstrap.clone();
    create(&b, "table").await;
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    let mut latest: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for round in 0..20 {
        for k in 0..10 {
            let (key, value) = (format!("k{k}"), format!("v{round}-{k}-{}", "x".repeat(40)));
            let offset = p
                .send(
                    FutureRecord::to("table").key(&key).payload(&value),
                    Duration::from_secs(10),
                )
                .await
                .expect("acked")
                .offset;
            latest.insert(key, (offset, value));
        }
    }
    // The cleaner runs in the background: wait until everything below the last rounds
    // is down to one record per key.
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        let got = read_all(&b, "table");
        if got.len() < 60 {
            break got;
        }
        assert!(
            Instant::now() < deadline,
            "not cleaned: {} records",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // Whatever is left was written with its key (values name their key).
    for (offset, key, value) in &got {
        let k = &key[1..];
        assert!(
            value
                .as_deref()
                .is_some_and(|v| v.split('-').nth(1) == Some(k)),
            "{offset}: {key} {value:?}"
        );
    }
    for (key, (offset, value)) in &latest {
        assert!(
            got.iter()
                .any(|(o, k, v)| o == offset && k == key && v.as_deref() == Some(value.as_str())),
            "{key}'s latest value at {offset} is kept"
        );
    }
    // The cleaner's work shows in /metrics.
    let text = scrape(&metrics_addr);
    assert!(
        sample(&text, "fjord_cleaner_passes_total").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(sample(&text, "fjord_cleaner_bytes_read_total").is_some_and(|n| n > 0.0));
    assert!(sample(&text, "fjord_cleaner_bytes_written_total").is_some_and(|n| n > 0.0));
    assert_eq!(
        sample(&text, "fjord_cleaner_uncleanable_partitions"),
        Some(0.0)
    );
    let series = "fjord_cleaner_dirty_ratio{topic=\"table\",partition=\"0\"}";
    assert!(
        sample(&text, series).is_some_and(|r| (0.0..=1.0).contains(&r)),
        "{text}"
    );
    assert!(
        text.contains("fjord_cleaner_last_clean_timestamp_seconds{topic=\"table\""),
        "{text}"
    );
    // And in `fjord topics describe`, read from the metrics endpoint the broker names.
    let out = describe_topic(&b, "table");
    let row = out
        .lines()
        .find(|l| l.contains("Partition: 0"))
        .unwrap_or_else(|| panic!("no partition row in {out}"));
    let ratio: f64 = row
        .split("DirtyRatio: ")
        .nth(1)
        .and_then(|r| r.split('\t').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no dirty ratio in {row}"));
    assert!((0.0..=1.0).contains(&ratio), "{row}");
    let cleaned = row.split("LastCleaned: ").nth(1).unwrap_or_default();
    assert!(
        cleaned.starts_with("20") && cleaned.trim_end().ends_with('Z'),
        "{row}"
    );
    // Fjord's consumer reads the same records across the gaps.
    let mut c = fjord_consumer::Consumer::builder()
        .set("bootstrap.servers", &b)
        .set("auto.offset.reset", "earliest")
        .build()
        .expect("consumer");
    c.assign(&[fjord_consumer::TopicPartition::new("table", 0)])
        .await
        .expect("assign");
    let mut mine = Vec::new();
    while mine.len() < got.len() {
        let r = tokio::time::timeout(Duration::from_secs(10), c.recv())
            .await
            .expect("in time")
            .expect("record");
        mine.push(r.offset);
    }
    let theirs: Vec<i64> = got.iter().map(|(o, _, _)| *o).collect();
    assert_eq!(mine, theirs);
    // A swapped-in segment's indexes are built on first read: expected, not damage.
    let warned = broker.log_lines_with("rebuilding indexes");
    assert!(warned.is_empty(), "{warned:?}");

    // A record without a key cannot go to a compacted topic.
    let refused = p
        .send(
            FutureRecord::<(), _>::to("table").payload("no key"),
            Duration::from_secs(10),
        )
        .await;
    let err = refused.expect_err("refused").0;
    assert!(format!("{err:?}").contains("InvalidRecord"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_says_when_the_cleaner_figures_are_unknown() {
    // No metrics.listener: the broker has nowhere to show its cleaner's figures.
    let broker = BrokerProcess::start(SETS);
    let b = broker.bootstrap.clone();
    create(&b, "quiet").await;
    let describe = |topic: &str| describe_topic(&b, topic);
    let out = describe("quiet");
    assert!(
        out.contains("DirtyRatio: unknown\tLastCleaned: unknown"),
        "{out}"
    );
    // A topic that is not compacted has no cleaner columns.
    let (ok, _, err) = fjord_integration_tests::fjord(
        &[
            "topics",
            "create",
            "--topic",
            "plain",
            "--bootstrap-server",
            &b,
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(!describe("plain").contains("DirtyRatio"));
}
