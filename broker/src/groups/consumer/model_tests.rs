//! A model-based test of the consumer group state machine: clients that join, heartbeat
//! (acting on each assignment as the Java client does: revoke at once, then take what
//! it is given), leave, crash, change subscriptions, while topics are created and time
//! passes. After every step no partition is owned by two live clients nor held by two
//! members, and epochs never go back; once everyone alive keeps heartbeating, every
//! subscribed partition is owned and the group is Stable.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::assignor::Assignment;
use super::group::{ConsumerGroup, ConsumerGroupConfig, Heartbeat, Topics};

const SESSION_MS: u64 = 1_000;

fn config() -> ConsumerGroupConfig {
    ConsumerGroupConfig {
        session_timeout_ms: SESSION_MS,
        heartbeat_interval_ms: 100,
        assignors: vec!["uniform".into(), "range".into()],
        max_size: 100,
        ..ConsumerGroupConfig::default()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Join {
        client: usize,
        topics: u8,
        range: bool,
    },
    Heartbeat {
        client: usize,
        says_owned: bool,
    },
    Leave {
        client: usize,
    },
    Crash {
        client: usize,
    },
    Subscribe {
        client: usize,
        topics: u8,
    },
    CreateTopic {
        partitions: i32,
    },
    Wait {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let client = 0usize..5;
    prop_oneof![
        2 => (client.clone(), 1u8..8, any::<bool>()).prop_map(|(client, topics, range)| Op::Join { client, topics, range }),
        8 => (client.clone(), any::<bool>()).prop_map(|(client, says_owned)| Op::Heartbeat { client, says_owned }),
        1 => client.clone().prop_map(|client| Op::Leave { client }),
        1 => client.clone().prop_map(|client| Op::Crash { client }),
        1 => (client, 1u8..8).prop_map(|(client, topics)| Op::Subscribe { client, topics }),
        1 => (1i32..6).prop_map(|partitions| Op::CreateTopic { partitions }),
        1 => (0u64..1_500).prop_map(|ms| Op::Wait { ms }),
    ]
}

#[derive(Debug, Clone, Default)]
struct Client {
    id: String,
    epoch: i32,
    owned: Assignment,
    /// Topic names, by bit of the subscription mask.
    topics: Vec<String>,
    assignor: Option<String>,
    joined: bool,
    /// When its last heartbeat was answered: past the session timeout, a client knows
    /// its partitions are lost (the broker gave them away) and drops them.
    last_ok: u64,
}

struct World {
    group: ConsumerGroup,
    topics: Topics,
    clients: Vec<Client>,
    now: u64,
    last_group_epoch: i32,
}

fn names(mask: u8) -> Vec<String> {
    (0..3)
        .filter(|b| mask & (1 << b) != 0)
        .map(|b| format!("t{b}"))
        .collect()
}

impl World {
    fn new() -> Self {
        let mut topics = Topics::new();
        topics.insert("t0".into(), (uuid::Uuid::from_bytes([1; 16]), 4));
        Self {
            group: ConsumerGroup::new("g"),
            topics,
            clients: (0..5)
                .map(|i| Client {
                    id: format!("member-{i}"),
                    ..Client::default()
                })
                .collect(),
            now: 1,
            last_group_epoch: 0,
        }
    }

    fn heartbeat(&mut self, i: usize, says_owned: bool) {
        let c = self.clients[i].clone();
        if !c.joined {
            return;
        }
        let joining = c.epoch == 0;
        let hb = Heartbeat {
            member_id: c.id.clone(),
            member_epoch: c.epoch,
            rebalance_timeout_ms: if joining { 5_000 } else { -1 },
            topic_names: joining.then(|| c.topics.clone()),
            server_assignor: if joining { c.assignor.clone() } else { None },
            owned: (joining || says_owned).then(|| c.owned.clone()),
            ..Heartbeat::default()
        };
        let answer = self.group.heartbeat(hb, &self.topics, &config(), self.now);
        let c = &mut self.clients[i];
        match answer {
            Ok(a) => {
                c.last_ok = self.now;
                assert!(a.member_epoch >= c.epoch, "a member epoch went back");
                c.epoch = a.member_epoch;
                if let Some(assignment) = a.assignment {
                    c.owned = assignment;
                }
            }
            Err(_) => {
                // Fenced or unknown: drop everything, rejoin.
                c.owned.clear();
                c.epoch = 0;
            }
        }
    }

    fn run(&mut self, op: &Op) {
        match *op {
            Op::Join {
                client,
                topics,
                range,
            } => {
                let c = &mut self.clients[client];
                if !c.joined {
                    *c = Client {
                        id: c.id.clone(),
                        topics: names(topics),
                        assignor: range.then(|| "range".to_string()),
                        joined: true,
                        ..Client::default()
                    };
                    self.heartbeat(client, true);
                }
            }
            Op::Heartbeat { client, says_owned } => self.heartbeat(client, says_owned),
            Op::Leave { client } => {
                let c = self.clients[client].clone();
                if c.joined && c.epoch > 0 {
                    let hb = Heartbeat {
                        member_id: c.id.clone(),
                        member_epoch: -1,
                        ..Heartbeat::default()
                    };
                    let _ = self.group.heartbeat(hb, &self.topics, &config(), self.now);
                }
                self.clients[client] = Client {
                    id: c.id,
                    ..Client::default()
                };
            }
            Op::Crash { client } => {
                let id = self.clients[client].id.clone();
                self.clients[client] = Client {
                    id,
                    ..Client::default()
                };
            }
            Op::Subscribe { client, topics } => {
                let c = self.clients[client].clone();
                if c.joined && c.epoch > 0 {
                    self.clients[client].topics = names(topics);
                    let hb = Heartbeat {
                        member_id: c.id.clone(),
                        member_epoch: c.epoch,
                        rebalance_timeout_ms: -1,
                        topic_names: Some(names(topics)),
                        owned: Some(c.owned.clone()),
                        ..Heartbeat::default()
                    };
                    if let Ok(a) = self.group.heartbeat(hb, &self.topics, &config(), self.now) {
                        let c = &mut self.clients[client];
                        c.epoch = a.member_epoch;
                        if let Some(assignment) = a.assignment {
                            c.owned = assignment;
                        }
                    }
                }
            }
            Op::CreateTopic { partitions } => {
                let n = self.topics.len();
                if n < 3 {
                    let id = uuid::Uuid::from_bytes([n as u8 + 1; 16]);
                    self.topics.insert(format!("t{n}"), (id, partitions));
                }
            }
            Op::Wait { ms } => {
                self.now += ms;
                for c in &mut self.clients {
                    if self.now - c.last_ok > SESSION_MS {
                        c.owned.clear();
                    }
                }
                self.group.expire(self.now);
            }
        }
        self.check();
    }

    fn check(&mut self) {
        let mut owned = BTreeSet::new();
        for c in self.clients.iter().filter(|c| c.joined) {
            for (t, parts) in &c.owned {
                for p in parts {
                    assert!(owned.insert((*t, *p)), "partition {p} owned by two clients");
                }
            }
        }
        let mut held = BTreeSet::new();
        for m in self.group.members.values() {
            for set in [&m.current.assigned, &m.current.pending_revocation] {
                for (t, parts) in set {
                    for p in parts {
                        assert!(held.insert((*t, *p)), "partition {p} held by two members");
                        assert_eq!(self.group.owner(*t, *p), Some(m.id.as_str()));
                    }
                }
            }
        }
        assert!(
            self.group.group_epoch >= self.last_group_epoch,
            "the group epoch went back"
        );
        assert!(self.group.assignment_epoch <= self.group.group_epoch);
        self.last_group_epoch = self.group.group_epoch;
    }

    /// Crashed members time out; everyone alive heartbeats until nothing changes.
    fn settle(&mut self) {
        self.run(&Op::Wait { ms: SESSION_MS + 1 });
        for _ in 0..12 {
            for i in 0..self.clients.len() {
                self.heartbeat(i, true);
                self.check();
            }
            self.now += 10;
        }
        let wanted: BTreeSet<(uuid::Uuid, i32)> = self
            .clients
            .iter()
            .filter(|c| c.joined)
            .flat_map(|c| c.topics.iter())
            .filter_map(|n| self.topics.get(n))
            .flat_map(|(id, n)| (0..*n).map(move |p| (*id, p)))
            .collect();
        let owned: BTreeSet<(uuid::Uuid, i32)> = self
            .clients
            .iter()
            .filter(|c| c.joined)
            .flat_map(|c| {
                c.owned
                    .iter()
                    .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
            })
            .collect();
        assert_eq!(
            owned, wanted,
            "every subscribed partition is owned once things settle"
        );
        if self.clients.iter().any(|c| c.joined) {
            assert_eq!(self.group.state(), "Stable");
        } else {
            assert_eq!(self.group.state(), "Empty");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn no_partition_is_owned_twice_and_all_are_owned_once_settled(ops in proptest::collection::vec(op(), 1..60)) {
        let mut world = World::new();
        for op in &ops {
            world.run(op);
        }
        world.settle();
    }
}

#[test]
fn a_rolling_replacement_of_three_members_never_owns_a_partition_twice() {
    let mut world = World::new();
    world
        .topics
        .insert("t0".into(), (uuid::Uuid::from_bytes([1; 16]), 12));
    for i in 0..3 {
        world.run(&Op::Join {
            client: i,
            topics: 1,
            range: false,
        });
    }
    world.settle();
    // Each old member is replaced by a new one, one at a time.
    for (old, new) in [(0, 3), (1, 4), (2, 0)] {
        world.run(&Op::Join {
            client: new,
            topics: 1,
            range: false,
        });
        for _ in 0..3 {
            for i in 0..5 {
                world.run(&Op::Heartbeat {
                    client: i,
                    says_owned: true,
                });
            }
        }
        world.run(&Op::Leave { client: old });
        world.settle();
    }
    let loads: Vec<usize> = world
        .clients
        .iter()
        .filter(|c| c.joined)
        .map(|c| c.owned.values().map(BTreeSet::len).sum())
        .collect();
    assert_eq!(loads, vec![4, 4, 4]);
}
