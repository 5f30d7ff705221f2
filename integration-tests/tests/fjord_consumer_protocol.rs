//! Fjord's own consumer on KIP-848's consumer protocol (`group.protocol=consumer`)
//! against the real broker: members split a topic by the broker's assignment, never
//! own a partition at the same time, hand partitions over on a leave, commit at their
//! member epoch (OffsetCommit v9), and a static member gets its partitions back. The
//! broker's request counters prove no classic JoinGroup was sent.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use fjord_consumer::{ConsumeError, Consumer, TopicPartition};
use fjord_integration_tests::metrics::{free_metrics_listener, highest_version_served};
use fjord_integration_tests::{create_topic, BrokerProcess};
use fjord_producer::{Producer, ProducerRecord};

/// Heartbeats every 300 ms, so reconciliations take a second, not ten.
const SETS: &[&str] = &[
    "group.initial.rebalance.delay.ms=0",
    "group.consumer.min.heartbeat.interval.ms=100",
    "group.consumer.heartbeat.interval.ms=300",
];

async fn produce(bootstrap: &str, topic: &str, partitions: i32, count: usize) {
    let p = Producer::builder()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .build()
        .expect("producer");
    let mut pending = Vec::new();
    for i in 0..count {
        let record = ProducerRecord::new(topic, format!("v{i}")).partition(i as i32 % partitions);
        pending.push(p.send(record).await.expect("queued"));
    }
    for d in pending {
        d.await.expect("acked");
    }
    p.close().await;
}

fn member(bootstrap: &str, group: &str, extra: &[(&str, &str)]) -> Consumer {
    let mut b = Consumer::builder()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("group.protocol", "consumer")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.max.wait.ms", "100");
    for (k, v) in extra {
        b = b.set(k, v);
    }
    b.build().expect("consumer")
}

fn owned(c: &Consumer) -> BTreeSet<i32> {
    c.assignment().iter().map(|tp| tp.partition).collect()
}

/// Polls `members` (committing what each reads) until `done`; every record read goes
/// into `seen`, and no partition is ever owned by two members at once.
async fn poll_until(
    members: &mut [&mut Consumer],
    seen: &mut BTreeSet<(i32, i64)>,
    what: &str,
    done: impl Fn(&[&mut Consumer], &BTreeSet<(i32, i64)>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while !done(members, seen) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        for c in members.iter_mut() {
            if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_millis(20), c.recv()).await {
                seen.insert((r.partition, r.offset));
                // STALE_MEMBER_EPOCH while the epoch moves: the next commit covers it.
                let _ = c.commit().await;
            }
        }
        let sets: Vec<BTreeSet<i32>> = members.iter().map(|c| owned(c)).collect();
        for (i, a) in sets.iter().enumerate() {
            for b in &sets[i + 1..] {
                assert!(a.is_disjoint(b), "a partition owned twice: {sets:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_split_by_the_brokers_assignment_and_hand_partitions_over() {
    let (metrics, metrics_addr) = free_metrics_listener();
    let mut sets = SETS.to_vec();
    sets.push(&metrics);
    let broker = BrokerProcess::start(&sets);
    let b = broker.bootstrap.clone();
    create_topic(&b, "modern", 4).await;
    produce(&b, "modern", 4, 400).await;
    let mut seen = BTreeSet::new();
    let mut first = member(&b, "g-modern", &[]);
    first.subscribe(&["modern"]).expect("subscribe");
    poll_until(
        &mut [&mut first],
        &mut seen,
        "first owning all four",
        |m, seen| owned(m[0]).len() == 4 && seen.len() >= 100,
    )
    .await;
    let mut second = member(&b, "g-modern", &[]);
    second.subscribe(&["modern"]).expect("subscribe");
    poll_until(
        &mut [&mut first, &mut second],
        &mut seen,
        "a 2/2 split and every record",
        |m, seen| owned(m[0]).len() == 2 && owned(m[1]).len() == 2 && seen.len() == 400,
    )
    .await;
    first.close().await.expect("close");
    poll_until(
        &mut [&mut second],
        &mut seen,
        "second taking over",
        |m, _| owned(m[0]).len() == 4,
    )
    .await;
    second.commit().await.expect("commit at the member epoch");
    let tps: Vec<TopicPartition> = (0..4).map(|p| TopicPartition::new("modern", p)).collect();
    let committed = second.committed(&tps).await.expect("committed");
    for tp in &tps {
        assert_eq!(committed[tp], Some(100), "{tp:?}");
    }
    second.close().await.expect("close");
    assert_eq!(
        highest_version_served(&metrics_addr, "ConsumerGroupHeartbeat"),
        Some(1)
    );
    assert_eq!(
        highest_version_served(&metrics_addr, "OffsetCommit"),
        Some(9)
    );
    assert_eq!(
        highest_version_served(&metrics_addr, "JoinGroup"),
        None,
        "no classic join"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_gets_its_partitions_back_after_a_restart() {
    let broker = BrokerProcess::start(SETS);
    let b = broker.bootstrap.clone();
    create_topic(&b, "modern-static", 4).await;
    let mut seen = BTreeSet::new();
    let mut keep = member(&b, "g-static", &[("group.instance.id", "keep")]);
    let mut away = member(&b, "g-static", &[("group.instance.id", "away")]);
    keep.subscribe(&["modern-static"]).expect("subscribe");
    away.subscribe(&["modern-static"]).expect("subscribe");
    poll_until(
        &mut [&mut keep, &mut away],
        &mut seen,
        "a 2/2 split",
        |m, _| owned(m[0]).len() == 2 && owned(m[1]).len() == 2,
    )
    .await;
    let before = owned(&away);
    away.close().await.expect("close");
    // Its temporary leave (epoch -2) keeps its partitions for it.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let _ = tokio::time::timeout(Duration::from_millis(50), keep.recv()).await;
        assert_eq!(
            owned(&keep).len(),
            2,
            "nobody takes a static member's partitions"
        );
    }
    let mut back = member(&b, "g-static", &[("group.instance.id", "away")]);
    back.subscribe(&["modern-static"]).expect("subscribe");
    poll_until(
        &mut [&mut keep, &mut back],
        &mut seen,
        "the same partitions again",
        |m, _| owned(m[1]) == before,
    )
    .await;
}

#[test]
fn classic_only_settings_are_refused_on_the_consumer_protocol() {
    for (key, value) in [
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "300"),
        ("partition.assignment.strategy", "range"),
    ] {
        let built = Consumer::builder()
            .set("group.id", "g")
            .set("group.protocol", "consumer")
            .set(key, value)
            .build();
        assert!(
            matches!(built, Err(ConsumeError::Config(ref m)) if m.contains(key)),
            "{key}"
        );
    }
    let built = Consumer::builder()
        .set("group.id", "g")
        .set("group.remote.assignor", "range")
        .build();
    assert!(
        matches!(built, Err(ConsumeError::Config(_))),
        "a remote assignor needs the consumer protocol"
    );
}
