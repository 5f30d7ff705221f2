//! The producer: `send` appends to the accumulator and returns a delivery future; one
//! sender task per broker drains batches into pipelined Produce requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use fjord_client_common::connection::ConnectionOptions;
use tokio::sync::Notify;

use crate::accumulator::{Memory, OpenBatch};
use crate::batch_writer::{record_size, BatchWriter, RecordParts, BATCH_HEADER};
use crate::config::ProducerConfig;
use crate::delivery::{Completion, CompletionWait, DeliveryFuture};
use crate::error::ProduceError;
use crate::partitioner::{DefaultPartitioner, Partitioner};
use crate::record::ProducerRecord;
use crate::transaction::Transactions;

use crate::inner::{metadata_loop, Inner, SenderHandle};

/// Bytes a partition's first batch buffer starts with (it grows up to `batch.size` as
/// records come).
const INITIAL_BATCH_CAPACITY: usize = 16 << 10;

/// The least a later batch buffer starts with.
const MIN_BATCH_CAPACITY: usize = 1 << 10;

/// Room a new batch buffer starts with, for a record of `size` bytes: 16 KiB for a
/// partition's first batch, then a quarter more than its last batch took (in 1 KiB
/// steps, at least 1 KiB), never more than `batch_size` unless the record needs it.
/// Thousands of quiet partitions must not each hold a large buffer: with records spread
/// over 10,000 partitions, batches hold a record or two, and 16 KiB buffers for each
/// cost a page fault and a cleared page per batch. A busy partition does not regrow its
/// buffer for every batch.
fn batch_room(last_batch_bytes: usize, batch_size: usize, size: usize) -> usize {
    let room = if last_batch_bytes == 0 {
        INITIAL_BATCH_CAPACITY
    } else {
        last_batch_bytes
            .saturating_add(last_batch_bytes / 4)
            .max(MIN_BATCH_CAPACITY)
            .next_multiple_of(MIN_BATCH_CAPACITY)
    };
    room.min(batch_size).max(size)
}

/// Room a Produce request needs around its batches (header, topic name, fields).
const REQUEST_OVERHEAD: usize = 128;

/// A pure-Rust Kafka producer. Cheap to clone: clones share batches and connections.
#[derive(Debug, Clone)]
pub struct Producer {
    pub(crate) inner: Arc<Inner>,
    _metadata_task: Arc<AbortOnDrop>,
}

#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Builds a [`Producer`] from Kafka-named settings.
#[derive(Debug, Default)]
pub struct ProducerBuilder {
    config: ProducerConfig,
    partitioner: Option<Arc<dyn Partitioner>>,
    errors: Vec<ProduceError>,
}

impl ProducerBuilder {
    /// Sets one setting by its Kafka name (`bootstrap.servers`, `acks`, `linger.ms`, ...).
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

    /// Uses `partitioner` for records without an explicit partition.
    pub fn partitioner(mut self, partitioner: Arc<dyn Partitioner>) -> Self {
        self.partitioner = Some(partitioner);
        self
    }

    /// The producer. Call inside a tokio runtime; connections open on first use.
    pub fn build(self) -> Result<Producer, ProduceError> {
        if let Some(e) = self.errors.into_iter().next() {
            return Err(e);
        }
        Producer::with_partitioner(self.config, self.partitioner)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Producer {
    /// A builder over Kafka's defaults.
    pub fn builder() -> ProducerBuilder {
        ProducerBuilder::default()
    }

    /// A producer with `config` and the partitioner it names.
    pub fn new(config: ProducerConfig) -> Result<Self, ProduceError> {
        Self::with_partitioner(config, None)
    }

    fn with_partitioner(
        config: ProducerConfig,
        partitioner: Option<Arc<dyn Partitioner>>,
    ) -> Result<Self, ProduceError> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| ProduceError::Config("a producer needs a tokio runtime".into()))?;
        let partitioner = match partitioner {
            Some(p) => p,
            None => match config.partitioner.as_str() {
                "default" | "murmur2" | "murmur2_random" | "consistent_random" => {
                    Arc::new(DefaultPartitioner::new(config.batch_size))
                }
                "sticky" | "random" => Arc::new(DefaultPartitioner::sticky_only(config.batch_size)),
                "round_robin" => Arc::new(DefaultPartitioner::round_robin()),
                other => return Err(ProduceError::Config(format!("unknown partitioner {other}"))),
            },
        };
        let connection_options = ConnectionOptions {
            client_id: config.client_id.clone(),
            request_timeout: config.request_timeout,
            max_response_bytes: 64 << 20,
        };
        let txn = config.transactional_id.clone().map(|id| {
            let timeout_ms =
                i32::try_from(config.transaction_timeout.as_millis()).unwrap_or(i32::MAX);
            Transactions::new(id, timeout_ms)
        });
        let inner = Arc::new(Inner {
            txn,
            memory: Memory::new(config.buffer_memory),
            config,
            partitioner,
            topics: RwLock::default(),
            brokers: RwLock::default(),
            senders: Mutex::default(),
            producer_id: tokio::sync::Mutex::new(None),
            metadata_lock: tokio::sync::Mutex::new(None),
            metadata_wanted: Arc::new(Notify::new()),
            closing: AtomicBool::new(false),
            flushing: AtomicUsize::new(0),
            connection_options,
            runtime: runtime.clone(),
            started: Instant::now(),
        });
        let task = runtime.spawn(metadata_loop(
            Arc::downgrade(&inner),
            Arc::clone(&inner.metadata_wanted),
        ));
        Ok(Self {
            inner,
            _metadata_task: Arc::new(AbortOnDrop(task)),
        })
    }

    /// Queues `record` and returns the future of its delivery report. Waits only for
    /// buffer space or first metadata of the topic, up to `max.block.ms`.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture, ProduceError> {
        let inner = &self.inner;
        if inner.closing.load(Ordering::Acquire) {
            return Err(ProduceError::Closed);
        }
        // Held until the record is in a batch, so a commit or abort flushes it.
        let _in_transaction = match &inner.txn {
            Some(txn) => {
                let gate = txn.sends.read().await;
                txn.state().check_in_transaction("send")?;
                Some(gate)
            }
            None => None,
        };
        let topic = inner.topic(&record.topic).await?;
        let count = topic.partitions.len() as i32;
        let partition = match record.partition {
            Some(p) if (0..count).contains(&p) => p,
            Some(p) => {
                return Err(ProduceError::UnknownPartition {
                    topic: record.topic.to_string(),
                    partition: p,
                })
            }
            None => inner.partitioner.partition(
                &record.topic,
                record.key.as_deref(),
                record.value.as_ref().map_or(0, |v| v.len()),
                count,
            ),
        };
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let parts = RecordParts {
            timestamp,
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: &record.headers,
        };
        // Sized as the first record of a batch: the most a record can take.
        let size = record_size(&parts, 0, 0);
        let alone = size + BATCH_HEADER + REQUEST_OVERHEAD + topic.name.len();
        if alone > inner.config.max_request_size {
            return Err(ProduceError::RecordTooLarge {
                size: alone,
                max: inner.config.max_request_size,
            });
        }
        inner.reserve(size).await?;
        let state = &topic.partitions[partition as usize];
        let (completion, offset_delta, new_batch, closed) = {
            let mut q = state.lock();
            let mut closed = false;
            let fits = q.open.as_ref().is_some_and(|o| {
                o.writer.count() == 0
                    || o.writer.len() + o.writer.size_of(&parts) <= inner.config.batch_size
            });
            if !fits {
                if let Some(full) = q.close_open() {
                    q.ready.push_back(full);
                    closed = true;
                }
            }
            let new_batch = q.open.is_none();
            let room = batch_room(q.last_batch_bytes, inner.config.batch_size, size);
            let open = q.open.get_or_insert_with(|| OpenBatch {
                writer: BatchWriter::new(room, timestamp),
                completion: Arc::new(Completion::default()),
                created: Instant::now(),
                reserved: 0,
            });
            let offset_delta = open.writer.append(&parts);
            open.reserved += size;
            let completion = Arc::clone(&open.completion);
            if open.writer.len() >= inner.config.batch_size {
                if let Some(full) = q.close_open() {
                    q.ready.push_back(full);
                    closed = true;
                }
            }
            (completion, offset_delta, new_batch, closed)
        };
        if closed {
            inner.wake_sender(state.leader());
        } else if new_batch {
            inner.wake_sender_by(state.leader(), Instant::now() + inner.config.linger);
        }
        Ok(DeliveryFuture {
            completion,
            topic: Arc::clone(&topic.name),
            partition,
            offset_delta,
            timestamp,
        })
    }

    /// Sends everything queued now, without waiting for `linger.ms`, and waits until each
    /// of those records is acknowledged or failed.
    pub async fn flush(&self) {
        let inner = &self.inner;
        inner.flushing.fetch_add(1, Ordering::AcqRel);
        inner.wake_all_senders();
        let mut waits = Vec::new();
        let topics = inner.topic_states();
        for t in &topics {
            for p in &t.partitions {
                let q = p.lock();
                waits.extend(q.open.as_ref().map(|o| Arc::clone(&o.completion)));
                waits.extend(q.ready.iter().map(|b| Arc::clone(&b.completion)));
                waits.extend(q.in_flight.iter().cloned());
            }
        }
        for c in waits {
            let _ = CompletionWait(c).await;
        }
        inner.flushing.fetch_sub(1, Ordering::AcqRel);
    }

    /// Delivers what is buffered (as [`Producer::flush`]), then stops the producer's tasks.
    /// Later sends fail with [`ProduceError::Closed`].
    pub async fn close(&self) {
        self.flush().await;
        self.inner.closing.store(true, Ordering::Release);
        self.inner.wake_all_senders();
        let handles: Vec<Arc<SenderHandle>> = self
            .inner
            .senders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for h in handles {
            let task = h.task.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(task) = task {
                let _ = task.await;
            }
        }
    }

    /// Bytes of records held (sent or not) and not yet acknowledged.
    pub fn buffered_bytes(&self) -> usize {
        self.inner.memory.used()
    }
}

#[cfg(test)]
mod tests {
    use super::batch_room;

    #[test]
    fn batch_buffers_start_as_large_as_the_partitions_last_batch() {
        // First batch of a partition.
        assert_eq!(batch_room(0, 1 << 20, 100), 16 << 10);
        assert_eq!(batch_room(0, 4096, 100), 4096, "never past batch.size");
        // Quiet partitions: small buffers, at least 1 KiB.
        assert_eq!(batch_room(180, 1 << 20, 100), 1024);
        assert_eq!(batch_room(3000, 1 << 20, 100), 4096);
        // A busy one gets what it filled last time, up to batch.size.
        assert_eq!(batch_room(1 << 20, 1 << 20, 100), 1 << 20);
        assert_eq!(batch_room(600_000, 1 << 20, 100), 750_592);
        // One 1 MiB record a batch: not twice that.
        assert_eq!(batch_room(1_048_700, 2_000_000, 100), 1_311_744);
        // A record larger than all that still fits.
        assert_eq!(batch_room(180, 1 << 20, 50_000), 50_000);
    }
}
