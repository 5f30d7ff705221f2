//! How members leave a consumer group (a leave heartbeat, a timeout), and the checks
//! its committed offsets go through.

use fjord_protocol::kafka_protocol::ResponseError as E;

use super::group::{Answer, ConsumerGroup, Heartbeat, Refusal};

impl ConsumerGroup {
    pub(super) fn leave(&mut self, hb: &Heartbeat) -> Result<Answer, Refusal> {
        let id = match &hb.instance_id {
            Some(instance) => {
                let Some(m) = self
                    .members
                    .values()
                    .find(|m| m.instance_id.as_deref() == Some(instance))
                else {
                    return Err((
                        E::UnknownMemberId,
                        format!("Instance id {instance} is unknown."),
                    ));
                };
                if m.id != hb.member_id {
                    return Err((
                        E::FencedInstanceId,
                        format!("Static member {instance} is held by another member."),
                    ));
                }
                m.id.clone()
            }
            None => {
                if !self.members.contains_key(&hb.member_id) {
                    return Err((
                        E::UnknownMemberId,
                        format!(
                            "Member {} is not a member of group {}.",
                            hb.member_id, self.id
                        ),
                    ));
                }
                hb.member_id.clone()
            }
        };
        if hb.member_epoch == -2 && hb.instance_id.is_some() {
            // Keeps its partitions until its session expires or it rejoins; what it was
            // revoking is free at once (as Kafka clears it), so no one waits for it.
            if let Some(m) = self.members.get_mut(&id) {
                m.left_temporarily = true;
                let mut kept = m.current.clone();
                kept.pending_revocation = Default::default();
                if kept.state == super::reconcile::MemberState::UnrevokedPartitions {
                    kept.state = super::reconcile::MemberState::Stable;
                }
                self.set_current(&id, kept, 0);
            }
        } else {
            self.remove(&id);
        }
        Ok(Answer {
            member_id: id,
            member_epoch: hb.member_epoch,
            assignment: None,
        })
    }

    /// Removes a member (left, or timed out): its partitions are free, the group epoch
    /// moves.
    pub fn remove(&mut self, id: &str) {
        if self.members.remove(id).is_none() {
            return;
        }
        self.targets.remove(id);
        self.owners.retain(|_, owner| owner != id);
        self.group_epoch += 1;
        self.unsaved = true;
    }

    /// Removes members whose session expired or who did not revoke in time. Returns
    /// how many went.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.session_deadline_ms != 0 && m.session_deadline_ms < now_ms
                    || m.revocation_deadline_ms.is_some_and(|d| d < now_ms)
                    || m.classic.as_ref().is_some_and(|c| c.overdue(now_ms))
            })
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            self.remove(id);
        }
        gone.len()
    }

    /// OffsetCommit's check (Kafka 4.0's): a commit from outside the group (epoch < 0)
    /// only while it has no members; otherwise from a member, at its current epoch.
    pub fn check_commit(&self, member_id: &str, epoch: i32) -> Result<(), E> {
        if epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let member = self.members.get(member_id).ok_or(E::UnknownMemberId)?;
        check_epoch(member, epoch)
    }

    /// OffsetFetch's check: none for a fetch from outside the group (no member ID, epoch
    /// < 0); a member must fetch at its current epoch.
    pub fn check_fetch(&self, member_id: Option<&str>, epoch: i32) -> Result<(), E> {
        if member_id.is_none() && epoch < 0 {
            return Ok(());
        }
        let member = self
            .members
            .get(member_id.unwrap_or_default())
            .ok_or(E::UnknownMemberId)?;
        check_epoch(member, epoch)
    }
}

/// A member's commit or fetch must carry its current epoch: else STALE_MEMBER_EPOCH,
/// or ILLEGAL_GENERATION for a classic member (its generation is its epoch).
fn check_epoch(member: &super::group::Member, epoch: i32) -> Result<(), E> {
    match (epoch == member.current.epoch, member.classic.is_some()) {
        (true, _) => Ok(()),
        (false, true) => Err(E::IllegalGeneration),
        (false, false) => Err(E::StaleMemberEpoch),
    }
}

#[cfg(test)]
mod tests {
    use super::super::group::{ConsumerGroupConfig, Heartbeat, Topics};
    use super::*;

    fn static_join(member: &str, regex: Option<&str>) -> Heartbeat {
        Heartbeat {
            member_id: member.into(),
            member_epoch: 0,
            instance_id: Some("i".into()),
            rebalance_timeout_ms: 1_000,
            topic_names: Some(vec!["t".into()]),
            topic_regex: regex.map(str::to_string),
            owned: Some(Default::default()),
            ..Default::default()
        }
    }

    #[test]
    fn a_refused_rejoin_leaves_the_static_member_it_would_replace() {
        let topics = Topics::from([("t".to_string(), (uuid::Uuid::from_bytes([2; 16]), 2))]);
        let config = ConsumerGroupConfig::default();
        let mut g = ConsumerGroup::new("g");
        let first = g
            .heartbeat(static_join("a", None), &topics, &config, 1)
            .expect("joins");
        let mut leave = static_join("a", None);
        leave.member_epoch = -2;
        g.heartbeat(leave, &topics, &config, 2)
            .expect("leaves for now");
        let epoch = g.group_epoch;
        // A rejoin with a bad regex is refused before it takes the instance over.
        let refused = g.heartbeat(static_join("b", Some("(")), &topics, &config, 3);
        assert_eq!(
            refused.map(|_| ()).expect_err("refused").0,
            E::InvalidRegularExpression
        );
        assert!(g.members.contains_key("a"), "the old member is still there");
        assert!(!g.members.contains_key("b"));
        assert!(g.members["a"].left_temporarily);
        assert_eq!(g.group_epoch, epoch);
        assert_eq!(first.member_id, "a");
        // A good rejoin takes over with the same partitions.
        let back = g
            .heartbeat(static_join("b", None), &topics, &config, 4)
            .expect("rejoins");
        assert_eq!(back.member_id, "b");
        assert!(!g.members.contains_key("a"));
    }
}
