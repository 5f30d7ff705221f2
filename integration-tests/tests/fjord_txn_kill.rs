//! Fjord's own transactional producer across kill -9 of the broker: killed between a
//! transaction's sends and its commit, while the commit is under way, and right after
//! a commit returned. Every transaction whose commit returned Ok is read back by a
//! read_committed reader exactly once, nothing of one that was aborted, and the
//! producer never gets a fatal error nor hangs (the broker's restart costs retries
//! only).

use std::collections::BTreeMap;
use std::time::Duration;

use fjord_consumer::TopicPartition;
use fjord_integration_tests::reading::read_committed_consumer;
use fjord_integration_tests::{create_topic, BrokerProcess};
use fjord_producer::{Producer, ProducerRecord};

const TOPIC: &str = "ledger";

/// When the broker is killed, relative to a cycle's last commit.
#[derive(Debug, Clone, Copy)]
enum Kill {
    Before,
    During,
    After,
}

/// Sends transaction `txn`'s ten records over both partitions.
async fn send_all(p: &Producer, txn: usize) {
    for i in 0..10 {
        let record = ProducerRecord::new(TOPIC, format!("t{txn}-{i}")).partition(i % 2);
        // A failed record fails the commit: its own report is not needed.
        let _reported_by_commit = p.send(record).await.expect("send");
    }
}

/// kill -9 of `old`, then a broker on the same data directory and port.
fn restart(
    mut old: BrokerProcess,
    dir: std::path::PathBuf,
    port: u16,
) -> impl FnOnce() -> BrokerProcess + Send + 'static {
    move || {
        old.kill();
        drop(old);
        BrokerProcess::start_in(&dir, port, &[])
    }
}

/// Commits, or on an abortable error aborts; returns whether it committed. Neither may
/// hang: a request on a connection the broker's death closed fails at once, it does
/// not wait out `request.timeout.ms` (set far beyond this bound below).
async fn commit_or_abort(p: &Producer) -> bool {
    let commit = tokio::time::timeout(Duration::from_secs(20), p.commit_transaction());
    match commit.await.expect("the commit did not hang") {
        Ok(()) => true,
        Err(e) => {
            assert!(!e.is_fatal(), "a broker restart is not fatal: {e}");
            p.abort_transaction().await.expect("abort");
            false
        }
    }
}

/// Every value a read_committed reader gets from both partitions, counted.
async fn committed(bootstrap: &str) -> BTreeMap<String, usize> {
    let mut c = read_committed_consumer(bootstrap, "ledger-check");
    let partitions = [TopicPartition::new(TOPIC, 0), TopicPartition::new(TOPIC, 1)];
    c.assign(&partitions).await.expect("assign");
    let mut out = BTreeMap::new();
    while let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(3), c.recv()).await {
        let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
        *out.entry(value).or_default() += 1;
    }
    c.close().await.expect("close");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_transactions_survive_kill_9_exactly_once() {
    let mut broker = BrokerProcess::start(&[]);
    let b = broker.bootstrap.clone();
    let port = broker.port();
    let data = broker.take_data_dir().expect("data dir");
    create_topic(&b, TOPIC, 2).await;
    let p = Producer::builder()
        .set("bootstrap.servers", &b)
        .set("transactional.id", "ledger-writer")
        .set("linger.ms", "1")
        .set("request.timeout.ms", "120000")
        .build()
        .expect("transactional producer");
    p.init_transactions().await.expect("init");
    let mut want: BTreeMap<String, usize> = BTreeMap::new();
    let mut outcomes = Vec::new();
    let mut txn = 0;
    for kill in [Kill::Before, Kill::During, Kill::After] {
        // Two transactions that commit undisturbed, then the one the kill hits.
        for _ in 0..3 {
            p.begin_transaction().expect("begin");
            send_all(&p, txn).await;
            let last = txn % 3 == 2;
            let restart = |old| restart(old, data.path().to_path_buf(), port);
            let ok = match (last, kill) {
                (true, Kill::Before) => {
                    p.flush().await;
                    broker = tokio::task::spawn_blocking(restart(broker))
                        .await
                        .expect("restart");
                    commit_or_abort(&p).await
                }
                (true, Kill::During) => {
                    let killer = tokio::task::spawn_blocking(restart(broker));
                    let ok = commit_or_abort(&p).await;
                    broker = killer.await.expect("restart");
                    ok
                }
                _ => commit_or_abort(&p).await,
            };
            if last && matches!(kill, Kill::After) {
                broker = tokio::task::spawn_blocking(restart(broker))
                    .await
                    .expect("restart");
            }
            if ok {
                for i in 0..10 {
                    want.insert(format!("t{txn}-{i}"), 1);
                }
            }
            outcomes.push((txn, kill, ok));
            txn += 1;
        }
    }
    // The undisturbed ones and the one committed before its kill must have committed.
    for (txn, kill, ok) in &outcomes {
        let disturbed = txn % 3 == 2 && !matches!(kill, Kill::After);
        assert!(
            *ok || disturbed,
            "transaction {txn} ({kill:?}) did not commit"
        );
    }
    p.close().await;
    assert_eq!(committed(&b).await, want, "{outcomes:?}");
    drop(broker);
}
