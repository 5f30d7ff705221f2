//! A consumer group to and from its records (see [`super::records`]).

use std::collections::BTreeMap;

use super::group::{ConsumerGroup, Member};
use super::reconcile::{Current, MemberState};
use super::records::{self as rec, MemberMetadata};

/// Records by key (encoded), the latest value of each.
pub type Records = BTreeMap<Vec<u8>, Vec<u8>>;

/// A group's records decoded enough to rebuild it: (type, member ID, value).
pub type GroupRecord = (i16, Option<String>, Vec<u8>);

impl ConsumerGroup {
    /// The group's whole state as records.
    pub fn records(&self) -> Records {
        let id = self.id.as_str();
        let mut out = Records::new();
        out.insert(
            rec::key(rec::GROUP_METADATA, id, None),
            rec::group_metadata(self.group_epoch),
        );
        let subscribed = self.subscribed();
        out.insert(
            rec::key(rec::PARTITION_METADATA, id, None),
            rec::partition_metadata(&subscribed),
        );
        out.insert(
            rec::key(rec::TARGET_METADATA, id, None),
            rec::target_metadata(self.assignment_epoch),
        );
        for m in self.members.values() {
            let meta = MemberMetadata {
                instance_id: m.instance_id.clone(),
                rack_id: m.rack_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                topic_names: m.topic_names.clone(),
                topic_regex: m.topic_regex.clone(),
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                server_assignor: m.server_assignor.clone(),
                classic: m.classic.as_ref().map(|c| c.meta.clone()),
            };
            let member = Some(m.id.as_str());
            out.insert(
                rec::key(rec::MEMBER_METADATA, id, member),
                rec::member_metadata(&meta),
            );
            let target = self.targets.get(&m.id).cloned().unwrap_or_default();
            out.insert(
                rec::key(rec::TARGET_MEMBER, id, member),
                rec::target_member(&target),
            );
            // A static member's temporary leave is Kafka's epoch -2.
            let mut current = m.current.clone();
            if m.left_temporarily {
                current.epoch = -2;
            }
            out.insert(
                rec::key(rec::CURRENT_MEMBER, id, member),
                rec::current_member(&current, m.previous_epoch),
            );
        }
        out
    }

    /// Rebuilds a group from its records (`now_ms` starts every member's session);
    /// records that do not decode are skipped with a warning.
    pub fn from_records(
        id: &str,
        records: &[(i16, Option<String>, Vec<u8>)],
        session_ms: u64,
        now_ms: u64,
    ) -> Self {
        let mut g = ConsumerGroup::new(id);
        let mut metas: BTreeMap<String, MemberMetadata> = BTreeMap::new();
        let mut currents: BTreeMap<String, (Current, i32)> = BTreeMap::new();
        for (kind, member, value) in records {
            let ok = match (*kind, member) {
                (rec::GROUP_METADATA, _) => {
                    rec::parse_epoch(value).map(|e| g.group_epoch = e).is_some()
                }
                (rec::TARGET_METADATA, _) => rec::parse_epoch(value)
                    .map(|e| g.assignment_epoch = e)
                    .is_some(),
                (rec::PARTITION_METADATA, _) => rec::parse_partition_metadata(value)
                    .map(|s| g.set_subscribed(s))
                    .is_some(),
                (rec::MEMBER_METADATA, Some(m)) => rec::parse_member_metadata(value)
                    .map(|v| metas.insert(m.clone(), v))
                    .is_some(),
                (rec::TARGET_MEMBER, Some(m)) => rec::parse_target_member(value)
                    .map(|t| g.targets.insert(m.clone(), t))
                    .is_some(),
                (rec::CURRENT_MEMBER, Some(m)) => rec::parse_current_member(value)
                    .map(|c| currents.insert(m.clone(), c))
                    .is_some(),
                _ => false,
            };
            if !ok {
                tracing::warn!(
                    group = id,
                    kind,
                    "skipping a consumer group record that does not decode"
                );
            }
        }
        for (member_id, meta) in metas {
            let (mut current, previous_epoch) = currents.remove(&member_id).unwrap_or((
                Current {
                    epoch: 0,
                    state: MemberState::Stable,
                    assigned: Default::default(),
                    pending_revocation: Default::default(),
                },
                0,
            ));
            let left_temporarily = current.epoch == -2;
            if left_temporarily {
                current.epoch = 0;
            }
            let member = Member::restored(
                &member_id,
                meta,
                current,
                previous_epoch,
                left_temporarily,
                now_ms.saturating_add(session_ms),
                session_ms,
            );
            g.insert_restored(member);
        }
        g.targets.retain(|m, _| g.members.contains_key(m));
        // A lost group-epoch record must not leave the group behind its assignment (it
        // would never compute a target again).
        g.group_epoch = g.group_epoch.max(g.assignment_epoch);
        g
    }
}

/// What to write so the persisted records become `now`: changed and new keys, and
/// tombstones for keys gone.
pub fn diff(before: &Records, now: &Records) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut out: Vec<(Vec<u8>, Option<Vec<u8>>)> = now
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    out.extend(
        before
            .keys()
            .filter(|k| !now.contains_key(*k))
            .map(|k| (k.clone(), None)),
    );
    out
}
