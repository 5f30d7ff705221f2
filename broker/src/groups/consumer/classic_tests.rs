//! Classic members in a consumer group: an upgraded group's members keep their
//! partitions, reconcile through JoinGroup/SyncGroup as a new consumer-protocol member
//! comes, and the group can be handed back to a classic group.

use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};
use fjord_protocol::kafka_protocol::messages::consumer_protocol_assignment::{
    self as pa, ConsumerProtocolAssignment,
};
use fjord_protocol::kafka_protocol::messages::consumer_protocol_subscription::{
    self as ps, ConsumerProtocolSubscription,
};
use fjord_protocol::kafka_protocol::messages::TopicName;
use fjord_protocol::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::*;
use crate::groups::consumer::group::{Heartbeat, Topics};

const T: uuid::Uuid = uuid::Uuid::from_bytes([1; 16]);

fn topics() -> Topics {
    Topics::from([("t".to_string(), (T, 4))])
}

fn config() -> ConsumerGroupConfig {
    ConsumerGroupConfig::default()
}

/// A cooperative member's subscription to "t" (v1, with what it owns).
fn subscription(owned: &[i32]) -> Bytes {
    let mut sub = ConsumerProtocolSubscription::default();
    sub.topics = vec![StrBytes::from_static_str("t")];
    if !owned.is_empty() {
        let mut tp = ps::TopicPartition::default();
        tp.topic = TopicName(StrBytes::from_static_str("t"));
        tp.partitions = owned.to_vec();
        sub.owned_partitions = vec![tp];
    }
    let mut out = BytesMut::new();
    out.extend_from_slice(&1i16.to_be_bytes());
    sub.encode(&mut out, 1).expect("encodes");
    out.freeze()
}

fn assignment(parts: &[i32]) -> Bytes {
    let mut a = ConsumerProtocolAssignment::default();
    let mut tp = pa::TopicPartition::default();
    tp.topic = TopicName(StrBytes::from_static_str("t"));
    tp.partitions = parts.to_vec();
    a.assigned_partitions = vec![tp];
    let mut out = BytesMut::new();
    out.extend_from_slice(&1i16.to_be_bytes());
    a.encode(&mut out, 1).expect("encodes");
    out.freeze()
}

fn parts_of(bytes: &Bytes) -> BTreeSet<i32> {
    let mut buf = bytes.slice(2..);
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    ConsumerProtocolAssignment::decode(&mut buf, version)
        .expect("decodes")
        .assigned_partitions
        .iter()
        .flat_map(|t| t.partitions.clone())
        .collect()
}

fn moved(id: &str, owned: &[i32]) -> MovedMember {
    MovedMember {
        id: id.into(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/h".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 5_000,
        protocols: vec![("cooperative-sticky".into(), subscription(owned))],
        assignment: assignment(owned),
    }
}

fn join(id: &str, owned: &[i32]) -> ClassicJoin {
    ClassicJoin {
        member_id: id.into(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/h".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 5_000,
        protocol_type: "consumer".into(),
        protocols: vec![("cooperative-sticky".into(), subscription(owned))],
        version: 9,
    }
}

fn consumer_join() -> Heartbeat {
    Heartbeat {
        member_id: "new".into(),
        member_epoch: 0,
        rebalance_timeout_ms: 5_000,
        topic_names: Some(vec!["t".into()]),
        owned: Some(Default::default()),
        ..Default::default()
    }
}

/// No partition is held (assigned or being revoked) by two members.
fn assert_exclusive(g: &ConsumerGroup) {
    let mut seen = BTreeSet::new();
    for m in g.members.values() {
        for set in [&m.current.assigned, &m.current.pending_revocation] {
            for p in set.get(&T).into_iter().flatten() {
                assert!(seen.insert(*p), "partition {p} held twice: {:?}", g.members);
            }
        }
    }
}

fn upgraded() -> ConsumerGroup {
    ConsumerGroup::from_classic(
        "g",
        5,
        vec![moved("a", &[0, 1]), moved("b", &[2, 3])],
        &topics(),
        0,
    )
    .expect("converts")
}

#[test]
fn an_upgraded_group_keeps_generation_members_and_partitions() {
    let g = upgraded();
    assert_eq!((g.group_epoch, g.assignment_epoch), (5, 5));
    assert!(g.all_classic());
    assert_eq!(g.members["a"].current.epoch, 5);
    assert_eq!(g.members["a"].current.assigned[&T], BTreeSet::from([0, 1]));
    assert_eq!(g.targets["b"][&T], BTreeSet::from([2, 3]));
    assert_eq!(g.state(), "Stable");
    // Nothing moved: a heartbeat at generation 5 is fine.
    let mut g = g;
    assert_eq!(g.classic_heartbeat("a", None, 5, 1), code::NONE);
    assert_eq!(
        g.classic_heartbeat("a", None, 4, 1),
        code::ILLEGAL_GENERATION
    );
    assert_eq!(
        g.classic_heartbeat("zz", None, 5, 1),
        code::UNKNOWN_MEMBER_ID
    );
}

#[test]
fn a_malformed_embedded_protocol_is_no_upgrade() {
    let mut bad = moved("a", &[0]);
    bad.protocols = vec![("range".into(), Bytes::from_static(b"\x00\x01\xff"))];
    assert!(ConsumerGroup::from_classic("g", 1, vec![bad], &topics(), 0).is_none());
}

#[test]
fn classic_members_hand_partitions_to_a_new_consumer_member_by_rejoining() {
    let mut g = upgraded();
    let c = config();
    let now = 10;
    let answer = g
        .heartbeat(consumer_join(), &topics(), &c, now)
        .expect("joins");
    assert_eq!(g.group_epoch, 6);
    // Everything is still held by the classic members: the newcomer waits.
    assert_eq!(answer.assignment.as_ref().map(|a| a.is_empty()), Some(true));
    assert_exclusive(&g);
    // The classic members learn to rejoin from their heartbeats.
    assert_eq!(
        g.classic_heartbeat("a", None, 5, now),
        code::REBALANCE_IN_PROGRESS
    );
    assert_eq!(
        g.classic_heartbeat("b", None, 5, now),
        code::REBALANCE_IN_PROGRESS
    );
    let mut held: BTreeSet<i32> = BTreeSet::new();
    for (id, owned) in [("a", vec![0, 1]), ("b", vec![2, 3])] {
        // Rejoining with what it owns: it keeps part, must revoke the rest first.
        let joined = g
            .classic_join(join(id, &owned), &topics(), &c, now)
            .expect("rejoins");
        assert_exclusive(&g);
        let sync = g
            .classic_sync(
                id,
                None,
                joined.generation,
                Some("consumer"),
                Some("cooperative-sticky"),
                now,
            )
            .expect("syncs");
        let kept = parts_of(&sync);
        assert!(kept.is_subset(&owned.iter().copied().collect()));
        // Revoked (the Java client does so in onJoinComplete), then rejoins.
        let kept_v: Vec<i32> = kept.iter().copied().collect();
        let again = g
            .classic_join(join(id, &kept_v), &topics(), &c, now)
            .expect("rejoins");
        assert_eq!(again.generation, 6, "{id} reached the group epoch");
        let sync = g
            .classic_sync(id, None, again.generation, None, None, now)
            .expect("syncs");
        held.extend(parts_of(&sync));
        assert_eq!(g.classic_heartbeat(id, None, 6, now), code::NONE);
    }
    // The newcomer gets what the others let go: every partition owned once.
    let hb = Heartbeat {
        member_id: answer.member_id.clone(),
        member_epoch: answer.member_epoch,
        owned: Some(Default::default()),
        ..Default::default()
    };
    let got = g.heartbeat(hb, &topics(), &c, now).expect("heartbeat");
    let newcomer: BTreeSet<i32> = got
        .assignment
        .and_then(|a| a.get(&T).cloned())
        .unwrap_or_default();
    assert!(!newcomer.is_empty());
    assert!(newcomer.is_disjoint(&held));
    held.extend(newcomer);
    assert_eq!(held, BTreeSet::from([0, 1, 2, 3]));
    assert_exclusive(&g);
}

#[test]
fn a_classic_member_that_does_not_rejoin_in_time_is_removed() {
    let mut g = upgraded();
    g.heartbeat(consumer_join(), &topics(), &config(), 10)
        .expect("joins");
    assert_eq!(
        g.classic_heartbeat("a", None, 5, 10),
        code::REBALANCE_IN_PROGRESS
    );
    assert_eq!(g.expire(10 + 4_000), 0);
    assert_eq!(g.expire(10 + 5_001), 1);
    assert!(!g.members.contains_key("a"));
    assert!(g.owner(T, 0).is_none(), "its partitions are free");
}

#[test]
fn classic_joins_are_checked_as_kafka_does() {
    let mut g = upgraded();
    let c = config();
    let mut wrong = join("", &[]);
    wrong.protocol_type = "connect".into();
    assert_eq!(
        g.classic_join(wrong, &topics(), &c, 1)
            .map(|_| ())
            .expect_err("refused")
            .0,
        code::INCONSISTENT_GROUP_PROTOCOL
    );
    let (err, id) = g
        .classic_join(join("", &[]), &topics(), &c, 1)
        .expect_err("refused");
    assert_eq!(err, code::MEMBER_ID_REQUIRED);
    let joined = g
        .classic_join(join(&id, &[]), &topics(), &c, 1)
        .expect("joins with its id");
    assert_eq!(joined.member_id, id);
    assert_eq!(g.group_epoch, 6, "a new member moves the group epoch");
    assert_eq!(
        g.classic_sync(&id, None, joined.generation + 1, None, None, 1),
        Err(code::ILLEGAL_GENERATION)
    );
    assert_eq!(
        g.classic_sync(&id, None, joined.generation, None, Some("range"), 1),
        Err(code::INCONSISTENT_GROUP_PROTOCOL)
    );
    // A consumer-protocol member's ID is not a classic member.
    let newcomer = g
        .heartbeat(consumer_join(), &topics(), &c, 1)
        .expect("joins");
    assert_eq!(
        g.classic_heartbeat(&newcomer.member_id, None, newcomer.member_epoch, 1),
        code::UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        g.classic_leave(&newcomer.member_id, None),
        code::UNKNOWN_MEMBER_ID
    );
    assert_eq!(g.classic_leave(&id, None), code::NONE);
    assert!(!g.members.contains_key(&id));
}

#[test]
fn a_static_classic_member_restarting_takes_over_its_instance() {
    let mut g = upgraded();
    let c = config();
    let mut first = join("", &[]);
    first.instance_id = Some("i1".into());
    let one = g
        .classic_join(first.clone(), &topics(), &c, 1)
        .expect("static joins without an id");
    let mut zombie = first.clone();
    zombie.member_id = "not-it".into();
    assert_eq!(
        g.classic_join(zombie, &topics(), &c, 1)
            .expect_err("refused")
            .0,
        code::FENCED_INSTANCE_ID
    );
    let two = g.classic_join(first, &topics(), &c, 1).expect("restart");
    assert_ne!(one.member_id, two.member_id);
    assert!(!g.members.contains_key(&one.member_id));
    assert_eq!(
        g.classic_heartbeat(&one.member_id, Some("i1"), two.generation, 1),
        code::FENCED_INSTANCE_ID
    );
    assert_eq!(
        g.classic_heartbeat("", Some("i1"), two.generation, 1),
        code::FENCED_INSTANCE_ID
    );
    // An admin removes a static member by its instance alone.
    assert_eq!(g.classic_leave("", Some("i1")), code::NONE);
    assert!(!g.members.contains_key(&two.member_id));
}

#[test]
fn a_downgrade_hands_over_what_each_member_holds() {
    let mut g = upgraded();
    let (generation, members) = g.take_for_downgrade();
    assert!(g.dead);
    assert_eq!(generation, 5);
    let a = members.iter().find(|m| m.id == "a").expect("a");
    assert_eq!(parts_of(&a.assignment), BTreeSet::from([0, 1]));
    assert_eq!(a.session_timeout_ms, 10_000);
    assert_eq!(a.protocols[0].0, "cooperative-sticky");
}

#[test]
fn classic_members_survive_a_restart_through_their_records() {
    let g = upgraded();
    let records: Vec<(i16, Option<String>, Vec<u8>)> = g
        .records()
        .into_iter()
        .map(|(k, v)| {
            let (kind, _, member) = crate::groups::consumer::records::parse_key(&k).expect("key");
            (kind, member, v)
        })
        .collect();
    let back = ConsumerGroup::from_records("g", &records, 45_000, 100);
    assert!(back.all_classic());
    let a = &back.members["a"];
    assert_eq!(
        a.classic.as_ref().map(|c| c.meta.session_timeout_ms),
        Some(10_000)
    );
    // Its session is its own classic timeout, not the consumer protocol's.
    assert_eq!(a.session_deadline_ms, 100 + 10_000);
    assert_eq!(a.current.assigned[&T], BTreeSet::from([0, 1]));
}

#[test]
fn a_classic_member_must_share_a_protocol_with_the_others() {
    let mut g = upgraded();
    let mut range_only = join("x", &[]);
    range_only.protocols = vec![("range".into(), subscription(&[]))];
    assert_eq!(
        g.classic_join(range_only, &topics(), &config(), 1)
            .expect_err("refused")
            .0,
        code::INCONSISTENT_GROUP_PROTOCOL
    );
    let mut both = join("y", &[]);
    both.protocols.push(("range".into(), subscription(&[])));
    g.classic_join(both, &topics(), &config(), 1)
        .expect("shares cooperative-sticky");
}

#[test]
fn a_static_join_with_a_member_id_its_instance_never_had_is_unknown() {
    let mut g = upgraded();
    let mut j = join("made-up", &[]);
    j.instance_id = Some("fresh".into());
    assert_eq!(
        g.classic_join(j, &topics(), &config(), 1)
            .expect_err("refused")
            .0,
        code::UNKNOWN_MEMBER_ID
    );
}
