//! Transactions in compacted topics and under DeleteRecords, end to end with
//! librdkafka's transactional producer: the broker's cleaner drops aborted records,
//! never compacts at or past the last stable offset (an open transaction's records,
//! and plain records after its start, stay as written until it ends), and keeps every
//! key's latest committed value; a log start moved past an open transaction's start
//! moves the last stable offset with it (Kafka's: never below the log start).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fjord_integration_tests::metrics::{free_metrics_listener, http_get, sample};
use fjord_integration_tests::producers::{plain, transactional};
use fjord_integration_tests::reading::{read_partition, read_partition_at};
use fjord_integration_tests::topics::create_topic;
use fjord_integration_tests::{fjord, BrokerProcess};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaResult;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::ClientConfig;

const TOPIC: &str = "ledger";

/// A transactional producer, initialized.
fn initialized(bootstrap: &str, id: &str) -> FutureProducer {
    let p = transactional(bootstrap, id);
    blocking(|| p.init_transactions(Duration::from_secs(30)));
    p
}

fn blocking(f: impl FnOnce() -> KafkaResult<()>) {
    tokio::task::block_in_place(f).expect("transaction call");
}

async fn send(p: &FutureProducer, topic: &str, key: &str, value: &str) -> i64 {
    p.send(
        FutureRecord::to(topic).partition(0).key(key).payload(value),
        Duration::from_secs(30),
    )
    .await
    .unwrap_or_else(|(e, _)| panic!("send {key}={value}: {e}"))
    .offset
}

/// (offset, key, value) of every record of partition 0 at `isolation`.
fn read(bootstrap: &str, isolation: &str) -> Vec<(i64, String, String)> {
    let text = |b: Option<Vec<u8>>| String::from_utf8_lossy(&b.unwrap_or_default()).into_owned();
    read_partition_at(bootstrap, TOPIC, 0, isolation)
        .into_iter()
        .map(|(offset, key, value)| (offset, text(key), text(value)))
        .collect()
}

/// Waits until `done` holds of the read_uncommitted view, which it returns.
async fn await_log(
    bootstrap: &str,
    what: &str,
    done: impl Fn(&[(i64, String, String)]) -> bool,
) -> Vec<(i64, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = read(bootstrap, "read_uncommitted");
        if done(&got) {
            return got;
        }
        assert!(Instant::now() < deadline, "{what}: {got:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Ten keys' records in a transaction of `p` (committed or aborted by `round`).
async fn round(p: &FutureProducer, round: usize, latest: &mut BTreeMap<String, (i64, String)>) {
    let pad = "x".repeat(40);
    blocking(|| p.begin_transaction());
    for k in 0..10 {
        let (key, value) = (format!("k{k}"), format!("r{round}-{pad}"));
        let offset = send(p, TOPIC, &key, &value).await;
        if !aborted(round) {
            latest.insert(key, (offset, value));
        }
    }
    if aborted(round) {
        blocking(|| p.abort_transaction(Duration::from_secs(30)));
    } else {
        blocking(|| p.commit_transaction(Duration::from_secs(30)));
    }
}

/// Every third round is aborted.
fn aborted(round: usize) -> bool {
    round % 3 == 2
}

fn passes(metrics: &str) -> f64 {
    let text = http_get(metrics, "/metrics").1;
    sample(&text, "fjord_cleaner_passes_total").unwrap_or_else(|| panic!("no passes in {text}"))
}

fn count(view: &[(i64, String, String)], prefix: &str) -> usize {
    view.iter()
        .filter(|(_, _, v)| v.starts_with(prefix))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cleaner_drops_aborted_records_and_stops_at_the_last_stable_offset() {
    let (metrics_set, metrics) = free_metrics_listener();
    let broker = BrokerProcess::start(&["log.cleaner.backoff.ms=100", &metrics_set]);
    let b = broker.bootstrap.clone();
    // Not compacted while it is written, so that the first pass sees all of it.
    create_topic(&b, TOPIC, &[("segment.bytes", "2048")]).await;
    let writer = initialized(&b, "ledger-writer");
    let pinner = initialized(&b, "ledger-pinner");
    let plain = plain(&b);
    let pad = "x".repeat(40);
    let mut latest: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for r in 0..6 {
        round(&writer, r, &mut latest).await;
    }
    // A transaction left open pins the last stable offset here; after it, more rounds,
    // plain records repeating one key, and records of keys of their own (rolling the
    // rest out of the active segment).
    blocking(|| pinner.begin_transaction());
    for k in 0..10 {
        send(&pinner, TOPIC, &format!("k{k}"), &format!("open-{pad}")).await;
    }
    for r in 6..12 {
        round(&writer, r, &mut latest).await;
    }
    let mut k0_latest = 0;
    for i in 0..20 {
        k0_latest = send(&plain, TOPIC, "k0", &format!("plain{i}-{pad}")).await;
    }
    for i in 0..40 {
        send(&plain, TOPIC, &format!("filler{i}"), &pad).await;
    }
    let compact = "cleanup.policy=compact,min.cleanable.dirty.ratio=0.01";
    let (ok, out, err) = fjord(
        &[
            "configs",
            "alter",
            "--topic",
            TOPIC,
            "--add-config",
            compact,
            "--bootstrap-server",
            &b,
        ],
        None,
    );
    assert!(ok, "{out}{err}");
    // The pass drops the aborted records below the open transaction; nothing at or past
    // it goes, though the plain records there repeat a key.
    let got = await_log(&b, "aborted records below the open transaction", |got| {
        count(got, "r2-") + count(got, "r5-") == 0
    })
    .await;
    assert_eq!(count(&got, "open-"), 10, "{got:?}");
    assert_eq!(
        count(&got, "plain"),
        20,
        "past the LSO nothing goes: {got:?}"
    );
    // What is past the LSO does not count as dirty: no pass after pass for nothing
    // (the backoff would allow ten a second).
    let before = passes(&metrics);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = passes(&metrics) - before;
    assert!(
        idle <= 1.0,
        "{idle} passes while only the open transaction was dirty"
    );
    // Once it is aborted, its records go, the aborted rounds after it too, and the
    // plain records compact down to the latest.
    blocking(|| pinner.abort_transaction(Duration::from_secs(30)));
    let aborted_left = |got: &[(i64, String, String)]| {
        ["r2-", "r5-", "r8-", "r11-", "open-"]
            .iter()
            .map(|r| count(got, r))
            .sum::<usize>()
    };
    let got = await_log(&b, "the aborted records and the old plain records", |got| {
        aborted_left(got) == 0 && count(got, "plain") == 1
    })
    .await;
    latest.insert("k0".into(), (k0_latest, format!("plain19-{pad}")));
    for (key, (offset, value)) in &latest {
        assert!(
            got.iter()
                .any(|(o, k, v)| o == offset && k == key && v == value),
            "{key}'s latest committed value at {offset} is kept: {got:?}"
        );
    }
    // read_committed readers see the same.
    let committed: Vec<i64> = read_partition(&b, TOPIC, 0).iter().map(|r| r.0).collect();
    let uncommitted: Vec<i64> = got.iter().map(|r| r.0).collect();
    assert_eq!(committed, uncommitted);
}

/// The partition's (log start, read_committed end) as librdkafka's ListOffsets sees
/// them.
fn committed_watermarks(bootstrap: &str, topic: &str) -> (i64, i64) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "watermarks")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    c.fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_past_an_open_transactions_start_moves_the_last_stable_offset() {
    let broker = BrokerProcess::start(&[]);
    let b = broker.bootstrap.clone();
    create_topic(&b, "pinned", &[]).await;
    let txp = initialized(&b, "pinned-writer");
    blocking(|| txp.begin_transaction());
    for i in 0..5 {
        send(&txp, "pinned", "k", &format!("t{i}")).await;
    }
    let plain = plain(&b);
    for i in 0..5 {
        send(&plain, "pinned", "k", &format!("p{i}")).await;
    }
    assert_eq!(
        committed_watermarks(&b, "pinned"),
        (0, 0),
        "the open transaction pins it"
    );
    let (ok, out, err) = fjord(
        &[
            "topics",
            "delete-records",
            "--topic",
            "pinned",
            "--offset",
            "3",
            "--bootstrap-server",
            &b,
        ],
        None,
    );
    assert!(ok, "{out}{err}");
    // The transaction stays open, but nothing below the log start can be read.
    assert_eq!(committed_watermarks(&b, "pinned"), (3, 3));
    blocking(|| txp.commit_transaction(Duration::from_secs(30)));
    assert_eq!(committed_watermarks(&b, "pinned"), (3, 11));
}
