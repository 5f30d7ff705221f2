//! Exactly-once consume-transform-produce with librdkafka (KIP-98 and KIP-447): a
//! read_committed consumer resuming from its group's committed offsets, a transactional
//! producer writing the output and the consumer's offsets in one transaction
//! (TxnOffsetCommit), and kill -9 of the broker in the middle of a transaction, several
//! times. Every input record appears in
//! the committed output exactly once, and the group's committed offsets are the ends.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fjord_integration_tests::{create_topic, BrokerProcess};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

const INPUT: usize = 300;
const BATCH: usize = 25;

struct Worker {
    consumer: BaseConsumer,
    producer: FutureProducer,
}

impl Worker {
    fn start(bootstrap: &str) -> Self {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "ctp")
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        // Assigned, not subscribed: each cycle resumes from the group's committed
        // offsets (an OffsetFetch that must not see the open transaction's offsets).
        let mut tpl = TopicPartitionList::new();
        for p in 0..2 {
            tpl.add_partition_offset("in", p, Offset::Stored)
                .expect("tpl");
        }
        consumer.assign(&tpl).expect("assign");
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("transactional.id", "ctp-tx")
            .set("linger.ms", "0")
            .create()
            .expect("producer");
        tokio::task::block_in_place(|| producer.init_transactions(Duration::from_secs(30)))
            .expect("init");
        Self { consumer, producer }
    }

    /// Up to `BATCH` records.
    fn poll_batch(&self) -> Vec<(i32, i64, String)> {
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while out.len() < BATCH && Instant::now() < deadline {
            match self.consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => out.push((
                    m.partition(),
                    m.offset(),
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                )),
                _ if !out.is_empty() => break,
                _ => {}
            }
        }
        out
    }

    /// Transforms `batch` into the output in one transaction with its offsets; with
    /// `commit` false, stops before committing (the broker is killed meanwhile).
    async fn process(&self, batch: &[(i32, i64, String)], commit: bool) {
        tokio::task::block_in_place(|| self.producer.begin_transaction()).expect("begin");
        for (_, _, v) in batch {
            self.producer
                .send(
                    FutureRecord::to("out").key(v).payload(&format!("out:{v}")),
                    Duration::from_secs(30),
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("send: {e}"));
        }
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for (p, o, _) in batch {
            next.insert(*p, o + 1);
        }
        let mut offsets = TopicPartitionList::new();
        for (p, o) in next {
            offsets
                .add_partition_offset("in", p, Offset::Offset(o))
                .expect("tpl");
        }
        let meta = self.consumer.group_metadata().expect("group metadata");
        tokio::task::block_in_place(|| {
            self.producer
                .send_offsets_to_transaction(&offsets, &meta, Duration::from_secs(30))
        })
        .expect("send offsets");
        if commit {
            tokio::task::block_in_place(|| {
                self.producer.commit_transaction(Duration::from_secs(30))
            })
            .expect("commit");
        }
    }
}

/// Every committed value of `out`, read with read_committed from the start.
fn committed_output(bootstrap: &str) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "ctp-check")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset("out", p, Offset::Beginning)
            .expect("tpl");
    }
    c.assign(&tpl).expect("assign");
    let (mut out, mut eofs) = (Vec::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while eofs < 2 && Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => eofs += 1,
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_input_record_is_in_the_output_exactly_once_across_kill_9() {
    const SETS: &[&str] = &["group.initial.rebalance.delay.ms=0"];
    let mut broker = BrokerProcess::start(SETS);
    let data = broker.take_data_dir().expect("data dir");
    create_topic(&broker.bootstrap, "in", 2).await;
    create_topic(&broker.bootstrap, "out", 2).await;
    let plain: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .create()
        .expect("producer");
    for i in 0..INPUT {
        plain
            .send(
                FutureRecord::to("in")
                    .partition((i % 2) as i32)
                    .key("k")
                    .payload(&format!("v{i:03}")),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("input: {e}"));
    }
    drop(plain);

    let mut processed_batches = 0;
    for cycle in 0..3 {
        let worker = Worker::start(&broker.bootstrap);
        // Two committed batches, then one left open when the broker dies.
        for _ in 0..2 {
            let batch = worker.poll_batch();
            assert!(!batch.is_empty(), "cycle {cycle}: nothing to read");
            worker.process(&batch, true).await;
            processed_batches += 1;
        }
        let batch = worker.poll_batch();
        worker.process(&batch, false).await;
        let port = broker.port();
        broker.kill();
        // Same port: the dead cycle's clients reach the new process, so closing them
        // (the consumer leaves its group) does not wait on a broker that is gone.
        broker = BrokerProcess::start_in(data.path(), port, SETS);
        drop(worker);
    }
    // A last worker takes the rest.
    let worker = Worker::start(&broker.bootstrap);
    loop {
        let batch = worker.poll_batch();
        if batch.is_empty() {
            break;
        }
        worker.process(&batch, true).await;
        processed_batches += 1;
    }
    let offsets = worker
        .consumer
        .committed(Duration::from_secs(10))
        .expect("committed offsets");
    // librdkafka 2.12's consumer destroy has been seen to wait here for good (the
    // broker answering everything else): close it off the test's path.
    std::thread::spawn(move || drop(worker));

    let mut got = committed_output(&broker.bootstrap);
    got.sort();
    let want: Vec<String> = (0..INPUT).map(|i| format!("out:v{i:03}")).collect();
    assert_eq!(got.len(), INPUT, "{processed_batches} batches committed");
    assert_eq!(got, want, "each input exactly once");
    for e in offsets.elements() {
        assert_eq!(
            e.offset(),
            Offset::Offset((INPUT / 2) as i64),
            "partition {}",
            e.partition()
        );
    }
}
