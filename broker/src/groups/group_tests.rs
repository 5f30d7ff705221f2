//! The group state machine driven directly, with a controlled clock: fencing, errors,
//! deadlines, and that bad requests leave the group's state intact.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::group::{code, Group, GroupLimits, JoinParams, JoinResult, Phase, Reply, SyncResult};

fn limits() -> GroupLimits {
    GroupLimits {
        min_session: Duration::from_millis(6000),
        max_session: Duration::from_millis(1_800_000),
        initial_delay: Duration::ZERO,
        max_size: 100,
    }
}

fn params(member: &str, protocols: &[&str]) -> JoinParams {
    JoinParams {
        member_id: member.to_string(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(30),
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
            .collect(),
        version: 5,
    }
}

fn now_result(reply: Reply<JoinResult>) -> JoinResult {
    match reply {
        Reply::Now(r) => r,
        Reply::Wait(mut rx) => rx.try_recv().expect("join completed"),
    }
}

/// A first join (MEMBER_ID_REQUIRED) then the real one; returns the member id and the
/// receiver of the real join.
fn join_new(g: &mut Group, protocols: &[&str], now: Instant) -> (String, Reply<JoinResult>) {
    let first = now_result(g.join(params("", protocols), &limits(), now));
    assert_eq!(first.error, code::MEMBER_ID_REQUIRED);
    let id = first.member_id.clone();
    let reply = g.join(params(&id, protocols), &limits(), now);
    (id, reply)
}

fn sync_now(reply: Reply<SyncResult>) -> SyncResult {
    match reply {
        Reply::Now(r) => r,
        Reply::Wait(mut rx) => rx.try_recv().expect("sync completed"),
    }
}

/// One member, Stable, generation 1.
fn stable_single(now: Instant) -> (Group, String) {
    let mut g = Group::new("g");
    let (id, reply) = join_new(&mut g, &["range"], now);
    let joined = now_result(reply);
    assert_eq!((joined.error, joined.generation), (0, 1));
    assert_eq!(joined.leader, id);
    assert_eq!(joined.members.len(), 1);
    let synced = sync_now(g.sync(
        &id,
        None,
        1,
        None,
        None,
        vec![(id.clone(), Bytes::from_static(b"a"))],
        now,
    ));
    assert_eq!(synced.error, 0);
    assert_eq!(synced.assignment, Bytes::from_static(b"a"));
    assert_eq!(g.phase, Phase::Stable);
    (g, id)
}

#[test]
fn joins_without_protocols_or_with_bad_timeouts_are_refused_and_change_nothing() {
    let now = Instant::now();
    let (mut g, id) = stable_single(now);
    let none = now_result(g.join(params("", &[]), &limits(), now));
    assert_eq!(none.error, code::INCONSISTENT_GROUP_PROTOCOL);
    let other = now_result(g.join(params("", &["roundrobin"]), &limits(), now));
    assert_eq!(other.error, code::INCONSISTENT_GROUP_PROTOCOL);
    let mut short = params("", &["range"]);
    short.session_timeout = Duration::from_millis(10);
    assert_eq!(
        now_result(g.join(short, &limits(), now)).error,
        code::INVALID_SESSION_TIMEOUT
    );
    let unknown = now_result(g.join(params("nobody", &["range"]), &limits(), now));
    assert_eq!(unknown.error, code::UNKNOWN_MEMBER_ID);
    assert_eq!(g.phase, Phase::Stable);
    assert_eq!(g.generation, 1);
    assert!(g.has_member(&id));
}

#[test]
fn stale_generations_and_unknown_members_are_fenced() {
    let now = Instant::now();
    let (mut g, id) = stable_single(now);
    assert_eq!(g.heartbeat(&id, None, 1, now), code::NONE);
    assert_eq!(g.heartbeat(&id, None, 0, now), code::ILLEGAL_GENERATION);
    assert_eq!(g.heartbeat("nobody", None, 1, now), code::UNKNOWN_MEMBER_ID);
    assert_eq!(
        sync_now(g.sync(&id, None, 7, None, None, Vec::new(), now)).error,
        code::ILLEGAL_GENERATION
    );
    assert_eq!(
        g.check_commit(&id, None, 0, now),
        Err(code::ILLEGAL_GENERATION)
    );
    assert_eq!(
        g.check_commit("nobody", None, 1, now),
        Err(code::UNKNOWN_MEMBER_ID)
    );
    // Manual-assignment commits (generation -1) are only for groups without members.
    assert_eq!(
        g.check_commit("", None, -1, now),
        Err(code::UNKNOWN_MEMBER_ID)
    );
    assert_eq!(g.check_commit(&id, None, 1, now), Ok(()));
    assert_eq!(g.phase, Phase::Stable);
}

#[test]
fn a_new_member_triggers_a_rebalance_that_completes_when_all_rejoin() {
    let now = Instant::now();
    let (mut g, first) = stable_single(now);
    let (second, second_join) = join_new(&mut g, &["range"], now);
    assert_eq!(g.phase, Phase::PreparingRebalance);
    assert!(matches!(second_join, Reply::Wait(_)));
    // The first member learns of the rebalance from its heartbeat and rejoins.
    assert_eq!(
        g.heartbeat(&first, None, 1, now),
        code::REBALANCE_IN_PROGRESS
    );
    assert_eq!(g.check_commit(&first, None, 1, now), Ok(()));
    let first_join = now_result(g.join(params(&first, &["range"]), &limits(), now));
    let second_join = now_result(second_join);
    assert_eq!(g.phase, Phase::CompletingRebalance);
    assert_eq!(first_join.generation, 2);
    assert_eq!(second_join.generation, 2);
    assert_eq!(first_join.leader, first, "the old leader stays leader");
    assert_eq!(first_join.members.len(), 2);
    assert!(
        second_join.members.is_empty(),
        "only the leader gets members"
    );
    // Commits wait for the assignment; a follower's sync waits for the leader's.
    assert_eq!(
        g.check_commit(&second, None, 2, now),
        Err(code::REBALANCE_IN_PROGRESS)
    );
    let follower = g.sync(&second, None, 2, None, None, Vec::new(), now);
    let Reply::Wait(mut follower) = follower else {
        panic!("a follower's sync answered before the leader's");
    };
    assert!(follower.try_recv().is_err());
    let leader = sync_now(g.sync(
        &first,
        None,
        2,
        Some("consumer"),
        Some("range"),
        vec![
            (first.clone(), Bytes::from_static(b"1")),
            (second.clone(), Bytes::from_static(b"2")),
        ],
        now,
    ));
    assert_eq!(leader.assignment, Bytes::from_static(b"1"));
    assert_eq!(
        follower.try_recv().expect("follower answered").assignment,
        Bytes::from_static(b"2")
    );
    assert_eq!(g.phase, Phase::Stable);
}

#[test]
fn expired_sessions_and_missed_rejoins_remove_members() {
    let now = Instant::now();
    let (mut g, first) = stable_single(now);
    let (_second, second_join) = join_new(&mut g, &["range"], now);
    // The first member heartbeats (and is told to rejoin) but never rejoins: at the
    // rebalance timeout it is dropped.
    for t in [9, 18, 27] {
        let at = now + Duration::from_secs(t);
        assert_eq!(
            g.heartbeat(&first, None, 1, at),
            code::REBALANCE_IN_PROGRESS
        );
        g.tick(&limits(), at);
        assert_eq!(g.phase, Phase::PreparingRebalance);
    }
    g.tick(&limits(), now + Duration::from_secs(31));
    let joined = now_result(second_join);
    assert_eq!(joined.error, 0);
    assert!(!g.has_member(&first));
    assert_eq!(g.phase, Phase::CompletingRebalance);
    // The survivor never syncs either: at the sync deadline it goes too, and the group
    // is Empty.
    g.tick(&limits(), now + Duration::from_secs(70));
    assert_eq!(g.phase, Phase::Empty);
    assert!(!g.has_members());
    assert!(g.empty_since_ms.is_some());
}

#[test]
fn a_silent_member_expires_after_its_session_timeout() {
    let now = Instant::now();
    let (mut g, id) = stable_single(now);
    g.tick(&limits(), now + Duration::from_secs(9));
    assert!(g.has_member(&id));
    assert_eq!(g.heartbeat(&id, None, 1, now + Duration::from_secs(9)), 0);
    g.tick(&limits(), now + Duration::from_secs(18));
    assert!(g.has_member(&id), "the heartbeat extended the session");
    g.tick(&limits(), now + Duration::from_secs(20));
    assert!(!g.has_member(&id));
    assert_eq!(g.phase, Phase::Empty);
    assert_eq!(
        g.generation, 2,
        "the empty rebalance still bumps the generation"
    );
}

#[test]
fn pending_member_ids_expire() {
    let now = Instant::now();
    let mut g = Group::new("g");
    let first = now_result(g.join(params("", &["range"]), &limits(), now));
    assert_eq!(first.error, code::MEMBER_ID_REQUIRED);
    assert!(g.has_pending());
    g.tick(&limits(), now + Duration::from_secs(11));
    assert!(!g.has_pending());
    let late = now_result(g.join(params(&first.member_id, &["range"]), &limits(), now));
    assert_eq!(late.error, code::UNKNOWN_MEMBER_ID);
}

#[test]
fn leaving_members_get_removed_and_the_rest_rebalance() {
    let now = Instant::now();
    let (mut g, id) = stable_single(now);
    assert_eq!(
        g.leave("nobody", None, &limits(), now),
        code::UNKNOWN_MEMBER_ID
    );
    assert_eq!(g.leave(&id, None, &limits(), now), code::NONE);
    assert_eq!(g.phase, Phase::Empty);
    assert_eq!(g.heartbeat(&id, None, 1, now), code::UNKNOWN_MEMBER_ID);
}

#[test]
fn static_members_are_fenced_by_instance_id_and_rejoin_without_rebalance() {
    let now = Instant::now();
    let mut g = Group::new("g");
    let mut p = params("", &["range"]);
    p.instance_id = Some("i1".into());
    // Static members need no MEMBER_ID_REQUIRED round trip.
    let joined = now_result(g.join(p.clone(), &limits(), now));
    assert_eq!(joined.error, 0);
    let old = joined.member_id.clone();
    sync_now(g.sync(
        &old,
        Some("i1"),
        1,
        None,
        None,
        vec![(old.clone(), Bytes::from_static(b"x"))],
        now,
    ));
    assert_eq!(g.phase, Phase::Stable);
    // The restarted instance joins with no member id: a new id, same generation.
    let again = now_result(g.join(p, &limits(), now));
    assert_eq!(again.error, 0);
    assert_eq!(again.generation, 1);
    assert_ne!(again.member_id, old);
    assert_eq!(g.phase, Phase::Stable);
    // Before v9 the answer names the old leader id, so the member does not reassign.
    assert_eq!(again.leader, old);
    let synced = sync_now(g.sync(&again.member_id, Some("i1"), 1, None, None, vec![], now));
    assert_eq!(
        synced.assignment,
        Bytes::from_static(b"x"),
        "its old assignment"
    );
    // The old incarnation is fenced.
    assert_eq!(
        g.heartbeat(&old, Some("i1"), 1, now),
        code::FENCED_INSTANCE_ID
    );
}

#[test]
fn the_group_size_limit_holds() {
    let now = Instant::now();
    let mut g = Group::new("g");
    let small = GroupLimits {
        max_size: 1,
        ..limits()
    };
    let first = now_result(g.join(params("", &["range"]), &small, now));
    let _ = g.join(params(&first.member_id, &["range"]), &small, now);
    let second = now_result(g.join(params("", &["range"]), &small, now));
    assert_eq!(second.error, code::GROUP_MAX_SIZE_REACHED);
}

#[test]
fn the_protocol_vote_picks_what_every_member_supports() {
    let now = Instant::now();
    let mut g = Group::new("g");
    let (a, a_join) = join_new(&mut g, &["cooperative-sticky", "range"], now);
    let a_join = now_result(a_join);
    assert_eq!(a_join.protocol.as_deref(), Some("cooperative-sticky"));
    sync_now(g.sync(&a, None, 1, None, None, vec![], now));
    let (_b, b_join) = join_new(&mut g, &["range"], now);
    let _ = g.join(params(&a, &["cooperative-sticky", "range"]), &limits(), now);
    assert_eq!(now_result(b_join).protocol.as_deref(), Some("range"));
}

#[test]
fn the_initial_delay_waits_for_more_members() {
    let now = Instant::now();
    let delayed = GroupLimits {
        initial_delay: Duration::from_secs(3),
        ..limits()
    };
    let mut g = Group::new("g");
    let first = now_result(g.join(params("", &["range"]), &delayed, now));
    let Reply::Wait(mut a) = g.join(params(&first.member_id, &["range"]), &delayed, now) else {
        panic!("joined before the initial delay");
    };
    g.tick(&delayed, now + Duration::from_secs(2));
    assert!(a.try_recv().is_err(), "completed before the delay");
    g.tick(&delayed, now + Duration::from_secs(4));
    assert_eq!(a.try_recv().expect("completed").generation, 1);
}

#[test]
fn a_replaced_static_instance_is_fenced_not_unknown() {
    let now = Instant::now();
    let mut g = Group::new("g");
    let mut p = params("", &["range"]);
    p.instance_id = Some("i1".into());
    let old = now_result(g.join(p.clone(), &limits(), now)).member_id;
    sync_now(g.sync(&old, Some("i1"), 1, None, None, vec![], now));
    let new = now_result(g.join(p.clone(), &limits(), now)).member_id;
    assert_ne!(new, old);
    // The zombie (old member id, same instance) learns it was fenced, everywhere.
    let mut zombie = p;
    zombie.member_id = old.clone();
    assert_eq!(
        now_result(g.join(zombie, &limits(), now)).error,
        code::FENCED_INSTANCE_ID
    );
    assert_eq!(
        sync_now(g.sync(&old, Some("i1"), 1, None, None, vec![], now)).error,
        code::FENCED_INSTANCE_ID
    );
    assert_eq!(
        g.leave(&old, Some("i1"), &limits(), now),
        code::FENCED_INSTANCE_ID
    );
    assert_eq!(
        g.check_commit(&old, Some("i1"), 1, now),
        Err(code::FENCED_INSTANCE_ID)
    );
    assert!(g.has_member(&new));
    assert_eq!(g.phase, Phase::Stable);
}

#[test]
fn an_absent_static_member_keeps_its_place_through_a_rebalance() {
    let now = Instant::now();
    let mut g = Group::new("g");
    let mut s = params("", &["range"]);
    s.instance_id = Some("s".into());
    s.session_timeout = Duration::from_secs(60);
    let static_id = now_result(g.join(s, &limits(), now)).member_id;
    sync_now(g.sync(&static_id, Some("s"), 1, None, None, vec![], now));
    let (dynamic, dynamic_join) = join_new(&mut g, &["range"], now);
    assert_eq!(g.phase, Phase::PreparingRebalance);
    // The static member does not rejoin in time (it is restarting): the join completes
    // at the rebalance timeout without it, and it stays a member.
    g.tick(&limits(), now + Duration::from_secs(31));
    let joined = now_result(dynamic_join);
    assert_eq!(joined.error, 0);
    assert_eq!(joined.leader, dynamic, "a member that joined leads");
    assert_eq!(
        joined.members.len(),
        2,
        "the leader still sees the static member"
    );
    assert!(g.has_member(&static_id));
    // Its session (60 s from its last sign of life) still ends it.
    g.tick(&limits(), now + Duration::from_secs(59));
    assert!(g.has_member(&static_id));
    g.tick(&limits(), now + Duration::from_secs(61));
    assert!(!g.has_member(&static_id));
}
