//! Transactions with librdkafka's transactional producer: commit and abort leave Kafka's
//! markers in the log, a second producer of the same id fences the first and aborts
//! what it left open, a transaction past its timeout is aborted by the coordinator, and
//! the coordinator's state survives kill -9.

use std::path::Path;
use std::time::{Duration, Instant};

use fjord_integration_tests::{create_topic, fjord, BrokerProcess};
use fjord_protocol::record_batch::{batches, read_end_txn_marker};
use rdkafka::error::KafkaResult;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::ClientConfig;

/// What a partition's log holds, batch by batch: data (producer id, record count) or a
/// marker (producer id, commit?).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Data(i64, i32),
    Marker(i64, bool),
}

/// Reads the partition's segment files straight off the disk.
fn log_entries(data: &Path, topic: &str, partition: i32) -> Vec<Entry> {
    let dir = data.join(format!("{topic}-{partition}"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("partition dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let bytes = std::fs::read(&f).expect("segment");
        for batch in batches(&bytes) {
            let Ok((header, whole)) = batch else { break };
            out.push(match read_end_txn_marker(whole) {
                Some(m) => Entry::Marker(header.producer_id, m.commit),
                None => Entry::Data(header.producer_id, header.records_count),
            });
        }
    }
    out
}

fn producer(bootstrap: &str, id: &str, timeout_ms: u32) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", id)
        .set("transaction.timeout.ms", timeout_ms.to_string())
        .set("linger.ms", "0")
        .create()
        .expect("transactional producer")
}

fn blocking(f: impl FnOnce() -> KafkaResult<()>) -> KafkaResult<()> {
    tokio::task::block_in_place(f)
}

async fn send(p: &FutureProducer, topic: &str, partition: i32, value: &str) {
    p.send(
        FutureRecord::to(topic)
            .partition(partition)
            .key("k")
            .payload(value),
        Duration::from_secs(30),
    )
    .await
    .unwrap_or_else(|(e, _)| panic!("send {value}: {e}"));
}

/// The entries of `producer_id` only.
fn of(entries: &[Entry], producer_id: i64) -> Vec<Entry> {
    entries
        .iter()
        .filter(|e| matches!(e, Entry::Data(p, _) | Entry::Marker(p, _) if *p == producer_id))
        .cloned()
        .collect()
}

/// The producer id the log's data batches carry (one transactional producer wrote).
fn producer_id_in(entries: &[Entry]) -> i64 {
    match entries.first() {
        Some(Entry::Data(p, _)) => *p,
        other => panic!("no data batch first: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_and_abort_write_markers_into_every_partition_and_survive_kill_9() {
    let mut broker = BrokerProcess::start(&[]);
    let b = broker.bootstrap.clone();
    create_topic(&b, "tx", 2).await;
    let p = producer(&b, "tx-a", 60_000);
    blocking(|| p.init_transactions(Duration::from_secs(30))).expect("init");
    blocking(|| p.begin_transaction()).expect("begin");
    send(&p, "tx", 0, "c0").await;
    send(&p, "tx", 1, "c1").await;
    blocking(|| p.commit_transaction(Duration::from_secs(30))).expect("commit");
    blocking(|| p.begin_transaction()).expect("begin");
    send(&p, "tx", 0, "a0").await;
    blocking(|| p.abort_transaction(Duration::from_secs(30))).expect("abort");

    let p0 = log_entries(&broker.data, "tx", 0);
    let pid = producer_id_in(&p0);
    assert_eq!(
        p0,
        vec![
            Entry::Data(pid, 1),
            Entry::Marker(pid, true),
            Entry::Data(pid, 1),
            Entry::Marker(pid, false),
        ]
    );
    // Partition 1 was only in the first transaction: its one marker is a commit.
    assert_eq!(
        log_entries(&broker.data, "tx", 1),
        vec![Entry::Data(pid, 1), Entry::Marker(pid, true)]
    );
    drop(p);

    // kill -9, restart: the id is remembered, so a new producer gets the same producer
    // id at a newer epoch, and its transactions work.
    broker.kill();
    let data = broker.take_data_dir().expect("data dir");
    let broker = BrokerProcess::start_in(data.path(), 0, &[]);
    let p = producer(&broker.bootstrap, "tx-a", 60_000);
    blocking(|| p.init_transactions(Duration::from_secs(30))).expect("init after restart");
    blocking(|| p.begin_transaction()).expect("begin");
    send(&p, "tx", 1, "after").await;
    blocking(|| p.commit_transaction(Duration::from_secs(30))).expect("commit after restart");
    assert_eq!(
        of(&log_entries(&broker.data, "tx", 1), pid),
        vec![
            Entry::Data(pid, 1),
            Entry::Marker(pid, true),
            Entry::Data(pid, 1),
            Entry::Marker(pid, true),
        ],
        "the restarted coordinator kept the producer id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_producer_of_the_id_fences_the_old_one_and_aborts_its_transaction() {
    let broker = BrokerProcess::start(&[]);
    let b = broker.bootstrap.clone();
    create_topic(&b, "fence", 1).await;
    let old = producer(&b, "tx-f", 60_000);
    blocking(|| old.init_transactions(Duration::from_secs(30))).expect("init");
    blocking(|| old.begin_transaction()).expect("begin");
    send(&old, "fence", 0, "left open").await;
    // `fjord transactions` shows it open, with its partition.
    let (ok, out, err) = fjord(
        &[
            "transactions",
            "describe",
            "--transactional-id",
            "tx-f",
            "--bootstrap-server",
            &b,
        ],
        None,
    );
    assert!(ok, "{err}");
    let row: Vec<&str> = out.lines().nth(1).expect("a row").split('\t').collect();
    assert_eq!(
        (row[0], row[3], row[4], row[6]),
        ("tx-f", "Ongoing", "60000", "fence-0"),
        "{out}"
    );
    let (ok, out, err) = fjord(
        &[
            "transactions",
            "list",
            "--state",
            "Ongoing",
            "--bootstrap-server",
            &b,
        ],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("tx-f\t"), "{out}");

    let new = producer(&b, "tx-f", 60_000);
    blocking(|| new.init_transactions(Duration::from_secs(30))).expect("init fences");
    let entries = log_entries(&broker.data, "fence", 0);
    let pid = producer_id_in(&entries);
    assert_eq!(
        entries,
        vec![Entry::Data(pid, 1), Entry::Marker(pid, false)],
        "the open transaction was aborted"
    );
    // The old producer is fenced: its commit fails and it can do nothing more.
    let err = blocking(|| old.commit_transaction(Duration::from_secs(30)))
        .expect_err("the fenced producer cannot commit");
    assert!(
        err.to_string().to_lowercase().contains("fenc"),
        "not a fencing error: {err}"
    );
    let (ok, out, _) = fjord(
        &[
            "transactions",
            "list",
            "--state",
            "Ongoing",
            "--bootstrap-server",
            &b,
        ],
        None,
    );
    assert!(ok);
    assert_eq!(
        out.lines().count(),
        1,
        "only the header once aborted: {out}"
    );
    blocking(|| new.begin_transaction()).expect("begin");
    send(&new, "fence", 0, "new").await;
    blocking(|| new.commit_transaction(Duration::from_secs(30))).expect("commit");
    assert_eq!(
        log_entries(&broker.data, "fence", 0)[2..],
        [Entry::Data(pid, 1), Entry::Marker(pid, true)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_past_its_timeout_is_aborted_by_the_coordinator() {
    let broker =
        BrokerProcess::start(&["transaction.abort.timed.out.transaction.cleanup.interval.ms=200"]);
    let b = broker.bootstrap.clone();
    create_topic(&b, "slow", 1).await;
    let p = producer(&b, "tx-slow", 1_000);
    blocking(|| p.init_transactions(Duration::from_secs(30))).expect("init");
    blocking(|| p.begin_transaction()).expect("begin");
    send(&p, "slow", 0, "too slow").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let entries = log_entries(&broker.data, "slow", 0);
        if entries.len() == 2 {
            let pid = producer_id_in(&entries);
            assert_eq!(entries[1], Entry::Marker(pid, false));
            break;
        }
        assert!(Instant::now() < deadline, "never aborted: {entries:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        blocking(|| p.commit_transaction(Duration::from_secs(30))).is_err(),
        "a transaction the coordinator aborted cannot commit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_above_the_brokers_maximum_is_refused() {
    let broker = BrokerProcess::start(&["transaction.max.timeout.ms=10000"]);
    let p = producer(&broker.bootstrap, "tx-long", 20_000);
    let err = blocking(|| p.init_transactions(Duration::from_secs(30)))
        .expect_err("timeout above transaction.max.timeout.ms");
    assert!(
        err.to_string().to_lowercase().contains("timeout"),
        "not INVALID_TRANSACTION_TIMEOUT: {err}"
    );
}
