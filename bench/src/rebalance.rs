//! `fjord-bench rebalance`: how long a group takes to settle when one member joins, and
//! how long the members that keep their partitions stop reading them, for the classic
//! protocol's eager (range) and cooperative (cooperative-sticky) rebalances and for the
//! KIP-848 consumer protocol. librdkafka (2.12) members, `--partitions` partitions (100
//! by default) shared by `--members` (10) members before the new one joins.
//!
//! "Settled": every partition owned, each by one member, and the new member holding its
//! share. "Pause": the longest time, between the join and the settling, that a member
//! did not own a partition it owned both before and after (0 when nothing it keeps is
//! ever revoked).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::ClientConfig;

use crate::broker::Broker;
use crate::options::Options;

/// The heartbeat interval of both protocols in this benchmark.
const HEARTBEAT: Duration = Duration::from_millis(500);

/// Who owns what, from the members' rebalance callbacks; and since when a member has
/// been without each partition it lost.
#[derive(Default)]
struct Ledger {
    owned: BTreeMap<usize, BTreeSet<i32>>,
    /// (member, partition) to when it was revoked, while it is not owned again.
    revoked_at: BTreeMap<(usize, i32), Instant>,
    /// (member, partition) to the time it spent revoked, over the measured window.
    paused: BTreeMap<(usize, i32), Duration>,
}

#[derive(Clone)]
struct Tracker {
    member: usize,
    ledger: Arc<Mutex<Ledger>>,
}

impl Tracker {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn partitions_of(tpl: &rdkafka::TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ClientContext for Tracker {}

impl ConsumerContext for Tracker {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let now = Instant::now();
            let mut l = self.ledger();
            for p in partitions_of(tpl) {
                l.owned.entry(self.member).or_default().remove(&p);
                l.revoked_at.insert((self.member, p), now);
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let now = Instant::now();
            let mut l = self.ledger();
            for p in partitions_of(tpl) {
                l.owned.entry(self.member).or_default().insert(p);
                if let Some(at) = l.revoked_at.remove(&(self.member, p)) {
                    *l.paused.entry((self.member, p)).or_default() += now - at;
                }
            }
        }
    }
}

/// One member polling on its own thread until told to stop.
struct Member {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Member {
    fn start(config: ClientConfig, topic: &str, tracker: Tracker) -> Result<Self> {
        let consumer: BaseConsumer<Tracker> =
            config.create_with_context(tracker).context("consumer")?;
        consumer.subscribe(&[topic]).context("subscribe")?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let _ = consumer.poll(Duration::from_millis(20));
            }
        });
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The client settings of a member of `group` under `protocol`.
fn member_config(bootstrap: &str, group: &str, protocol: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    match protocol {
        "consumer" => {
            c.set("group.protocol", "consumer");
        }
        strategy => {
            c.set("partition.assignment.strategy", strategy)
                .set("session.timeout.ms", "10000")
                .set("heartbeat.interval.ms", "500");
        }
    }
    c
}

/// Whether every partition is owned once and `newest` holds at least `share`.
fn settled(l: &Ledger, partitions: i32, newest: Option<usize>, share: usize) -> bool {
    let mut seen = BTreeSet::new();
    for set in l.owned.values() {
        for p in set {
            if !seen.insert(*p) {
                return false;
            }
        }
    }
    seen.len() == partitions as usize
        && newest.is_none_or(|m| l.owned.get(&m).map_or(0, BTreeSet::len) >= share)
}

fn wait(ledger: &Arc<Mutex<Ledger>>, what: &str, done: impl Fn(&Ledger) -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !done(&ledger.lock().unwrap_or_else(PoisonError::into_inner)) {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// (time to settle after the join, longest pause of a kept partition) for `protocol`.
fn measure(
    o: &Options,
    bootstrap: &str,
    protocol: &str,
    members: usize,
) -> Result<(Duration, Duration)> {
    let topic = format!("rebalance-{protocol}-{}", std::process::id());
    crate::workload::ensure_topic(bootstrap, &topic, o.partitions)?;
    let group = format!("{topic}-group");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut running = Vec::new();
    for m in 0..members {
        let tracker = Tracker {
            member: m,
            ledger: Arc::clone(&ledger),
        };
        running.push(Member::start(
            member_config(bootstrap, &group, protocol),
            &topic,
            tracker,
        )?);
        // Spread the members' heartbeats over the interval, as in a real deployment
        // (members started together would all hear of a rebalance at once).
        std::thread::sleep(HEARTBEAT / members as u32);
    }
    wait(&ledger, "the first assignment", |l| {
        settled(l, o.partitions, None, 0)
    })?;
    std::thread::sleep(Duration::from_secs(1));
    let before = ledger
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .owned
        .clone();
    {
        let mut l = ledger.lock().unwrap_or_else(PoisonError::into_inner);
        l.paused.clear();
        l.revoked_at.clear();
    }
    let joined = Instant::now();
    let tracker = Tracker {
        member: members,
        ledger: Arc::clone(&ledger),
    };
    running.push(Member::start(
        member_config(bootstrap, &group, protocol),
        &topic,
        tracker,
    )?);
    let share = o.partitions as usize / (members + 1);
    wait(&ledger, "the group to settle", |l| {
        settled(l, o.partitions, Some(members), share)
    })?;
    let took = joined.elapsed();
    let l = ledger.lock().unwrap_or_else(PoisonError::into_inner);
    let mut pause = Duration::ZERO;
    for (m, kept) in &before {
        for p in kept
            .iter()
            .filter(|p| l.owned.get(m).is_some_and(|now| now.contains(p)))
        {
            pause = pause.max(l.paused.get(&(*m, *p)).copied().unwrap_or_default());
        }
    }
    drop(l);
    drop(running);
    Ok((took, pause))
}

/// Runs the three protocols against one broker and prints (or, with `--json`, emits) a
/// row each.
pub(crate) fn run(o: &Options) -> Result<()> {
    let mut settings = vec![
        "group.initial.rebalance.delay.ms=0".to_string(),
        "group.consumer.min.heartbeat.interval.ms=100".to_string(),
        "group.consumer.heartbeat.interval.ms=500".to_string(),
    ];
    settings.extend(o.broker_settings.iter().cloned());
    let broker = match (&o.bootstrap, o.spawn_broker) {
        (Some(b), false) => Broker::external(b.clone(), o.broker_pid),
        _ => Broker::spawn_fjord(&settings)?,
    };
    let members = o.members;
    if !o.json {
        println!(
            "{} partitions, {members} members, then one more joins (heartbeats every 500 ms)",
            o.partitions
        );
        println!(
            "{:<22} {:>14} {:>22}",
            "protocol", "settled (ms)", "kept-partition pause (ms)"
        );
    }
    for (name, protocol) in [
        ("classic eager", "range"),
        ("classic cooperative", "cooperative-sticky"),
        ("consumer (KIP-848)", "consumer"),
    ] {
        let (took, pause) = measure(o, &broker.bootstrap, protocol, members)?;
        if o.json {
            println!(
                "{{\"workload\":\"rebalance\",\"protocol\":\"{protocol}\",\"partitions\":{},\"members\":{members},\"settled_ms\":{},\"kept_pause_ms\":{}}}",
                o.partitions,
                took.as_millis(),
                pause.as_millis()
            );
        } else {
            println!(
                "{name:<22} {:>14} {:>22}",
                took.as_millis(),
                pause.as_millis()
            );
        }
    }
    Ok(())
}
