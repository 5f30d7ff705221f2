//! A durable latest-value-per-key store for the broker's internal state (committed
//! offsets, transactions): an append-only Fjord log of key/value records under
//! `<dir>/<generation>/`, replayed at startup.
//!
//! When superseded records outnumber live ones, the owner's live set is written to a
//! new generation, which becomes current once `<dir>/CURRENT` names it (a durable
//! write), and the old one is deleted: a snapshot instead of Kafka's log compaction of
//! `__consumer_offsets` and `__transaction_state`, with the same effect. The owner keeps
//! its own typed maps; this file keeps the files.

use std::path::{Path, PathBuf};

use fjord_protocol::compression::Compression;
use fjord_protocol::record_batch::{batches, BatchBuilder, RecordIter, RecordSpec};
use fjord_storage::{Durability, FlushTicket, Flusher, Log, LogConfig};

/// Errors of an internal store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The log under the store failed.
    #[error(transparent)]
    Storage(#[from] fjord_storage::StorageError),
    /// A file of the store could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A batch could not be built (a key or value far too large), or the store is closed.
    #[error("store batch: {0}")]
    Batch(String),
}

type Result<T> = std::result::Result<T, StoreError>;

/// One record: a key and its new value (`None` deletes it).
pub type KeyedRecord = (Vec<u8>, Option<Vec<u8>>);

/// What a replay hands its owner, oldest first.
#[derive(Debug)]
pub enum Replayed<'a> {
    /// A record: key, value (`None`: a deletion), and the producer (id, epoch) whose
    /// transaction it belongs to, if it was written in one.
    Record {
        /// The key.
        key: &'a [u8],
        /// The value, `None` for a deletion.
        value: Option<&'a [u8]>,
        /// The transaction's producer id and epoch, for a transactional record.
        producer: Option<(i64, i16)>,
    },
    /// The end of `producer_id`'s transaction: its records count (commit) or not.
    Marker {
        /// The producer.
        producer_id: i64,
        /// Commit (true) or abort.
        commit: bool,
    },
}

/// The records of one producer's open transaction, for a snapshot.
#[derive(Debug)]
pub struct PendingBatch {
    /// The producer id and epoch.
    pub producer: (i64, i16),
    /// Its records so far.
    pub records: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Records per batch when writing a snapshot.
const SNAPSHOT_BATCH: usize = 1000;
/// Superseded records tolerated before a snapshot, on top of one per live entry.
pub const GARBAGE_ALLOWANCE: u64 = 10_000;

/// The settings of a store's log: large segments, no retention (snapshots compact it),
/// and writes that wait for the disk with `fsync`.
fn log_config(fsync: bool) -> LogConfig {
    LogConfig {
        segment_bytes: 100 << 20,
        segment_ms: None,
        retention_ms: None,
        retention_bytes: None,
        // A write is one batch, however many records it holds.
        max_batch_bytes: i32::MAX as usize / 2,
        durability: if fsync {
            Durability::FsyncOnAck
        } else {
            Durability::PageCache
        },
        ..LogConfig::default()
    }
}

pub(crate) fn io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The files of one internal store.
#[derive(Debug)]
pub struct KeyedLog {
    dir: PathBuf,
    flusher: Flusher,
    log: Option<Log>,
    generation: u64,
    /// Records in the current generation (live or superseded).
    records: u64,
    /// Whether writes wait for the disk.
    fsync: bool,
    /// The previous generation, kept while the switch away from it is not yet durable
    /// (its directory sync failed).
    unsynced_old: Option<PathBuf>,
}

impl KeyedLog {
    /// Opens (or creates) the store in `dir` and hands every record of the current
    /// generation, oldest first, to `each` (key, value or `None` for a deletion), for a
    /// store that never writes transactions.
    pub fn open(
        dir: PathBuf,
        flusher: Flusher,
        fsync: bool,
        mut each: impl FnMut(&[u8], Option<&[u8]>),
    ) -> Result<Self> {
        Self::open_replaying(dir, flusher, fsync, |r| {
            if let Replayed::Record { key, value, .. } = r {
                each(key, value);
            }
        })
    }

    /// [`KeyedLog::open`] handing over transactional records and markers too.
    pub fn open_replaying(
        dir: PathBuf,
        flusher: Flusher,
        fsync: bool,
        each: impl FnMut(Replayed<'_>),
    ) -> Result<Self> {
        flusher
            .io()
            .create_dir_all(&dir)
            .map_err(io("create", &dir))?;
        let current = dir.join("CURRENT");
        let generation = match std::fs::read_to_string(&current) {
            // An unreadable pointer must not lead to deleting every generation.
            Ok(text) => text.trim().parse().map_err(|_| StoreError::Io {
                what: "parse",
                path: current.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not a generation"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io("read", &current)(e)),
        };
        // Generations other than the current one are unfinished snapshots or leftovers
        // of a deletion cut short.
        for entry in std::fs::read_dir(&dir).map_err(io("list", &dir))? {
            let entry = entry.map_err(io("list", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.parse::<u64>().is_ok_and(|g| g != generation) {
                flusher
                    .io()
                    .remove_dir_all(&entry.path())
                    .map_err(io("remove", &entry.path()))?;
            }
        }
        let log = Log::open(
            dir.join(generation.to_string()),
            log_config(fsync),
            flusher.clone(),
        )?;
        let records = replay(&log, each)?;
        Ok(Self {
            dir,
            flusher,
            log: Some(log),
            generation,
            records,
            fsync,
            unsynced_old: None,
        })
    }

    /// The generation in use (tests watch snapshots with it).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether writes wait for the disk.
    pub fn fsync(&self) -> bool {
        self.fsync
    }

    /// Whether writes wait for the disk from now on. Later generations keep the setting.
    pub fn set_fsync(&mut self, fsync: bool) -> Result<()> {
        self.fsync = fsync;
        if let Some(log) = self.log.as_mut() {
            let mut config = log.config().clone();
            config.durability = log_config(fsync).durability;
            log.set_config(config)?;
        }
        Ok(())
    }

    /// Appends `records` as one batch (all or nothing). Returns the flush ticket when
    /// writes wait for the disk. The caller applies the records to its maps only after
    /// this succeeded.
    pub fn append(&mut self, records: &[KeyedRecord]) -> Result<Option<FlushTicket>> {
        self.append_batch(BatchBuilder::new(Compression::None, now_ms()), records)
    }

    /// [`KeyedLog::append`] as part of `producer`'s transaction (id, epoch): replayed
    /// with its producer, to count only once its commit marker is.
    pub fn append_transactional(
        &mut self,
        producer: (i64, i16),
        records: &[KeyedRecord],
    ) -> Result<Option<FlushTicket>> {
        let batch = BatchBuilder::new(Compression::None, now_ms())
            .with_producer(producer.0, producer.1, 0)
            .transactional();
        self.append_batch(batch, records)
    }

    /// Appends the marker ending `producer`'s transaction.
    pub fn append_marker(
        &mut self,
        producer: (i64, i16),
        commit: bool,
    ) -> Result<Option<FlushTicket>> {
        let marker = fjord_protocol::record_batch::EndTxnMarker {
            commit,
            coordinator_epoch: 0,
        };
        let bytes =
            fjord_protocol::record_batch::end_txn_batch(producer.0, producer.1, marker, now_ms())
                .map_err(|e| StoreError::Batch(e.to_string()))?;
        self.append_bytes(&bytes, 1)
    }

    fn append_batch(
        &mut self,
        mut batch: BatchBuilder,
        records: &[KeyedRecord],
    ) -> Result<Option<FlushTicket>> {
        for (key, value) in records {
            batch.push(RecordSpec {
                key: Some(key.clone()),
                value: value.clone(),
                headers: Vec::new(),
                timestamp: None,
            });
        }
        let bytes = batch
            .build()
            .map_err(|e| StoreError::Batch(e.to_string()))?;
        self.append_bytes(&bytes, records.len())
    }

    fn append_bytes(&mut self, bytes: &[u8], records: usize) -> Result<Option<FlushTicket>> {
        self.finish_switch()?;
        let Some(log) = self.log.as_mut() else {
            return Err(StoreError::Batch("store is closed".into()));
        };
        let info = log.append(bytes)?;
        self.records += records as u64;
        Ok(info.durable)
    }

    /// Whether a snapshot is due with `live` entries left.
    pub fn snapshot_due(&self, live: u64) -> bool {
        self.records > live * 2 + GARBAGE_ALLOWANCE
    }

    /// Writes the `live` entries to a new generation and switches to it.
    pub fn snapshot(&mut self, live: u64, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        self.snapshot_with_pending(live, entries, &[])
    }

    /// [`KeyedLog::snapshot`] keeping open transactions' records as transactional
    /// batches, so they still wait for their markers after the switch.
    pub fn snapshot_with_pending(
        &mut self,
        live: u64,
        entries: &[(Vec<u8>, Vec<u8>)],
        pending: &[PendingBatch],
    ) -> Result<()> {
        let next = self.generation + 1;
        let next_dir = self.dir.join(next.to_string());
        // Leftovers of a snapshot that failed part-way must not be appended to.
        if next_dir.exists() {
            self.flusher
                .io()
                .remove_dir_all(&next_dir)
                .map_err(io("remove", &next_dir))?;
        }
        // The new generation's directory entry is made durable by the same directory sync
        // as the CURRENT rename below: both or neither survive a crash.
        let mut log = Log::open_in_batch(&next_dir, log_config(self.fsync), self.flusher.clone())?;
        let now = now_ms();
        for chunk in entries.chunks(SNAPSHOT_BATCH) {
            log.append(&live_batch(
                BatchBuilder::new(Compression::None, now),
                chunk,
            )?)?;
        }
        for p in pending.iter().filter(|p| !p.records.is_empty()) {
            let batch = BatchBuilder::new(Compression::None, now)
                .with_producer(p.producer.0, p.producer.1, 0)
                .transactional();
            log.append(&live_batch(batch, &p.records)?)?;
        }
        log.flush()?;
        self.flusher
            .io()
            .replace_file(&self.dir, "CURRENT", next.to_string().as_bytes())?;
        // From here the new generation is the store: CURRENT names it and a restart opens
        // it, so a write appended to the old one now would be lost.
        let old_dir = self.dir.join(self.generation.to_string());
        let superseded = self.records.saturating_sub(live);
        self.generation = next;
        self.records = live;
        let old = self.log.replace(log);
        if let Err(e) = self.flusher.io().sync_dir_at(&self.dir) {
            // Until the rename is durable a crash leaves CURRENT naming the old generation:
            // keep it, and take no write before the sync succeeds (`finish_switch`).
            drop(old);
            self.unsynced_old = Some(old_dir);
            return Err(e.into());
        }
        if let Some(old) = old {
            if let Err(e) = old.delete() {
                tracing::warn!(dir = %self.dir.display(), error = %e, "removing the old generation failed");
            }
        }
        remove_generation(self.flusher.io(), &old_dir);
        tracing::debug!(dir = %self.dir.display(), live, superseded, generation = next, "snapshot written");
        Ok(())
    }

    /// Whether a generation switch is waiting for its directory sync.
    pub fn switch_pending(&self) -> bool {
        self.unsynced_old.is_some()
    }

    /// Finishes a generation switch whose directory sync failed: syncs again, then
    /// removes the old generation. Until then writes are refused, since a crash could
    /// still bring back the old generation without them.
    fn finish_switch(&mut self) -> Result<()> {
        let Some(old_dir) = self.unsynced_old.take() else {
            return Ok(());
        };
        if let Err(e) = self.flusher.io().sync_dir_at(&self.dir) {
            self.unsynced_old = Some(old_dir);
            return Err(e.into());
        }
        remove_generation(self.flusher.io(), &old_dir);
        Ok(())
    }

    /// Makes everything written durable and closes the log (clean shutdown).
    pub fn close(&mut self) -> Result<()> {
        if let Some(log) = self.log.take() {
            log.close()?;
        }
        Ok(())
    }
}

/// `batch` with `records` (live values) pushed, built.
fn live_batch(mut batch: BatchBuilder, records: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<u8>> {
    for (key, value) in records {
        batch.push(RecordSpec {
            key: Some(key.clone()),
            value: Some(value.clone()),
            headers: Vec::new(),
            timestamp: None,
        });
    }
    batch.build().map_err(|e| StoreError::Batch(e.to_string()))
}

/// Removes a superseded generation's directory, if still there (the next open removes
/// it otherwise).
fn remove_generation(io: &fjord_storage::Io, dir: &Path) {
    if dir.exists() {
        if let Err(e) = io.remove_dir_all(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "removing the old generation failed");
        }
    }
}

/// Hands every record and marker of `log` to `each`; returns how many there were. A batch that
/// does not decode ends the replay of that batch with a warning: one bad record must
/// not cost the store everything after it.
fn replay(log: &Log, mut each: impl FnMut(Replayed<'_>)) -> Result<u64> {
    let (mut from, end) = (log.log_start_offset(), log.log_end_offset());
    let mut records = 0;
    while from < end {
        let buf = log.read_to_vec(from, 16 << 20)?;
        if buf.is_empty() {
            break;
        }
        for batch in batches(&buf) {
            let (header, bytes) = batch.map_err(|e| StoreError::Batch(e.to_string()))?;
            from = header.last_offset() as u64 + 1;
            if header.is_control() {
                if let Some(m) = fjord_protocol::record_batch::read_end_txn_marker(bytes) {
                    records += 1;
                    each(Replayed::Marker {
                        producer_id: header.producer_id,
                        commit: m.commit,
                    });
                }
                continue;
            }
            let producer = header
                .is_transactional()
                .then_some((header.producer_id, header.producer_epoch));
            if header.compression().ok() != Some(Compression::None) {
                tracing::warn!(offset = header.base_offset, "skipping a compressed batch");
                continue;
            }
            let count = usize::try_from(header.records_count).unwrap_or(0);
            for record in RecordIter::new(&bytes[61..], count) {
                let Ok(record) = record else {
                    tracing::warn!(offset = header.base_offset, "undecodable batch");
                    break;
                };
                records += 1;
                match record.key {
                    Some(key) => each(Replayed::Record {
                        key,
                        value: record.value,
                        producer,
                    }),
                    None => tracing::warn!(offset = header.base_offset, "record without a key"),
                }
            }
        }
    }
    Ok(records)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Waits for `ticket` from synchronous code wherever it runs: a runtime worker hands
/// its other tasks away first, a current-thread runtime (tests) waits on a helper
/// thread, and plain threads (the blocking pool) wait in place.
pub fn wait_durable(ticket: FlushTicket) -> std::result::Result<(), fjord_storage::StorageError> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::CurrentThread) => std::thread::scope(|s| {
            s.spawn(|| ticket.wait())
                .join()
                .unwrap_or(Err(fjord_storage::StorageError::FlusherStopped))
        }),
        Ok(_) => tokio::task::block_in_place(|| ticket.wait()),
        Err(_) => ticket.wait(),
    }
}
