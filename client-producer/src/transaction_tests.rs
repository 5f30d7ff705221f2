//! The transaction state machine: which calls each state allows, and where errors lead.

use super::*;

fn abortable() -> ProduceError {
    ProduceError::TransactionAbortable {
        code: 22,
        reason: "offsets refused".into(),
    }
}

fn fenced() -> ProduceError {
    ProduceError::TransactionFatal {
        code: 90,
        reason: "fenced".into(),
    }
}

fn timeout() -> ProduceError {
    ProduceError::Client(fjord_client_common::ClientError::Timeout("c".into()))
}

fn ready() -> TxnState {
    let mut s = TxnState::new();
    s.start_init().expect("init");
    s.finish_call(&Ok(()), Phase::Ready);
    s
}

#[test]
fn nothing_before_init_and_init_only_once() {
    let mut s = TxnState::new();
    assert!(matches!(s.begin(), Err(ProduceError::TransactionState(_))));
    assert!(s.check_in_transaction("send").is_err());
    assert!(s.start_end(true).is_err());
    // A timed-out init may be called again; a refused one too.
    s.start_init().expect("init");
    s.finish_call(&Err(timeout()), Phase::Ready);
    assert_eq!(s.phase, Phase::Initializing);
    s.start_init().expect("init again after a timeout");
    s.finish_call(&Err(abortable()), Phase::Ready);
    assert_eq!(s.phase, Phase::Uninitialized);
    s.start_init().expect("init again");
    s.finish_call(&Ok(()), Phase::Ready);
    assert_eq!(s.phase, Phase::Ready);
    assert!(s.start_init().is_err(), "init twice");
}

#[test]
fn a_transaction_commits_and_the_next_begins_empty() {
    let mut s = ready();
    assert!(s.check_in_transaction("send").is_err(), "send before begin");
    s.begin().expect("begin");
    assert!(s.begin().is_err(), "begin twice");
    s.check_in_transaction("send").expect("send inside");
    assert!(!s.started());
    s.added.insert((Arc::from("t"), 0));
    assert!(s.started());
    s.start_end(true).expect("commit");
    s.check_sending().expect("flushing while committing");
    assert!(
        s.check_in_transaction("send").is_err(),
        "no send while committing"
    );
    s.finish_call(&Err(timeout()), Phase::Ready);
    assert_eq!(
        s.phase,
        Phase::Committing,
        "a timed-out commit may be retried"
    );
    assert!(
        s.start_end(false).is_err(),
        "not abort in the middle of a commit"
    );
    s.start_end(true).expect("commit again");
    s.finish_call(&Ok(()), Phase::Ready);
    assert_eq!(s.phase, Phase::Ready);
    assert!(!s.started(), "partitions forgotten");
    s.begin().expect("next transaction");
}

#[test]
fn a_failed_record_makes_the_transaction_abortable() {
    let mut s = ready();
    s.begin().expect("begin");
    s.fail(abortable());
    assert_eq!(s.phase, Phase::Abortable);
    // Every call but abort gets the error that ended the transaction.
    assert!(matches!(
        s.check_in_transaction("send"),
        Err(ProduceError::TransactionAbortable { code: 22, .. })
    ));
    assert!(s.check_sending().is_err());
    assert!(s.start_end(true).is_err());
    // A second failure does not hide the first.
    s.fail(ProduceError::TransactionAbortable {
        code: 7,
        reason: "later".into(),
    });
    assert!(matches!(
        s.error,
        Some(ProduceError::TransactionAbortable { code: 22, .. })
    ));
    s.start_end(false).expect("abort");
    assert!(
        matches!(s.check_sending(), Err(ProduceError::TransactionAborted)),
        "a batch back for a retry during the abort is not sent again"
    );
    s.finish_call(&Ok(()), Phase::Ready);
    assert_eq!((s.phase, s.error.is_none()), (Phase::Ready, true));
    s.begin().expect("a new transaction after the abort");
}

#[test]
fn a_failed_commit_is_abortable_and_fencing_is_fatal() {
    let mut s = ready();
    s.begin().expect("begin");
    s.start_end(true).expect("commit");
    s.finish_call(&Err(abortable()), Phase::Ready);
    assert_eq!(s.phase, Phase::Abortable);
    s.start_end(false).expect("abort");
    s.finish_call(&Err(fenced()), Phase::Ready);
    assert_eq!(s.phase, Phase::Fatal);
    for refused in [
        s.begin(),
        s.start_end(false),
        s.start_end(true),
        s.check_sending(),
        s.start_init(),
    ] {
        assert!(matches!(
            refused,
            Err(ProduceError::TransactionFatal { code: 90, .. })
        ));
    }
    s.fail(abortable());
    assert_eq!(s.phase, Phase::Fatal, "fatal stays fatal");
}

#[test]
fn record_failures_split_as_the_java_client_splits_them() {
    let fatal = |code| classify_record_failure(&ProduceError::broker(code)).is_fatal();
    assert!(fatal(90), "PRODUCER_FENCED");
    assert!(fatal(53), "TRANSACTIONAL_ID_AUTHORIZATION_FAILED");
    assert!(fatal(48), "INVALID_TXN_STATE");
    assert!(
        !fatal(47),
        "INVALID_PRODUCER_EPOCH after a coordinator timeout (KIP-588)"
    );
    assert!(!fatal(10), "MESSAGE_TOO_LARGE");
    let timed_out = ProduceError::DeliveryTimeout { last: "x".into() };
    assert!(matches!(
        classify_record_failure(&timed_out),
        ProduceError::TransactionAbortable { code: -1, .. }
    ));
    assert!(matches!(
        classify_record_failure(&ProduceError::TransactionAborted),
        ProduceError::TransactionAborted
    ));
}

#[test]
fn coordinator_answers_split_as_the_java_client_splits_them() {
    use CoordinatorAnswer as A;
    let cases = [
        (47, A::Fatal),
        (90, A::Fatal),
        (53, A::Fatal),
        (51, A::RetrySoon),
        (14, A::Retry),
        (16, A::Rediscover),
        (22, A::Abortable), // ILLEGAL_GENERATION
        (49, A::AbortableWithBump),
        (59, A::AbortableWithBump),
    ];
    for (code, want) in cases {
        assert_eq!(coordinator_answer(code), want, "code {code}");
    }
    let mut s = ready();
    s.producer_id_lost(59);
    assert!(s.epoch_bump_needed && !s.producer_id_unknown);
    s.producer_id_lost(49);
    assert!(s.producer_id_unknown, "the abort skips EndTxn");
}

#[test]
fn a_failed_batch_with_a_sequence_needs_a_new_epoch() {
    let mut s = ready();
    s.begin().expect("begin");
    let never_sealed = s.batch_failed(&ProduceError::broker(10), false);
    assert!(matches!(
        never_sealed,
        ProduceError::TransactionAbortable { code: 10, .. }
    ));
    assert!(!s.epoch_bump_needed, "no sequence was used");
    assert_eq!(s.phase, Phase::Abortable);
    s.start_end(false).expect("abort");
    let retried = s.batch_failed(&ProduceError::TransactionAborted, true);
    assert!(matches!(retried, ProduceError::TransactionAborted));
    assert!(s.epoch_bump_needed, "its sequence may be a gap");
    assert_eq!(s.phase, Phase::Aborting, "the abort goes on");
}

#[test]
fn a_success_does_not_hide_a_fatal_error_that_came_meanwhile() {
    let mut s = ready();
    s.begin().expect("begin");
    s.start_end(false).expect("abort");
    s.fail(fenced());
    s.finish_call(&Ok(()), Phase::Ready);
    assert_eq!(s.phase, Phase::Fatal);
    assert!(s.begin().is_err());
}

#[test]
fn partitions_to_add_are_the_new_ones_once_each() {
    let mut s = ready();
    assert!(
        s.partitions_to_add(std::iter::empty()).is_err(),
        "no transaction"
    );
    s.begin().expect("begin");
    s.added.insert((Arc::from("a"), 0));
    let wanted = [("b", 1), ("a", 0), ("b", 1), ("a", 2)]
        .into_iter()
        .map(|(t, p)| (Arc::from(t), p));
    let missing = s.partitions_to_add(wanted).expect("in a transaction");
    assert_eq!(missing, [(Arc::from("a"), 2), (Arc::from("b"), 1)]);
    s.start_end(false).expect("abort");
    assert!(matches!(
        s.partitions_to_add(std::iter::empty()),
        Err(ProduceError::TransactionAborted)
    ));
}
