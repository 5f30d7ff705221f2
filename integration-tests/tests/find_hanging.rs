//! `fjord transactions find-hanging` (KIP-664): a transaction a partition holds open
//! that its coordinator no longer knows (here: the coordinator's state lost while the
//! broker was down) is found, by topic, partition or broker, once its producer has
//! been silent longer than `--max-transaction-timeout`; one the coordinator still
//! runs is not. `abort --start-offset` with what it printed ends it.

use std::time::Duration;

use fjord_integration_tests::producers::transactional;
use fjord_integration_tests::topics::create_topic;
use fjord_integration_tests::{fjord, BrokerProcess};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaResult;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::ClientConfig;

fn blocking(f: impl FnOnce() -> KafkaResult<()>) {
    tokio::task::block_in_place(f).expect("transaction call");
}

/// A producer of `id` with a transaction open, holding records in `topic`-0.
async fn open_transaction(bootstrap: &str, id: &str, topic: &str) -> FutureProducer {
    let p = transactional(bootstrap, id);
    blocking(|| p.init_transactions(Duration::from_secs(30)));
    blocking(|| p.begin_transaction());
    for value in ["a", "b"] {
        p.send(
            FutureRecord::to(topic).partition(0).key("k").payload(value),
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("send: {e}"));
    }
    p
}

/// (topic, partition, start offset) of each row `find-hanging` prints with `args`.
fn find_hanging(bootstrap: &str, args: &[&str]) -> Vec<(String, i32, i64)> {
    let base = [
        "transactions",
        "find-hanging",
        "--bootstrap-server",
        bootstrap,
    ];
    let (ok, out, err) = fjord(&[&base[..], args].concat(), None);
    assert!(ok, "find-hanging {args:?}: {err}");
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("Topic\tPartition\tProducerId\tProducerEpoch\tCoordinatorEpoch\tStartOffset\tLastTimestamp\tDuration(min)")
    );
    lines
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            let num = |i: usize| cols[i].parse::<i64>().unwrap_or_else(|_| panic!("{l}"));
            (cols[0].to_string(), num(1) as i32, num(5))
        })
        .collect()
}

fn node_id(bootstrap: &str) -> i32 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    let md = c
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    md.brokers()[0].id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_its_coordinator_lost_is_found_and_aborted() {
    let mut broker = BrokerProcess::start(&[]);
    let b = broker.bootstrap.clone();
    create_topic(&b, "stuck", &[]).await;
    create_topic(&b, "lost", &[]).await;
    let stuck = open_transaction(&b, "stuck-writer", "stuck").await;
    let (ok, _, err) = fjord(
        &["transactions", "find-hanging", "--bootstrap-server", &b],
        None,
    );
    assert!(!ok && err.contains("--topic or --broker-id"), "{err}");
    let now = ["--max-transaction-timeout", "0"];
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        find_hanging(&b, &[&["--topic", "stuck"][..], &now].concat()),
        vec![],
        "its coordinator will finish it"
    );

    // The broker goes down and comes back without the coordinator's state: two
    // partitions hold transactions no coordinator will end.
    let lost = open_transaction(&b, "lost-writer", "lost").await;
    let port = broker.port();
    let data = broker.take_data_dir().expect("data dir");
    broker.kill();
    drop((stuck, lost));
    std::fs::remove_dir_all(data.path().join("fjord-transactions")).expect("remove");
    let broker = BrokerProcess::start_in(data.path(), port, &[]);
    let b = broker.bootstrap.clone();
    assert_eq!(
        find_hanging(&b, &["--topic", "stuck"]),
        vec![],
        "its producer wrote less than 15 minutes ago"
    );
    let found = find_hanging(
        &b,
        &[&["--topic", "stuck", "--partition", "0"][..], &now].concat(),
    );
    assert_eq!(found, vec![("stuck".to_string(), 0, 0)]);
    let by_broker = ["--broker-id", &node_id(&b).to_string()];
    let mut all = find_hanging(&b, &[&by_broker[..], &now].concat());
    all.sort();
    assert_eq!(all, vec![("lost".into(), 0, 0), ("stuck".into(), 0, 0)]);
    assert_eq!(
        find_hanging(&b, &[&["--broker-id", "12345"][..], &now].concat()),
        vec![],
        "no partition on another broker"
    );

    let abort = [
        "transactions",
        "abort",
        "--bootstrap-server",
        &b,
        "--topic",
        "stuck",
        "--partition",
        "0",
        "--start-offset",
        "0",
    ];
    let (ok, out, err) = fjord(&abort, None);
    assert!(ok, "{out}{err}");
    let left = find_hanging(&b, &[&by_broker[..], &now].concat());
    assert_eq!(left, vec![("lost".to_string(), 0, 0)]);
}
