//! Fjord's own transactional producer against the broker: a consume-transform-produce
//! loop whose output and offsets commit together, an aborted transaction that leaves
//! neither, and a second producer with the same transactional.id fencing the first
//! (a fatal error, as the Java client reports ProducerFencedException).

use std::time::Duration;

use fjord_consumer::{Consumer, ConsumerGroupMetadata, TopicPartition};
use fjord_integration_tests::{create_topic, BrokerProcess};
use fjord_producer::{ProduceError, Producer, ProducerRecord};

fn transactional(bootstrap: &str, id: &str) -> Producer {
    Producer::builder()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", id)
        .set("linger.ms", "1")
        .build()
        .expect("transactional producer")
}

fn reader(bootstrap: &str, group: &str) -> Consumer {
    Consumer::builder()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.max.wait.ms", "100")
        .build()
        .expect("consumer")
}

/// The values a read_committed consumer reads from `topic`-0 within two seconds.
async fn committed_values(bootstrap: &str, topic: &str) -> Vec<String> {
    let mut c = reader(bootstrap, "fjord-txn-check");
    c.assign(&[TopicPartition::new(topic, 0)])
        .await
        .expect("assign");
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Ok(r)) = tokio::time::timeout_at(deadline, c.recv()).await {
        out.push(String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned());
    }
    c.close().await.expect("close");
    out
}

/// Reads `n` records from the consumer, sends each upper-cased to `out` in the open
/// transaction, and puts the consumer's next offset into it.
async fn transform(input: &mut Consumer, p: &Producer, n: usize, group: &ConsumerGroupMetadata) {
    let mut next = 0;
    for _ in 0..n {
        let r = tokio::time::timeout(Duration::from_secs(10), input.recv())
            .await
            .expect("input in time")
            .expect("input record");
        let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).to_uppercase();
        // A failed record fails the commit: its own report is not needed.
        let _reported_by_commit = p
            .send(ProducerRecord::new("out", value).partition(0))
            .await
            .expect("send");
        next = r.offset + 1;
    }
    p.send_offsets_to_transaction([("in", 0, next)], group)
        .await
        .expect("offsets into the transaction");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fjord_producer_commits_aborts_and_is_fenced() {
    let broker = BrokerProcess::start(&[]);
    let b = broker.bootstrap.clone();
    create_topic(&b, "in", 1).await;
    create_topic(&b, "out", 1).await;
    let plain = Producer::builder()
        .set("bootstrap.servers", &b)
        .build()
        .expect("producer");
    for i in 0..20 {
        let d = plain
            .send(ProducerRecord::new("in", format!("r{i}")).partition(0))
            .await
            .expect("send input");
        d.await.expect("input written");
    }

    let group = ConsumerGroupMetadata::new("etl");
    let mut input = reader(&b, "etl");
    input
        .assign(&[TopicPartition::new("in", 0)])
        .await
        .expect("assign");
    let p1 = transactional(&b, "etl-1");
    assert!(
        matches!(
            p1.begin_transaction(),
            Err(ProduceError::TransactionState(_))
        ),
        "begin before init_transactions"
    );
    p1.init_transactions().await.expect("init");

    // Committed: 10 outputs and the offset after their inputs.
    p1.begin_transaction().expect("begin");
    transform(&mut input, &p1, 10, &group).await;
    p1.commit_transaction().await.expect("commit");

    // Aborted: 5 more outputs (written: the ABORT marker must hide them) and offset 15
    // vanish.
    p1.begin_transaction().expect("begin");
    transform(&mut input, &p1, 5, &group).await;
    let written = p1
        .send(ProducerRecord::new("out", "DOOMED").partition(0))
        .await
        .expect("send");
    p1.flush().await;
    // 0-9, the COMMIT marker at 10, five records at 11-15.
    assert_eq!(written.await.expect("written before the abort").offset, 16);
    p1.abort_transaction().await.expect("abort");

    let want: Vec<String> = (0..10).map(|i| format!("R{i}")).collect();
    assert_eq!(committed_values(&b, "out").await, want);
    let committed = input
        .committed(&[TopicPartition::new("in", 0)])
        .await
        .expect("committed offsets");
    assert_eq!(committed[&TopicPartition::new("in", 0)], Some(10));

    // A second producer with the same id fences the first.
    let p2 = transactional(&b, "etl-1");
    p2.init_transactions().await.expect("init p2");
    p1.begin_transaction().expect("begin is local");
    let zombie = p1
        .send(ProducerRecord::new("out", "ZOMBIE").partition(0))
        .await
        .expect("queued");
    let commit = p1.commit_transaction().await;
    let e = commit.expect_err("the fenced producer cannot commit");
    assert!(e.is_fatal(), "fenced is fatal: {e}");
    assert!(zombie.await.is_err(), "the zombie's record failed");
    assert!(
        p1.begin_transaction().is_err(),
        "nothing works after fencing"
    );

    p2.begin_transaction().expect("begin p2");
    let _reported_by_commit = p2
        .send(ProducerRecord::new("out", "P2").partition(0))
        .await
        .expect("send p2");
    p2.commit_transaction().await.expect("commit p2");
    let mut want = want;
    want.push("P2".into());
    assert_eq!(committed_values(&b, "out").await, want);
    input.close().await.expect("close");
}
