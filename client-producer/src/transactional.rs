//! The transactional API of [`Producer`], as the Java client names it:
//! `init_transactions`, `begin_transaction`, `send_offsets_to_transaction`,
//! `commit_transaction`, `abort_transaction`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), fjord_producer::ProduceError> {
//! use fjord_producer::{Producer, ProducerRecord};
//! let producer = Producer::builder()
//!     .set("bootstrap.servers", "127.0.0.1:9092")
//!     .set("transactional.id", "orders-writer")
//!     .build()?;
//! producer.init_transactions().await?;
//! producer.begin_transaction()?;
//! producer.send(ProducerRecord::new("orders", "paid")).await?;
//! match producer.commit_transaction().await {
//!     Ok(()) => {}
//!     Err(e) if e.is_fatal() => return Err(e), // fenced: close the producer
//!     Err(_) => producer.abort_transaction().await?,
//! }
//! # Ok(()) }
//! ```

use fjord_client_common::ConsumerGroupMetadata;

use crate::accumulator::ClosedBatch;
use crate::error::ProduceError;
use crate::inner::Inner;
use crate::producer::Producer;
use crate::transaction::{Phase, Transactions};

impl Inner {
    fn transactions(&self) -> Result<&Transactions, ProduceError> {
        self.txn.as_ref().ok_or_else(|| {
            ProduceError::TransactionState("transactions need the transactional.id setting".into())
        })
    }

    async fn current_producer(&self) -> Result<(i64, i16), ProduceError> {
        self.producer_id.lock().await.ok_or_else(|| {
            ProduceError::TransactionState("init_transactions has not completed".into())
        })
    }

    /// Fails every batch not yet on the wire with [`ProduceError::TransactionAborted`].
    /// Returns whether one of them had been sent before (and come back for a retry):
    /// its sequence may then be lost, and the epoch must be bumped.
    fn drop_unsent(&self) -> bool {
        let topics = self.topic_states();
        let mut sent_before = false;
        for topic in &topics {
            for partition in &topic.partitions {
                let dropped: Vec<ClosedBatch> = {
                    let mut q = partition.lock();
                    let mut dropped: Vec<ClosedBatch> = q.ready.drain(..).collect();
                    dropped.extend(q.close_open());
                    dropped
                };
                for batch in dropped {
                    sent_before |= batch.sequence.is_some();
                    batch
                        .completion
                        .complete(Err(ProduceError::TransactionAborted));
                    self.memory.release(batch.reserved);
                }
            }
        }
        sent_before
    }
}

impl Producer {
    /// Registers the `transactional.id` with its coordinator and takes a new epoch:
    /// an older producer with the same id is fenced, and what it left open is aborted
    /// (waiting, as Kafka has the coordinator do, for those markers). Call once, before
    /// the first transaction; after a timeout (a retriable error) it may be called
    /// again.
    pub async fn init_transactions(&self) -> Result<(), ProduceError> {
        let inner = &self.inner;
        let txn = inner.transactions()?;
        let _one_call = txn.calls.lock().await;
        txn.state().start_init()?;
        let result = match inner.init_transactional_id(None).await {
            Ok(id) => {
                tracing::debug!(
                    producer_id = id.0,
                    epoch = id.1,
                    "transactional producer id"
                );
                *inner.producer_id.lock().await = Some(id);
                Ok(())
            }
            Err(e) => Err(e),
        };
        txn.state().finish_call(&result, Phase::Ready);
        result
    }

    /// Opens a transaction: sends and offsets until the next commit or abort belong
    /// to it. Local only; the coordinator learns of it with the first partition.
    pub fn begin_transaction(&self) -> Result<(), ProduceError> {
        self.inner.transactions()?.state().begin()
    }

    /// Puts a consumer group's offsets into the transaction (KIP-98): they become the
    /// group's committed offsets if the transaction commits, and vanish if it aborts.
    /// `offsets` are (topic, partition, next offset to read). Pass the consumer's
    /// [`ConsumerGroupMetadata`] so a consumer that lost its partitions to a rebalance
    /// cannot commit for them (KIP-447).
    pub async fn send_offsets_to_transaction<I, T>(
        &self,
        offsets: I,
        group: &ConsumerGroupMetadata,
    ) -> Result<(), ProduceError>
    where
        I: IntoIterator<Item = (T, i32, i64)>,
        T: AsRef<str>,
    {
        let inner = &self.inner;
        let txn = inner.transactions()?;
        // Held to the end, so a commit or abort waits for these offsets.
        let _in_transaction = txn.sends.read().await;
        txn.state()
            .check_in_transaction("send_offsets_to_transaction")?;
        let offsets: Vec<(String, i32, i64)> = offsets
            .into_iter()
            .map(|(t, p, o)| (t.as_ref().to_string(), p, o))
            .collect();
        let producer = inner.current_producer().await?;
        let known = txn.state().groups.contains(&group.group_id);
        let mut result = Ok(());
        if !known {
            result = inner.add_offsets_to_txn(producer, &group.group_id).await;
            if result.is_ok() {
                txn.state().groups.insert(group.group_id.clone());
            }
        }
        if result.is_ok() && !offsets.is_empty() {
            result = inner.txn_offset_commit(producer, &offsets, group).await;
        }
        if let Err(e) = &result {
            if !e.is_retriable() {
                txn.state().fail(e.clone());
            }
        }
        result
    }

    /// Sends what is buffered, waits for it, and commits the transaction. If a record
    /// of it failed, nothing is committed and the error (abortable) comes back: call
    /// [`Producer::abort_transaction`]. After a timeout it may be called again. Sends
    /// made meanwhile from other tasks either make it into this transaction (the commit
    /// waits for them) or are refused; a second commit made meanwhile waits for this one
    /// and then finds no transaction open.
    pub async fn commit_transaction(&self) -> Result<(), ProduceError> {
        let inner = &self.inner;
        let txn = inner.transactions()?;
        let _one_call = txn.calls.lock().await;
        txn.state().start_end(true)?;
        // Sends that passed their state check put their records in batches first.
        drop(txn.sends.write().await);
        self.flush().await;
        let started = {
            let state = txn.state();
            if state.phase != Phase::Committing {
                // A record failed while flushing.
                let why = state.error.clone();
                return Err(why.unwrap_or_else(|| {
                    ProduceError::TransactionState(format!("cannot commit in {:?}", state.phase))
                }));
            }
            state.started()
        };
        let result = if started {
            let producer = inner.current_producer().await?;
            inner.end_txn(producer, true).await
        } else {
            Ok(())
        };
        txn.state().finish_call(&result, Phase::Ready);
        result
    }

    /// Aborts the transaction: records not yet sent are dropped (their deliveries fail
    /// with [`ProduceError::TransactionAborted`]), records on the wire are waited for,
    /// and the coordinator writes ABORT markers, so read_committed consumers skip them
    /// all. Allowed after an abortable error; not after a fatal one.
    pub async fn abort_transaction(&self) -> Result<(), ProduceError> {
        let inner = &self.inner;
        let txn = inner.transactions()?;
        let _one_call = txn.calls.lock().await;
        txn.state().start_end(false)?;
        drop(txn.sends.write().await);
        if inner.drop_unsent() {
            txn.state().epoch_bump_needed = true;
        }
        self.flush().await;
        let (started, bump, unknown) = {
            let state = txn.state();
            let unknown = state.producer_id_unknown;
            (state.started(), state.epoch_bump_needed || unknown, unknown)
        };
        let producer = inner.current_producer().await?;
        // A coordinator that lost the producer id refuses EndTxn: InitProducerId alone
        // ends what it may still hold.
        let mut result = if started && !unknown {
            inner.end_txn(producer, false).await
        } else {
            Ok(())
        };
        if result.is_ok() && bump {
            // Sequences may have a gap: a new epoch starts them again from 0.
            result = match inner.init_transactional_id(Some(producer)).await {
                Ok(id) => {
                    *inner.producer_id.lock().await = Some(id);
                    let mut state = txn.state();
                    state.epoch_bump_needed = false;
                    state.producer_id_unknown = false;
                    Ok(())
                }
                Err(e) => Err(e),
            };
        }
        txn.state().finish_call(&result, Phase::Ready);
        result
    }
}
