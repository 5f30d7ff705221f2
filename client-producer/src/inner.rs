//! The state the producer's public face and its background tasks (senders, the
//! metadata loop) share, with the operations they perform on it: routing records to
//! partitions, sizing batch buffers, metadata refreshes, producer ids.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use fjord_client_common::connection::ConnectionOptions;
use fjord_client_common::{ClientError, ClusterMetadata, Connection};
use fjord_protocol::kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use fjord_protocol::kafka_protocol::messages::{ApiKey, ProducerId};
use tokio::sync::Notify;

use crate::accumulator::{Memory, PartitionState, TopicState};
use crate::config::ProducerConfig;
use crate::error::ProduceError;
use crate::partitioner::Partitioner;
use crate::sender;

/// A sender task's handle.
#[derive(Debug)]
pub(crate) struct SenderHandle {
    pub(crate) notify: Notify,
    pub(crate) task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// When the sleeping sender will wake by itself (µs since the producer started;
    /// 0 while it is awake). A new batch due later needs no wake-up: with thousands of
    /// partitions, waking the sender for each new batch would have it rescan them all.
    pub(crate) wake_at_us: std::sync::atomic::AtomicU64,
}

/// State shared by the producer's handles and tasks.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: ProducerConfig,
    pub(crate) partitioner: Arc<dyn Partitioner>,
    pub(crate) topics: RwLock<HashMap<String, Arc<TopicState>>>,
    pub(crate) brokers: RwLock<HashMap<i32, String>>,
    pub(crate) senders: Mutex<HashMap<i32, Arc<SenderHandle>>>,
    pub(crate) memory: Memory,
    /// (producer id, epoch) for idempotence, once obtained.
    pub(crate) producer_id: tokio::sync::Mutex<Option<(i64, i16)>>,
    pub(crate) metadata_lock: tokio::sync::Mutex<Option<Connection>>,
    pub(crate) metadata_wanted: Arc<Notify>,
    pub(crate) closing: AtomicBool,
    pub(crate) flushing: AtomicUsize,
    pub(crate) connection_options: ConnectionOptions,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) started: Instant,
    /// The transaction state of a producer with a `transactional.id`.
    pub(crate) txn: Option<crate::transaction::Transactions>,
}

impl Inner {
    /// Takes `size` bytes of `buffer.memory`, waiting up to `max.block.ms`.
    pub(crate) async fn reserve(&self, size: usize) -> Result<(), ProduceError> {
        if self.memory.try_reserve(size) {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + self.config.max_block;
        loop {
            let freed = self.memory.freed.notified();
            if self.memory.try_reserve(size) {
                return Ok(());
            }
            // Make sure what is buffered is moving even with a long linger.
            self.wake_all_senders();
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return if self.memory.try_reserve(size) {
                    Ok(())
                } else {
                    Err(ProduceError::BufferExhausted)
                };
            }
        }
    }

    /// Microseconds since the producer started.
    pub(crate) fn micros(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_micros() as u64
    }

    /// Wakes `node`'s sender for a new batch due at `due`, unless it wakes by then anyway.
    pub(crate) fn wake_sender_by(self: &Arc<Self>, node: i32, due: Instant) {
        let handle = self
            .senders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&node)
            .cloned();
        if let Some(h) = handle {
            let wake_at = h.wake_at_us.load(Ordering::Acquire);
            if wake_at != 0 && wake_at <= self.micros(due) {
                return;
            }
        }
        self.wake_sender(node);
    }

    pub(crate) fn wake_sender(self: &Arc<Self>, node: i32) {
        if node < 0 {
            self.metadata_wanted.notify_one();
            return;
        }
        let handle = {
            let mut senders = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(senders.entry(node).or_insert_with(|| {
                let handle = Arc::new(SenderHandle {
                    notify: Notify::new(),
                    task: Mutex::new(None),
                    wake_at_us: std::sync::atomic::AtomicU64::new(0),
                });
                let task =
                    self.runtime
                        .spawn(sender::run(Arc::clone(self), node, Arc::clone(&handle)));
                *handle.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
                handle
            }))
        };
        handle.notify.notify_one();
    }

    pub(crate) fn wake_all_senders(&self) {
        let senders = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        for h in senders.values() {
            h.notify.notify_one();
        }
    }

    /// Every topic's state now (a snapshot: topics added later are not in it).
    pub(crate) fn topic_states(&self) -> Vec<Arc<TopicState>> {
        self.topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// The topic's state if metadata has described it already.
    fn known_topic(&self, name: &str) -> Option<Arc<TopicState>> {
        self.topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// The topic's state, fetching metadata (and auto-creating it where allowed) on
    /// first use, for up to `max.block.ms`.
    pub(crate) async fn topic(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<Arc<TopicState>, ProduceError> {
        if let Some(t) = self.known_topic(name) {
            return Ok(t);
        }
        let deadline = Instant::now() + self.config.max_block;
        loop {
            let result = self.refresh_metadata(&[name.to_string()]).await;
            if let Some(t) = self.known_topic(name) {
                return Ok(t);
            }
            if Instant::now() + self.config.retry_backoff > deadline {
                return Err(match result {
                    Err(e) if !e.is_retriable() => ProduceError::Client(e),
                    _ => ProduceError::UnknownTopic(name.to_string()),
                });
            }
            tokio::time::sleep(self.config.retry_backoff).await;
        }
    }

    /// A connection to some broker, for metadata and producer ids.
    async fn any_connection(
        &self,
        slot: &mut Option<Connection>,
    ) -> Result<Connection, ClientError> {
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let mut candidates: Vec<String> = self
            .brokers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        candidates.extend(self.config.bootstrap_servers.iter().cloned());
        let c = fjord_client_common::connection::connect_any(candidates, &self.connection_options)
            .await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// A connection to some broker (known or bootstrap), for FindCoordinator.
    pub(crate) async fn bootstrap_connection(&self) -> Result<Connection, ClientError> {
        let mut slot = self.metadata_lock.lock().await;
        self.any_connection(&mut slot).await
    }

    /// Asks the cluster about `names` (and every known topic), updating leaders and
    /// partition counts.
    pub(crate) async fn refresh_metadata(
        self: &Arc<Self>,
        names: &[String],
    ) -> Result<(), ClientError> {
        let mut slot = self.metadata_lock.lock().await;
        let conn = self.any_connection(&mut slot).await?;
        let mut wanted: Vec<String> = self
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        for n in names {
            if !wanted.contains(n) {
                wanted.push(n.clone());
            }
        }
        let md = ClusterMetadata::fetch(&conn, Some(&wanted), self.config.allow_auto_create_topics)
            .await?;
        *self.brokers.write().unwrap_or_else(PoisonError::into_inner) = md.brokers.clone();
        let mut leaders = Vec::new();
        {
            let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
            for (name, t) in &md.topics {
                if t.error != 0 || t.partitions.is_empty() {
                    continue;
                }
                let existing = topics.get(name).cloned();
                let mut partitions: Vec<Arc<PartitionState>> = existing
                    .as_ref()
                    .map(|e| e.partitions.clone())
                    .unwrap_or_default();
                for p in &t.partitions {
                    let Ok(i) = usize::try_from(p.partition) else {
                        continue;
                    };
                    let leader = if p.error == 0 { p.leader } else { -1 };
                    leaders.push(leader);
                    if let Some(existing) = partitions.get(i) {
                        existing.leader.store(leader, Ordering::Release);
                    } else if i == partitions.len() {
                        partitions.push(Arc::new(PartitionState::new(p.partition, leader)));
                    }
                }
                let grew = existing
                    .as_ref()
                    .is_none_or(|e| e.partitions.len() != partitions.len());
                if grew {
                    topics.insert(
                        name.clone(),
                        Arc::new(TopicState {
                            name: Arc::from(name.as_str()),
                            partitions,
                        }),
                    );
                }
            }
        }
        drop(slot);
        leaders.sort_unstable();
        leaders.dedup();
        for l in leaders.into_iter().filter(|l| *l >= 0) {
            self.wake_sender(l);
        }
        Ok(())
    }

    /// The producer id and epoch for idempotent batches, obtained once (and again after
    /// [`Inner::reset_producer_id`]).
    pub(crate) async fn producer_id(
        self: &Arc<Self>,
        conn: &Connection,
    ) -> Result<(i64, i16), ClientError> {
        let mut id = self.producer_id.lock().await;
        if let Some(id) = *id {
            return Ok(id);
        }
        if self.txn.is_some() {
            // A transactional producer's id comes from init_transactions only.
            return Err(ClientError::Protocol(
                "init_transactions has not completed".into(),
            ));
        }
        let version = conn.version(ApiKey::InitProducerId, 0, 4)?;
        let mut req = InitProducerIdRequest::default();
        req.transactional_id = None;
        req.transaction_timeout_ms = i32::MAX;
        if version >= 3 {
            req.producer_id = ProducerId(-1);
            req.producer_epoch = -1;
        }
        let resp = conn.request(&req, version).await?;
        if resp.error_code != 0 {
            return Err(ClientError::Broker {
                code: resp.error_code,
                message: "InitProducerId".into(),
            });
        }
        let got = (resp.producer_id.0, resp.producer_epoch);
        tracing::debug!(producer_id = got.0, epoch = got.1, "idempotent producer id");
        *id = Some(got);
        Ok(got)
    }

    /// Forgets the producer id after a sequence error nothing else explains: the next
    /// batches start over under a new id, from sequence 0.
    pub(crate) async fn reset_producer_id(&self, failed: (i64, i16)) {
        let mut id = self.producer_id.lock().await;
        if *id == Some(failed) {
            tracing::warn!(
                producer_id = failed.0,
                "resetting the idempotent producer id"
            );
            *id = None;
        }
    }
}

/// Refreshes metadata every `metadata.max.age.ms`, and soon after a sender asks.
pub(crate) async fn metadata_loop(inner: std::sync::Weak<Inner>, wanted: Arc<Notify>) {
    loop {
        let Some(age) = inner.upgrade().map(|i| i.config.metadata_max_age) else {
            return;
        };
        let notified = wanted.notified();
        tokio::select! {
            _ = tokio::time::sleep(age) => {}
            _ = notified => {
                // Let a burst of errors coalesce into one request.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let Some(i) = inner.upgrade() else { return };
        if i.closing.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = i.refresh_metadata(&[]).await {
            tracing::debug!(error = %e, "metadata refresh failed");
        }
    }
}
