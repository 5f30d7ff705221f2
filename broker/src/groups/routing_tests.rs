//! Online migration through the coordinator: a classic group of consumers becomes a
//! consumer group when a consumer-protocol member joins, and goes back when it leaves.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fjord_protocol::kafka_protocol::messages::consumer_protocol_assignment::{
    ConsumerProtocolAssignment, TopicPartition,
};
use fjord_protocol::kafka_protocol::messages::{ConsumerProtocolSubscription, TopicName};
use fjord_protocol::kafka_protocol::protocol::{Encodable, StrBytes};
use fjord_protocol::kafka_protocol::ResponseError as E;

use super::*;
use crate::groups::consumer::{ConsumerGroupConfig, Heartbeat, Topics};
use crate::groups::coordinator::CoordinatorConfig;
use crate::groups::group::{code, JoinParams, Reply};
use crate::groups::{GroupLimits, OffsetStore};

fn coordinator(dir: &std::path::Path, migration: MigrationPolicy) -> GroupCoordinator {
    let flusher = fjord_storage::Flusher::new("test").expect("flusher");
    let offsets = OffsetStore::open(dir, flusher, false).expect("offsets");
    GroupCoordinator::new(
        CoordinatorConfig {
            limits: GroupLimits {
                min_session: Duration::from_millis(1),
                max_session: Duration::from_secs(60),
                initial_delay: Duration::ZERO,
                max_size: 10,
            },
            offsets_retention: Duration::from_secs(3600),
            offsets_retention_check: Duration::from_secs(3600),
            offset_metadata_max_bytes: 4096,
            consumer: ConsumerGroupConfig {
                migration,
                ..ConsumerGroupConfig::default()
            },
        },
        offsets,
    )
}

fn topics() -> Topics {
    Topics::from([("t".to_string(), (uuid::Uuid::from_bytes([3; 16]), 2))])
}

fn subscription() -> Bytes {
    let mut sub = ConsumerProtocolSubscription::default();
    sub.topics = vec![StrBytes::from_static_str("t")];
    let mut out = BytesMut::new();
    out.extend_from_slice(&0i16.to_be_bytes());
    sub.encode(&mut out, 0).expect("encodes");
    out.freeze()
}

fn assignment() -> Bytes {
    let mut a = ConsumerProtocolAssignment::default();
    let mut tp = TopicPartition::default();
    tp.topic = TopicName(StrBytes::from_static_str("t"));
    tp.partitions = vec![0, 1];
    a.assigned_partitions = vec![tp];
    let mut out = BytesMut::new();
    out.extend_from_slice(&0i16.to_be_bytes());
    a.encode(&mut out, 0).expect("encodes");
    out.freeze()
}

/// A classic group "g" with one Stable member; its member ID.
fn classic_group(c: &GroupCoordinator) -> String {
    let Routed::Classic(g) = c.route_join("g") else {
        panic!("a new ID is classic");
    };
    let mut g = lock(&g);
    let join = JoinParams {
        member_id: String::new(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/h".into(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(10),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), subscription())],
        version: 3,
    };
    let Reply::Wait(mut rx) = g.join(join, &c.config.limits, Instant::now()) else {
        panic!("joins");
    };
    let joined = rx.try_recv().expect("the join completed at once");
    let mine = vec![(joined.member_id.clone(), assignment())];
    let synced = match g.sync(
        &joined.member_id,
        None,
        joined.generation,
        None,
        None,
        mine,
        Instant::now(),
    ) {
        Reply::Now(r) => r,
        Reply::Wait(mut rx) => rx.try_recv().expect("the sync completed at once"),
    };
    assert_eq!(synced.error, 0);
    joined.member_id
}

fn consumer_join() -> Heartbeat {
    Heartbeat {
        member_id: "new".into(),
        member_epoch: 0,
        rebalance_timeout_ms: 10_000,
        topic_names: Some(vec!["t".into()]),
        owned: Some(Default::default()),
        ..Default::default()
    }
}

#[test]
fn a_group_upgrades_when_a_consumer_member_joins_and_downgrades_when_it_leaves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path(), MigrationPolicy::Bidirectional);
    let classic_member = classic_group(&c);
    let answer = c
        .consumer_heartbeat("g", consumer_join(), &topics(), consumer::now_ms())
        .expect("the join upgrades the group");
    let Some(Routed::Consumer(g)) = c.route_existing("g") else {
        panic!("now a consumer group");
    };
    {
        let mut g = consumer::lock(&g);
        assert_eq!(g.members.len(), 2);
        assert!(g.members[&classic_member].classic.is_some());
        // It kept what its classic assignment gave it, until it rejoins.
        let t = uuid::Uuid::from_bytes([3; 16]);
        assert_eq!(g.owner(t, 0), Some(classic_member.as_str()));
        assert_eq!(g.owner(t, 1), Some(classic_member.as_str()));
        let generation = g.members[&classic_member].current.epoch;
        assert_eq!(
            g.classic_heartbeat(&classic_member, None, generation, consumer::now_ms()),
            code::REBALANCE_IN_PROGRESS,
            "the classic member learns to rejoin"
        );
    }
    assert!(c.group("g").is_none(), "the classic group is gone");
    // The group's records were written: a restart finds a consumer group.
    assert!(c
        .offsets
        .raw()
        .iter()
        .any(|(k, _)| consumer::records::parse_key(k).is_some_and(
            |(_, group, m)| group == "g" && m.as_deref() == Some(classic_member.as_str())
        )));
    let leave = Heartbeat {
        member_id: answer.member_id,
        member_epoch: -1,
        ..Default::default()
    };
    c.consumer_heartbeat("g", leave, &topics(), consumer::now_ms())
        .expect("leaves");
    assert!(
        consumer::lock(&g).dead,
        "the consumer group was converted away"
    );
    let Some(Routed::Classic(back)) = c.route_existing("g") else {
        panic!("a classic group again");
    };
    let back = lock(&back);
    assert_eq!(back.phase, Phase::PreparingRebalance, "its members rejoin");
    assert!(back.has_member(&classic_member));
    assert!(c.consumer.get("g").is_none());
    assert!(
        !c.offsets.raw().iter().any(|(k, _)| consumer::records::parse_key(k)
            .is_some_and(|(_, group, _)| group == "g")),
        "the consumer group's records are tombstoned"
    );
}

#[test]
fn without_the_policy_a_classic_group_with_members_stays_classic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path(), MigrationPolicy::Downgrade);
    classic_group(&c);
    let refused = c
        .consumer_heartbeat("g", consumer_join(), &topics(), consumer::now_ms())
        .expect_err("refused");
    assert_eq!(refused.0, E::GroupIdNotFound);
    assert!(matches!(c.route_existing("g"), Some(Routed::Classic(_))));
}

#[test]
fn a_heartbeat_that_is_not_a_join_does_not_upgrade() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path(), MigrationPolicy::Bidirectional);
    classic_group(&c);
    let mut hb = consumer_join();
    hb.member_epoch = 3;
    let refused = c
        .consumer_heartbeat("g", hb, &topics(), consumer::now_ms())
        .expect_err("refused");
    assert_eq!(refused.0, E::GroupIdNotFound);
}

#[test]
fn a_refused_joining_heartbeat_does_not_upgrade() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path(), MigrationPolicy::Bidirectional);
    let member = classic_group(&c);
    let mut hb = consumer_join();
    hb.topic_regex = Some("(".into());
    let refused = c
        .consumer_heartbeat("g", hb, &topics(), consumer::now_ms())
        .expect_err("refused");
    assert_eq!(refused.0, E::InvalidRegularExpression);
    let Some(Routed::Classic(g)) = c.route_existing("g") else {
        panic!("still classic");
    };
    let g = lock(&g);
    assert_eq!(g.phase, Phase::Stable, "untouched: no rebalance");
    assert!(g.has_member(&member));
    assert!(c.consumer.get("g").is_none());
}
