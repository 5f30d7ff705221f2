//! The consumer's public face: `subscribe`/`assign`, `recv` and the `Stream`, commits,
//! seek, pause and resume. The state its background tasks share is `inner.rs`.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use fjord_client_common::connection::ConnectionOptions;
use fjord_client_common::ConsumerGroupMetadata;
use tokio::sync::{mpsc, Notify};

use crate::chunk::Chunk;
use crate::cluster::Cluster;
use crate::config::ConsumerConfig;
use crate::error::ConsumeError;
use crate::group::{self, Membership};
use crate::partition::Assignment;
use crate::record::{ConsumerRecord, TopicPartition};

use crate::inner::{Inner, Item};

/// Told about partitions coming and going in group mode. Called from the group's task,
/// before revoked partitions are committed away and after new ones are in place; keep
/// it quick.
pub trait RebalanceListener: Send + Sync + std::fmt::Debug {
    /// Partitions now assigned to this consumer.
    fn on_assigned(&self, _partitions: &[TopicPartition]) {}
    /// Partitions taken away in an orderly rebalance (their positions are committed
    /// after this returns when `enable.auto.commit` is on).
    fn on_revoked(&self, _partitions: &[TopicPartition]) {}
    /// Partitions lost without a rebalance (session expired, fenced): not committed.
    fn on_lost(&self, _partitions: &[TopicPartition]) {}
}

/// A pure-Rust Kafka consumer.
#[derive(Debug)]
pub struct Consumer {
    inner: Arc<Inner>,
    items: mpsc::UnboundedReceiver<Item>,
    current: Option<Chunk>,
    group_task: Option<tokio::task::JoinHandle<()>>,
}

/// Builds a [`Consumer`] from Kafka-named settings.
#[derive(Debug, Default)]
pub struct ConsumerBuilder {
    config: ConsumerConfig,
    listener: Option<Arc<dyn RebalanceListener>>,
    errors: Vec<ConsumeError>,
}

impl ConsumerBuilder {
    /// Sets one setting by its Kafka name (`bootstrap.servers`, `group.id`, ...).
    pub fn set(mut self, key: &str, value: impl AsRef<str>) -> Self {
        if let Err(e) = self.config.set(key, value.as_ref()) {
            self.errors.push(e);
        }
        self
    }

    /// Sets every entry of `settings`.
    pub fn set_all(mut self, settings: &HashMap<String, String>) -> Self {
        let mut keys: Vec<&String> = settings.keys().collect();
        keys.sort();
        for k in keys {
            self = self.set(k, &settings[k]);
        }
        self
    }

    /// Calls `listener` on rebalances.
    pub fn rebalance_listener(mut self, listener: Arc<dyn RebalanceListener>) -> Self {
        self.listener = Some(listener);
        self
    }

    /// The consumer (inside a tokio runtime; it connects on first use).
    pub fn build(self) -> Result<Consumer, ConsumeError> {
        if let Some(e) = self.errors.into_iter().next() {
            return Err(e);
        }
        Consumer::with_listener(self.config, self.listener)
    }
}

impl Consumer {
    /// A builder over Kafka's defaults.
    pub fn builder() -> ConsumerBuilder {
        ConsumerBuilder::default()
    }

    /// A consumer with `config`.
    pub fn new(config: ConsumerConfig) -> Result<Self, ConsumeError> {
        Self::with_listener(config, None)
    }

    fn with_listener(
        config: ConsumerConfig,
        listener: Option<Arc<dyn RebalanceListener>>,
    ) -> Result<Self, ConsumeError> {
        config.check()?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| ConsumeError::Config("a consumer needs a tokio runtime".into()))?;
        let options = ConnectionOptions {
            client_id: config.client_id.clone(),
            // A fetch may wait fetch.max.wait.ms before its answer.
            request_timeout: config.request_timeout + config.fetch_max_wait,
            max_response_bytes: usize::try_from(config.fetch_max_bytes)
                .unwrap_or(50 << 20)
                .saturating_mul(2)
                .max(64 << 20),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            cluster: Cluster::new(config.bootstrap_servers.clone(), options),
            membership: tokio::sync::Mutex::new(Membership::default()),
            config,
            assignment: Assignment::default(),
            items: tx,
            buffered: AtomicUsize::new(0),
            drained: Notify::new(),
            changed: Notify::new(),
            closing: AtomicBool::new(false),
            fetchers: Mutex::default(),
            listener,
            last_poll_ms: AtomicU64::new(0),
            started: Instant::now(),
            runtime,
        });
        Ok(Self {
            inner,
            items: rx,
            current: None,
            group_task: None,
        })
    }

    /// Joins the consumer group (`group.id`) for `topics`; partitions arrive through
    /// rebalances.
    pub fn subscribe(&mut self, topics: &[&str]) -> Result<(), ConsumeError> {
        let Some(group) = self.inner.config.group_id.clone() else {
            return Err(ConsumeError::NoGroup);
        };
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        if let Some(task) = self.group_task.take() {
            task.abort();
        }
        let inner = Arc::clone(&self.inner);
        self.group_task = Some(if self.inner.config.consumer_protocol() {
            self.inner
                .runtime
                .spawn(crate::consumer_protocol::run(inner, group, topics))
        } else {
            self.inner.runtime.spawn(group::run(inner, group, topics))
        });
        Ok(())
    }

    /// Takes `partitions` without a group (manual assignment); positions start from the
    /// committed offsets (with a `group.id`) or `auto.offset.reset`.
    pub async fn assign(&mut self, partitions: &[TopicPartition]) -> Result<(), ConsumeError> {
        let current: Vec<TopicPartition> = self
            .inner
            .assignment
            .all()
            .iter()
            .map(|p| p.tp.clone())
            .collect();
        let keep: HashSet<&TopicPartition> = partitions.iter().collect();
        let gone: Vec<TopicPartition> = current
            .iter()
            .filter(|tp| !keep.contains(tp))
            .cloned()
            .collect();
        self.inner.assignment.remove(&gone);
        let added = self.inner.assignment.add(partitions);
        self.inner.start(&added).await
    }

    /// The next record (waiting for one). Errors are per event: after one, call again.
    pub async fn recv(&mut self) -> Result<ConsumerRecord, ConsumeError> {
        std::future::poll_fn(|cx| self.poll_record(cx)).await
    }

    fn poll_record(&mut self, cx: &mut Context<'_>) -> Poll<Result<ConsumerRecord, ConsumeError>> {
        loop {
            if let Some(chunk) = &mut self.current {
                let live = chunk.partition.assigned.load(Ordering::Acquire)
                    && chunk.partition.epoch() == chunk.epoch;
                let next = if live { chunk.next_record() } else { None };
                match next {
                    Some(Ok(record)) => {
                        chunk
                            .partition
                            .position
                            .store(record.offset.saturating_add(1), Ordering::Release);
                        return Poll::Ready(Ok(record));
                    }
                    Some(Err(e)) => {
                        chunk.partition.failed.store(true, Ordering::Release);
                        self.release_current();
                        return Poll::Ready(Err(e));
                    }
                    None => self.release_current(),
                }
            }
            // The application is polling (max.poll.interval.ms): noted once per fetched
            // chunk, not per record, so the record path reads no clock.
            self.inner.last_poll_ms.store(
                self.inner.started.elapsed().as_millis() as u64,
                Ordering::Relaxed,
            );
            match self.items.poll_recv(cx) {
                Poll::Ready(Some(Item::Chunk(c))) => self.current = Some(c),
                Poll::Ready(Some(Item::Error(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => return Poll::Ready(Err(ConsumeError::Closed)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn release_current(&mut self) {
        if let Some(c) = self.current.take() {
            self.inner.buffered.fetch_sub(c.size, Ordering::AcqRel);
            self.inner.drained.notify_waiters();
        }
    }

    /// Partitions assigned now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.inner
            .assignment
            .all()
            .iter()
            .map(|p| p.tp.clone())
            .collect()
    }

    /// The offset of the next record `recv` returns for `tp` (`None` until known).
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.inner
            .assignment
            .get(tp)
            .map(|p| p.position.load(Ordering::Acquire))
            .filter(|o| *o >= 0)
    }

    /// Continues `tp` from `offset`.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<(), ConsumeError> {
        let p = self
            .inner
            .assignment
            .get(tp)
            .ok_or_else(|| ConsumeError::NotAssigned {
                topic: tp.topic.to_string(),
                partition: tp.partition,
            })?;
        p.seek(offset);
        self.inner.changed.notify_waiters();
        Ok(())
    }

    /// Stops returning (and fetching) records of `tps` until [`Consumer::resume`].
    pub fn pause(&mut self, tps: &[TopicPartition]) {
        for tp in tps {
            if let Some(p) = self.inner.assignment.get(tp) {
                p.paused.store(true, Ordering::Release);
                // Fetched records past the position are dropped and fetched again later.
                p.seek(p.position.load(Ordering::Acquire));
            }
        }
    }

    /// Undoes [`Consumer::pause`].
    pub fn resume(&mut self, tps: &[TopicPartition]) {
        for tp in tps {
            if let Some(p) = self.inner.assignment.get(tp) {
                p.paused.store(false, Ordering::Release);
            }
        }
        self.inner.changed.notify_waiters();
    }

    /// Commits the positions of every assigned partition and waits for the answer.
    pub async fn commit(&self) -> Result<(), ConsumeError> {
        self.inner
            .commit_positions(&self.inner.assignment.all())
            .await
    }

    /// Commits explicit offsets (the next offset to read, as Kafka defines it).
    pub async fn commit_offsets(
        &self,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<(), ConsumeError> {
        self.inner.commit(offsets).await
    }

    /// The group identity a transactional producer commits this consumer's offsets
    /// under (`send_offsets_to_transaction`): the group, and the member's generation and
    /// id, so the coordinator fences a zombie that lost its partitions (KIP-447). `None`
    /// without a `group.id`.
    pub async fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        let group_id = self.inner.config.group_id.clone()?;
        let (generation_id, member_id) = self.inner.membership_identity().await;
        Some(ConsumerGroupMetadata {
            group_id,
            generation_id,
            member_id,
            group_instance_id: self.inner.config.group_instance_id.clone(),
        })
    }

    /// Commits the positions in the background; errors are logged.
    pub fn commit_async(&self) {
        let inner = Arc::clone(&self.inner);
        self.inner.runtime.spawn(async move {
            if let Err(e) = inner.commit_positions(&inner.assignment.all()).await {
                tracing::warn!(error = %e, "async commit failed");
            }
        });
    }

    /// The group's committed offsets for `tps`.
    pub async fn committed(
        &self,
        tps: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, Option<i64>>, ConsumeError> {
        let group = self
            .inner
            .config
            .group_id
            .clone()
            .ok_or(ConsumeError::NoGroup)?;
        group::committed_offsets(&self.inner, &group, tps).await
    }

    /// Commits (with `enable.auto.commit`), leaves the group and stops every task.
    pub async fn close(mut self) -> Result<(), ConsumeError> {
        let result = if self.inner.config.enable_auto_commit && self.inner.config.group_id.is_some()
        {
            self.commit().await
        } else {
            Ok(())
        };
        self.inner.closing.store(true, Ordering::Release);
        if let Some(task) = self.group_task.take() {
            task.abort();
            let _ = task.await;
            group::leave(&self.inner).await;
        }
        self.inner.stop_fetchers();
        result
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.inner.closing.store(true, Ordering::Release);
        if let Some(task) = self.group_task.take() {
            task.abort();
        }
        self.inner.stop_fetchers();
    }
}

impl futures_core::Stream for Consumer {
    type Item = Result<ConsumerRecord, ConsumeError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut().poll_record(cx) {
            Poll::Ready(Err(ConsumeError::Closed)) => Poll::Ready(None),
            Poll::Ready(r) => Poll::Ready(Some(r)),
            Poll::Pending => Poll::Pending,
        }
    }
}
