//! Fjord's own clients and CLI against Apache Kafka's broker (4.x, single-node KRaft,
//! started by `bench/peers/kafka.sh` from Maven Central): the reference broker checks
//! our encoders (it validates every batch's CRC and decompresses every codec) and our
//! clients' handling of what it answers and Fjord never does (a group coordinator that
//! is not available until `__consumer_offsets` exists, for one), on both group
//! protocols.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use fjord_broker::txn::log_records::{decode_key, TxnMetadata};
use fjord_broker::txn::state::TxnState;
use fjord_consumer::{Consumer, ConsumerRecord, TopicPartition};
use fjord_integration_tests::fjord;
use fjord_integration_tests::reading::read_partition;
use fjord_producer::{Producer, ProducerRecord};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::ClientConfig;

/// Apache Kafka's broker in a temp dir, stopped on drop.
struct KafkaBroker {
    pid: String,
    bootstrap: String,
    _dir: tempfile::TempDir,
}

fn peer_script() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../bench/peers/kafka.sh"
    ))
}

impl KafkaBroker {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new(peer_script())
            .arg("start")
            .arg("--dir")
            .arg(dir.path())
            .output()
            .expect("bench/peers/kafka.sh runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "Kafka did not start: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let field = |key: &str| {
            stdout
                .split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .map(str::to_string)
        };
        let (Some(pid), Some(bootstrap)) = (field("pid="), field("bootstrap=")) else {
            // It started but said something else: stop it by the pid file it keeps.
            let _ = Command::new(peer_script())
                .arg("stop")
                .arg("--dir")
                .arg(dir.path())
                .status();
            panic!("bench/peers/kafka.sh start printed no pid= and bootstrap=: {stdout}");
        };
        Self {
            pid,
            bootstrap,
            _dir: dir,
        }
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        let _ = Command::new(peer_script())
            .arg("stop")
            .arg(&self.pid)
            .status();
    }
}

async fn read(c: &mut Consumer, count: usize) -> Vec<ConsumerRecord> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, c.recv()).await {
            Ok(Ok(r)) => out.push(r),
            Ok(Err(e)) => panic!("consume: {e}"),
            Err(_) => panic!("only {} of {count} records in 60 s", out.len()),
        }
    }
    out
}

/// Each record holds what was sent to its partition and offset.
fn check(got: &[ConsumerRecord], sent: &BTreeMap<(i32, i64), usize>) {
    for r in got {
        let n = sent[&(r.partition, r.offset)];
        let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
        assert!(
            value.starts_with(&format!("value-{n}-")),
            "offset {} holds {value}",
            r.offset
        );
        assert_eq!(r.key.as_deref(), Some(format!("k{n}").as_bytes()));
        assert_eq!(r.headers[0].1.as_deref(), Some(n.to_string().as_bytes()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fjord_clients_and_cli_work_against_apache_kafka() {
    let kafka = KafkaBroker::start();
    let b = kafka.bootstrap.as_str();

    // The CLI's admin side: create, describe, list.
    let (ok, _, err) = fjord(
        &[
            "topics",
            "create",
            "--bootstrap-server",
            b,
            "--topic",
            "cross",
            "--partitions",
            "3",
        ],
        None,
    );
    assert!(ok, "topics create: {err}");
    let (ok, out, err) = fjord(
        &[
            "topics",
            "describe",
            "--bootstrap-server",
            b,
            "--topic",
            "cross",
        ],
        None,
    );
    assert!(ok && out.contains("cross"), "topics describe: {out}{err}");

    // Fjord's producer, idempotent with acks=all, with every codec: Kafka validates each
    // batch (CRC, sequence numbers, and the records inside compressed ones).
    let mut sent = BTreeMap::new();
    for (round, codec) in ["none", "gzip", "snappy", "lz4", "zstd"].iter().enumerate() {
        let producer = Producer::builder()
            .set("bootstrap.servers", b)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("compression.type", codec)
            .set("linger.ms", "5")
            .build()
            .expect("producer");
        let mut pending = Vec::new();
        for i in 0..200 {
            let n = round * 200 + i;
            let record = ProducerRecord::new("cross", format!("value-{n}-{codec}"))
                .key(format!("k{n}"))
                .header("n", n.to_string());
            pending.push((n, producer.send(record).await.expect("queued")));
        }
        for (n, delivery) in pending {
            let meta = delivery
                .await
                .unwrap_or_else(|e| panic!("{codec}: record {n}: {e}"));
            sent.insert((meta.partition, meta.offset), n);
        }
        producer.close().await;
    }
    assert_eq!(sent.len(), 1000, "every record at its own offset");

    // First a consumer that assigns itself every partition but has a group.id, so its
    // positions come from the group's commits: on a fresh Kafka the first FindCoordinator
    // answers COORDINATOR_NOT_AVAILABLE while Kafka creates __consumer_offsets, and the
    // consumer must wait for it, as the Java client does.
    let tps: Vec<TopicPartition> = (0..3).map(|p| TopicPartition::new("cross", p)).collect();
    let mut assigned = Consumer::builder()
        .set("bootstrap.servers", b)
        .set("group.id", "cross-assigned")
        .set("auto.offset.reset", "earliest")
        .build()
        .expect("consumer");
    assigned.assign(&tps).await.expect("assign");
    check(&read(&mut assigned, 1000).await, &sent);

    // Then Fjord's consumer in a classic group on Kafka's coordinator.
    let mut consumer = Consumer::builder()
        .set("bootstrap.servers", b)
        .set("group.id", "cross-group")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .build()
        .expect("consumer");
    consumer.subscribe(&["cross"]).expect("subscribe");
    check(&read(&mut consumer, 1000).await, &sent);
    consumer.commit().await.expect("commit");
    let committed = consumer.committed(&tps).await.expect("committed");
    let total: i64 = committed.values().map(|o| o.unwrap_or(0)).sum();
    assert_eq!(total, 1000, "{committed:?}");
    consumer.close().await.expect("close");

    // And on KIP-848's consumer protocol: Kafka's coordinator assigns, the commit goes
    // at the member epoch (OffsetCommit v9, which Kafka requires of such members).
    let mut modern = Consumer::builder()
        .set("bootstrap.servers", b)
        .set("group.id", "cross-modern")
        .set("group.protocol", "consumer")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .build()
        .expect("consumer");
    modern.subscribe(&["cross"]).expect("subscribe");
    check(&read(&mut modern, 1000).await, &sent);
    assert_eq!(modern.assignment().len(), 3);
    modern.commit().await.expect("commit");
    let by_modern = modern.committed(&tps).await.expect("committed");
    assert_eq!(
        by_modern, committed,
        "the same positions as the classic group"
    );
    modern.close().await.expect("close");

    // Assigned with the group's id: the positions are the group's commits.
    let mut resumed = Consumer::builder()
        .set("bootstrap.servers", b)
        .set("group.id", "cross-group")
        .build()
        .expect("consumer");
    resumed.assign(&tps).await.expect("assign");
    for tp in &tps {
        assert_eq!(resumed.position(tp), committed[tp], "{tp:?}");
    }

    // The CLI's group view reads Kafka's answer.
    let (ok, out, err) = fjord(
        &[
            "groups",
            "describe",
            "--bootstrap-server",
            b,
            "--group",
            "cross-group",
        ],
        None,
    );
    assert!(ok && out.contains("cross"), "groups describe: {out}{err}");

    // Kafka's own transaction coordinator writes `__transaction_state`: Fjord's codec
    // of those records reads every one and writes the same bytes back.
    transaction_log_matches_kafkas(b).await;
}

/// Java's `String.hashCode`: Kafka puts a transactional id on partition
/// `abs(hashCode) % 50` of `__transaction_state`.
fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// One committed transaction of librdkafka's on Kafka; then its coordinator's records,
/// decoded with Fjord's codec and encoded again byte for byte.
async fn transaction_log_matches_kafkas(b: &str) {
    const ID: &str = "cross-tx";
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", b)
        .set("transactional.id", ID)
        .set("transaction.timeout.ms", "45000")
        .create()
        .expect("transactional producer");
    let blocking = |f: &dyn Fn() -> rdkafka::error::KafkaResult<()>| {
        tokio::task::block_in_place(f).expect("transaction call")
    };
    blocking(&|| producer.init_transactions(Duration::from_secs(60)));
    blocking(&|| producer.begin_transaction());
    producer
        .send(
            FutureRecord::to("cross")
                .partition(1)
                .key("k")
                .payload("in a transaction"),
            Duration::from_secs(30),
        )
        .await
        .expect("sent");
    blocking(&|| producer.commit_transaction(Duration::from_secs(60)));

    let partition = (java_hash(ID) & 0x7fff_ffff) % 50;
    let deadline = Instant::now() + Duration::from_secs(60);
    let ours = loop {
        let ours: Vec<(Vec<u8>, TxnMetadata)> = read_partition(b, "__transaction_state", partition)
            .into_iter()
            .filter(|(_, k, _)| {
                k.as_deref().and_then(|k| decode_key(k).ok()).as_deref() == Some(ID)
            })
            .filter_map(|(_, _, v)| v)
            .map(|v| {
                let m = TxnMetadata::decode(&v).unwrap_or_else(|e| panic!("{e}: {v:?}"));
                (v, m)
            })
            .collect();
        // CompleteCommit is written once the markers are: it may lag the commit call.
        if ours
            .iter()
            .any(|(_, m)| m.state == TxnState::CompleteCommit)
        {
            break ours;
        }
        assert!(
            Instant::now() < deadline,
            "no CompleteCommit for {ID}: {ours:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (bytes, m) in &ours {
        let version = i16::from_be_bytes([bytes[0], bytes[1]]);
        assert_eq!(
            &m.encode(version),
            bytes,
            "{m:?}\nours   {:?}\nkafka's {bytes:?}",
            m.encode(version)
        );
    }
    let states: Vec<TxnState> = ours.iter().map(|(_, m)| m.state).collect();
    // Each of Kafka's moves is one Fjord's state machine allows.
    for w in states.windows(2) {
        assert!(w[1].can_follow(w[0]), "{:?} after {:?}", w[1], w[0]);
    }
    let expected = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::CompleteCommit,
    ];
    let mut at = 0;
    for s in &states {
        if at < expected.len() && *s == expected[at] {
            at += 1;
        }
    }
    assert_eq!(at, expected.len(), "{states:?}");
    let ongoing = ours
        .iter()
        .map(|(_, m)| m)
        .find(|m| m.state == TxnState::Ongoing)
        .expect("an Ongoing record");
    assert_eq!(
        ongoing.partitions.get("cross"),
        Some(&vec![1]),
        "{ongoing:?}"
    );
    assert_eq!(ongoing.timeout_ms, 45_000);
    assert!(ours
        .iter()
        .all(|(_, m)| m.producer_id == ongoing.producer_id));
}
