//! The server-side assignors of KIP-848 consumer groups, by Kafka's names: `uniform`
//! (the default: balanced to within one partition, sticky) and `range` (contiguous
//! ranges per topic, co-partitioning members that subscribe to the same topics).
//!
//! Both are pure functions of the members' subscriptions, the topics' partition counts
//! and (for `uniform`) the previous target assignment.

use std::collections::{BTreeMap, BTreeSet};

/// Partitions by topic ID.
pub type Assignment = BTreeMap<uuid::Uuid, BTreeSet<i32>>;

/// What an assignor knows of a member.
#[derive(Debug, Clone)]
pub struct AssignorMember {
    /// Its member ID.
    pub member_id: String,
    /// Its static instance ID, if any (`range` orders static members first).
    pub instance_id: Option<String>,
    /// The topics it subscribes to that exist, by ID.
    pub topics: BTreeSet<uuid::Uuid>,
    /// Its target assignment before this one.
    pub previous: Assignment,
}

/// The assignor names Fjord implements, the default first.
pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// Computes the target assignment of `members` over `partitions` (topic ID to count)
/// with assignor `name` (one of [`ASSIGNORS`]; anything else is `uniform`).
pub fn assign(
    name: &str,
    members: &[AssignorMember],
    partitions: &BTreeMap<uuid::Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    match name {
        "range" => range(members, partitions),
        _ => uniform(members, partitions),
    }
}

fn count(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}

/// Sticky and balanced: every member keeps what it had of the topics it still
/// subscribes to, the partitions nobody holds go to the least loaded subscriber, then
/// partitions move from the most to the least loaded subscriber of each topic until no
/// two subscribers of a topic differ by more than one (Kafka's heterogeneous uniform
/// builder; with identical subscriptions this is the homogeneous one's balance).
fn uniform(
    members: &[AssignorMember],
    partitions: &BTreeMap<uuid::Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = BTreeMap::new();
    let mut taken: BTreeSet<(uuid::Uuid, i32)> = BTreeSet::new();
    for m in members {
        let mut kept = Assignment::new();
        for (topic, parts) in &m.previous {
            let Some(&n) = partitions.get(topic) else {
                continue;
            };
            if !m.topics.contains(topic) {
                continue;
            }
            for &p in parts {
                if p < n && taken.insert((*topic, p)) {
                    kept.entry(*topic).or_default().insert(p);
                }
            }
        }
        out.insert(m.member_id.clone(), kept);
    }
    for (topic, &n) in partitions {
        let subscribers: Vec<&AssignorMember> = members
            .iter()
            .filter(|m| m.topics.contains(topic))
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        for p in 0..n {
            if taken.contains(&(*topic, p)) {
                continue;
            }
            let least = subscribers
                .iter()
                .min_by_key(|m| (count(&out[&m.member_id]), m.member_id.clone()))
                .map(|m| m.member_id.clone());
            if let Some(id) = least {
                out.entry(id)
                    .or_default()
                    .entry(*topic)
                    .or_default()
                    .insert(p);
                taken.insert((*topic, p));
            }
        }
    }
    balance(members, &mut out);
    out
}

/// Moves partitions from the most to the least loaded subscriber of their topic until
/// no move can narrow a gap of two or more.
fn balance(members: &[AssignorMember], out: &mut BTreeMap<String, Assignment>) {
    // Each move takes a partition from a load L to a load l <= L - 2, which lowers the
    // sum of squared loads by 2(L - l - 1) >= 2: the loop ends, after at most that sum's
    // worth of moves (no fixed cap, or one member that kept a large topic would stay
    // overloaded for good).
    loop {
        let mut moved = false;
        for topic in members
            .iter()
            .flat_map(|m| m.topics.iter())
            .collect::<BTreeSet<_>>()
        {
            let subscribers: Vec<&str> = members
                .iter()
                .filter(|m| m.topics.contains(topic))
                .map(|m| m.member_id.as_str())
                .collect();
            let load = |id: &str, out: &BTreeMap<String, Assignment>| count(&out[id]);
            let Some(&most) = subscribers
                .iter()
                .filter(|id| out[**id].get(topic).is_some_and(|s| !s.is_empty()))
                .max_by_key(|id| (load(id, out), std::cmp::Reverse(**id)))
            else {
                continue;
            };
            let Some(&least) = subscribers.iter().min_by_key(|id| (load(id, out), **id)) else {
                continue;
            };
            if load(most, out) < load(least, out) + 2 {
                continue;
            }
            let Some(p) = out[most]
                .get(topic)
                .and_then(|s| s.iter().next_back().copied())
            else {
                continue;
            };
            if let Some(set) = out.get_mut(most).and_then(|a| a.get_mut(topic)) {
                set.remove(&p);
                if set.is_empty() {
                    out.get_mut(most).map(|a| a.remove(topic));
                }
            }
            out.entry(least.to_string())
                .or_default()
                .entry(*topic)
                .or_default()
                .insert(p);
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

/// Per topic, its subscribers (static members first by instance ID, then the others by
/// member ID) each take a contiguous range; the first `count % subscribers` take one
/// more. Not sticky, as Kafka's.
fn range(
    members: &[AssignorMember],
    partitions: &BTreeMap<uuid::Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .iter()
        .map(|m| (m.member_id.clone(), Assignment::new()))
        .collect();
    let mut ordered: Vec<&AssignorMember> = members.iter().collect();
    ordered.sort_by(|a, b| match (&a.instance_id, &b.instance_id) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.member_id.cmp(&b.member_id),
    });
    for (topic, &n) in partitions {
        let subscribers: Vec<&&AssignorMember> = ordered
            .iter()
            .filter(|m| m.topics.contains(topic))
            .collect();
        if subscribers.is_empty() || n <= 0 {
            continue;
        }
        let (quota, extra) = (n / subscribers.len() as i32, n % subscribers.len() as i32);
        let mut next = 0;
        for (i, m) in subscribers.iter().enumerate() {
            let take = quota + i32::from((i as i32) < extra);
            if take > 0 {
                out.entry(m.member_id.clone())
                    .or_default()
                    .insert(*topic, (next..next + take).collect());
            }
            next += take;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(n: u8) -> uuid::Uuid {
        uuid::Uuid::from_bytes([n; 16])
    }

    fn member(id: &str, topics: &[u8]) -> AssignorMember {
        AssignorMember {
            member_id: id.to_string(),
            instance_id: None,
            topics: topics.iter().map(|t| topic(*t)).collect(),
            previous: Assignment::new(),
        }
    }

    fn loads(out: &BTreeMap<String, Assignment>) -> Vec<usize> {
        out.values().map(count).collect()
    }

    /// Every partition of a subscribed topic is assigned exactly once, to a subscriber.
    fn assert_complete(
        members: &[AssignorMember],
        partitions: &BTreeMap<uuid::Uuid, i32>,
        out: &BTreeMap<String, Assignment>,
    ) {
        let mut seen = BTreeSet::new();
        for m in members {
            for (t, parts) in out.get(&m.member_id).into_iter().flatten() {
                assert!(
                    m.topics.contains(t),
                    "{} got a topic it does not want",
                    m.member_id
                );
                for p in parts {
                    assert!(seen.insert((*t, *p)), "partition {p} twice");
                }
            }
        }
        for (t, n) in partitions {
            if members.iter().any(|m| m.topics.contains(t)) {
                for p in 0..*n {
                    assert!(seen.contains(&(*t, p)), "partition {p} unassigned");
                }
            }
        }
    }

    #[test]
    fn uniform_balances_and_keeps_what_it_can_when_a_member_joins() {
        let partitions = BTreeMap::from([(topic(1), 7), (topic(2), 3)]);
        let mut members = vec![member("a", &[1, 2]), member("b", &[1, 2])];
        let first = assign("uniform", &members, &partitions);
        assert_complete(&members, &partitions, &first);
        assert_eq!(loads(&first), vec![5, 5]);
        for m in &mut members {
            m.previous = first[&m.member_id].clone();
        }
        members.push(member("c", &[1, 2]));
        let second = assign("uniform", &members, &partitions);
        assert_complete(&members, &partitions, &second);
        let mut l = loads(&second);
        l.sort();
        assert_eq!(l, vec![3, 3, 4]);
        // Sticky: a and b only gave partitions away.
        for id in ["a", "b"] {
            for (t, parts) in &second[id] {
                assert!(parts.is_subset(&first[id][t]), "{id} got a new partition");
            }
        }
    }

    #[test]
    fn uniform_balances_a_large_topic_one_member_held_alone() {
        let partitions = BTreeMap::from([(topic(1), 1000)]);
        let mut a = member("a", &[1]);
        a.previous = Assignment::from([(topic(1), (0..1000).collect())]);
        let members = vec![a, member("b", &[1])];
        let out = assign("uniform", &members, &partitions);
        assert_complete(&members, &partitions, &out);
        assert_eq!(loads(&out), vec![500, 500]);
    }

    #[test]
    fn uniform_with_different_subscriptions_stays_within_each_topics_subscribers() {
        let partitions = BTreeMap::from([(topic(1), 6), (topic(2), 2)]);
        let members = vec![member("a", &[1]), member("b", &[1, 2]), member("c", &[2])];
        let out = assign("uniform", &members, &partitions);
        assert_complete(&members, &partitions, &out);
        let mut l = loads(&out);
        l.sort();
        assert!(l[2] - l[0] <= 3, "{l:?}");
    }

    #[test]
    fn range_gives_contiguous_ranges_and_static_members_first() {
        let partitions = BTreeMap::from([(topic(1), 5), (topic(2), 5)]);
        let mut members = vec![member("m1", &[1, 2]), member("m2", &[1, 2])];
        members[1].instance_id = Some("i0".into());
        let out = assign("range", &members, &partitions);
        assert_complete(&members, &partitions, &out);
        // m2 is static: first, with the extra partition of each topic.
        assert_eq!(out["m2"][&topic(1)], (0..3).collect());
        assert_eq!(out["m1"][&topic(1)], (3..5).collect());
        assert_eq!(out["m2"][&topic(2)], out["m2"][&topic(1)], "co-partitioned");
    }

    #[test]
    fn nobody_subscribed_and_no_members_give_nothing() {
        let partitions = BTreeMap::from([(topic(1), 3)]);
        assert!(assign("uniform", &[], &partitions).is_empty());
        let out = assign("range", &[member("a", &[9])], &partitions);
        assert_eq!(count(&out["a"]), 0);
    }
}
