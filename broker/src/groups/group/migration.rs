//! A classic group's side of KIP-848's online migration: handing its members to a
//! consumer group (upgrade), and taking a downgraded consumer group's members back.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{code, Group, GroupLimits, Member, Phase};

/// A classic-protocol member as a conversion carries it from one kind of group to the
/// other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedMember {
    /// Member ID (kept across the conversion).
    pub id: String,
    /// Static instance ID.
    pub instance_id: Option<String>,
    /// Client ID.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// The JoinGroup's session timeout.
    pub session_timeout_ms: i32,
    /// The JoinGroup's rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// (name, metadata) of each protocol it supports, in its order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// What it owns, in the consumer protocol's encoding (empty: nothing yet).
    pub assignment: Bytes,
}

fn ms(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

impl Group {
    /// Whether its members speak the consumer embedded protocol (protocol type
    /// "consumer"), the only ones a consumer group can take over.
    pub fn uses_consumer_protocol(&self) -> bool {
        self.protocol_type.as_deref() == Some("consumer")
    }

    /// How many members it has.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Its generation and members as a consumer group would take them over (Kafka's
    /// online upgrade), each with the chosen protocol first (the subscription a
    /// consumer group reads).
    pub fn members_to_move(&self) -> (i32, Vec<MovedMember>) {
        let chosen = self.protocol.clone();
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.seq);
        let moved = members
            .into_iter()
            .map(|m| {
                let mut protocols = m.protocols.clone();
                if let Some(at) = chosen
                    .as_ref()
                    .and_then(|c| protocols.iter().position(|(n, _)| n == c))
                {
                    let first = protocols.remove(at);
                    protocols.insert(0, first);
                }
                MovedMember {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: ms(m.session_timeout),
                    rebalance_timeout_ms: ms(m.rebalance_timeout),
                    protocols,
                    assignment: m.assignment.clone(),
                }
            })
            .collect();
        (self.generation, moved)
    }

    /// Ends the group after its members moved to a consumer group: waiting joins and
    /// syncs are told REBALANCE_IN_PROGRESS (they rejoin, into the consumer group), and
    /// the group is Dead.
    pub fn retire(&mut self) {
        self.abort_waiters(code::REBALANCE_IN_PROGRESS);
        self.kill();
    }

    /// The classic group a consumer group downgrades to (Kafka's online downgrade):
    /// Stable at `generation` with these members and what they own, then rebalancing,
    /// so every member rejoins and the leader assigns again.
    pub fn from_downgrade(
        id: &str,
        generation: i32,
        members: Vec<MovedMember>,
        limits: &GroupLimits,
        now: Instant,
    ) -> Self {
        let mut g = Group::new(id);
        g.generation = generation;
        g.protocol_type = Some("consumer".to_string());
        for m in members {
            g.next_seq += 1;
            let session_timeout =
                Duration::from_millis(u64::try_from(m.session_timeout_ms).unwrap_or(0));
            if let Some(instance) = &m.instance_id {
                g.static_members.insert(instance.clone(), m.id.clone());
            }
            g.members.insert(
                m.id.clone(),
                Member {
                    id: m.id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout,
                    rebalance_timeout: Duration::from_millis(
                        u64::try_from(m.rebalance_timeout_ms).unwrap_or(0),
                    ),
                    protocols: m.protocols,
                    assignment: m.assignment,
                    join_waiter: None,
                    sync_waiter: None,
                    synced: true,
                    session_deadline: now + session_timeout,
                    seq: g.next_seq,
                },
            );
        }
        if g.members.is_empty() {
            g.become_empty();
            return g;
        }
        g.protocol = g.select_protocol();
        g.phase = Phase::Stable;
        g.prepare_rebalance(limits, now);
        g.initial = None;
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::group::{JoinParams, Reply};

    fn limits() -> GroupLimits {
        GroupLimits {
            min_session: Duration::from_millis(1),
            max_session: Duration::from_secs(60),
            initial_delay: Duration::ZERO,
            max_size: 10,
        }
    }

    fn moved(id: &str, assignment: &'static [u8]) -> MovedMember {
        MovedMember {
            id: id.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/h".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
            assignment: Bytes::from_static(assignment),
        }
    }

    #[test]
    fn a_downgraded_group_keeps_its_members_and_asks_them_to_rejoin() {
        let now = Instant::now();
        let mut g = Group::from_downgrade(
            "g",
            7,
            vec![moved("a", b"A"), moved("b", b"B")],
            &limits(),
            now,
        );
        assert_eq!(g.phase, Phase::PreparingRebalance);
        assert_eq!(g.generation, 7);
        assert_eq!(g.protocol.as_deref(), Some("range"));
        // A heartbeat at the old generation learns to rejoin.
        assert_eq!(g.heartbeat("a", None, 7, now), code::REBALANCE_IN_PROGRESS);
        let join = |id: &str| JoinParams {
            member_id: id.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/h".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
            version: 9,
        };
        assert!(matches!(g.join(join("a"), &limits(), now), Reply::Wait(_)));
        let Reply::Wait(mut rx) = g.join(join("b"), &limits(), now) else {
            panic!("waits");
        };
        let done = rx.try_recv().expect("the join completed");
        assert_eq!(done.generation, 8);
        assert_eq!(g.phase, Phase::CompletingRebalance);
    }

    #[test]
    fn an_upgrade_takes_every_member_with_the_chosen_protocol_first_and_kills_the_group() {
        let now = Instant::now();
        let mut g = Group::from_downgrade("g", 3, vec![moved("a", b"A")], &limits(), now);
        g.members.get_mut("a").expect("a").protocols = vec![
            ("cooperative-sticky".into(), Bytes::from_static(b"x")),
            ("range".into(), Bytes::from_static(b"sub")),
        ];
        g.protocol = Some("range".into());
        let (generation, members) = g.members_to_move();
        g.retire();
        assert_eq!(generation, 3);
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].protocols[0].0, "range");
        assert_eq!(members[0].assignment, Bytes::from_static(b"A"));
        assert_eq!(g.phase, Phase::Dead);
    }
}
