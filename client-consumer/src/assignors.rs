//! The consumer protocol's member metadata and assignments (Kafka's
//! ConsumerProtocolSubscription and ConsumerProtocolAssignment, so members of other
//! clients read them), and the assignors a group leader runs: range, roundrobin and
//! cooperative-sticky.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use fjord_protocol::kafka_protocol::messages::consumer_protocol_assignment::{
    ConsumerProtocolAssignment, TopicPartition as AssignedTopic,
};
use fjord_protocol::kafka_protocol::messages::consumer_protocol_subscription::{
    ConsumerProtocolSubscription, TopicPartition as OwnedTopic,
};
use fjord_protocol::kafka_protocol::messages::TopicName;
use fjord_protocol::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::record::TopicPartition;

/// Subscription metadata version written (v1 carries owned partitions, which
/// cooperative-sticky needs).
const SUBSCRIPTION_VERSION: i16 = 1;
/// Assignment version written (v0 is read by every client).
const ASSIGNMENT_VERSION: i16 = 0;

/// A member's subscription as the leader sees it.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) id: String,
    pub(crate) topics: Vec<String>,
    pub(crate) owned: Vec<TopicPartition>,
}

fn group_by_topic(tps: &[TopicPartition]) -> BTreeMap<Arc<str>, Vec<i32>> {
    let mut by: BTreeMap<Arc<str>, Vec<i32>> = BTreeMap::new();
    for tp in tps {
        by.entry(Arc::clone(&tp.topic))
            .or_default()
            .push(tp.partition);
    }
    by
}

/// Member metadata for JoinGroup.
pub(crate) fn encode_subscription(topics: &[String], owned: &[TopicPartition]) -> Bytes {
    let mut s = ConsumerProtocolSubscription::default();
    s.topics = topics
        .iter()
        .map(|t| StrBytes::from_string(t.clone()))
        .collect();
    s.owned_partitions = group_by_topic(owned)
        .into_iter()
        .map(|(topic, partitions)| {
            let mut t = OwnedTopic::default();
            t.topic = TopicName(StrBytes::from_string(topic.to_string()));
            t.partitions = partitions;
            t
        })
        .collect();
    let mut buf = BytesMut::new();
    buf.put_i16(SUBSCRIPTION_VERSION);
    // Encoding a default-filled message at a known version cannot fail.
    let _ = s.encode(&mut buf, SUBSCRIPTION_VERSION);
    buf.freeze()
}

/// Reads any member's metadata (versions newer than we know are read as the newest).
pub(crate) fn decode_subscription(id: &str, metadata: &Bytes) -> Option<Member> {
    let mut buf = metadata.clone();
    if buf.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]).clamp(0, 3);
    let _ = bytes::Buf::get_i16(&mut buf);
    let s = ConsumerProtocolSubscription::decode(&mut buf, version).ok()?;
    Some(Member {
        id: id.to_string(),
        topics: s.topics.iter().map(|t| t.to_string()).collect(),
        owned: s
            .owned_partitions
            .iter()
            .flat_map(|t| {
                let topic: Arc<str> = Arc::from(t.topic.0.as_str());
                t.partitions
                    .iter()
                    .map(move |p| TopicPartition::new(Arc::clone(&topic), *p))
            })
            .collect(),
    })
}

/// An assignment for SyncGroup.
pub(crate) fn encode_assignment(partitions: &[TopicPartition]) -> Bytes {
    let mut a = ConsumerProtocolAssignment::default();
    a.assigned_partitions = group_by_topic(partitions)
        .into_iter()
        .map(|(topic, partitions)| {
            let mut t = AssignedTopic::default();
            t.topic = TopicName(StrBytes::from_string(topic.to_string()));
            t.partitions = partitions;
            t
        })
        .collect();
    let mut buf = BytesMut::new();
    buf.put_i16(ASSIGNMENT_VERSION);
    let _ = a.encode(&mut buf, ASSIGNMENT_VERSION);
    buf.freeze()
}

/// Reads an assignment from SyncGroup (empty bytes: nothing assigned).
pub(crate) fn decode_assignment(bytes: &Bytes) -> Option<Vec<TopicPartition>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let mut buf = bytes.clone();
    if buf.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]).clamp(0, 3);
    let _ = bytes::Buf::get_i16(&mut buf);
    let a = ConsumerProtocolAssignment::decode(&mut buf, version).ok()?;
    let mut out = Vec::new();
    for t in &a.assigned_partitions {
        let topic: Arc<str> = Arc::from(t.topic.0.as_str());
        out.extend(
            t.partitions
                .iter()
                .map(|p| TopicPartition::new(Arc::clone(&topic), *p)),
        );
    }
    out.sort();
    Some(out)
}

type Plan = BTreeMap<String, Vec<TopicPartition>>;

fn empty_plan(members: &[Member]) -> Plan {
    members.iter().map(|m| (m.id.clone(), Vec::new())).collect()
}

/// Every partition of the topics any member subscribes to, sorted.
fn all_partitions(members: &[Member], partitions: &HashMap<String, i32>) -> Vec<TopicPartition> {
    let topics: BTreeSet<&String> = members.iter().flat_map(|m| &m.topics).collect();
    let mut out = Vec::new();
    for t in topics {
        let topic: Arc<str> = Arc::from(t.as_str());
        for p in 0..partitions.get(t).copied().unwrap_or(0) {
            out.push(TopicPartition::new(Arc::clone(&topic), p));
        }
    }
    out
}

/// Kafka's RangeAssignor: per topic, consecutive ranges to members sorted by id.
pub(crate) fn range(members: &[Member], partitions: &HashMap<String, i32>) -> Plan {
    let mut plan = empty_plan(members);
    let topics: BTreeSet<&String> = members.iter().flat_map(|m| &m.topics).collect();
    for t in topics {
        let mut subscribers: Vec<&Member> =
            members.iter().filter(|m| m.topics.contains(t)).collect();
        subscribers.sort_by(|a, b| a.id.cmp(&b.id));
        let n = partitions.get(t).copied().unwrap_or(0).max(0) as usize;
        let m = subscribers.len();
        if m == 0 {
            continue;
        }
        let (per, extra) = (n / m, n % m);
        let topic: Arc<str> = Arc::from(t.as_str());
        for (i, member) in subscribers.iter().enumerate() {
            let start = per * i + i.min(extra);
            let len = per + usize::from(i < extra);
            let list = plan.entry(member.id.clone()).or_default();
            list.extend(
                (start..start + len).map(|p| TopicPartition::new(Arc::clone(&topic), p as i32)),
            );
        }
    }
    plan
}

/// Kafka's RoundRobinAssignor: all partitions in order, dealt to members in turn.
pub(crate) fn roundrobin(members: &[Member], partitions: &HashMap<String, i32>) -> Plan {
    let mut plan = empty_plan(members);
    let mut sorted: Vec<&Member> = members.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let mut next = 0usize;
    for tp in all_partitions(members, partitions) {
        for _ in 0..sorted.len() {
            let member = sorted[next % sorted.len()];
            next += 1;
            if member.topics.iter().any(|t| **t == *tp.topic) {
                plan.entry(member.id.clone()).or_default().push(tp);
                break;
            }
        }
    }
    plan
}

/// Cooperative sticky: members keep what they own where balance allows; partitions that
/// must move are first only revoked (assigned to nobody), so their owner gives them up
/// and rejoins, and the next rebalance hands them out (KIP-429).
pub(crate) fn cooperative_sticky(members: &[Member], partitions: &HashMap<String, i32>) -> Plan {
    let all = all_partitions(members, partitions);
    let valid: BTreeSet<&TopicPartition> = all.iter().collect();
    let mut sorted: Vec<&Member> = members.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let subscribes = |m: &Member, tp: &TopicPartition| m.topics.iter().any(|t| **t == *tp.topic);
    // Who owns what now (a partition claimed twice goes to the first claimant).
    let mut owner: HashMap<TopicPartition, String> = HashMap::new();
    let mut plan = empty_plan(members);
    for m in &sorted {
        for tp in &m.owned {
            if valid.contains(tp) && subscribes(m, tp) && !owner.contains_key(tp) {
                owner.insert(tp.clone(), m.id.clone());
                plan.entry(m.id.clone()).or_default().push(tp.clone());
            }
        }
    }
    let max_quota = all.len().div_ceil(sorted.len().max(1));
    for list in plan.values_mut() {
        list.sort();
        list.truncate(max_quota);
    }
    let placed: BTreeSet<TopicPartition> = plan.values().flatten().cloned().collect();
    let unassigned: Vec<TopicPartition> = all
        .iter()
        .filter(|tp| !placed.contains(*tp))
        .cloned()
        .collect();
    for tp in unassigned {
        let target = sorted
            .iter()
            .filter(|m| subscribes(m, &tp))
            .min_by_key(|m| (plan.get(&m.id).map_or(0, Vec::len), m.id.clone()));
        if let Some(m) = target {
            plan.entry(m.id.clone()).or_default().push(tp);
        }
    }
    // Even out: move from the fullest to the emptiest while they differ by two or more.
    loop {
        let fullest = sorted.iter().max_by_key(|m| {
            (
                plan.get(&m.id).map_or(0, Vec::len),
                std::cmp::Reverse(m.id.clone()),
            )
        });
        let emptiest = sorted
            .iter()
            .min_by_key(|m| (plan.get(&m.id).map_or(0, Vec::len), m.id.clone()));
        let (Some(from), Some(to)) = (fullest, emptiest) else {
            break;
        };
        let (nf, nt) = (plan[&from.id].len(), plan[&to.id].len());
        if nf < nt + 2 {
            break;
        }
        let movable = plan[&from.id].iter().rposition(|tp| subscribes(to, tp));
        let Some(i) = movable else { break };
        let tp = plan.get_mut(&from.id).map(|l| l.remove(i));
        if let Some(tp) = tp {
            plan.entry(to.id.clone()).or_default().push(tp);
        }
    }
    // Cooperative: a partition changing owner is only taken away in this round.
    for (member, list) in plan.iter_mut() {
        list.retain(|tp| owner.get(tp).is_none_or(|o| o == member));
        list.sort();
    }
    plan
}

/// Runs the assignor named `protocol`.
pub(crate) fn assign(
    protocol: &str,
    members: &[Member],
    partitions: &HashMap<String, i32>,
) -> Plan {
    match protocol {
        "roundrobin" => roundrobin(members, partitions),
        "cooperative-sticky" => cooperative_sticky(members, partitions),
        _ => range(members, partitions),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[&str], owned: &[(&str, i32)]) -> Member {
        Member {
            id: id.into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            owned: owned
                .iter()
                .map(|(t, p)| TopicPartition::new(*t, *p))
                .collect(),
        }
    }

    fn parts(plan: &Plan, id: &str) -> Vec<i32> {
        plan[id].iter().map(|tp| tp.partition).collect()
    }

    #[test]
    fn range_and_roundrobin_match_kafka() {
        let members = [member("a", &["t"], &[]), member("b", &["t"], &[])];
        let counts = HashMap::from([("t".to_string(), 5)]);
        let r = range(&members, &counts);
        assert_eq!(
            (parts(&r, "a"), parts(&r, "b")),
            (vec![0, 1, 2], vec![3, 4])
        );
        let rr = roundrobin(&members, &counts);
        assert_eq!(
            (parts(&rr, "a"), parts(&rr, "b")),
            (vec![0, 2, 4], vec![1, 3])
        );
    }

    #[test]
    fn cooperative_sticky_keeps_owners_and_revokes_before_moving() {
        let counts = HashMap::from([("t".to_string(), 4)]);
        // a owns everything; b joins: a keeps two, two are revoked (nobody gets them).
        let first = cooperative_sticky(
            &[
                member("a", &["t"], &[("t", 0), ("t", 1), ("t", 2), ("t", 3)]),
                member("b", &["t"], &[]),
            ],
            &counts,
        );
        assert_eq!(parts(&first, "a"), vec![0, 1]);
        assert!(parts(&first, "b").is_empty());
        // After a gave them up, the next round gives them to b; a keeps its two.
        let second = cooperative_sticky(
            &[
                member("a", &["t"], &[("t", 0), ("t", 1)]),
                member("b", &["t"], &[]),
            ],
            &counts,
        );
        assert_eq!(parts(&second, "a"), vec![0, 1]);
        assert_eq!(parts(&second, "b"), vec![2, 3]);
    }

    #[test]
    fn metadata_round_trips() {
        let owned = vec![TopicPartition::new("t", 1), TopicPartition::new("u", 0)];
        let m = decode_subscription("x", &encode_subscription(&["t".into(), "u".into()], &owned))
            .expect("subscription");
        assert_eq!(m.topics, vec!["t".to_string(), "u".to_string()]);
        assert_eq!(m.owned, owned);
        assert_eq!(decode_assignment(&encode_assignment(&owned)), Some(owned));
    }
}
