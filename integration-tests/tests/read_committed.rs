//! read_committed consumers on Fjord: librdkafka's and Fjord's own see exactly the
//! committed records, nothing of an aborted transaction and nothing of an open one
//! until it commits, also after kill -9 (the aborted-transaction index and the open
//! transaction's start come back).

use std::time::{Duration, Instant};

use fjord_consumer::TopicPartition;
use fjord_integration_tests::producers::{plain, transactional};
use fjord_integration_tests::topics::create_topic;
use fjord_integration_tests::BrokerProcess;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaResult;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

fn blocking(f: impl FnOnce() -> KafkaResult<()>) {
    tokio::task::block_in_place(f).expect("transaction call");
}

async fn send(p: &FutureProducer, value: &str) {
    p.send(
        FutureRecord::to("rc").partition(0).key("k").payload(value),
        Duration::from_secs(30),
    )
    .await
    .unwrap_or_else(|(e, _)| panic!("send {value}: {e}"));
}

/// Every value a librdkafka read_committed consumer gets from the start within `wait`.
fn librdkafka_committed(bootstrap: &str, wait: Duration) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "rc-reader")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("rc", 0, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    out
}

/// Every value Fjord's read_committed consumer gets from the start within `wait`.
async fn fjord_committed(bootstrap: &str, wait: Duration) -> Vec<String> {
    let mut c = fjord_integration_tests::reading::read_committed_consumer(bootstrap, "rc-fjord");
    c.assign(&[TopicPartition::new("rc", 0)])
        .await
        .expect("assign");
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Ok(r)) = tokio::time::timeout_at(deadline, c.recv()).await {
        out.push(String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned());
    }
    c.close().await.expect("close");
    out
}

async fn both_see(bootstrap: &str, want: &[&str]) {
    let wait = Duration::from_secs(4);
    let b = bootstrap.to_string();
    let rd = tokio::task::spawn_blocking(move || librdkafka_committed(&b, wait))
        .await
        .expect("reader");
    assert_eq!(rd, want, "librdkafka read_committed");
    assert_eq!(
        fjord_committed(bootstrap, wait).await,
        want,
        "Fjord read_committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_records_only_across_abort_open_transactions_and_kill_9() {
    let mut broker = BrokerProcess::start(&[]);
    let b = broker.bootstrap.clone();
    // Small segments: the open transaction's start ends up in a sealed segment, which
    // the restarted broker must find (its producer state is rebuilt from the active one).
    create_topic(&b, "rc", &[("segment.bytes", "1024")]).await;
    let t1 = transactional(&b, "rc-1");
    let t2 = transactional(&b, "rc-2");
    let other = plain(&b);
    blocking(|| t1.init_transactions(Duration::from_secs(30)));
    blocking(|| t2.init_transactions(Duration::from_secs(30)));

    blocking(|| t1.begin_transaction());
    send(&t1, "c1").await;
    blocking(|| t2.begin_transaction());
    send(&t2, "aborted1").await;
    send(&other, "plain1").await;
    send(&t1, "c2").await;
    send(&t2, "aborted2").await;
    blocking(|| t1.commit_transaction(Duration::from_secs(30)));
    blocking(|| t2.abort_transaction(Duration::from_secs(30)));
    // An open transaction holds back everything after its first record.
    blocking(|| t1.begin_transaction());
    send(&t1, "open1").await;
    send(&other, "plain2").await;
    let padding: Vec<String> = (0..20)
        .map(|i| format!("pad{i:02}-{}", "x".repeat(100)))
        .collect();
    for pad in &padding {
        send(&other, pad).await;
    }
    both_see(&b, &["c1", "plain1", "c2"]).await;

    // kill -9 with the transaction still open: its start and the abort come back.
    drop((t1, t2, other));
    broker.kill();
    let data = broker.take_data_dir().expect("data dir");
    let broker = BrokerProcess::start_in(data.path(), 0, &[]);
    let b = broker.bootstrap.clone();
    both_see(&b, &["c1", "plain1", "c2"]).await;

    // A new producer of the id aborts what was left open; then all but the aborted
    // transactions is readable.
    let t1 = transactional(&b, "rc-1");
    blocking(|| t1.init_transactions(Duration::from_secs(30)));
    blocking(|| t1.begin_transaction());
    send(&t1, "c3").await;
    blocking(|| t1.commit_transaction(Duration::from_secs(30)));
    let mut all = vec!["c1", "plain1", "c2", "plain2"];
    all.extend(padding.iter().map(String::as_str));
    all.push("c3");
    both_see(&b, &all).await;
}
