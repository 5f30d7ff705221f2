//! Fjord's own transactional producer against the broker: a consume-transform-produce
//! loop whose output and offsets commit together, an aborted transaction that leaves
//! neither, and a second producer with the same transactional.id fencing the first
//! (a fatal error, as the Java client reports ProducerFencedException); sends racing a
//! commit, and two commits racing each other; and `fjord transactions abort` (KIP-664)
//! ending a transaction that pins the last stable offset.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use fjord_consumer::{Consumer, ConsumerGroupMetadata, TopicPartition};
use fjord_integration_tests::{create_topic, fjord, BrokerProcess};
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
    fjord_integration_tests::reading::read_committed_consumer(bootstrap, group)
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

/// One round of `sends_racing_the_end_land_in_the_transaction_or_are_refused`: eight
/// tasks send until the producer refuses, while the commit (or abort) starts 100 ms in.
/// Returns the values whose sends were accepted, after checking that each had been
/// delivered (or, for an abort, dropped) by the time the call returned, so it is in
/// this transaction and not a later one.
async fn send_while_ending(p: &Arc<Producer>, round: usize, commit: bool) -> Vec<String> {
    p.begin_transaction().expect("begin");
    let senders: Vec<_> = (0..8)
        .map(|task| {
            let p = Arc::clone(p);
            tokio::spawn(async move {
                let mut accepted = Vec::new();
                for i in 0.. {
                    let value = format!("{round}-{task}-{i}-{}", "x".repeat(900));
                    let record = ProducerRecord::new("race", value.clone()).partition(0);
                    match p.send(record).await {
                        Ok(delivery) => accepted.push((value, delivery)),
                        Err(ProduceError::TransactionState(_)) => return accepted,
                        Err(e) => panic!("send: {e}"),
                    }
                }
                accepted
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    if commit {
        p.commit_transaction().await.expect("commit");
    } else {
        p.abort_transaction().await.expect("abort");
    }
    let mut values = Vec::new();
    for task in senders {
        for (value, delivery) in task.await.expect("sender task") {
            let done = tokio::time::timeout(Duration::ZERO, delivery).await;
            match done {
                Ok(Ok(_)) => values.push(value),
                Ok(Err(ProduceError::TransactionAborted)) if !commit => {}
                Ok(Err(e)) => panic!("an accepted send failed after the end: {e}"),
                Err(_) => panic!("an accepted send was still pending after the end"),
            }
        }
    }
    values
}

/// Sends racing a commit or an abort: a send the producer accepted belongs to the
/// transaction being ended (the call waits for it), and a send after it began is
/// refused. A small buffer keeps sends waiting for room past their state check, where
/// the race was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_racing_the_end_land_in_the_transaction_or_are_refused() {
    let broker = BrokerProcess::start(&[]);
    let b = broker.bootstrap.clone();
    create_topic(&b, "race", 1).await;
    let p = Producer::builder()
        .set("bootstrap.servers", &b)
        .set("transactional.id", "racer")
        .set("linger.ms", "5")
        .set("buffer.memory", "32768")
        .build()
        .expect("producer");
    let p = Arc::new(p);
    p.init_transactions().await.expect("init");
    let mut committed = BTreeSet::new();
    for round in 0..6 {
        let commit = round % 2 == 0;
        let values = send_while_ending(&p, round, commit).await;
        if commit {
            assert!(values.len() > 8, "round {round}: the senders got going");
            committed.extend(values);
        }
    }
    let read: BTreeSet<String> = committed_values(&b, "race").await.into_iter().collect();
    assert_eq!(read.len(), committed.len(), "read_committed sees each once");
    assert!(
        read == committed,
        "exactly the accepted records are committed"
    );
}

/// Two commits at once: one commits, the other is told a commit is no longer open, and
/// the producer goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_commit_once() {
    let broker = BrokerProcess::start(&[]);
    let b = broker.bootstrap.clone();
    create_topic(&b, "twice", 1).await;
    let p = transactional(&b, "twice");
    p.init_transactions().await.expect("init");
    p.begin_transaction().expect("begin");
    let _reported_by_commit = p
        .send(ProducerRecord::new("twice", "once").partition(0))
        .await
        .expect("send");
    let (a, b2) = tokio::join!(p.commit_transaction(), p.commit_transaction());
    let refused = [&a, &b2]
        .iter()
        .filter(|r| matches!(r, Err(ProduceError::TransactionState(_))))
        .count();
    assert!(a.is_ok() || b2.is_ok(), "one commit succeeds: {a:?} {b2:?}");
    assert_eq!(refused, 1, "the other finds no transaction: {a:?} {b2:?}");
    p.begin_transaction().expect("the next transaction");
    let _reported_by_commit = p
        .send(ProducerRecord::new("twice", "next").partition(0))
        .await
        .expect("send");
    p.commit_transaction().await.expect("commit the next");
    assert_eq!(committed_values(&b, "twice").await, ["once", "next"]);
}

/// A transactional id the coordinator forgot (`transactional.id.expiration.ms`) makes the
/// next transaction abortable (INVALID_PRODUCER_ID_MAPPING); the abort skips EndTxn and
/// takes a new producer id, and the producer goes on, as the Java client does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_whose_id_expired_aborts_and_goes_on() {
    let broker = BrokerProcess::start(&[
        "transactional.id.expiration.ms=300",
        "transaction.remove.expired.transaction.cleanup.interval.ms=100",
        "transaction.abort.timed.out.transaction.cleanup.interval.ms=100",
    ]);
    let b = broker.bootstrap.clone();
    create_topic(&b, "expiry", 1).await;
    let p = transactional(&b, "forgotten");
    p.init_transactions().await.expect("init");
    p.begin_transaction().expect("begin");
    let _reported_by_commit = p
        .send(ProducerRecord::new("expiry", "first").partition(0))
        .await
        .expect("send");
    p.commit_transaction().await.expect("commit");
    tokio::time::sleep(Duration::from_millis(1500)).await;

    p.begin_transaction().expect("begin after the expiry");
    let lost = p
        .send(ProducerRecord::new("expiry", "lost").partition(0))
        .await
        .expect("queued");
    let e = p.commit_transaction().await.expect_err("the id is gone");
    assert!(
        matches!(e, ProduceError::TransactionAbortable { code: 49, .. }),
        "INVALID_PRODUCER_ID_MAPPING, abortable: {e}"
    );
    assert!(lost.await.is_err(), "the record was not written");
    p.abort_transaction()
        .await
        .expect("abort with a new producer id");
    p.begin_transaction().expect("begin again");
    let _reported_by_commit = p
        .send(ProducerRecord::new("expiry", "after").partition(0))
        .await
        .expect("send");
    p.commit_transaction()
        .await
        .expect("commit under the new id");
    assert_eq!(committed_values(&b, "expiry").await, ["first", "after"]);
}

/// `fjord transactions describe-producers` of `topic`-0: (producer id, epoch, start
/// offset of its open transaction) per producer.
fn producers_of(bootstrap: &str, topic: &str) -> Vec<(i64, i16, i64)> {
    let args = [
        "transactions",
        "describe-producers",
        "--bootstrap-server",
        bootstrap,
    ];
    let (ok, out, err) = fjord(
        &[&args[..], &["--topic", topic, "--partition", "0"]].concat(),
        None,
    );
    assert!(ok, "describe-producers: {err}");
    out.lines()
        .skip(1)
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            let num = |i: usize| cols[i].parse::<i64>().expect("number");
            (num(0), num(1) as i16, num(5))
        })
        .collect()
}

fn abort_cli(bootstrap: &str, topic: &str, how: &[&str]) -> (bool, String) {
    let args = [
        "transactions",
        "abort",
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
    ];
    let (ok, out, err) = fjord(&[&args[..], &["--partition", "0"], how].concat(), None);
    (ok, format!("{out}{err}"))
}

/// A transaction left open pins the last stable offset: read_committed readers stop
/// before it, even at records written after it. `fjord transactions abort` finds it by
/// its start offset and has the leader write its ABORT marker: the readers go on, and
/// its records stay hidden even when its producer later commits (the coordinator's
/// COMMIT marker finds nothing open there). A marker of an older epoch than the
/// producer's is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_is_aborted_from_the_command_line() {
    let broker = BrokerProcess::start(&[]);
    let b = broker.bootstrap.clone();
    create_topic(&b, "hang", 1).await;
    let plain = Producer::builder()
        .set("bootstrap.servers", &b)
        .build()
        .expect("producer");
    let write = |value: &'static str| {
        let plain = &plain;
        async move {
            let d = plain.send(ProducerRecord::new("hang", value).partition(0));
            d.await.expect("send").await.expect("written");
        }
    };
    write("before").await;
    // The second incarnation (epoch 1) opens the transaction.
    let old = transactional(&b, "hanger");
    old.init_transactions().await.expect("init");
    let p = transactional(&b, "hanger");
    p.init_transactions().await.expect("init fences the first");
    p.begin_transaction().expect("begin");
    for value in ["stuck-1", "stuck-2"] {
        let d = p
            .send(ProducerRecord::new("hang", value).partition(0))
            .await;
        d.expect("send").await.expect("written in the transaction");
    }
    write("after").await;
    assert_eq!(committed_values(&b, "hang").await, ["before"], "pinned");

    let open: Vec<_> = producers_of(&b, "hang")
        .into_iter()
        .filter(|p| p.2 >= 0)
        .collect();
    let [(pid, epoch, start)] = open[..] else {
        panic!("one open transaction: {open:?}");
    };
    assert_eq!((epoch, start), (1, 1));
    let (ok, out) = abort_cli(&b, "hang", &["--start-offset", "99"]);
    assert!(
        !ok && out.contains("no open transaction starts at offset 99"),
        "{out}"
    );
    let stale = [
        "--producer-id",
        &pid.to_string(),
        "--producer-epoch",
        "0",
        "--coordinator-epoch",
        "0",
    ];
    let (ok, out) = abort_cli(&b, "hang", &stale);
    assert!(!ok && out.contains("InvalidProducerEpoch"), "{out}");
    assert_eq!(
        committed_values(&b, "hang").await,
        ["before"],
        "still pinned"
    );

    let (ok, out) = abort_cli(&b, "hang", &["--start-offset", "1"]);
    assert!(ok, "abort: {out}");
    assert_eq!(committed_values(&b, "hang").await, ["before", "after"]);
    assert!(
        producers_of(&b, "hang").iter().all(|p| p.2 == -1),
        "nothing open"
    );
    p.commit_transaction()
        .await
        .expect("the coordinator still commits");
    write("last").await;
    assert_eq!(
        committed_values(&b, "hang").await,
        ["before", "after", "last"]
    );
}
