//! One member's step toward its target assignment (Kafka's CurrentAssignmentBuilder):
//! it gives up what it must revoke before it gets anything new, and it gets a partition
//! only once the member that had it has let it go, so no partition is ever owned twice.

use std::collections::BTreeSet;

use super::assignor::Assignment;

/// Where a member is on its way to its target, as Kafka's `MemberState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// At the target epoch with everything it may have.
    Stable,
    /// Told to revoke partitions and not yet confirmed it did.
    UnrevokedPartitions,
    /// At the target epoch, waiting for partitions other members still hold.
    UnreleasedPartitions,
}

impl MemberState {
    /// Kafka's name (ConsumerGroupDescribe shows none, `fjord groups describe` does).
    pub fn name(self) -> &'static str {
        match self {
            Self::Stable => "STABLE",
            Self::UnrevokedPartitions => "UNREVOKED_PARTITIONS",
            Self::UnreleasedPartitions => "UNRELEASED_PARTITIONS",
        }
    }

    /// Kafka's code in `ConsumerGroupCurrentMemberAssignment` records.
    pub fn code(self) -> i8 {
        match self {
            Self::Stable => 0,
            Self::UnrevokedPartitions => 1,
            Self::UnreleasedPartitions => 2,
        }
    }
}

/// A member's current assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// Its member epoch.
    pub epoch: i32,
    /// Its state.
    pub state: MemberState,
    /// What it may use now.
    pub assigned: Assignment,
    /// What it was told to give up and has not confirmed yet.
    pub pending_revocation: Assignment,
}

/// Whether `owned` (what the member says it holds; `None` when the heartbeat did not
/// say) still includes any of `revoking`. Not saying counts as still holding.
pub fn still_owns(owned: Option<&Assignment>, revoking: &Assignment) -> bool {
    let Some(owned) = owned else {
        return !is_empty(revoking);
    };
    revoking.iter().any(|(topic, parts)| {
        owned
            .get(topic)
            .is_some_and(|o| parts.iter().any(|p| o.contains(p)))
    })
}

/// Whether an assignment holds no partition.
pub fn is_empty(a: &Assignment) -> bool {
    a.values().all(BTreeSet::is_empty)
}

fn minus(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (topic, parts) in a {
        let rest: BTreeSet<i32> = match b.get(topic) {
            Some(other) => parts.difference(other).copied().collect(),
            None => parts.clone(),
        };
        if !rest.is_empty() {
            out.insert(*topic, rest);
        }
    }
    out
}

fn intersect(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (topic, parts) in a {
        if let Some(other) = b.get(topic) {
            let both: BTreeSet<i32> = parts.intersection(other).copied().collect();
            if !both.is_empty() {
                out.insert(*topic, both);
            }
        }
    }
    out
}

fn union(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = a.clone();
    for (topic, parts) in b {
        out.entry(*topic).or_default().extend(parts);
    }
    out
}

/// The member's next step toward `target` (at `target_epoch`). `held_by_others` says
/// whether another member still holds a partition (assigned or pending revocation);
/// `owned` is what the member's heartbeat says it holds.
pub fn next(
    current: &Current,
    target: &Assignment,
    target_epoch: i32,
    owned: Option<&Assignment>,
    held_by_others: impl Fn(uuid::Uuid, i32) -> bool,
) -> Current {
    match current.state {
        MemberState::Stable if current.epoch == target_epoch => return current.clone(),
        MemberState::UnrevokedPartitions if still_owns(owned, &current.pending_revocation) => {
            return current.clone();
        }
        _ => {}
    }
    let kept = intersect(&current.assigned, target);
    let revoking = minus(&current.assigned, target);
    if !is_empty(&revoking) && still_owns(owned, &revoking) {
        return Current {
            epoch: current.epoch,
            state: MemberState::UnrevokedPartitions,
            assigned: kept,
            pending_revocation: revoking,
        };
    }
    let wanted = minus(target, &kept);
    let mut granted = Assignment::new();
    let mut held_back = false;
    for (topic, parts) in &wanted {
        for &p in parts {
            if held_by_others(*topic, p) {
                held_back = true;
            } else {
                granted.entry(*topic).or_default().insert(p);
            }
        }
    }
    Current {
        epoch: target_epoch,
        state: if held_back {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        },
        assigned: union(&kept, &granted),
        pending_revocation: Assignment::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: u8) -> uuid::Uuid {
        uuid::Uuid::from_bytes([n; 16])
    }

    fn a(parts: &[i32]) -> Assignment {
        Assignment::from([(t(1), parts.iter().copied().collect())])
    }

    fn current(epoch: i32, assigned: &[i32]) -> Current {
        Current {
            epoch,
            state: MemberState::Stable,
            assigned: a(assigned),
            pending_revocation: Assignment::new(),
        }
    }

    #[test]
    fn revoke_first_then_the_new_epoch() {
        let c = current(1, &[0, 1, 2]);
        // Target at epoch 2 takes partition 2 away and gives 3.
        let step = next(&c, &a(&[0, 1, 3]), 2, Some(&a(&[0, 1, 2])), |_, _| false);
        assert_eq!(step.state, MemberState::UnrevokedPartitions);
        assert_eq!((step.epoch, step.assigned.clone()), (1, a(&[0, 1])));
        assert_eq!(step.pending_revocation, a(&[2]));
        // A heartbeat that does not say what it owns changes nothing.
        assert_eq!(next(&step, &a(&[0, 1, 3]), 2, None, |_, _| false), step);
        // Once it no longer owns 2: epoch 2 with 3.
        let done = next(&step, &a(&[0, 1, 3]), 2, Some(&a(&[0, 1])), |_, _| false);
        assert_eq!(
            done,
            Current {
                epoch: 2,
                state: MemberState::Stable,
                assigned: a(&[0, 1, 3]),
                pending_revocation: Assignment::new()
            }
        );
    }

    #[test]
    fn a_partition_another_member_holds_waits_for_it() {
        let c = current(1, &[]);
        let step = next(&c, &a(&[4, 5]), 3, Some(&a(&[])), |_, p| p == 5);
        assert_eq!(step.state, MemberState::UnreleasedPartitions);
        assert_eq!((step.epoch, step.assigned.clone()), (3, a(&[4])));
        let later = next(&step, &a(&[4, 5]), 3, Some(&a(&[4])), |_, _| false);
        assert_eq!(
            (later.state, later.assigned),
            (MemberState::Stable, a(&[4, 5]))
        );
    }

    #[test]
    fn a_stable_member_at_the_target_epoch_stays() {
        let c = current(4, &[1]);
        assert_eq!(next(&c, &a(&[1, 2]), 4, None, |_, _| false), c);
    }
}
