//! A transaction's states and the moves between them, as Kafka's coordinator has them
//! (`TransactionState`, with transaction version 2's extra ways into PrepareAbort).

/// A transaction's state, with Kafka's byte values (`TransactionState.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    /// No transaction under way.
    Empty,
    /// Partitions added; records may be in flight.
    Ongoing,
    /// EndTxn(commit) accepted; markers being written.
    PrepareCommit,
    /// EndTxn(abort), or a timeout or a fence; markers being written.
    PrepareAbort,
    /// Commit markers written.
    CompleteCommit,
    /// Abort markers written.
    CompleteAbort,
    /// The id expired; its record is about to be removed.
    Dead,
    /// An epoch bump fencing the producer, before the abort (Kafka's intermediate state).
    PrepareEpochFence,
}

impl TxnState {
    /// Every state, in Kafka's byte order.
    pub const ALL: [TxnState; 8] = [
        Self::Empty,
        Self::Ongoing,
        Self::PrepareCommit,
        Self::PrepareAbort,
        Self::CompleteCommit,
        Self::CompleteAbort,
        Self::Dead,
        Self::PrepareEpochFence,
    ];

    /// Kafka's byte for the state.
    pub fn id(self) -> i8 {
        match self {
            Self::Empty => 0,
            Self::Ongoing => 1,
            Self::PrepareCommit => 2,
            Self::PrepareAbort => 3,
            Self::CompleteCommit => 4,
            Self::CompleteAbort => 5,
            Self::Dead => 6,
            Self::PrepareEpochFence => 7,
        }
    }

    /// The state of Kafka's byte `id`.
    pub fn from_id(id: i8) -> Option<Self> {
        Some(match id {
            0 => Self::Empty,
            1 => Self::Ongoing,
            2 => Self::PrepareCommit,
            3 => Self::PrepareAbort,
            4 => Self::CompleteCommit,
            5 => Self::CompleteAbort,
            6 => Self::Dead,
            7 => Self::PrepareEpochFence,
            _ => return None,
        })
    }
}

impl TxnState {
    /// The name DescribeTransactions and ListTransactions show.
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::Ongoing => "Ongoing",
            Self::PrepareCommit => "PrepareCommit",
            Self::PrepareAbort => "PrepareAbort",
            Self::CompleteCommit => "CompleteCommit",
            Self::CompleteAbort => "CompleteAbort",
            Self::Dead => "Dead",
            Self::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// Whether a transaction in `previous` may move to `self` (Kafka's
    /// `validPreviousStates`). PrepareAbort may also follow Empty and the complete
    /// states: a transaction-version-2 client that is unsure of the state sends an
    /// abort anyway.
    pub fn can_follow(self, previous: Self) -> bool {
        use TxnState::*;
        let done = matches!(previous, Empty | CompleteCommit | CompleteAbort);
        match self {
            Empty | Dead => done,
            Ongoing => done || previous == Ongoing,
            PrepareCommit | PrepareEpochFence => previous == Ongoing,
            PrepareAbort => done || matches!(previous, Ongoing | PrepareEpochFence),
            CompleteCommit => previous == PrepareCommit,
            CompleteAbort => previous == PrepareAbort,
        }
    }

    /// Whether an idle transactional id in this state may expire
    /// (`transactional.id.expiration.ms`): only with no transaction under way.
    pub fn expiration_allowed(self) -> bool {
        matches!(
            self,
            Self::Empty | Self::CompleteCommit | Self::CompleteAbort
        )
    }
}

#[cfg(test)]
mod tests {
    use super::TxnState::{self, *};

    const ALL: [TxnState; 8] = [
        Empty,
        Ongoing,
        PrepareCommit,
        PrepareAbort,
        CompleteCommit,
        CompleteAbort,
        Dead,
        PrepareEpochFence,
    ];

    #[test]
    fn every_state_keeps_its_kafka_byte() {
        for id in 0..8 {
            let state = TxnState::from_id(id).expect("a state");
            assert_eq!(state.id(), id);
        }
        assert_eq!(TxnState::from_id(8), None);
    }

    fn walk(path: &[TxnState]) -> bool {
        path.windows(2).all(|w| w[1].can_follow(w[0]))
    }

    #[test]
    fn the_lifecycles_kafka_goes_through_are_allowed() {
        // Commit, then another transaction that aborts, then expiry.
        assert!(walk(&[
            Empty,
            Ongoing,
            Ongoing,
            PrepareCommit,
            CompleteCommit,
            Ongoing,
            PrepareAbort,
            CompleteAbort,
            Empty,
            Dead,
        ]));
        // A newer producer fences an ongoing transaction.
        assert!(walk(&[
            Ongoing,
            PrepareEpochFence,
            PrepareAbort,
            CompleteAbort
        ]));
        // A transaction-version-2 client aborts when unsure.
        for done in [Empty, CompleteCommit, CompleteAbort] {
            assert!(PrepareAbort.can_follow(done));
        }
    }

    #[test]
    fn no_step_skips_the_markers_or_leaves_the_dead() {
        for s in ALL {
            assert!(!s.can_follow(Dead), "{s:?} after Dead");
            assert!(!s.can_follow(PrepareCommit) || s == CompleteCommit, "{s:?}");
        }
        assert!(
            !CompleteCommit.can_follow(Ongoing),
            "commit without markers"
        );
        assert!(
            !CompleteAbort.can_follow(PrepareCommit),
            "a prepared commit aborted"
        );
        assert!(!PrepareCommit.can_follow(Empty), "commit of nothing");
        assert!(!Dead.can_follow(Ongoing), "expiry of a live transaction");
        // Only states without a transaction under way may expire, and become Dead.
        for s in ALL {
            assert_eq!(s.expiration_allowed(), Dead.can_follow(s), "{s:?}");
        }
    }
}
