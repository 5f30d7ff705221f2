//! The transaction coordinator (KIP-98): transactional ids, their producer ids and
//! epochs, and each transaction's way from Ongoing through Prepare* (durable: the
//! decision) to Complete* (every partition has its marker), as Kafka's
//! `TransactionCoordinator` runs it.
//!
//! Markers are written without the coordinator's lock held, while the transaction is
//! marked busy (other requests on it are answered CONCURRENT_TRANSACTIONS), because a
//! transactional produce checks the coordinator while holding its partition's lock: the
//! lock order is partition, then coordinator, never the other way round.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use fjord_protocol::kafka_protocol::ResponseError as E;

use super::log_records::TxnMetadata;
use super::state::TxnState;
use super::store::TxnStore;
use crate::keyed_log::now_ms;

/// The coordinator's settings (Kafka's names).
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`: the longest timeout a producer may ask for.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`.
    pub id_expiration: Duration,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub abort_check: Duration,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`.
    pub expiry_check: Duration,
}

impl Default for TxnConfig {
    fn default() -> Self {
        Self {
            max_timeout_ms: 900_000,
            id_expiration: Duration::from_millis(604_800_000),
            abort_check: Duration::from_secs(10),
            expiry_check: Duration::from_secs(3600),
        }
    }
}

/// Why a marker could not be written.
#[derive(Debug, thiserror::Error)]
pub enum MarkerError {
    /// The partition is gone (its topic was deleted): nothing to mark.
    #[error("partition gone")]
    Gone,
    /// The partition could not take it (offline, storage error); retried later.
    #[error("{0}")]
    Failed(String),
}

/// Writes transaction markers into partitions (the broker; a fake in tests).
pub trait MarkerWriter {
    /// Appends the COMMIT (or ABORT) marker of `producer_id` at `epoch` to
    /// `topic`-`partition` and waits until it is as durable as the partition's writes.
    fn write_marker(
        &self,
        topic: &str,
        partition: i32,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), MarkerError>;
}

/// A transaction's durable change failed: the client may retry.
fn storage(e: &crate::keyed_log::StoreError) -> E {
    tracing::error!(error = %e, "transaction log write failed");
    E::CoordinatorNotAvailable
}

#[derive(Debug)]
struct Inner {
    store: TxnStore,
    /// Ids whose markers a thread is writing now.
    busy: HashSet<String>,
}

impl Inner {
    /// `id`'s metadata for a request of `producer_id` at `epoch`, if it is the id's
    /// producer and no thread is writing the id's markers.
    fn idle_transaction(&self, id: &str, producer_id: i64, epoch: i16) -> Result<TxnMetadata, E> {
        let meta = self.store.get(id).ok_or(E::InvalidProducerIdMapping)?;
        check_producer(meta, producer_id, epoch)?;
        if self.busy.contains(id) {
            return Err(E::ConcurrentTransactions);
        }
        Ok(meta.clone())
    }
}

/// The transaction coordinator of this broker (every transactional id is its own).
#[derive(Debug)]
pub struct TxnCoordinator {
    config: TxnConfig,
    inner: Mutex<Inner>,
    metrics: super::metrics::TxnMetrics,
}

/// Checks that a request's producer id and epoch are the transaction's.
fn check_producer(meta: &TxnMetadata, producer_id: i64, epoch: i16) -> Result<(), E> {
    if meta.producer_id != producer_id {
        return Err(E::InvalidProducerIdMapping);
    }
    if meta.producer_epoch != epoch {
        return Err(E::ProducerFenced);
    }
    Ok(())
}

impl TxnCoordinator {
    /// A coordinator over `store` (already replayed). Call [`TxnCoordinator::recover`]
    /// once the partitions are open.
    pub fn new(config: TxnConfig, store: TxnStore) -> Self {
        Self {
            config,
            inner: Mutex::new(Inner {
                store,
                busy: HashSet::new(),
            }),
            metrics: Default::default(),
        }
    }

    /// What it committed and aborted, for `/metrics`.
    pub fn metrics(&self) -> &super::metrics::TxnMetrics {
        &self.metrics
    }

    /// How many transactional ids are in each state (every state, zeros included).
    pub fn state_counts(&self) -> Vec<(TxnState, usize)> {
        let inner = self.lock();
        let mut counts: Vec<(TxnState, usize)> = (0..8)
            .filter_map(TxnState::from_id)
            .map(|s| (s, 0))
            .collect();
        for (_, m) in inner.store.all() {
            if let Some(c) = counts.iter_mut().find(|(s, _)| *s == m.state) {
                c.1 += 1;
            }
        }
        counts
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The settings in force.
    pub fn config(&self) -> &TxnConfig {
        &self.config
    }

    /// The metadata of `id`, if it is known.
    pub fn describe(&self, id: &str) -> Option<TxnMetadata> {
        self.lock().store.get(id).cloned()
    }

    /// Every transactional id with its metadata.
    pub fn list(&self) -> Vec<(String, TxnMetadata)> {
        let inner = self.lock();
        inner
            .store
            .all()
            .map(|(id, m)| (id.clone(), m.clone()))
            .collect()
    }

    /// InitProducerId with a transactional id: the producer id and a bumped epoch,
    /// which fences every older producer of the id. `expected` is the client's current
    /// id and epoch (KIP-360 bump, -1 when it has none). A transaction left open by an
    /// older producer is aborted first and the client told CONCURRENT_TRANSACTIONS, to
    /// retry, as Kafka does.
    pub fn init_producer_id(
        &self,
        id: &str,
        timeout_ms: i32,
        expected: (i64, i16),
        allocate: &dyn Fn() -> Result<i64, E>,
        markers: &dyn MarkerWriter,
    ) -> Result<(i64, i16), E> {
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(E::InvalidTransactionTimeout);
        }
        let mut inner = self.lock();
        if inner.busy.contains(id) {
            return Err(E::ConcurrentTransactions);
        }
        let now = now_ms();
        let Some(meta) = inner.store.get(id).cloned() else {
            let meta = TxnMetadata {
                producer_id: allocate()?,
                previous_producer_id: -1,
                next_producer_id: -1,
                producer_epoch: 0,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeMap::new(),
                last_update_ms: now,
                start_ms: -1,
                client_txn_version: 0,
            };
            let answer = (meta.producer_id, meta.producer_epoch);
            inner.store.put(id, meta).map_err(|e| storage(&e))?;
            return Ok(answer);
        };
        match meta.state {
            TxnState::Ongoing => {
                // Fence the old producer: abort its transaction under a bumped epoch.
                let mut fenced = meta.clone();
                fenced.producer_epoch = meta.producer_epoch.saturating_add(1);
                self.prepare(&mut inner, id, fenced, false)?;
                drop(inner);
                self.complete(id, markers);
                return Err(E::ConcurrentTransactions);
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {}
            _ => return Err(E::ConcurrentTransactions),
        }
        let (exp_id, exp_epoch) = expected;
        if exp_id >= 0 && (exp_id != meta.producer_id || exp_epoch != meta.producer_epoch) {
            return Err(E::ProducerFenced);
        }
        let mut next = meta;
        if next.producer_epoch >= i16::MAX - 1 {
            // The epoch is exhausted: a new producer id starts again at 0.
            next.previous_producer_id = next.producer_id;
            next.producer_id = allocate()?;
            next.producer_epoch = 0;
        } else {
            next.producer_epoch += 1;
        }
        next.timeout_ms = timeout_ms;
        next.state = TxnState::Empty;
        next.partitions.clear();
        next.last_update_ms = now;
        next.start_ms = -1;
        let answer = (next.producer_id, next.producer_epoch);
        inner.store.put(id, next).map_err(|e| storage(&e))?;
        Ok(answer)
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn: `partitions` join the transaction, which
    /// starts (Ongoing) if none was under way.
    pub fn add_partitions(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<(), E> {
        let mut inner = self.lock();
        let meta = inner.idle_transaction(id, producer_id, epoch)?;
        match meta.state {
            TxnState::Ongoing | TxnState::Empty => {}
            TxnState::CompleteCommit | TxnState::CompleteAbort => {}
            _ => return Err(E::ConcurrentTransactions),
        }
        let has = |t: &str, p: i32| meta.partitions.get(t).is_some_and(|ps| ps.contains(&p));
        if meta.state == TxnState::Ongoing && partitions.iter().all(|(t, p)| has(t, *p)) {
            return Ok(());
        }
        let mut next = meta.clone();
        let now = now_ms();
        if next.state != TxnState::Ongoing {
            next.state = TxnState::Ongoing;
            next.start_ms = now;
            next.partitions.clear();
        }
        for (topic, partition) in partitions {
            let ids = next.partitions.entry(topic.clone()).or_default();
            if !ids.contains(partition) {
                ids.push(*partition);
            }
        }
        next.last_update_ms = now;
        inner.store.put(id, next).map_err(|e| storage(&e))
    }

    /// Whether `id`'s ongoing transaction holds `topic`-`partition` (AddPartitionsToTxn
    /// v4+ verify-only; the same check as a transactional produce).
    pub fn verify_partition(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), E> {
        let inner = self.lock();
        let meta = inner.store.get(id).ok_or(E::InvalidProducerIdMapping)?;
        check_producer(meta, producer_id, epoch)?;
        verify_ongoing(meta, &inner.busy, id, topic, partition)
    }

    /// KIP-890 part 1, for a transactional produce: the batch's producer must be in an
    /// ongoing transaction that the coordinator has recorded the partition in. Anything
    /// else would let a late write hang in (or leak into) another transaction.
    pub fn check_produce(
        &self,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), E> {
        let inner = self.lock();
        let id = inner
            .store
            .id_of_producer(producer_id)
            .ok_or(E::InvalidTxnState)?;
        let meta = inner.store.get(id).ok_or(E::InvalidTxnState)?;
        if epoch < meta.producer_epoch {
            return Err(E::InvalidProducerEpoch);
        }
        if epoch > meta.producer_epoch {
            return Err(E::InvalidTxnState);
        }
        verify_ongoing(meta, &inner.busy, id, topic, partition)
    }

    /// EndTxn: commits or aborts `id`'s transaction. The decision is durable before the
    /// markers are written; a retry of a finished commit (or abort) succeeds again.
    pub fn end_txn(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        markers: &dyn MarkerWriter,
    ) -> Result<(), E> {
        let mut inner = self.lock();
        let meta = inner.idle_transaction(id, producer_id, epoch)?;
        match (meta.state, commit) {
            (TxnState::Ongoing, _) => self.prepare(&mut inner, id, meta, commit)?,
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => return Ok(()),
            // A decision whose markers failed earlier: finish it now.
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                inner.busy.insert(id.to_string());
            }
            _ => return Err(E::InvalidTxnState),
        }
        drop(inner);
        self.complete(id, markers);
        Ok(())
    }

    /// Makes the decision (PrepareCommit or PrepareAbort) durable and marks `id` busy.
    fn prepare(
        &self,
        inner: &mut Inner,
        id: &str,
        mut meta: TxnMetadata,
        commit: bool,
    ) -> Result<(), E> {
        meta.state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        meta.last_update_ms = now_ms();
        inner.store.put(id, meta).map_err(|e| storage(&e))?;
        inner.busy.insert(id.to_string());
        Ok(())
    }

    /// Writes the markers of `id`'s prepared transaction, then Complete*. The caller has
    /// marked it busy. On a failure the transaction stays prepared and the periodic
    /// check finishes it.
    fn complete(&self, id: &str, markers: &dyn MarkerWriter) {
        let Some(meta) = self.lock().store.get(id).cloned() else {
            self.lock().busy.remove(id);
            return;
        };
        let commit = meta.state == TxnState::PrepareCommit;
        let mut failed = None;
        'all: for (topic, partitions) in &meta.partitions {
            for &p in partitions {
                match markers.write_marker(topic, p, meta.producer_id, meta.producer_epoch, commit)
                {
                    Ok(()) | Err(MarkerError::Gone) => {}
                    Err(MarkerError::Failed(e)) => {
                        failed = Some(format!("{topic}-{p}: {e}"));
                        break 'all;
                    }
                }
            }
        }
        let mut inner = self.lock();
        inner.busy.remove(id);
        if let Some(e) = failed {
            tracing::warn!(transactional_id = id, error = %e, "writing transaction markers failed; will retry");
            return;
        }
        let mut done = meta;
        done.state = if commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        done.partitions.clear();
        done.last_update_ms = now_ms();
        let took = u64::try_from(done.last_update_ms.saturating_sub(done.start_ms))
            .ok()
            .filter(|_| done.start_ms >= 0)
            .map(Duration::from_millis);
        match inner.store.put(id, done) {
            Ok(()) => self.metrics.completed(commit, took),
            Err(e) => {
                tracing::warn!(transactional_id = id, error = %e, "recording a completed transaction failed; will retry")
            }
        }
    }

    /// Finishes every prepared transaction (at startup, and periodically for those whose
    /// markers failed). Returns how many were finished or retried.
    pub fn finish_prepared(&self, markers: &dyn MarkerWriter) -> usize {
        let ids: Vec<String> = {
            let mut inner = self.lock();
            let ids: Vec<String> = inner
                .store
                .all()
                .filter(|(id, m)| {
                    matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort)
                        && !inner.busy.contains(*id)
                })
                .map(|(id, _)| id.clone())
                .collect();
            inner.busy.extend(ids.iter().cloned());
            ids
        };
        for id in &ids {
            self.complete(id, markers);
        }
        ids.len()
    }

    /// Aborts every ongoing transaction older than its timeout, under a bumped epoch
    /// so its producer is fenced (as Kafka's `abortTimedOutTransactions`). Returns how
    /// many were aborted.
    pub fn abort_timed_out(&self, now_ms: i64, markers: &dyn MarkerWriter) -> usize {
        let ids: Vec<String> = {
            let mut inner = self.lock();
            let due: Vec<(String, TxnMetadata)> = inner
                .store
                .all()
                .filter(|(id, m)| {
                    m.state == TxnState::Ongoing
                        && !inner.busy.contains(*id)
                        && m.start_ms.saturating_add(i64::from(m.timeout_ms)) < now_ms
                })
                .map(|(id, m)| (id.clone(), m.clone()))
                .collect();
            let mut prepared = Vec::new();
            for (id, mut meta) in due {
                meta.producer_epoch = meta.producer_epoch.saturating_add(1);
                tracing::info!(transactional_id = %id, "aborting a transaction past its timeout");
                if self.prepare(&mut inner, &id, meta, false).is_ok() {
                    prepared.push(id);
                }
            }
            prepared
        };
        self.metrics.timed_out(ids.len());
        for id in &ids {
            self.complete(id, markers);
        }
        ids.len()
    }

    /// Forgets transactional ids with no transaction under way that were idle longer
    /// than `transactional.id.expiration.ms`. Returns how many went.
    pub fn expire_ids(&self, now_ms: i64) -> usize {
        let mut inner = self.lock();
        let idle = i64::try_from(self.config.id_expiration.as_millis()).unwrap_or(i64::MAX);
        let doomed: Vec<String> = inner
            .store
            .all()
            .filter(|(id, m)| {
                m.state.expiration_allowed()
                    && !inner.busy.contains(*id)
                    && m.last_update_ms.saturating_add(idle) < now_ms
            })
            .map(|(id, _)| id.clone())
            .collect();
        doomed
            .iter()
            .filter(|id| inner.store.remove(id).is_ok())
            .count()
    }

    /// Makes everything durable and closes the log (clean shutdown).
    pub fn close(&self) {
        if let Err(e) = self.lock().store.close() {
            tracing::warn!(error = %e, "closing the transaction log failed");
        }
    }

    /// Whether writes wait for the disk from now on.
    pub fn set_fsync(&self, fsync: bool) -> Result<(), crate::keyed_log::StoreError> {
        self.lock().store.set_fsync(fsync)
    }
}

/// The partition check shared by verify-only AddPartitionsToTxn and produce.
fn verify_ongoing(
    meta: &TxnMetadata,
    busy: &HashSet<String>,
    id: &str,
    topic: &str,
    partition: i32,
) -> Result<(), E> {
    let added = meta
        .partitions
        .get(topic)
        .is_some_and(|ps| ps.contains(&partition));
    if meta.state != TxnState::Ongoing || busy.contains(id) || !added {
        return Err(E::InvalidTxnState);
    }
    Ok(())
}
