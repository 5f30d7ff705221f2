//! librdkafka 2.12 (the rdkafka crate) with `group.protocol=consumer` (KIP-848) against
//! the real broker: members split a topic and one takes over from another that leaves;
//! and a group ID migrating from the classic protocol to the consumer protocol and back
//! while empty, its committed offsets kept each way (no record is read twice).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use fjord_integration_tests::metrics::{free_metrics_listener, highest_version_served};
use fjord_integration_tests::{create_topic, fjord, BrokerProcess};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};

/// The broker answers heartbeats every 500 ms, so groups reconcile in seconds.
const SETS: &[&str] = &[
    "group.initial.rebalance.delay.ms=0",
    "group.consumer.min.heartbeat.interval.ms=100",
    "group.consumer.heartbeat.interval.ms=500",
];

fn member(bootstrap: &str, group: &str, protocol: &str) -> BaseConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100");
    if protocol != "classic" {
        config.set("group.protocol", protocol);
    } else {
        config
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500");
    }
    config.create().expect("consumer")
}

fn assigned(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment()
        .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

/// Polls every consumer until `done` holds (messages are kept per consumer).
fn poll_until(
    consumers: &[&BaseConsumer],
    got: &mut [Vec<String>],
    secs: u64,
    what: &str,
    done: impl Fn(&[Vec<String>]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done(got) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; assignments: {:?}",
            consumers.iter().map(|c| assigned(c)).collect::<Vec<_>>()
        );
        for (i, c) in consumers.iter().enumerate() {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(20)) {
                let v = m.payload().map(|p| String::from_utf8_lossy(p).into_owned());
                got[i].push(v.unwrap_or_default());
            }
        }
    }
}

async fn produce(bootstrap: &str, topic: &str, partitions: i32, from: usize, count: usize) {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for i in from..from + count {
        let value = format!("v{i}");
        p.send(
            FutureRecord::<(), String>::to(topic)
                .partition(i as i32 % partitions)
                .payload(&value),
            Duration::from_secs(10),
        )
        .await
        .expect("delivered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_protocol_members_split_a_topic_and_take_over() {
    let broker = BrokerProcess::start(SETS);
    create_topic(&broker.bootstrap, "kip848", 4).await;
    let a = member(&broker.bootstrap, "g848", "consumer");
    let b = member(&broker.bootstrap, "g848", "consumer");
    a.subscribe(&["kip848"]).expect("subscribe");
    b.subscribe(&["kip848"]).expect("subscribe");
    let mut got = vec![Vec::new(), Vec::new()];
    poll_until(
        &[&a, &b],
        &mut got,
        60,
        "two members with two partitions each",
        |_| assigned(&a).len() == 2 && assigned(&b).len() == 2,
    );
    assert!(assigned(&a).is_disjoint(&assigned(&b)));
    // Produced once the group settled: with no rebalance while reading, each record is
    // read by its partition's one owner, once.
    produce(&broker.bootstrap, "kip848", 4, 0, 40).await;
    poll_until(&[&a, &b], &mut got, 60, "every record", |got| {
        got[0].len() + got[1].len() >= 40
    });
    let all: BTreeSet<&String> = got.iter().flatten().collect();
    assert_eq!(all.len(), 40, "each record once");
    a.commit_consumer_state(CommitMode::Sync).expect("commit");
    drop(a); // leaves the group
    poll_until(
        &[&b],
        &mut got[1..],
        60,
        "the remaining member owning all four",
        |_| assigned(&b).len() == 4,
    );
    // `fjord groups describe` shows the KIP-848 group: its epochs, assignor, the member
    // with its epoch and partitions, and who owns each partition.
    let (ok, out, err) = fjord(
        &[
            "groups",
            "describe",
            "--group",
            "g848",
            "--bootstrap-server",
            &broker.bootstrap,
        ],
        None,
    );
    assert!(ok, "{err}");
    let head = out.lines().next().unwrap_or_default();
    assert!(
        head.contains("Type: consumer")
            && head.contains("Assignor: uniform")
            && head.contains("Members: 1"),
        "{out}"
    );
    let member = out.lines().nth(2).unwrap_or_default();
    assert!(
        member.contains("kip848-0,kip848-1,kip848-2,kip848-3"),
        "{out}"
    );
    let owned = out
        .lines()
        .filter(|l| l.starts_with("kip848\t") && !l.ends_with("\t-"))
        .count();
    assert_eq!(owned, 4, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_group_moves_between_protocols_with_its_offsets() {
    let (metrics, metrics_addr) = free_metrics_listener();
    let mut sets = SETS.to_vec();
    sets.push(&metrics);
    let broker = BrokerProcess::start(&sets);
    create_topic(&broker.bootstrap, "migrate", 2).await;
    produce(&broker.bootstrap, "migrate", 2, 0, 10).await;
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for (round, protocol) in ["classic", "consumer", "classic"].into_iter().enumerate() {
        let c = member(&broker.bootstrap, "gmig", protocol);
        c.subscribe(&["migrate"]).expect("subscribe");
        let mut got: Vec<Vec<String>> = vec![Vec::new()];
        poll_until(
            &[&c],
            &mut got,
            60,
            &format!("{protocol} member's records"),
            |got| got[0].len() >= 10,
        );
        for v in &got[0] {
            assert!(
                seen.insert(v.clone()),
                "{v} read again after the switch to {protocol}"
            );
        }
        c.commit_consumer_state(CommitMode::Sync).expect("commit");
        // The member really spoke the protocol of its round.
        let heartbeats = highest_version_served(&metrics_addr, "ConsumerGroupHeartbeat");
        assert_eq!(
            heartbeats.is_some(),
            round > 0,
            "{protocol}: KIP-848 heartbeats"
        );
        // Leave the group before the next protocol takes the ID over.
        c.unsubscribe();
        for _ in 0..20 {
            let _ = c.poll(Duration::from_millis(10));
        }
        drop(c);
        produce(&broker.bootstrap, "migrate", 2, 10 * (round + 1), 10).await;
    }
}
