//! Consumer groups with librdkafka (the rdkafka crate, 2.12) and kcat (Debian's
//! librdkafka 2.0.2) against the real broker: partitions split across members, members
//! leaving and dying, committed offsets across consumer and broker restarts,
//! auto.offset.reset, static membership, cooperative-sticky rebalancing and lag.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fjord_integration_tests::{create_topic, BrokerProcess};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// Broker settings for these tests: no initial rebalance delay, so groups form at once.
const SETS: &[&str] = &["group.initial.rebalance.delay.ms=0"];

/// A rebalance event: (assigned, else revoked; the partitions).
type Event = (bool, Vec<i32>);

/// Rebalance events a consumer saw.
#[derive(Clone, Default)]
struct Recorder {
    events: Arc<Mutex<Vec<Event>>>,
}

impl Recorder {
    fn events(&self) -> Vec<Event> {
        self.events.lock().expect("events").clone()
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ClientContext for Recorder {}

impl ConsumerContext for Recorder {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let revoked = partitions_of(tpl);
            self.events.lock().expect("events").push((false, revoked));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let assigned = partitions_of(tpl);
            self.events.lock().expect("events").push((true, assigned));
        }
    }
}

type Member = BaseConsumer<Recorder>;

fn member(bootstrap: &str, group: &str, extra: &[(&str, &str)]) -> (Member, Recorder) {
    let recorder = Recorder::default();
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("fetch.wait.max.ms", "100");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    let c = config
        .create_with_context(recorder.clone())
        .expect("consumer");
    (c, recorder)
}

fn assigned(c: &Member) -> BTreeSet<i32> {
    c.assignment()
        .map(|tpl| partitions_of(&tpl).into_iter().collect())
        .unwrap_or_default()
}

/// Polls every consumer (dropping messages) until `done` holds, or panics after `secs`.
fn poll_until(consumers: &[&Member], secs: u64, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; assignments: {:?}",
            consumers.iter().map(|c| assigned(c)).collect::<Vec<_>>()
        );
        for c in consumers {
            let _ = c.poll(Duration::from_millis(20));
        }
    }
}

/// Produces `count` records round-robin over `partitions`, values "v<i>".
async fn produce(bootstrap: &str, topic: &str, partitions: i32, from: usize, count: usize) {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let mut pending = Vec::new();
    for i in from..from + count {
        let value = format!("v{i}");
        let partition = (i as i32) % partitions;
        let f = p
            .send_result(
                FutureRecord::<(), String>::to(topic)
                    .partition(partition)
                    .payload(&value),
            )
            .expect("queue");
        pending.push(f);
    }
    for f in pending {
        f.await.expect("delivered").expect("acked");
    }
}

/// Reads until `count` messages arrived: (partition, offset) of each.
fn read(c: &Member, count: usize, secs: u64) -> Vec<(i32, i64)> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut got = Vec::new();
    while got.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} messages",
            got.len()
        );
        if let Some(m) = c.poll(Duration::from_millis(50)) {
            let m = m.expect("message");
            got.push((m.partition(), m.offset()));
        }
    }
    got
}

/// Polls for `ms` more and returns whatever arrives (expected: nothing).
fn read_extra(c: &Member, ms: u64) -> Vec<(i32, i64)> {
    let deadline = Instant::now() + Duration::from_millis(ms);
    let mut got = Vec::new();
    while Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            got.push((m.partition(), m.offset()));
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_split_partitions_and_take_over_when_one_leaves() {
    let broker = BrokerProcess::start(SETS);
    let b = broker.bootstrap.as_str();
    create_topic(b, "split", 6).await;
    let (c1, _) = member(b, "g-split", &[]);
    let (c2, _) = member(b, "g-split", &[]);
    c1.subscribe(&["split"]).expect("subscribe");
    c2.subscribe(&["split"]).expect("subscribe");
    poll_until(&[&c1, &c2], 30, "two members with 3 each", || {
        assigned(&c1).len() == 3 && assigned(&c2).len() == 3
    });
    let (c3, _) = member(b, "g-split", &[]);
    c3.subscribe(&["split"]).expect("subscribe");
    poll_until(&[&c1, &c2, &c3], 30, "three members with 2 each", || {
        [&c1, &c2, &c3].iter().all(|c| assigned(c).len() == 2)
    });
    let all: BTreeSet<i32> = [&c1, &c2, &c3].iter().flat_map(|c| assigned(c)).collect();
    assert_eq!(
        all,
        (0..6).collect(),
        "every partition assigned exactly once"
    );

    // A clean close sends LeaveGroup: the others take over without waiting for a timeout.
    let left_at = Instant::now();
    drop(c3);
    poll_until(&[&c1, &c2], 30, "two members with 3 each again", || {
        assigned(&c1).len() == 3 && assigned(&c2).len() == 3
    });
    assert!(
        left_at.elapsed() < Duration::from_secs(5),
        "takeover after a leave waited {:?} (a session timeout?)",
        left_at.elapsed()
    );
    let all: BTreeSet<i32> = assigned(&c1).union(&assigned(&c2)).copied().collect();
    assert_eq!(all, (0..6).collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_is_expired_and_its_partitions_reassigned() {
    let broker = BrokerProcess::start(SETS);
    let b = broker.bootstrap.as_str();
    create_topic(b, "die", 4).await;
    produce(b, "die", 4, 0, 40).await;
    let (c1, _) = member(b, "g-die", &[]);
    c1.subscribe(&["die"]).expect("subscribe");
    poll_until(
        &[&c1],
        30,
        "the first member to own every partition",
        || assigned(&c1).len() == 4,
    );
    // Debian's kcat (librdkafka 2.0.2) as the second member, in its own process.
    let mut kcat = Command::new("kcat")
        .args(["-b", b, "-G", "g-die", "-X", "session.timeout.ms=6000"])
        .args([
            "-X",
            "heartbeat.interval.ms=500",
            "-X",
            "auto.offset.reset=earliest",
        ])
        .arg("die")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kcat is installed (scripts/test installs it)");
    poll_until(&[&c1], 30, "kcat to take half the partitions", || {
        assigned(&c1).len() == 2
    });
    let group = c1
        .fetch_group_list(Some("g-die"), Duration::from_secs(5))
        .expect("group list");
    let g = &group.groups()[0];
    assert_eq!(g.state(), "Stable");
    assert_eq!(g.members().len(), 2);

    kcat.kill().expect("kill kcat");
    let _ = kcat.wait();
    let died_at = Instant::now();
    poll_until(&[&c1], 30, "the survivor to own every partition", || {
        assigned(&c1).len() == 4
    });
    // The session timeout (6 s) had to pass: a kill sends no LeaveGroup.
    assert!(
        died_at.elapsed() >= Duration::from_secs(4),
        "{:?}",
        died_at.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_consumer_and_broker_restarts() {
    let mut broker = BrokerProcess::start(SETS);
    let b = broker.bootstrap.clone();
    create_topic(&b, "commits", 2).await;
    produce(&b, "commits", 2, 0, 100).await;

    let (first, _) = member(&b, "g-commit", &[]);
    first.subscribe(&["commits"]).expect("subscribe");
    let read_first = read(&first, 60, 30);
    first
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit");
    drop(first);

    let (second, _) = member(&b, "g-commit", &[]);
    second.subscribe(&["commits"]).expect("subscribe");
    let read_second = read(&second, 40, 30);
    assert!(read_extra(&second, 500).is_empty(), "records read twice");
    let mut all: Vec<(i32, i64)> = read_first.iter().chain(&read_second).copied().collect();
    all.sort();
    let expected: Vec<(i32, i64)> = (0..2).flat_map(|p| (0..50).map(move |o| (p, o))).collect();
    assert_eq!(
        all, expected,
        "no record skipped or repeated across the restart"
    );
    second
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit");
    drop(second);

    let port = broker.port();
    let keep = broker.take_data_dir().expect("data dir");
    broker.kill();
    let broker = BrokerProcess::start_in(keep.path(), port, SETS);
    produce(&broker.bootstrap, "commits", 2, 100, 20).await;
    let (third, _) = member(&broker.bootstrap, "g-commit", &[]);
    third.subscribe(&["commits"]).expect("subscribe");
    let mut read_third = read(&third, 20, 30);
    assert!(read_extra(&third, 500).is_empty(), "records read twice");
    read_third.sort();
    let expected: Vec<(i32, i64)> = (0..2).flat_map(|p| (50..60).map(move |o| (p, o))).collect();
    assert_eq!(read_third, expected, "only the records after the commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_offset_reset_earliest_and_latest() {
    let broker = BrokerProcess::start(SETS);
    let b = broker.bootstrap.as_str();
    create_topic(b, "reset", 1).await;
    produce(b, "reset", 1, 0, 10).await;

    let (earliest, _) = member(b, "g-earliest", &[]);
    earliest.subscribe(&["reset"]).expect("subscribe");
    let got = read(&earliest, 10, 30);
    assert_eq!(got, (0..10).map(|o| (0, o)).collect::<Vec<_>>());

    let (latest, _) = member(b, "g-latest", &[("auto.offset.reset", "latest")]);
    latest.subscribe(&["reset"]).expect("subscribe");
    poll_until(&[&latest], 30, "the assignment", || {
        !assigned(&latest).is_empty()
    });
    // librdkafka resolves "latest" with a ListOffsets right after the assignment (its
    // position() stays unset until a record is consumed, so there is nothing to wait on).
    assert!(
        read_extra(&latest, 1500).is_empty(),
        "old records with latest"
    );
    produce(b, "reset", 1, 10, 5).await;
    let got = read(&latest, 5, 30);
    assert_eq!(got, (10..15).map(|o| (0, o)).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_rejoins_without_a_rebalance() {
    let broker = BrokerProcess::start(SETS);
    let b = broker.bootstrap.as_str();
    create_topic(b, "static", 4).await;
    let static_member = |instance: &str| {
        member(
            b,
            "g-static",
            &[
                ("group.instance.id", instance),
                ("session.timeout.ms", "20000"),
            ],
        )
    };
    let (one, one_events) = static_member("one");
    let (two, _) = static_member("two");
    one.subscribe(&["static"]).expect("subscribe");
    two.subscribe(&["static"]).expect("subscribe");
    poll_until(&[&one, &two], 30, "two static members with 2 each", || {
        assigned(&one).len() == 2 && assigned(&two).len() == 2
    });
    let two_had = assigned(&two);
    let one_events_before = one_events.events();
    // A static member's close sends no LeaveGroup (KIP-345): its slot waits for it.
    drop(two);
    let (two_again, _) = static_member("two");
    two_again.subscribe(&["static"]).expect("subscribe");
    poll_until(&[&one, &two_again], 30, "the static member back", || {
        assigned(&two_again).len() == 2
    });
    assert_eq!(assigned(&two_again), two_had, "same partitions as before");
    // Keep the first member polling a little: a rebalance would show up as events.
    poll_until(&[&one, &two_again], 5, "a second of polling", {
        let start = Instant::now();
        move || start.elapsed() > Duration::from_secs(1)
    });
    assert_eq!(
        one_events.events(),
        one_events_before,
        "the other member saw a rebalance"
    );
    let group = one
        .fetch_group_list(Some("g-static"), Duration::from_secs(5))
        .expect("group list");
    assert_eq!(group.groups()[0].members().len(), 2);
    assert_eq!(group.groups()[0].state(), "Stable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_moves_only_what_it_must() {
    let broker = BrokerProcess::start(SETS);
    let b = broker.bootstrap.as_str();
    create_topic(b, "coop", 4).await;
    let coop = [("partition.assignment.strategy", "cooperative-sticky")];
    let (c1, c1_events) = member(b, "g-coop", &coop);
    c1.subscribe(&["coop"]).expect("subscribe");
    poll_until(
        &[&c1],
        30,
        "the first member to own every partition",
        || assigned(&c1).len() == 4,
    );
    let before = c1_events.events().len();
    let (c2, _) = member(b, "g-coop", &coop);
    c2.subscribe(&["coop"]).expect("subscribe");
    poll_until(&[&c1, &c2], 30, "2 partitions each", || {
        assigned(&c1).len() == 2 && assigned(&c2).len() == 2
    });
    let revoked: Vec<i32> = c1_events.events()[before..]
        .iter()
        .filter(|(assign, _)| !assign)
        .flat_map(|(_, ps)| ps.clone())
        .collect();
    assert_eq!(
        revoked.len(),
        2,
        "an incremental rebalance revokes only the moved partitions: {:?}",
        c1_events.events()
    );
    let kept: BTreeSet<i32> = (0..4).filter(|p| !revoked.contains(p)).collect();
    assert_eq!(assigned(&c1), kept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_the_log_end_minus_the_committed_offset() {
    let broker = BrokerProcess::start(SETS);
    let b = broker.bootstrap.as_str();
    create_topic(b, "lag", 1).await;
    produce(b, "lag", 1, 0, 50).await;
    let (c, _) = member(b, "g-lag", &[]);
    c.subscribe(&["lag"]).expect("subscribe");
    read(&c, 30, 30);
    c.commit_consumer_state(CommitMode::Sync).expect("commit");
    let committed = c
        .committed(Duration::from_secs(5))
        .expect("committed offsets");
    let offset = committed
        .find_partition("lag", 0)
        .expect("partition")
        .offset();
    assert_eq!(offset, Offset::Offset(30));
    let (_, high) = c
        .fetch_watermarks("lag", 0, Duration::from_secs(5))
        .expect("watermarks");
    assert_eq!(high - 30, 20, "lag");
    let group = c
        .fetch_group_list(Some("g-lag"), Duration::from_secs(5))
        .expect("group list");
    let g = &group.groups()[0];
    assert_eq!(g.state(), "Stable");
    assert_eq!(g.protocol_type(), "consumer");
    assert_eq!(g.members().len(), 1);
    assert!(
        g.members()[0].assignment().is_some_and(|a| !a.is_empty()),
        "DescribeGroups shows the member's assignment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_starting_together_share_one_rebalance_with_the_default_delay() {
    // Kafka's default group.initial.rebalance.delay.ms (3 s): a new group waits for more
    // members before its first assignment, so two consumers started together get their
    // partitions in one rebalance instead of two.
    let broker = BrokerProcess::start(&[]);
    let b = broker.bootstrap.as_str();
    create_topic(b, "together", 4).await;
    let (c1, e1) = member(b, "g-together", &[]);
    let (c2, e2) = member(b, "g-together", &[]);
    c1.subscribe(&["together"]).expect("subscribe");
    c2.subscribe(&["together"]).expect("subscribe");
    let started = Instant::now();
    poll_until(&[&c1, &c2], 30, "both members assigned", || {
        assigned(&c1).len() == 2 && assigned(&c2).len() == 2
    });
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "assigned after {:?}: no initial delay",
        started.elapsed()
    );
    assert_eq!(
        e1.events(),
        vec![(true, assigned(&c1).into_iter().collect())]
    );
    assert_eq!(
        e2.events(),
        vec![(true, assigned(&c2).into_iter().collect())]
    );
}
