//! What the broker holds: its config and its topics, each partition a storage `Log`.
//!
//! Topic metadata lives in `<log.dir>/fjord-topics/<name>` (topic id, partition count,
//! config overrides, as properties) and each partition in `<log.dir>/<name>-<n>/`, as
//! Kafka lays them out, so both survive restarts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use anyhow::{Context, Result};
use fjord_storage::{Flusher, Io, Log, LogConfig};
use tokio::sync::watch;

use crate::config::{parse_properties, BrokerConfig};
use crate::groups::{GroupCoordinator, OffsetStore};
use crate::producer_state::ProducerStates;

mod auto_create;
mod creation;
mod dynamic_config;
#[cfg(test)]
mod power_loss_tests;
mod quota;
mod topic_table;
pub use auto_create::AutoCreated;
pub use creation::NewTopic;
pub use dynamic_config::{AlterError, ConfigChange, ConfigOp, DynamicConfigs};
pub use quota::{ClientQuotas, MutationQuota};

/// Producer ids are reserved on disk in blocks of this many.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// One partition: its log, behind a lock that reads share.
#[derive(Debug)]
pub struct Partition {
    /// The partition number.
    pub index: i32,
    /// The partition's log.
    pub log: RwLock<Log>,
    /// Idempotent producers' recent batches; changed only under the log's write lock.
    pub producers: std::sync::Mutex<ProducerStates>,
    /// Set when an fsync of this log failed: what the page cache holds can no longer be
    /// trusted to reach the disk, so the partition answers KAFKA_STORAGE_ERROR until a
    /// restart recovers it from what is on disk (as Kafka takes a failed log dir offline).
    offline: std::sync::atomic::AtomicBool,
    /// The leader epoch this broker leads the partition in, since it opened it (the log
    /// stamps it into every batch; Metadata tells clients).
    pub leader_epoch: i32,
}

impl Partition {
    /// Kafka's check of a request's `current_leader_epoch` (KIP-320): -1 skips it; an
    /// older epoch is FENCED_LEADER_EPOCH (the client's metadata is stale), a newer one
    /// UNKNOWN_LEADER_EPOCH (this broker's is); both make the client refresh and retry.
    pub fn check_leader_epoch(
        &self,
        current: i32,
    ) -> std::result::Result<(), fjord_protocol::kafka_protocol::ResponseError> {
        use fjord_protocol::kafka_protocol::ResponseError as E;
        match current {
            c if c < 0 || c == self.leader_epoch => Ok(()),
            c if c < self.leader_epoch => Err(E::FencedLeaderEpoch),
            _ => Err(E::UnknownLeaderEpoch),
        }
    }

    /// Read access to the log (a poisoned lock still holds a consistent log: every
    /// mutation either completes or returns an error before changing state).
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Log> {
        self.log.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Read access if no writer holds the log (nor, where the platform's lock favours
    /// writers, waits for it), for callers that must not block (a poisoned lock is taken,
    /// as in [`Partition::read`]).
    pub fn try_read(&self) -> Option<std::sync::RwLockReadGuard<'_, Log>> {
        match self.log.try_read() {
            Ok(log) => Some(log),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Whether an fsync failure took this partition offline.
    pub fn is_offline(&self) -> bool {
        self.offline.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Takes the partition offline after a failed fsync.
    pub fn mark_offline(&self, error: &dyn std::fmt::Display) {
        if !self.offline.swap(true, std::sync::atomic::Ordering::AcqRel) {
            tracing::error!(
                partition = self.index,
                %error,
                "fsync failed: partition offline until restart"
            );
        }
    }

    /// The last stable offset of `log` (this partition's, read under its lock): what
    /// read_committed consumers may read up to and the cleaner may compact below.
    pub fn last_stable_offset(&self, log: &Log) -> u64 {
        self.producers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last_stable_offset(log.log_start_offset(), log.log_end_offset())
    }

    /// Write access to the log.
    pub fn write(&self) -> std::sync::RwLockWriteGuard<'_, Log> {
        self.log.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A topic.
#[derive(Debug)]
pub struct Topic {
    /// Its name.
    pub name: String,
    /// Its id (Metadata v10+).
    pub id: uuid::Uuid,
    /// Topic-level config overrides, by Kafka topic config name.
    pub overrides: BTreeMap<String, String>,
    /// Its partitions, by index.
    pub partitions: Vec<Arc<Partition>>,
}

impl Topic {
    /// Partition `index` as a request names it (`None` when negative or past the end).
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        self.partitions.get(usize::try_from(index).ok()?)
    }
}

/// Why a topic cannot be created.
#[derive(Debug)]
pub enum CreateError {
    /// Already there.
    Exists,
    /// Illegal name.
    InvalidName(String),
    /// Bad partition count.
    InvalidPartitions,
    /// The broker would hold more than `fjord.max.partitions`.
    PartitionLimit {
        /// The configured limit.
        limit: usize,
        /// Partitions the broker holds now.
        current: usize,
    },
    /// Bad config.
    InvalidConfig(String),
    /// Disk trouble.
    Io(String),
}

/// The broker's shared state.
#[derive(Debug)]
pub struct Broker {
    /// Settings.
    pub config: BrokerConfig,
    topics: RwLock<topic_table::TopicTable>,
    /// Broker settings changed at runtime (IncrementalAlterConfigs / AlterConfigs), by
    /// Kafka broker name; they win over the static config and survive restarts.
    dynamic: RwLock<dynamic_config::DynamicConfigs>,
    /// Serializes topic creation, growth and deletion, so that the slow part (opening
    /// partitions on disk) runs without the topics lock every request reads.
    admin: std::sync::Mutex<()>,
    flusher: Flusher,
    /// Bumped after every append, so waiting fetches re-check.
    appended: watch::Sender<u64>,
    /// (next producer id to hand out, end of the block reserved on disk).
    producer_ids: std::sync::Mutex<(i64, i64)>,
    /// Bytes of requests read but not yet answered, across all connections
    /// (`queued.max.request.bytes`, broker-wide as in Kafka).
    pub request_budget: Arc<tokio::sync::Semaphore>,
    /// Consumer groups and committed offsets.
    pub groups: GroupCoordinator,
    /// Transactional ids and their transactions.
    pub txn: crate::txn::TxnCoordinator,
    /// Counters for /metrics.
    pub metrics: crate::metrics::Metrics,
    /// The process's descriptor limit (`None`: unlimited), read at open.
    pub fd_limit: Option<u64>,
    /// Topics queued for auto-creation.
    auto_creation: auto_create::AutoCreateQueue,
    /// Auto-creations per second, broker-wide: paces the disk work of all of them.
    pub mutation_quota: MutationQuota,
    /// Partitions each client id may create or delete per second (KIP-599).
    pub client_quotas: ClientQuotas,
}

/// Kafka's rule for topic names.
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

impl Broker {
    /// Opens every topic found under the log directory.
    pub fn open(config: BrokerConfig) -> Result<Self> {
        Self::open_with_io(config, Io::real())
    }

    /// [`Broker::open`] with every change to the disk going through `io` (a test's
    /// fault injector).
    pub fn open_with_io(config: BrokerConfig, io: Io) -> Result<Self> {
        let meta_dir = config.log_dir.join("fjord-topics");
        io.create_dir_all(&meta_dir)
            .with_context(|| format!("create {}", meta_dir.display()))?;
        let flusher = Flusher::with_io("broker", io).context("start flusher")?;
        let reserved = std::fs::read_to_string(config.log_dir.join("fjord-producer-ids"))
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok())
            .unwrap_or(0);
        let request_budget = Arc::new(tokio::sync::Semaphore::new(
            config.queued_max_request_bytes.max(1),
        ));
        let dynamic = dynamic_config::load(&config.log_dir)?;
        let offsets = OffsetStore::open(
            &config.log_dir,
            flusher.clone(),
            config.offsets_fsync(&dynamic.effective()),
        )
        .context("open committed offsets")?;
        let groups = GroupCoordinator::new(config.coordinator.clone(), offsets);
        let txn_store = crate::txn::store::TxnStore::open(
            &config.log_dir,
            flusher.clone(),
            config.offsets_fsync(&dynamic.effective()),
        )
        .context("open the transaction log")?;
        let txn = crate::txn::TxnCoordinator::new(config.transactions.clone(), txn_store);
        let mutation_quota = MutationQuota::new(config.controller_mutation_rate);
        let client_quotas = ClientQuotas::new(config.controller_mutation_rate);
        let broker = Self {
            fd_limit: crate::fd_budget::limit(),
            dynamic: RwLock::new(dynamic),
            metrics: crate::metrics::Metrics::default(),
            groups,
            txn,
            config,
            topics: RwLock::new(topic_table::TopicTable::default()),
            admin: std::sync::Mutex::new(()),
            auto_creation: auto_create::AutoCreateQueue::default(),
            mutation_quota,
            client_quotas,
            flusher,
            appended: watch::channel(0).0,
            request_budget,
            producer_ids: std::sync::Mutex::new((reserved, reserved)),
        };
        let mut loaded = 0usize;
        for entry in std::fs::read_dir(&meta_dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !valid_topic_name(&name) {
                continue;
            }
            let text = std::fs::read_to_string(entry.path())?;
            let mut props: BTreeMap<String, String> =
                parse_properties(&text)?.into_iter().collect();
            let id = props
                .remove("fjord.topic.id")
                .and_then(|s| uuid::Uuid::parse_str(&s).ok())
                .unwrap_or_else(uuid::Uuid::new_v4);
            let count: i32 = props
                .remove("fjord.partitions")
                .and_then(|s| s.parse().ok())
                .unwrap_or(1);
            if let Err(e) = broker
                .config
                .check_new_settings(&broker.dynamic_configs(), &props)
            {
                tracing::warn!(topic = %name, error = %format!("{e:#}"), "topic saved with settings Fjord does not honour; serving it with cleanup.policy=delete");
            }
            loaded += usize::try_from(count).unwrap_or(0);
            let start_closed = crate::fd_budget::start_closed(loaded, broker.fd_limit);
            let topic = broker.open_topic(&name, id, count, props, start_closed)?;
            broker.topics_mut().insert(name, Arc::new(topic));
        }
        // A saved topic whose partition directory was missing has it again.
        broker.flusher.io().sync_dir_at(&broker.config.log_dir)?;
        tracing::info!(topics = broker.topics().len(), dir = %broker.config.log_dir.display(), "opened log directory");
        // Transactions still open get their start in each partition back, then
        // decisions made before a crash get their markers.
        crate::txn::recovery::restore_open_transactions(&broker);
        let finished = broker.txn.finish_prepared(&broker);
        if finished > 0 {
            tracing::info!(transactions = finished, "finished prepared transactions");
        }
        Ok(broker)
    }

    fn topics(&self) -> std::sync::RwLockReadGuard<'_, topic_table::TopicTable> {
        self.topics.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn admin_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.admin.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Partitions across all topics.
    fn partition_count(&self) -> usize {
        self.topics().values().map(|t| t.partitions.len()).sum()
    }

    /// Fails if adding `more` partitions would pass `fjord.max.partitions`.
    fn check_partition_limit(&self, more: usize) -> std::result::Result<(), CreateError> {
        let (limit, current) = (self.config.max_partitions, self.partition_count());
        if current.saturating_add(more) > limit {
            return Err(CreateError::PartitionLimit { limit, current });
        }
        Ok(())
    }

    fn topics_mut(&self) -> std::sync::RwLockWriteGuard<'_, topic_table::TopicTable> {
        self.topics.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn partition_dir(&self, topic: &str, index: i32) -> PathBuf {
        self.config.log_dir.join(format!("{topic}-{index}"))
    }

    /// Closes the files of segments unused for `idle` in every partition (they reopen on
    /// use); returns how many were closed.
    pub fn close_idle_files(&self, idle: std::time::Duration) -> usize {
        let mut closed = 0;
        for topic in self.all_topics() {
            for p in &topic.partitions {
                match p.read().close_idle(idle) {
                    Ok(n) => closed += n,
                    Err(e) => {
                        tracing::warn!(topic = %topic.name, partition = p.index, error = %e, "closing idle segments failed")
                    }
                }
            }
        }
        closed
    }

    /// Whether `more` partitions opened now should start with their files closed, to
    /// keep one open file per partition from exhausting descriptors.
    fn start_closed(&self, more: usize) -> bool {
        crate::fd_budget::start_closed(self.partition_count() + more, self.fd_limit)
    }

    fn open_partition(
        &self,
        name: &str,
        index: i32,
        log_config: &LogConfig,
        start_closed: bool,
    ) -> Result<Arc<Partition>> {
        // The caller syncs the log directory once for every partition it opened.
        let mut log = Log::open_in_batch(
            self.partition_dir(name, index),
            log_config.clone(),
            self.flusher.clone(),
        )?;
        let mut producers = ProducerStates::default();
        log.for_each_batch_header(log.active_segment_base(), |h| {
            producers.record(h, h.base_offset as u64);
        })?;
        if start_closed {
            log.close_idle(std::time::Duration::ZERO)?;
        }
        // Leading it from now on, in a new epoch if the last one wrote.
        let leader_epoch = log.begin_leader_epoch();
        Ok(Arc::new(Partition {
            index,
            log: RwLock::new(log),
            producers: std::sync::Mutex::new(producers),
            offline: std::sync::atomic::AtomicBool::new(false),
            leader_epoch,
        }))
    }

    /// Opens a topic's partitions; with `start_closed` their files are closed right
    /// away (they reopen on first use). Callers decide it once for everything they open,
    /// not per topic: counting every partition each time would be quadratic.
    fn open_topic(
        &self,
        name: &str,
        id: uuid::Uuid,
        count: i32,
        overrides: BTreeMap<String, String>,
        start_closed: bool,
    ) -> Result<Topic> {
        let log_config: LogConfig = self.log_config(&overrides)?;
        let partitions = (0..count)
            .map(|index| self.open_partition(name, index, &log_config, start_closed))
            .collect::<Result<Vec<_>>>()?;
        Ok(Topic {
            name: name.to_string(),
            id,
            overrides,
            partitions,
        })
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics().get(name).cloned()
    }

    /// A topic by ID (a deleted or re-created topic's old ID finds nothing).
    pub fn topic_by_id(&self, id: &uuid::Uuid) -> Option<Arc<Topic>> {
        self.topics().get_by_id(id).cloned()
    }

    /// All topics, sorted by name.
    pub fn all_topics(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<_> = self.topics().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Replaces a topic's metadata file. Once renamed into place it is what a restart
    /// loads. Changes that make new partitions or topics writable (creation, growth)
    /// are published in memory only after [`Broker::sync_topic_meta`] made the file
    /// durable, so no acks=all write lands where a crash could take the partition back;
    /// if that sync fails, a restart may still find the change (its files are in
    /// place), which loses nothing acknowledged. Config changes apply at once.
    pub(crate) fn replace_topic_meta(
        &self,
        name: &str,
        id: uuid::Uuid,
        partitions: usize,
        overrides: &BTreeMap<String, String>,
    ) -> Result<()> {
        let mut text = format!("fjord.topic.id={id}\nfjord.partitions={partitions}\n");
        for (k, v) in overrides {
            text.push_str(&format!("{k}={v}\n"));
        }
        let dir = self.config.log_dir.join("fjord-topics");
        // The temp file's '~' is not legal in topic names: never read back as a topic.
        self.flusher
            .io()
            .replace_file(&dir, name, text.as_bytes())?;
        Ok(())
    }

    /// Makes the topic metadata files replaced so far durable.
    pub(crate) fn sync_topic_meta(&self) -> Result<()> {
        self.flusher
            .io()
            .sync_dir_at(&self.config.log_dir.join("fjord-topics"))?;
        Ok(())
    }

    /// Deletes a topic: forgotten first (its metadata file), then its partition
    /// directories. Requests still holding the topic finish against unlinked files.
    pub fn delete_topic(&self, name: &str) -> Option<Arc<Topic>> {
        let _admin = self.admin_lock();
        let topic = self.topics_mut().remove(name)?;
        let meta = self.config.log_dir.join("fjord-topics").join(name);
        if let Err(e) = self
            .flusher
            .io()
            .remove_file(&meta)
            .map_err(anyhow::Error::from)
            .and_then(|()| {
                self.flusher
                    .io()
                    .sync_dir_at(meta.parent().unwrap_or(&self.config.log_dir))
                    .map_err(Into::into)
            })
        {
            tracing::error!(topic = name, error = %e, "removing topic metadata failed");
        }
        for p in &topic.partitions {
            let dir = self.partition_dir(name, p.index);
            if let Err(e) = self.flusher.io().remove_dir_all(&dir) {
                tracing::error!(dir = %dir.display(), error = %e, "removing partition failed");
            }
        }
        self.metrics.cleaner.forget_topic(name);
        tracing::info!(topic = name, "deleted topic");
        Some(topic)
    }

    /// Grows a topic to `count` partitions (never shrinks, as Kafka).
    pub fn add_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> std::result::Result<(), CreateError> {
        let _admin = self.admin_lock();
        let Some(topic) = self.topic(name) else {
            return Err(CreateError::InvalidName(name.to_string()));
        };
        let current = topic.partitions.len() as i32;
        if count <= current || count > 100_000 {
            return Err(CreateError::InvalidPartitions);
        }
        self.check_partition_limit((count - current) as usize)?;
        if validate_only {
            return Ok(());
        }
        let io = |e: anyhow::Error| CreateError::Io(format!("{e:#}"));
        // Only the new partitions are opened: the existing ones are live.
        let log_config = self.log_config(&topic.overrides).map_err(io)?;
        let start_closed = self.start_closed((count - current) as usize);
        let more = (current..count)
            .map(|index| self.open_partition(name, index, &log_config, start_closed))
            .collect::<Result<Vec<_>>>()
            .map_err(io)?;
        self.flusher
            .io()
            .sync_dir_at(&self.config.log_dir)
            .map_err(|e| CreateError::Io(e.to_string()))?;
        let partitions: Vec<Arc<Partition>> =
            topic.partitions.iter().cloned().chain(more).collect();
        self.replace_topic_meta(name, topic.id, partitions.len(), &topic.overrides)
            .map_err(io)?;
        // Durable before served: an acks=all write to a new partition must not be
        // acknowledged while a crash could still bring back the old partition count.
        self.sync_topic_meta().map_err(|e| {
            CreateError::Io(format!(
                "partitions added on disk, but their metadata may not survive a crash: {e:#}"
            ))
        })?;
        let grown = Topic {
            name: topic.name.clone(),
            id: topic.id,
            overrides: topic.overrides.clone(),
            partitions,
        };
        self.topics_mut().insert(name.to_string(), Arc::new(grown));
        tracing::info!(topic = name, from = current, to = count, "added partitions");
        Ok(())
    }

    /// A producer id never handed out before, even across restarts: ids are reserved on
    /// disk a block at a time.
    pub fn next_producer_id(&self) -> Result<i64> {
        let mut ids = self
            .producer_ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if ids.0 >= ids.1 {
            let end = ids.0 + PRODUCER_ID_BLOCK;
            self.flusher.io().write_durably(
                &self.config.log_dir,
                "fjord-producer-ids",
                format!("{end}\n").as_bytes(),
            )?;
            ids.1 = end;
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// Tells waiting fetches that data arrived.
    pub fn notify_appended(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that changes after each append.
    pub fn watch_appends(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Flushes and closes every log cleanly (shutdown).
    pub fn close(&self) {
        if let Err(e) = self.groups.offsets.close() {
            tracing::error!(error = %e, "closing committed offsets failed");
        }
        self.txn.close();
        let topics: Vec<Arc<Topic>> = self.topics_mut().drain().collect();
        for topic in topics {
            let Ok(topic) = Arc::try_unwrap(topic) else {
                tracing::warn!("topic still in use at shutdown; its logs recover on next start");
                continue;
            };
            for partition in topic.partitions {
                let Ok(partition) = Arc::try_unwrap(partition) else {
                    continue;
                };
                let log = partition
                    .log
                    .into_inner()
                    .unwrap_or_else(PoisonError::into_inner);
                if let Err(e) = log.close() {
                    tracing::error!(topic = %topic.name, partition = partition.index, error = %e, "clean close failed");
                }
            }
        }
    }
}
