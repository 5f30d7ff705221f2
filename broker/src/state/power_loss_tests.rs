//! Power losses through the broker's own metadata: topic creation and deletion, topic
//! config changes and committed offsets (with the offsets store's snapshots), run
//! against a model of what was acknowledged, on the fault-injecting file system.
//! After every loss the broker opens with every acknowledged creation, deletion,
//! config and commit in place.

use std::collections::BTreeMap;
use std::sync::Arc;

use fjord_storage::fault::{FaultIo, Torn};
use fjord_storage::Io;
use proptest::prelude::*;

use super::{Broker, ConfigChange, ConfigOp};
use crate::config::BrokerConfig;
use crate::groups::offset_records::Committed;

#[derive(Debug, Clone)]
enum Step {
    Create(u8),
    Delete(u8),
    Retention(u8, u32),
    Commit {
        partition: u8,
        offset: u16,
    },
    /// Enough commits at once to make the offsets store snapshot.
    CommitMany(u16),
    PowerLoss(Torn),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0u8..4).prop_map(Step::Create),
        1 => (0u8..4).prop_map(Step::Delete),
        2 => (0u8..4, 1u32..1_000_000).prop_map(|(t, v)| Step::Retention(t, v)),
        3 => (0u8..8, any::<u16>()).prop_map(|(partition, offset)| Step::Commit { partition, offset }),
        2 => any::<u16>().prop_map(Step::CommitMany),
        2 => prop_oneof![Just(Torn::Nothing), (1u64..3).prop_map(Torn::Pages)].prop_map(Step::PowerLoss),
    ]
}

/// What was acknowledged.
#[derive(Debug, Default)]
struct Model {
    /// Topics that exist, with their acknowledged retention.ms override.
    topics: BTreeMap<String, Option<u32>>,
    /// Committed offsets of group "g", by partition of topic "c".
    commits: BTreeMap<i32, i64>,
}

struct World {
    dir: tempfile::TempDir,
    fault: Arc<FaultIo>,
    broker: Option<Broker>,
    model: Model,
}

fn committed(offset: i64) -> Option<Committed> {
    Some(Committed {
        offset,
        leader_epoch: -1,
        metadata: None,
        commit_ms: 1,
    })
}

impl World {
    fn new() -> Self {
        let mut w = Self {
            dir: tempfile::tempdir().expect("tempdir"),
            fault: Arc::new(FaultIo::new()),
            broker: None,
            model: Model::default(),
        };
        w.open();
        w
    }

    fn open(&mut self) {
        let sets = vec![(
            "log.dirs".to_string(),
            self.dir.path().display().to_string(),
        )];
        let config = BrokerConfig::from_sources(None, &sets).expect("config");
        let broker = Broker::open_with_io(config, Io::new(self.fault.clone()))
            .expect("the broker opens after a power loss");
        self.check(&broker);
        self.broker = Some(broker);
    }

    fn check(&self, broker: &Broker) {
        let names: Vec<String> = broker.all_topics().iter().map(|t| t.name.clone()).collect();
        let want: Vec<String> = self.model.topics.keys().cloned().collect();
        assert_eq!(names, want, "acknowledged creations and deletions");
        for (name, retention) in &self.model.topics {
            let topic = broker.topic(name).expect("topic");
            assert_eq!(
                topic
                    .overrides
                    .get("retention.ms")
                    .and_then(|v| v.parse().ok()),
                *retention,
                "{name}'s acknowledged retention.ms"
            );
        }
        for (partition, offset) in &self.model.commits {
            let got = broker.groups.offsets.committed("g", "c", *partition);
            assert_eq!(
                got.map(|c| c.offset),
                Some(*offset),
                "commit of partition {partition}"
            );
        }
    }

    fn broker(&self) -> &Broker {
        self.broker.as_ref().expect("open")
    }

    fn commit(&mut self, entries: &[(i32, i64)]) {
        let rows: Vec<_> = entries
            .iter()
            .map(|(p, o)| (("c".to_string(), *p), committed(*o)))
            .collect();
        let written = self.broker().groups.offsets.write("g", &rows);
        let acked = match written {
            Ok(Some(ticket)) => ticket.wait().is_ok(),
            Ok(None) => false,
            Err(_) => false,
        };
        assert!(acked, "commits are durable by default");
        for (p, o) in entries {
            self.model.commits.insert(*p, *o);
        }
    }

    fn run(&mut self, step: &Step) {
        let topic = |i: &u8| format!("t{i}");
        match step {
            Step::Create(i) => {
                if self
                    .broker()
                    .create_topic(&topic(i), 1, BTreeMap::new(), false)
                    .is_ok()
                {
                    self.model.topics.insert(topic(i), None);
                }
            }
            Step::Delete(i) => {
                if self.broker().delete_topic(&topic(i)).is_some() {
                    self.model.topics.remove(&topic(i));
                }
            }
            Step::Retention(i, v) => {
                let change = ConfigChange {
                    name: "retention.ms".to_string(),
                    op: ConfigOp::Set,
                    value: Some(v.to_string()),
                };
                if self
                    .broker()
                    .alter_topic_configs(&topic(i), &[change], false, false)
                    .is_ok()
                {
                    self.model.topics.insert(topic(i), Some(*v));
                }
            }
            Step::Commit { partition, offset } => {
                self.commit(&[(i32::from(*partition), i64::from(*offset))]);
            }
            Step::CommitMany(base) => {
                // 3 x 2,100 records over 8 keys: past the store's garbage allowance
                // (10,000 records) within two steps, so snapshots happen in the run.
                let entries: Vec<(i32, i64)> = (0..2100)
                    .map(|j| (j % 8, i64::from(*base) + i64::from(j)))
                    .collect();
                for _ in 0..3 {
                    self.commit(&entries);
                }
            }
            Step::PowerLoss(torn) => {
                drop(self.broker.take());
                self.fault.power_loss(*torn).expect("power loss");
                self.open();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn acknowledged_metadata_and_commits_survive_any_power_loss(steps in proptest::collection::vec(step(), 1..25)) {
        let mut world = World::new();
        for step in &steps {
            world.run(step);
        }
        world.run(&Step::PowerLoss(Torn::Nothing));
    }
}

#[test]
fn a_power_loss_right_after_an_offsets_snapshot_keeps_every_commit() {
    let mut world = World::new();
    world.run(&Step::CommitMany(1));
    world.run(&Step::CommitMany(2));
    // The store switched to a new generation (the snapshot really happened).
    let generations: Vec<String> = std::fs::read_dir(world.dir.path().join("fjord-offsets"))
        .expect("offsets dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.parse::<u64>().is_ok())
        .collect();
    assert!(
        generations.iter().any(|g| g != "0"),
        "no snapshot: {generations:?}"
    );
    world.run(&Step::PowerLoss(Torn::Pages(1)));
    world.run(&Step::Commit {
        partition: 3,
        offset: 7,
    });
    world.run(&Step::PowerLoss(Torn::Nothing));
}
