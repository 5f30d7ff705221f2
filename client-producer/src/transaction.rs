//! A transactional producer's state, kept as the Java client's `TransactionManager`
//! keeps it: which call may come next, the partitions and groups the coordinator has
//! recorded for the open transaction, and the error that ended it. No I/O here: the
//! requests are in `txn_requests`, the public calls in `transactional`.
//!
//! Errors split as Java splits them. Fatal ones (fenced by a newer producer with the
//! same `transactional.id`, not authorized, unsupported) end the producer. Any other
//! failure of a record or a transactional request makes the transaction abortable:
//! commit refuses, abort works, and a new transaction may begin after it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use fjord_client_common::Connection;

use crate::error::ProduceError;

/// Where the transactional producer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// `init_transactions` has not succeeded yet.
    Uninitialized,
    /// `init_transactions` is running (or failed retriably and may be called again).
    Initializing,
    /// No transaction open: `begin_transaction` may come.
    Ready,
    /// A transaction is open: sends and offsets go into it.
    InTransaction,
    /// `commit_transaction` is running (or timed out and may be called again).
    Committing,
    /// `abort_transaction` is running (or timed out and may be called again).
    Aborting,
    /// Something failed inside the transaction: only `abort_transaction` may come.
    Abortable,
    /// Nothing will work again: close the producer.
    Fatal,
}

/// Kafka error codes that end a transactional producer when a coordinator answers them
/// (the Java client's fatal errors).
const FATAL_COORDINATOR_CODES: &[i16] = &[
    31, // CLUSTER_AUTHORIZATION_FAILED
    35, // UNSUPPORTED_VERSION
    43, // UNSUPPORTED_FOR_MESSAGE_FORMAT
    47, // INVALID_PRODUCER_EPOCH: an older epoch, so a newer producer took over
    48, // INVALID_TXN_STATE
    50, // INVALID_TRANSACTION_TIMEOUT
    53, // TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    90, // PRODUCER_FENCED
];

/// Kafka error codes that end a transactional producer when a Produce answers them.
///
/// INVALID_PRODUCER_EPOCH (47) is not among them, as in the Java client since KIP-588:
/// the record's failure makes the transaction abortable. It rarely ends there, though:
/// the usual cause is a coordinator that aborted the transaction past its timeout and
/// bumped the epoch, and the abort's EndTxn under the old epoch is then answered
/// PRODUCER_FENCED, which is fatal. Only a producer that can still present its epoch
/// (a produce raced a fencing that did not complete) recovers.
const FATAL_PRODUCE_CODES: &[i16] = &[31, 35, 48, 53, 90];

const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
const UNKNOWN_PRODUCER_ID: i16 = 59;

/// What a transactional request does with a coordinator's error answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CoordinatorAnswer {
    /// The coordinator is busy with the previous transaction's markers: ask again soon.
    RetrySoon,
    /// Ask the same coordinator again after the retry backoff.
    Retry,
    /// It is not the coordinator (any more): find it again, then ask.
    Rediscover,
    /// The producer cannot go on.
    Fatal,
    /// The transaction must be aborted.
    Abortable,
    /// The transaction must be aborted and the epoch bumped after it: the coordinator no
    /// longer knows the producer id (UNKNOWN_PRODUCER_ID, INVALID_PRODUCER_ID_MAPPING:
    /// the transactional id expired), as the Java client's `abortableErrorIfPossible`.
    AbortableWithBump,
}

/// How a transactional request treats a coordinator's error `code`.
pub(crate) fn coordinator_answer(code: i16) -> CoordinatorAnswer {
    match code {
        // CONCURRENT_TRANSACTIONS
        51 => CoordinatorAnswer::RetrySoon,
        // UNKNOWN_TOPIC_OR_PARTITION, REQUEST_TIMED_OUT, COORDINATOR_LOAD_IN_PROGRESS
        3 | 7 | 14 => CoordinatorAnswer::Retry,
        // COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR
        15 | 16 => CoordinatorAnswer::Rediscover,
        INVALID_PRODUCER_ID_MAPPING | UNKNOWN_PRODUCER_ID => CoordinatorAnswer::AbortableWithBump,
        code if FATAL_COORDINATOR_CODES.contains(&code) => CoordinatorAnswer::Fatal,
        _ => CoordinatorAnswer::Abortable,
    }
}

/// The transactional view of a record's failure: fatal, aborted, or abortable.
pub(crate) fn classify_record_failure(error: &ProduceError) -> ProduceError {
    match error {
        ProduceError::TransactionFatal { .. }
        | ProduceError::TransactionAbortable { .. }
        | ProduceError::TransactionAborted => error.clone(),
        ProduceError::Broker { code, .. } if FATAL_PRODUCE_CODES.contains(code) => {
            ProduceError::TransactionFatal {
                code: *code,
                reason: format!("a record was refused: {error}"),
            }
        }
        other => ProduceError::TransactionAbortable {
            code: other.code().unwrap_or(-1),
            reason: format!("a record was not written: {other}"),
        },
    }
}

/// The transaction's bookkeeping, under one lock.
#[derive(Debug)]
pub(crate) struct TxnState {
    pub(crate) phase: Phase,
    /// What made the producer abortable or fatal.
    pub(crate) error: Option<ProduceError>,
    /// Partitions the coordinator has recorded for the open transaction.
    pub(crate) added: HashSet<(Arc<str>, i32)>,
    /// Groups whose offsets the open transaction carries (AddOffsetsToTxn done).
    pub(crate) groups: HashSet<String>,
    /// A sequence may have been lost (a batch failed after being sent): after the
    /// abort, the epoch is bumped (KIP-360) so sequences start again from 0.
    pub(crate) epoch_bump_needed: bool,
    /// The coordinator answered INVALID_PRODUCER_ID_MAPPING: it will not take an EndTxn
    /// of this producer id, so the abort goes straight to InitProducerId (as Java's).
    pub(crate) producer_id_unknown: bool,
}

fn state_error(call: &str, phase: Phase) -> ProduceError {
    ProduceError::TransactionState(format!("cannot {call} in state {phase:?}"))
}

impl TxnState {
    fn new() -> Self {
        Self {
            phase: Phase::Uninitialized,
            error: None,
            added: HashSet::new(),
            groups: HashSet::new(),
            epoch_bump_needed: false,
            producer_id_unknown: false,
        }
    }

    /// The error a call gets in a state that refuses it.
    fn refusal(&self, call: &str) -> ProduceError {
        match (&self.error, self.phase) {
            (Some(e), Phase::Fatal | Phase::Abortable) => e.clone(),
            _ => state_error(call, self.phase),
        }
    }

    /// `init_transactions` starts (or starts again after a retriable failure).
    pub(crate) fn start_init(&mut self) -> Result<(), ProduceError> {
        match self.phase {
            Phase::Uninitialized | Phase::Initializing => {
                self.phase = Phase::Initializing;
                Ok(())
            }
            _ => Err(self.refusal("init_transactions")),
        }
    }

    /// `begin_transaction`.
    pub(crate) fn begin(&mut self) -> Result<(), ProduceError> {
        if self.phase != Phase::Ready {
            return Err(self.refusal("begin_transaction"));
        }
        self.phase = Phase::InTransaction;
        self.added.clear();
        self.groups.clear();
        Ok(())
    }

    /// Whether a send (or `send_offsets_to_transaction`) may go into the transaction.
    pub(crate) fn check_in_transaction(&self, call: &str) -> Result<(), ProduceError> {
        if self.phase == Phase::InTransaction {
            Ok(())
        } else {
            Err(self.refusal(call))
        }
    }

    /// Whether the sender may put batches on the wire: inside a transaction or while it
    /// commits. A batch that comes back for a retry while the transaction aborts is not
    /// sent again (it could only be aborted): it fails with
    /// [`ProduceError::TransactionAborted`].
    pub(crate) fn check_sending(&self) -> Result<(), ProduceError> {
        match self.phase {
            Phase::InTransaction | Phase::Committing => Ok(()),
            Phase::Aborting => Err(ProduceError::TransactionAborted),
            _ => Err(self.refusal("send a batch")),
        }
    }

    /// The partitions of `wanted` that the coordinator has not recorded for the open
    /// transaction (sorted, each once), if the batches may be sent at all.
    pub(crate) fn partitions_to_add(
        &self,
        wanted: impl Iterator<Item = (Arc<str>, i32)>,
    ) -> Result<Vec<(Arc<str>, i32)>, ProduceError> {
        self.check_sending()?;
        let mut missing: Vec<(Arc<str>, i32)> =
            wanted.filter(|tp| !self.added.contains(tp)).collect();
        missing.sort_unstable();
        missing.dedup();
        Ok(missing)
    }

    /// A batch of the transaction failed with `error`: returns what its records fail
    /// with, and moves the state on. A batch that had a sequence may leave a gap in the
    /// partition's sequences (it may or may not have been written), so the epoch is
    /// bumped after the abort.
    pub(crate) fn batch_failed(
        &mut self,
        error: &ProduceError,
        had_sequence: bool,
    ) -> ProduceError {
        let error = classify_record_failure(error);
        if had_sequence {
            self.epoch_bump_needed = true;
        }
        self.fail(error.clone());
        error
    }

    /// A coordinator answered `code`, which makes the transaction abortable and needs a
    /// new epoch after the abort.
    pub(crate) fn producer_id_lost(&mut self, code: i16) {
        self.epoch_bump_needed = true;
        if code == INVALID_PRODUCER_ID_MAPPING {
            self.producer_id_unknown = true;
        }
    }

    /// Commit or abort starts. Commit comes from an open transaction (or a commit that
    /// timed out); abort also from an abortable error.
    pub(crate) fn start_end(&mut self, commit: bool) -> Result<(), ProduceError> {
        let allowed = if commit {
            matches!(self.phase, Phase::InTransaction | Phase::Committing)
        } else {
            matches!(
                self.phase,
                Phase::InTransaction | Phase::Abortable | Phase::Aborting
            )
        };
        if !allowed {
            let call = if commit {
                "commit_transaction"
            } else {
                "abort_transaction"
            };
            return Err(self.refusal(call));
        }
        self.phase = if commit {
            Phase::Committing
        } else {
            Phase::Aborting
        };
        Ok(())
    }

    /// Whether the coordinator knows of the transaction (so EndTxn is needed).
    pub(crate) fn started(&self) -> bool {
        !self.added.is_empty() || !self.groups.is_empty()
    }

    /// A call (init, commit, abort) ended with `result`: success moves on to `done`
    /// (unless a fatal error came meanwhile, which stays); a retriable failure leaves
    /// the phase, so the same call may be made again; a fatal one ends the producer;
    /// anything else makes the transaction abortable (or, for init, leaves it to be
    /// called again).
    pub(crate) fn finish_call(&mut self, result: &Result<(), ProduceError>, done: Phase) {
        match result {
            Ok(()) if self.phase == Phase::Fatal => {}
            Ok(()) => {
                self.phase = done;
                self.error = None;
                if done == Phase::Ready {
                    self.added.clear();
                    self.groups.clear();
                }
            }
            Err(e) if e.is_fatal() => self.fail(e.clone()),
            Err(e) if e.is_retriable() => {}
            Err(e) => match self.phase {
                Phase::Initializing => self.phase = Phase::Uninitialized,
                _ => self.fail(e.clone()),
            },
        }
    }

    /// Something inside the transaction failed: fatal errors end the producer, others
    /// make an open (or committing) transaction abortable. The first error is kept.
    pub(crate) fn fail(&mut self, error: ProduceError) {
        if self.phase == Phase::Fatal {
            return;
        }
        if error.is_fatal() {
            self.phase = Phase::Fatal;
            self.error = Some(error);
            return;
        }
        if matches!(self.phase, Phase::InTransaction | Phase::Committing) {
            self.phase = Phase::Abortable;
            self.error = Some(error);
        }
    }
}

/// A transactional producer's identity and state.
#[derive(Debug)]
pub(crate) struct Transactions {
    /// `transactional.id`.
    pub(crate) id: String,
    /// `transaction.timeout.ms`.
    pub(crate) timeout_ms: i32,
    state: Mutex<TxnState>,
    /// The transaction coordinator's connection, once found.
    pub(crate) coordinator: tokio::sync::Mutex<Option<Connection>>,
    /// Held while partitions are added, so the senders of several brokers add theirs
    /// one request at a time and none adds a partition twice.
    pub(crate) adding: tokio::sync::Mutex<()>,
    /// Held shared by each send (and `send_offsets_to_transaction`) from its state check
    /// until its record is in a batch; commit and abort take it exclusively once they
    /// changed the phase, so every send that got past the check is in the batches they
    /// flush, and none joins the transaction after that.
    pub(crate) sends: tokio::sync::RwLock<()>,
    /// Held by init, commit and abort for their whole run: one at a time.
    pub(crate) calls: tokio::sync::Mutex<()>,
    /// The coordinator of the group offsets were last sent for.
    pub(crate) group_coordinator: tokio::sync::Mutex<Option<(String, Connection)>>,
}

impl Transactions {
    pub(crate) fn new(id: String, timeout_ms: i32) -> Self {
        Self {
            id,
            timeout_ms,
            state: Mutex::new(TxnState::new()),
            coordinator: tokio::sync::Mutex::new(None),
            adding: tokio::sync::Mutex::new(()),
            sends: tokio::sync::RwLock::new(()),
            calls: tokio::sync::Mutex::new(()),
            group_coordinator: tokio::sync::Mutex::new(None),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, TxnState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
#[path = "transaction_tests.rs"]
mod tests;
