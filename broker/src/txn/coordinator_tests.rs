//! The coordinator against a model: random request sequences keep every stored move one
//! that Kafka's state machine allows, the state read back after a crash is the state
//! acknowledged, and a crash at every step of EndTxn still ends with every partition
//! marked.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

use fjord_protocol::kafka_protocol::ResponseError as E;
use fjord_storage::Flusher;
use proptest::prelude::*;

use super::coordinator::{MarkerError, MarkerWriter, TxnConfig, TxnCoordinator};
use super::state::TxnState;
use super::store::TxnStore;

/// A marker written: topic, partition, producer id, epoch, commit.
type Written = (String, i32, i64, i16, bool);

/// Markers "written" to partitions; fails every write after `budget` of them (a crash
/// part-way through EndTxn).
#[derive(Default)]
struct FakeMarkers {
    written: RefCell<Vec<Written>>,
    budget: RefCell<Option<usize>>,
}

impl MarkerWriter for FakeMarkers {
    fn write_marker(
        &self,
        topic: &str,
        partition: i32,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), MarkerError> {
        if let Some(left) = self.budget.borrow_mut().as_mut() {
            if *left == 0 {
                return Err(MarkerError::Failed("crash".into()));
            }
            *left -= 1;
        }
        self.written
            .borrow_mut()
            .push((topic.into(), partition, producer_id, epoch, commit));
        Ok(())
    }
}

fn open(dir: &Path) -> TxnCoordinator {
    let flusher = Flusher::new("test").expect("flusher");
    let store = TxnStore::open(dir, flusher, false).expect("store");
    TxnCoordinator::new(TxnConfig::default(), store)
}

fn next_id() -> impl Fn() -> Result<i64, E> {
    let n = std::cell::Cell::new(100);
    move || {
        n.set(n.get() + 1);
        Ok(n.get())
    }
}

fn parts(n: i32) -> Vec<(String, i32)> {
    (0..n).map(|p| ("t".to_string(), p)).collect()
}

#[test]
fn a_crash_at_every_step_of_end_txn_still_marks_every_partition() {
    for commit in [true, false] {
        for crash_after in 0..=4 {
            let dir = tempfile::tempdir().expect("tempdir");
            let markers = FakeMarkers::default();
            let (pid, epoch) = {
                let c = open(dir.path());
                let ids = next_id();
                let (pid, epoch) = c
                    .init_producer_id("a", 60_000, (-1, -1), &ids, &markers)
                    .expect("init");
                c.add_partitions("a", pid, epoch, &parts(4)).expect("add");
                *markers.budget.borrow_mut() = Some(crash_after);
                // The decision is taken whatever happens to the markers.
                c.end_txn("a", pid, epoch, commit, &markers).expect("end");
                (pid, epoch)
            }; // crash: dropped without closing
            *markers.budget.borrow_mut() = None;
            let c = open(dir.path());
            let expected_state = match (crash_after >= 4, commit) {
                (true, true) => TxnState::CompleteCommit,
                (true, false) => TxnState::CompleteAbort,
                (false, true) => TxnState::PrepareCommit,
                (false, false) => TxnState::PrepareAbort,
            };
            assert_eq!(c.describe("a").expect("a").state, expected_state);
            c.finish_prepared(&markers);
            let meta = c.describe("a").expect("a");
            let done = if commit {
                TxnState::CompleteCommit
            } else {
                TxnState::CompleteAbort
            };
            assert_eq!(meta.state, done, "crash after {crash_after}");
            let marked: std::collections::BTreeSet<i32> = markers
                .written
                .borrow()
                .iter()
                .filter(|m| m.2 == pid && m.3 == epoch && m.4 == commit)
                .map(|m| m.1)
                .collect();
            assert_eq!(marked.len(), 4, "crash after {crash_after}: {marked:?}");
            // A retry of the same EndTxn after recovery is answered as done.
            assert_eq!(c.end_txn("a", pid, epoch, commit, &markers), Ok(()));
        }
    }
}

/// One request of the model test.
#[derive(Debug, Clone)]
enum Op {
    Init(u8),
    Add(u8, i32),
    End(u8, bool),
    TimeoutAll,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..2).prop_map(Op::Init),
        (0u8..2, 0i32..3).prop_map(|(i, p)| Op::Add(i, p)),
        (0u8..2, any::<bool>()).prop_map(|(i, c)| Op::End(i, c)),
        Just(Op::TimeoutAll),
        Just(Op::Restart),
    ]
}

/// What the model expects of one id: its producer, epoch, and open partitions.
#[derive(Debug, Clone, Default)]
struct Model {
    producer: Option<(i64, i16)>,
    open: Option<Vec<i32>>,
}

/// Whether `to` can follow `from` in at most `moves` allowed moves.
fn reachable(from: TxnState, to: TxnState, moves: usize) -> bool {
    moves > 0
        && (to.can_follow(from)
            || TxnState::ALL[..6]
                .iter()
                .any(|&via| via.can_follow(from) && reachable(via, to, moves - 1)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_requests_follow_kafkas_state_machine(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let markers = FakeMarkers::default();
        let ids = next_id();
        let mut c = open(dir.path());
        let mut model: BTreeMap<u8, Model> = BTreeMap::new();
        let mut last_state: BTreeMap<String, TxnState> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Init(i) => {
                    let name = format!("id{i}");
                    let m = model.entry(i).or_default();
                    let r = c.init_producer_id(&name, 60_000, (-1, -1), &ids, &markers);
                    if m.open.is_some() {
                        // The open transaction is aborted; the client retries.
                        prop_assert_eq!(r, Err(E::ConcurrentTransactions));
                        m.open = None;
                        let r = c.init_producer_id(&name, 60_000, (-1, -1), &ids, &markers);
                        let got = r.expect("retry");
                        let (pid, epoch) = m.producer.expect("producer");
                        prop_assert_eq!(got, (pid, epoch + 2));
                        m.producer = Some(got);
                    } else {
                        let got = r.expect("init");
                        if let Some((pid, epoch)) = m.producer {
                            prop_assert_eq!(got, (pid, epoch + 1));
                        }
                        m.producer = Some(got);
                    }
                }
                Op::Add(i, p) => {
                    let m = model.entry(i).or_default();
                    let Some((pid, epoch)) = m.producer else {
                        prop_assert_eq!(c.add_partitions(&format!("id{i}"), 1, 0, &parts(1)), Err(E::InvalidProducerIdMapping));
                        continue;
                    };
                    c.add_partitions(&format!("id{i}"), pid, epoch, &[("t".into(), p)]).expect("add");
                    let open = m.open.get_or_insert_with(Vec::new);
                    if !open.contains(&p) { open.push(p); }
                }
                Op::End(i, commit) => {
                    let m = model.entry(i).or_default();
                    let Some((pid, epoch)) = m.producer else { continue };
                    let before = markers.written.borrow().len();
                    let r = c.end_txn(&format!("id{i}"), pid, epoch, commit, &markers);
                    match m.open.take() {
                        Some(open) => {
                            prop_assert_eq!(r, Ok(()));
                            let written: Vec<i32> = markers.written.borrow()[before..].iter().map(|w| w.1).collect();
                            let mut want = open.clone();
                            want.sort_unstable();
                            let mut got = written.clone();
                            got.sort_unstable();
                            prop_assert_eq!(got, want);
                        }
                        None => {
                            let state = c.describe(&format!("id{i}")).expect("known").state;
                            let retry = matches!((state, commit), (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false));
                            prop_assert_eq!(r.is_ok(), retry, "{:?} after {:?}", r, state);
                        }
                    }
                }
                Op::TimeoutAll => {
                    let aborted = c.abort_timed_out(i64::MAX, &markers);
                    let open = model.values().filter(|m| m.open.is_some()).count();
                    prop_assert_eq!(aborted, open);
                    for m in model.values_mut() {
                        if m.open.take().is_some() {
                            let (pid, epoch) = m.producer.expect("producer");
                            m.producer = Some((pid, epoch + 1));
                        }
                    }
                }
                Op::Restart => {
                    drop(c);
                    c = open(dir.path());
                }
            }
            for (id, meta) in c.list() {
                if let Some(prev) = last_state.insert(id.clone(), meta.state) {
                    if prev != meta.state {
                        // One op may take up to three moves (an init that aborts first).
                        prop_assert!(
                            reachable(prev, meta.state, 3),
                            "{:?} after {:?} for {}", meta.state, prev, id
                        );
                    }
                }
                let i: u8 = id[2..].parse().expect("id");
                let m = &model[&i];
                prop_assert_eq!(Some((meta.producer_id, meta.producer_epoch)), m.producer);
                prop_assert_eq!(meta.state == TxnState::Ongoing, m.open.is_some());
            }
        }
    }
}

#[test]
fn stale_and_foreign_producers_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let markers = FakeMarkers::default();
    let ids = next_id();
    let c = open(dir.path());
    let (pid, epoch) = c
        .init_producer_id("a", 60_000, (-1, -1), &ids, &markers)
        .expect("init");
    assert_eq!(
        c.init_producer_id("a", 0, (-1, -1), &ids, &markers),
        Err(E::InvalidTransactionTimeout)
    );
    assert_eq!(
        c.init_producer_id("a", 900_001, (-1, -1), &ids, &markers),
        Err(E::InvalidTransactionTimeout)
    );
    let (pid2, epoch2) = c
        .init_producer_id("a", 60_000, (pid, epoch), &ids, &markers)
        .expect("bump");
    assert_eq!((pid2, epoch2), (pid, epoch + 1));
    assert_eq!(
        c.add_partitions("a", pid, epoch, &parts(1)),
        Err(E::ProducerFenced)
    );
    assert_eq!(
        c.add_partitions("a", pid + 1, epoch2, &parts(1)),
        Err(E::InvalidProducerIdMapping)
    );
    // KIP-360: bumping with an epoch that is not the current one is fenced.
    assert_eq!(
        c.init_producer_id("a", 60_000, (pid, epoch), &ids, &markers),
        Err(E::ProducerFenced)
    );
    c.add_partitions("a", pid, epoch2, &parts(2)).expect("add");
    // KIP-890: produce only to partitions the transaction holds, at its epoch.
    assert_eq!(c.check_produce(pid, epoch2, "t", 1), Ok(()));
    assert_eq!(
        c.check_produce(pid, epoch2, "t", 2),
        Err(E::InvalidTxnState)
    );
    assert_eq!(
        c.check_produce(pid, epoch2, "u", 0),
        Err(E::InvalidTxnState)
    );
    assert_eq!(
        c.check_produce(pid, epoch, "t", 0),
        Err(E::InvalidProducerEpoch)
    );
    assert_eq!(c.check_produce(pid + 7, 0, "t", 0), Err(E::InvalidTxnState));
    c.end_txn("a", pid, epoch2, true, &markers).expect("commit");
    assert_eq!(
        c.check_produce(pid, epoch2, "t", 0),
        Err(E::InvalidTxnState),
        "a late write after the commit"
    );
    assert_eq!(
        c.end_txn("a", pid, epoch2, false, &markers),
        Err(E::InvalidTxnState),
        "abort after commit"
    );
}

#[test]
fn idle_ids_expire_but_not_with_a_transaction_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let markers = FakeMarkers::default();
    let ids = next_id();
    let c = open(dir.path());
    c.init_producer_id("idle", 60_000, (-1, -1), &ids, &markers)
        .expect("init");
    let (pid, epoch) = c
        .init_producer_id("busy", 60_000, (-1, -1), &ids, &markers)
        .expect("init");
    c.add_partitions("busy", pid, epoch, &parts(1))
        .expect("add");
    assert_eq!(c.expire_ids(0), 0, "nothing is a week old");
    assert_eq!(c.expire_ids(i64::MAX), 1);
    assert!(c.describe("idle").is_none());
    assert!(c.describe("busy").is_some());
    drop(c);
    let c = open(dir.path());
    assert!(c.describe("idle").is_none(), "the expiry is durable");
}

#[test]
fn completed_transactions_are_counted_once_with_their_duration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let markers = FakeMarkers::default();
    let c = open(dir.path());
    let ids = next_id();
    let (pid, epoch) = c
        .init_producer_id("m", 60_000, (-1, -1), &ids, &markers)
        .expect("init");
    c.add_partitions("m", pid, epoch, &parts(2)).expect("add");
    // The markers fail first: nothing completed yet, and the retry counts it once.
    *markers.budget.borrow_mut() = Some(1);
    c.end_txn("m", pid, epoch, true, &markers).expect("decided");
    assert_eq!(c.metrics().totals(), (0, 0, 0));
    *markers.budget.borrow_mut() = None;
    c.finish_prepared(&markers);
    assert_eq!(c.metrics().totals(), (1, 0, 0));
    assert_eq!(
        c.end_txn("m", pid, epoch, true, &markers),
        Ok(()),
        "a retry"
    );
    assert_eq!(c.metrics().totals(), (1, 0, 0), "is not counted again");
    let counts = c.state_counts();
    assert_eq!(counts.len(), 8, "every state");
    assert!(counts.contains(&(TxnState::CompleteCommit, 1)));

    c.add_partitions("m", pid, epoch, &parts(1)).expect("next");
    assert!(c.state_counts().contains(&(TxnState::Ongoing, 1)));
    assert_eq!(c.abort_timed_out(i64::MAX, &markers), 1);
    assert_eq!(c.metrics().totals(), (1, 1, 1), "aborted past its timeout");
    let mut text = String::new();
    c.metrics().render_histograms(&mut text);
    assert!(
        text.contains("fjord_transaction_duration_seconds_count{result=\"commit\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("fjord_transaction_duration_seconds_count{result=\"abort\"} 1"),
        "{text}"
    );
}
