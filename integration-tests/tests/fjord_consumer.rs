//! Fjord's own consumer (`fjord-consumer`) against the real broker, cross-checked with
//! librdkafka: records produced by librdkafka under every codec decode; a group of Fjord
//! consumers plus a librdkafka consumer share partitions; a killed member's partitions
//! move; commits survive restarts; nothing is lost or duplicated across a rebalance with
//! synchronous commits; seek and pause work; corrupt batches are errors, not skips.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_consumer::{ConsumeError, Consumer, ConsumerRecord, TopicPartition};
use fjord_integration_tests::metrics::{free_metrics_listener, highest_version_served};
use fjord_integration_tests::{create_topic, BrokerProcess};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

const SETS: &[&str] = &["group.initial.rebalance.delay.ms=0"];

/// librdkafka produces `count` records "v<i>" round-robin over `partitions`.
async fn produce(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    from: usize,
    count: usize,
    codec: &str,
) {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("compression.type", codec)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let mut pending = Vec::new();
    for i in from..from + count {
        let value = format!("v{i}");
        let key = format!("k{i}");
        let headers = OwnedHeaders::new().insert(Header {
            key: "n",
            value: Some(&i.to_string()),
        });
        pending.push(
            p.send_result(
                FutureRecord::to(topic)
                    .partition((i as i32) % partitions)
                    .key(&key)
                    .payload(&value)
                    .headers(headers)
                    .timestamp(1_700_000_000_000 + i as i64),
            )
            .expect("queue"),
        );
    }
    for f in pending {
        f.await.expect("delivered").expect("acked");
    }
}

fn consumer(bootstrap: &str, group: &str, extra: &[(&str, &str)]) -> Consumer {
    let mut b = Consumer::builder()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300")
        .set("fetch.max.wait.ms", "100");
    for (k, v) in extra {
        b = b.set(k, v);
    }
    b.build().expect("consumer")
}

/// Reads `count` records, with a deadline.
async fn read(c: &mut Consumer, count: usize, secs: u64) -> Vec<ConsumerRecord> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(secs);
    while out.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "only {} of {count} records", out.len());
        match tokio::time::timeout(left, c.recv()).await {
            Ok(Ok(r)) => out.push(r),
            Ok(Err(e)) => panic!("recv: {e}"),
            Err(_) => panic!("only {} of {count} records", out.len()),
        }
    }
    out
}

/// Whatever arrives within `ms` (expected: nothing).
async fn read_extra(c: &mut Consumer, ms: u64) -> Vec<ConsumerRecord> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    while let Ok(Ok(r)) = tokio::time::timeout_at(deadline, c.recv()).await {
        out.push(r);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_decodes_with_keys_headers_and_timestamps() {
    let broker = BrokerProcess::start(SETS);
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("fc-{codec}");
        create_topic(&broker.bootstrap, &topic, 1).await;
        produce(&broker.bootstrap, &topic, 1, 0, 500, codec).await;
        let mut c = consumer(&broker.bootstrap, &format!("g-{codec}"), &[]);
        c.assign(&[TopicPartition::new(topic.as_str(), 0)])
            .await
            .expect("assign");
        let got = read(&mut c, 500, 30).await;
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.offset, i as i64, "{codec}");
            assert_eq!(r.key.as_deref(), Some(format!("k{i}").as_bytes()));
            assert_eq!(r.value.as_deref(), Some(format!("v{i}").as_bytes()));
            assert_eq!(r.timestamp, 1_700_000_000_000 + i as i64);
            assert_eq!(r.headers.len(), 1);
            assert_eq!(r.headers[0].0, "n");
            assert_eq!(r.headers[0].1.as_deref(), Some(i.to_string().as_bytes()));
        }
        c.close().await.expect("close");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fjord_and_librdkafka_members_share_a_group_and_take_over_from_a_dead_one() {
    let broker = BrokerProcess::start(SETS);
    let b = broker.bootstrap.clone();
    create_topic(&b, "mixed", 6).await;
    produce(&b, "mixed", 6, 0, 600, "none").await;
    let mut f1 = consumer(&b, "g-mixed", &[]);
    let mut f2 = consumer(&b, "g-mixed", &[]);
    f1.subscribe(&["mixed"]).expect("subscribe");
    f2.subscribe(&["mixed"]).expect("subscribe");
    let rd: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", "g-mixed")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("rdkafka consumer");
    rd.subscribe(&["mixed"]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let _ = rd.poll(Duration::from_millis(20));
        let _ = tokio::time::timeout(Duration::from_millis(20), f1.recv()).await;
        let _ = tokio::time::timeout(Duration::from_millis(20), f2.recv()).await;
        let theirs = rd.assignment().map(|t| t.count()).unwrap_or(0);
        if f1.assignment().len() == 2 && f2.assignment().len() == 2 && theirs == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no 2/2/2 split: fjord {:?} {:?}, librdkafka {theirs}",
            f1.assignment(),
            f2.assignment()
        );
    }
    let mut all: BTreeSet<TopicPartition> = f1.assignment().into_iter().collect();
    all.extend(f2.assignment());
    assert_eq!(all.len(), 4, "fjord members own 4 distinct partitions");

    // A Fjord member dies without leaving (its tasks stop; no LeaveGroup): after the
    // session timeout the others own its partitions.
    // Dropping without close stops its tasks and sends no LeaveGroup, as a kill would.
    drop(f2);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let _ = rd.poll(Duration::from_millis(20));
        let _ = tokio::time::timeout(Duration::from_millis(20), f1.recv()).await;
        let theirs = rd.assignment().map(|t| t.count()).unwrap_or(0);
        if f1.assignment().len() + theirs == 6 && theirs > 0 && f1.assignment().len() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no takeover: fjord {:?}, librdkafka {theirs}",
            f1.assignment()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_commits_lose_and_repeat_nothing_across_rebalances_and_restarts() {
    let mut broker = BrokerProcess::start(SETS);
    let b = broker.bootstrap.clone();
    create_topic(&b, "exact", 4).await;
    produce(&b, "exact", 4, 0, 400, "lz4").await;
    // First member alone reads part, committing after every record it hands on.
    let mut first = consumer(&b, "g-exact", &[]);
    first.subscribe(&["exact"]).expect("subscribe");
    let mut seen: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for r in read(&mut first, 150, 30).await {
        *seen.entry((r.partition, r.offset)).or_default() += 1;
        first.commit().await.expect("commit");
    }
    // A second member joins: a rebalance moves partitions; both keep committing.
    let mut second = consumer(&b, "g-exact", &[]);
    second.subscribe(&["exact"]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(40);
    while seen.len() < 400 {
        assert!(Instant::now() < deadline, "read {} of 400", seen.len());
        for c in [&mut first, &mut second] {
            if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_millis(50), c.recv()).await {
                *seen.entry((r.partition, r.offset)).or_default() += 1;
                // A commit refused by a rebalance in progress is retried by the next one.
                let _ = c.commit().await;
            }
        }
    }
    assert!(
        seen.values().all(|n| *n == 1),
        "records read twice across the rebalance"
    );
    first.commit().await.ok();
    second.commit().await.ok();
    first.close().await.ok();
    second.close().await.ok();

    // Broker restart: the group resumes after everything committed.
    let port = broker.port();
    let keep = broker.take_data_dir().expect("data dir");
    broker.kill();
    let broker = BrokerProcess::start_in(keep.path(), port, SETS);
    produce(&broker.bootstrap, "exact", 4, 400, 40, "none").await;
    let mut third = consumer(&broker.bootstrap, "g-exact", &[]);
    third.subscribe(&["exact"]).expect("subscribe");
    let got = read(&mut third, 40, 30).await;
    assert!(
        read_extra(&mut third, 500).await.is_empty(),
        "old records came back"
    );
    let values: BTreeSet<String> = got
        .iter()
        .map(|r| String::from_utf8(r.value.as_deref().unwrap_or_default().to_vec()).expect("utf-8"))
        .collect();
    let expected: BTreeSet<String> = (400..440).map(|i| format!("v{i}")).collect();
    assert_eq!(values, expected);
    let committed = third
        .committed(&[TopicPartition::new("exact", 0)])
        .await
        .expect("committed");
    assert_eq!(committed[&TopicPartition::new("exact", 0)], Some(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_and_pause_work() {
    let (metrics, metrics_addr) = free_metrics_listener();
    let mut sets = SETS.to_vec();
    sets.push(&metrics);
    let broker = BrokerProcess::start(&sets);
    let b = broker.bootstrap.clone();
    create_topic(&b, "seek", 2).await;
    produce(&b, "seek", 2, 0, 100, "none").await;
    let p0 = TopicPartition::new("seek", 0);
    let p1 = TopicPartition::new("seek", 1);
    let mut c = consumer(&b, "g-seek", &[]);
    c.assign(&[p0.clone(), p1.clone()]).await.expect("assign");
    c.pause(std::slice::from_ref(&p1));
    let got = read(&mut c, 50, 30).await;
    assert!(
        got.iter().all(|r| r.partition == 0),
        "a paused partition was read"
    );
    assert!(read_extra(&mut c, 300).await.is_empty());
    c.seek(&p0, 10).expect("seek");
    let again = read(&mut c, 5, 30).await;
    assert_eq!(
        again
            .iter()
            .map(|r| (r.partition, r.offset))
            .collect::<Vec<_>>(),
        (10..15).map(|o| (0, o)).collect::<Vec<_>>()
    );
    assert_eq!(c.position(&p0), Some(15));
    c.seek(&p0, 50).expect("seek to the end");
    c.resume(std::slice::from_ref(&p1));
    let resumed = read(&mut c, 50, 30).await;
    assert!(resumed.iter().all(|r| r.partition == 1));
    assert_eq!(resumed[0].offset, 0);
    // Fjord's consumer fetches by topic ID (Fetch v18) once its metadata has the IDs.
    assert_eq!(highest_version_served(&metrics_addr, "Fetch"), Some(18));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_batch_is_an_error_not_a_skip() {
    let broker = BrokerProcess::start(SETS);
    let b = broker.bootstrap.clone();
    create_topic(&b, "rot", 1).await;
    produce(&b, "rot", 1, 0, 10, "none").await;
    // Flip a byte inside the records of the stored batch (the broker serves what is on
    // disk; only the client's CRC check can notice).
    let log = broker.data.join("rot-0").join("00000000000000000000.log");
    let mut bytes = std::fs::read(&log).expect("segment");
    let at = bytes.len() - 3;
    bytes[at] ^= 0xff;
    std::fs::write(&log, bytes).expect("write");
    let mut c = consumer(&b, "g-rot", &[]);
    c.assign(&[TopicPartition::new("rot", 0)])
        .await
        .expect("assign");
    let got = tokio::time::timeout(Duration::from_secs(20), c.recv())
        .await
        .expect("an answer");
    match got {
        Err(ConsumeError::Corrupt { partition, .. }) => assert_eq!(partition, 0),
        other => panic!("expected a corrupt-batch error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batches_pass_the_crc_check_whole_and_fail_it_with_one_byte_changed() {
    // Batches of 300 KB span many of the 16 KiB blocks the consumer's connection
    // checksums as they arrive; each batch's CRC is joined from those.
    let broker = BrokerProcess::start(SETS);
    let b = broker.bootstrap.clone();
    create_topic(&b, "big", 1).await;
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    let values: Vec<Vec<u8>> = (0..4u8)
        .map(|i| (0..300_000u32).map(|n| (n % 251) as u8 ^ i).collect())
        .collect();
    for v in &values {
        p.send(
            FutureRecord::<(), _>::to("big").payload(v),
            Duration::from_secs(10),
        )
        .await
        .expect("acked");
    }
    let mut c = consumer(&b, "g-big", &[]);
    c.assign(&[TopicPartition::new("big", 0)])
        .await
        .expect("assign");
    let got = read(&mut c, 4, 20).await;
    let got: Vec<Vec<u8>> = got
        .iter()
        .map(|r| r.value.as_deref().expect("value").to_vec())
        .collect();
    assert!(got == values, "the records' bytes as produced");
    drop(c);

    // One byte changed in the middle of the third batch, in place: the broker serves
    // the changed bytes from the page cache, and only the consumer's check can notice.
    let log = broker.data.join("big-0").join("00000000000000000000.log");
    let len = std::fs::metadata(&log).expect("segment").len();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&log)
        .expect("open");
    // Four batches of one record each, the same size: the third starts at len / 2.
    assert_eq!(len % 4, 0, "four equal batches");
    let mut base = [0u8; 8];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut base, len / 2).expect("read");
    assert_eq!(
        i64::from_be_bytes(base),
        2,
        "the third batch starts halfway"
    );
    let at = len / 2 + len / 8;
    let mut byte = [0u8; 1];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut byte, at).expect("read");
    std::os::unix::fs::FileExt::write_all_at(&file, &[byte[0] ^ 0x20], at).expect("write");
    let mut c = consumer(&b, "g-big-2", &[]);
    c.assign(&[TopicPartition::new("big", 0)])
        .await
        .expect("assign");
    let mut good = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), c.recv())
            .await
            .expect("an answer")
        {
            Ok(r) => {
                assert!(
                    r.offset < 2,
                    "record {} of the changed batch came out",
                    r.offset
                );
                good += 1;
            }
            Err(ConsumeError::Corrupt { offset, .. }) => {
                assert_eq!(offset, 2, "the changed batch");
                break;
            }
            Err(e) => panic!("expected a corrupt-batch error, got {e}"),
        }
    }
    assert_eq!(good, 2, "the batches before the changed one");
}

/// Polls both consumers until `done`, or panics after `secs`.
async fn poll_both(
    a: &mut Consumer,
    b: &mut Consumer,
    secs: u64,
    what: &str,
    done: impl Fn(&Consumer, &Consumer) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done(a, b) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?} / {:?}",
            a.assignment(),
            b.assignment()
        );
        let _ = tokio::time::timeout(Duration::from_millis(20), a.recv()).await;
        let _ = tokio::time::timeout(Duration::from_millis(20), b.recv()).await;
    }
}

#[derive(Debug, Default)]
struct Events(std::sync::Mutex<Vec<(&'static str, Vec<i32>)>>);

impl fjord_consumer::RebalanceListener for Events {
    fn on_assigned(&self, ps: &[TopicPartition]) {
        let ps = ps.iter().map(|p| p.partition).collect();
        self.0.lock().expect("events").push(("assigned", ps));
    }
    fn on_revoked(&self, ps: &[TopicPartition]) {
        let ps = ps.iter().map(|p| p.partition).collect();
        self.0.lock().expect("events").push(("revoked", ps));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_revokes_only_what_moves() {
    let broker = BrokerProcess::start(SETS);
    let b = broker.bootstrap.clone();
    create_topic(&b, "coop", 4).await;
    let events = Arc::new(Events::default());
    let coop = [("partition.assignment.strategy", "cooperative-sticky")];
    let mut c1 = Consumer::builder()
        .set("bootstrap.servers", &b)
        .set("group.id", "g-coop")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("heartbeat.interval.ms", "300")
        .set("session.timeout.ms", "6000")
        .rebalance_listener(events.clone())
        .build()
        .expect("consumer");
    let mut c2 = consumer(&b, "g-coop", &coop);
    c1.subscribe(&["coop"]).expect("subscribe");
    poll_both(&mut c1, &mut c2, 30, "c1 owning all", |a, _| {
        a.assignment().len() == 4
    })
    .await;
    c2.subscribe(&["coop"]).expect("subscribe");
    poll_both(&mut c1, &mut c2, 30, "a 2/2 split", |a, b| {
        a.assignment().len() == 2 && b.assignment().len() == 2
    })
    .await;
    let revoked: Vec<i32> = events
        .0
        .lock()
        .expect("events")
        .iter()
        .filter(|(what, _)| *what == "revoked")
        .flat_map(|(_, ps)| ps.clone())
        .collect();
    assert_eq!(
        revoked.len(),
        2,
        "only the moved partitions were revoked: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_fjord_member_rejoins_without_a_rebalance() {
    let broker = BrokerProcess::start(SETS);
    let b = broker.bootstrap.clone();
    create_topic(&b, "static", 4).await;
    let events = Arc::new(Events::default());
    let mut one = Consumer::builder()
        .set("bootstrap.servers", &b)
        .set("group.id", "g-static")
        .set("group.instance.id", "one")
        .set("heartbeat.interval.ms", "300")
        .set("session.timeout.ms", "20000")
        .rebalance_listener(events.clone())
        .build()
        .expect("consumer");
    let statik = [
        ("group.instance.id", "two"),
        ("session.timeout.ms", "20000"),
    ];
    let mut two = consumer(&b, "g-static", &statik);
    one.subscribe(&["static"]).expect("subscribe");
    two.subscribe(&["static"]).expect("subscribe");
    poll_both(&mut one, &mut two, 30, "a 2/2 split", |a, b| {
        a.assignment().len() == 2 && b.assignment().len() == 2
    })
    .await;
    let had = two.assignment();
    let before = events.0.lock().expect("events").len();
    two.close().await.expect("close"); // a static member sends no LeaveGroup
    let mut again = consumer(&b, "g-static", &statik);
    again.subscribe(&["static"]).expect("subscribe");
    poll_both(
        &mut one,
        &mut again,
        30,
        "the static member back",
        |_, b| b.assignment().len() == 2,
    )
    .await;
    assert_eq!(again.assignment(), had);
    assert_eq!(
        events.0.lock().expect("events").len(),
        before,
        "the other member rebalanced"
    );
}
