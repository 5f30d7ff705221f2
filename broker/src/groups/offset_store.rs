//! Committed offsets: a map in memory, made durable by an append-only Fjord log of
//! Kafka-format offset records (see [`super::offset_records`]) under
//! `<log.dir>/fjord-offsets/<generation>/`.
//!
//! Every commit appends one batch (so a commit of many partitions is all or nothing) and
//! then updates the map. At startup the log is replayed. When superseded records
//! outnumber live ones, the live set is written to a new generation, which becomes current
//! once `fjord-offsets/CURRENT` names it (a durable write), and the old one is deleted:
//! a snapshot instead of Kafka's log compaction, with the same effect.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use fjord_protocol::compression::Compression;
use fjord_protocol::record_batch::{batches, BatchBuilder, RecordIter, RecordSpec};
use fjord_storage::{Durability, FlushTicket, Flusher, Log, LogConfig};

use super::offset_records::{Committed, OffsetKey};

/// Errors of the offsets store.
#[derive(Debug, thiserror::Error)]
pub enum OffsetStoreError {
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
    /// A batch could not be built (a group id or metadata far too large).
    #[error("offsets batch: {0}")]
    Batch(String),
}

type Result<T> = std::result::Result<T, OffsetStoreError>;

/// (topic, partition).
pub type TopicPartition = (String, i32);

/// Records per batch when writing a snapshot.
const SNAPSHOT_BATCH: usize = 1000;
/// Superseded records tolerated before a snapshot, on top of one per live entry.
const GARBAGE_ALLOWANCE: u64 = 10_000;

#[derive(Debug)]
struct Inner {
    log: Option<Log>,
    generation: u64,
    groups: BTreeMap<String, BTreeMap<TopicPartition, Committed>>,
    /// The other group-coordinator records (KIP-848 group state, key types 2 and up):
    /// the latest value of each key, as encoded.
    raw: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Live entries across groups.
    live: u64,
    /// Records in the current log (live or superseded).
    records: u64,
    /// Whether commits wait for the disk (`fjord.fsync.on.ack`).
    fsync: bool,
    /// The previous generation, kept while the switch away from it is not yet durable
    /// (its directory sync failed).
    unsynced_old: Option<PathBuf>,
}

/// The settings of the store's log: large segments, no retention (snapshots compact it),
/// and commits that wait for the disk with `fsync`.
fn log_config(fsync: bool) -> LogConfig {
    LogConfig {
        segment_bytes: 100 << 20,
        segment_ms: None,
        retention_ms: None,
        retention_bytes: None,
        // A commit is one batch, however many partitions it names.
        max_batch_bytes: i32::MAX as usize / 2,
        durability: if fsync {
            Durability::FsyncOnAck
        } else {
            Durability::PageCache
        },
        ..LogConfig::default()
    }
}

/// The durable committed offsets of every group.
#[derive(Debug)]
pub struct OffsetStore {
    dir: PathBuf,
    flusher: Flusher,
    inner: Mutex<Inner>,
}

fn io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> OffsetStoreError + 'a {
    move |source| OffsetStoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

impl OffsetStore {
    /// Opens (or creates) the store under `log_dir` and replays it. With `fsync`, each
    /// commit's ticket completes once it is on disk.
    pub fn open(log_dir: &Path, flusher: Flusher, fsync: bool) -> Result<Self> {
        let dir = log_dir.join("fjord-offsets");
        flusher
            .io()
            .create_dir_all(&dir)
            .map_err(io("create", &dir))?;
        let current = dir.join("CURRENT");
        let generation = match std::fs::read_to_string(&current) {
            // An unreadable pointer must not lead to deleting every generation.
            Ok(text) => text.trim().parse().map_err(|_| OffsetStoreError::Io {
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
        let mut inner = Inner {
            log: None,
            generation,
            groups: BTreeMap::new(),
            raw: BTreeMap::new(),
            live: 0,
            records: 0,
            fsync,
            unsynced_old: None,
        };
        replay(&log, &mut inner)?;
        inner.log = Some(log);
        let store = Self {
            dir,
            flusher,
            inner: Mutex::new(inner),
        };
        store.maybe_snapshot(&mut store.lock())?;
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether commits wait for the disk from now on (`fjord.fsync.on.ack` changed while
    /// the broker runs). Later snapshot generations keep the setting.
    pub fn set_fsync(&self, fsync: bool) -> Result<()> {
        let mut inner = self.lock();
        inner.fsync = fsync;
        if let Some(log) = inner.log.as_mut() {
            let mut config = log.config().clone();
            config.durability = log_config(fsync).durability;
            log.set_config(config)?;
        }
        Ok(())
    }

    /// Whether commits wait for the disk.
    pub fn fsync(&self) -> bool {
        self.lock().fsync
    }

    /// Records `entries` for `group` (a value of `None` deletes the entry). Returns the
    /// flush ticket when commits wait for the disk.
    pub fn write(
        &self,
        group: &str,
        entries: &[(TopicPartition, Option<Committed>)],
    ) -> Result<Option<FlushTicket>> {
        if entries.is_empty() {
            return Ok(None);
        }
        let now = now_ms();
        let mut batch = BatchBuilder::new(Compression::None, now);
        for ((topic, partition), value) in entries {
            let key = OffsetKey {
                group: group.to_string(),
                topic: topic.clone(),
                partition: *partition,
            };
            batch.push(RecordSpec {
                key: Some(key.encode()),
                value: value.as_ref().map(Committed::encode),
                headers: Vec::new(),
                timestamp: None,
            });
        }
        self.append(batch, entries.len(), |inner| {
            for ((topic, partition), value) in entries {
                apply(inner, group, (topic.clone(), *partition), value.clone());
            }
        })
    }

    /// Appends `batch` (of `records` records), then applies it to the maps with
    /// `apply`, then snapshots if due. The one write path of the store.
    fn append(
        &self,
        batch: BatchBuilder,
        records: usize,
        apply: impl FnOnce(&mut Inner),
    ) -> Result<Option<FlushTicket>> {
        let bytes = batch
            .build()
            .map_err(|e| OffsetStoreError::Batch(e.to_string()))?;
        let mut inner = self.lock();
        self.finish_switch(&mut inner)?;
        let Some(log) = inner.log.as_mut() else {
            return Err(OffsetStoreError::Batch("offsets store is closed".into()));
        };
        let info = log.append(&bytes)?;
        inner.records += records as u64;
        apply(&mut inner);
        // The write is done; a failed snapshot only postpones compaction.
        if let Err(e) = self.maybe_snapshot(&mut inner) {
            if inner.unsynced_old.is_some() {
                tracing::error!(error = %e, "offsets generation switched, but the directory sync failed; commits wait for it");
            } else {
                tracing::error!(error = %e, "offsets snapshot failed; will retry");
            }
        }
        Ok(info.durable)
    }

    /// Records other group-coordinator records (keys of type 2 and up, in Kafka's
    /// `__consumer_offsets` layout; a value of `None` is a tombstone), one batch for all.
    pub fn write_raw(&self, entries: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<Option<FlushTicket>> {
        if entries.is_empty() {
            return Ok(None);
        }
        let mut batch = BatchBuilder::new(Compression::None, now_ms());
        for (key, value) in entries {
            batch.push(RecordSpec {
                key: Some(key.clone()),
                value: value.clone(),
                headers: Vec::new(),
                timestamp: None,
            });
        }
        self.append(batch, entries.len(), |inner| {
            for (key, value) in entries {
                apply_raw(inner, key.clone(), value.clone());
            }
        })
    }

    /// Every other group-coordinator record, as (key, value).
    pub fn raw(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.lock()
            .raw
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The committed offset of one partition.
    pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<Committed> {
        self.lock()
            .groups
            .get(group)?
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    /// Every committed offset of `group`, by topic and partition.
    pub fn group(&self, group: &str) -> BTreeMap<TopicPartition, Committed> {
        self.lock().groups.get(group).cloned().unwrap_or_default()
    }

    /// Whether `group` has committed offsets (cheaper than [`OffsetStore::group`]).
    pub fn has_group(&self, group: &str) -> bool {
        self.lock().groups.contains_key(group)
    }

    /// Groups with at least one committed offset.
    pub fn groups(&self) -> Vec<String> {
        self.lock().groups.keys().cloned().collect()
    }

    /// Deletes every offset of `group`; returns how many there were.
    pub fn delete_group(&self, group: &str) -> Result<usize> {
        let doomed: Vec<(TopicPartition, Option<Committed>)> =
            self.group(group).into_keys().map(|tp| (tp, None)).collect();
        self.write(group, &doomed)?;
        Ok(doomed.len())
    }

    /// Makes everything written durable and closes the log (clean shutdown).
    pub fn close(&self) -> Result<()> {
        if let Some(log) = self.lock().log.take() {
            log.close()?;
        }
        Ok(())
    }

    /// Writes the live entries to a new generation when superseded records dominate.
    fn maybe_snapshot(&self, inner: &mut Inner) -> Result<()> {
        if inner.records <= inner.live * 2 + GARBAGE_ALLOWANCE {
            return Ok(());
        }
        let next = inner.generation + 1;
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
        let mut log = Log::open_in_batch(&next_dir, log_config(inner.fsync), self.flusher.clone())?;
        let now = now_ms();
        let entries: Vec<(OffsetKey, &Committed)> = inner
            .groups
            .iter()
            .flat_map(|(g, offsets)| {
                offsets.iter().map(move |((t, p), c)| {
                    (
                        OffsetKey {
                            group: g.clone(),
                            topic: t.clone(),
                            partition: *p,
                        },
                        c,
                    )
                })
            })
            .collect();
        let raw: Vec<(&Vec<u8>, &Vec<u8>)> = inner.raw.iter().collect();
        for chunk in raw.chunks(SNAPSHOT_BATCH) {
            let mut batch = BatchBuilder::new(Compression::None, now);
            for (key, value) in chunk {
                batch.push(RecordSpec {
                    key: Some((*key).clone()),
                    value: Some((*value).clone()),
                    headers: Vec::new(),
                    timestamp: None,
                });
            }
            let bytes = batch
                .build()
                .map_err(|e| OffsetStoreError::Batch(e.to_string()))?;
            log.append(&bytes)?;
        }
        for chunk in entries.chunks(SNAPSHOT_BATCH) {
            let mut batch = BatchBuilder::new(Compression::None, now);
            for (key, value) in chunk {
                batch.push(RecordSpec {
                    key: Some(key.encode()),
                    value: Some(value.encode()),
                    headers: Vec::new(),
                    timestamp: None,
                });
            }
            let bytes = batch
                .build()
                .map_err(|e| OffsetStoreError::Batch(e.to_string()))?;
            log.append(&bytes)?;
        }
        log.flush()?;
        self.flusher
            .io()
            .replace_file(&self.dir, "CURRENT", next.to_string().as_bytes())?;
        // From here the new generation is the store: CURRENT names it and a restart opens
        // it, so a commit appended to the old one now would be lost.
        let old_dir = self.dir.join(inner.generation.to_string());
        let superseded = inner.records - inner.live;
        inner.generation = next;
        inner.records = inner.live;
        let old = inner.log.replace(log);
        if let Err(e) = self.flusher.io().sync_dir_at(&self.dir) {
            // Until the rename is durable a crash leaves CURRENT naming the old generation:
            // keep it, and take no commit before the sync succeeds (`finish_switch`).
            drop(old);
            inner.unsynced_old = Some(old_dir);
            return Err(e.into());
        }
        if let Some(old) = old {
            if let Err(e) = old.delete() {
                tracing::warn!(error = %e, "removing the old offsets generation failed");
            }
        }
        remove_generation(self.flusher.io(), &old_dir);
        tracing::debug!(
            live = inner.live,
            superseded,
            generation = next,
            "offsets snapshot written"
        );
        Ok(())
    }

    /// Finishes a generation switch whose directory sync failed: syncs again, then
    /// removes the old generation. Until then commits are refused, since a crash could
    /// still bring back the old generation without them.
    fn finish_switch(&self, inner: &mut Inner) -> Result<()> {
        let Some(old_dir) = inner.unsynced_old.take() else {
            return Ok(());
        };
        if let Err(e) = self.flusher.io().sync_dir_at(&self.dir) {
            inner.unsynced_old = Some(old_dir);
            return Err(e.into());
        }
        remove_generation(self.flusher.io(), &old_dir);
        Ok(())
    }
}

/// Removes a superseded generation's directory, if still there (the next open removes
/// it otherwise).
fn remove_generation(io: &fjord_storage::Io, dir: &Path) {
    if dir.exists() {
        if let Err(e) = io.remove_dir_all(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "removing the old offsets generation failed");
        }
    }
}

/// Applies one record to the map.
fn apply(inner: &mut Inner, group: &str, tp: TopicPartition, value: Option<Committed>) {
    match value {
        Some(c) => {
            let offsets = inner.groups.entry(group.to_string()).or_default();
            if offsets.insert(tp, c).is_none() {
                inner.live += 1;
            }
        }
        None => {
            if let Some(offsets) = inner.groups.get_mut(group) {
                if offsets.remove(&tp).is_some() {
                    inner.live -= 1;
                }
                if offsets.is_empty() {
                    inner.groups.remove(group);
                }
            }
        }
    }
}

/// Applies one record of another kind.
fn apply_raw(inner: &mut Inner, key: Vec<u8>, value: Option<Vec<u8>>) {
    match value {
        Some(v) => {
            if inner.raw.insert(key, v).is_none() {
                inner.live += 1;
            }
        }
        None => {
            if inner.raw.remove(&key).is_some() {
                inner.live -= 1;
            }
        }
    }
}

/// Whether a record key is of a kind other than an offset commit (types 0 and 1).
fn is_raw_key(key: &[u8]) -> bool {
    key.get(..2)
        .is_some_and(|v| i16::from_be_bytes([v[0], v[1]]) >= 2)
}

/// Rebuilds the map from every record of `log`. Records that do not decode are skipped
/// with a warning: one bad record must not cost every group its offsets.
fn replay(log: &Log, inner: &mut Inner) -> Result<()> {
    let mut from = log.log_start_offset();
    let end = log.log_end_offset();
    while from < end {
        let buf = log.read_to_vec(from, 16 << 20)?;
        if buf.is_empty() {
            break;
        }
        for batch in batches(&buf) {
            let (header, bytes) = batch.map_err(|e| OffsetStoreError::Batch(e.to_string()))?;
            from = header.last_offset() as u64 + 1;
            if header.compression().ok() != Some(Compression::None) {
                tracing::warn!(
                    offset = header.base_offset,
                    "skipping compressed offsets batch"
                );
                continue;
            }
            let count = usize::try_from(header.records_count).unwrap_or(0);
            for record in RecordIter::new(&bytes[61..], count) {
                let Ok(record) = record else {
                    tracing::warn!(offset = header.base_offset, "undecodable offsets batch");
                    break;
                };
                inner.records += 1;
                if let Some(key) = record.key.filter(|k| is_raw_key(k)) {
                    apply_raw(inner, key.to_vec(), record.value.map(|v| v.to_vec()));
                    continue;
                }
                let key = record.key.map(OffsetKey::decode);
                let value = record.value.map(Committed::decode).transpose();
                match (key, value) {
                    (Some(Ok(key)), Ok(value)) => {
                        apply(inner, &key.group, (key.topic, key.partition), value);
                    }
                    _ => tracing::warn!(offset = header.base_offset, "skipping offsets record"),
                }
            }
        }
    }
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(offset: i64) -> Option<Committed> {
        Some(Committed {
            offset,
            leader_epoch: -1,
            metadata: Some(format!("m{offset}")),
            commit_ms: 1,
        })
    }

    fn tp(t: &str, p: i32) -> TopicPartition {
        (t.to_string(), p)
    }

    #[test]
    fn commits_survive_a_reopen_and_deletions_stay_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flusher = Flusher::new("test").expect("flusher");
        let store = OffsetStore::open(dir.path(), flusher.clone(), false).expect("open");
        store
            .write(
                "g",
                &[(tp("a", 0), committed(5)), (tp("a", 1), committed(7))],
            )
            .expect("commit");
        store
            .write("g", &[(tp("a", 0), committed(9))])
            .expect("commit");
        store
            .write("h", &[(tp("b", 0), committed(1))])
            .expect("commit");
        store.delete_group("h").expect("delete");
        store.close().expect("close");
        drop(store);

        let store = OffsetStore::open(dir.path(), flusher, false).expect("reopen");
        assert_eq!(store.committed("g", "a", 0), committed(9));
        assert_eq!(store.committed("g", "a", 1), committed(7));
        assert_eq!(store.committed("h", "b", 0), None);
        assert_eq!(store.groups(), vec!["g".to_string()]);
    }

    #[test]
    fn commits_wait_for_the_disk_once_fsync_is_turned_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flusher = Flusher::new("test").expect("flusher");
        let store = OffsetStore::open(dir.path(), flusher, false).expect("open");
        let first = store.write("g", &[(tp("a", 0), committed(1))]);
        assert!(first.expect("commit").is_none(), "page cache only");
        store.set_fsync(true).expect("set");
        let ticket = store.write("g", &[(tp("a", 0), committed(2))]);
        ticket
            .expect("commit")
            .expect("a flush ticket")
            .wait()
            .expect("on disk");
        store.set_fsync(false).expect("set");
        let last = store.write("g", &[(tp("a", 0), committed(3))]);
        assert!(last.expect("commit").is_none());
    }

    #[test]
    fn snapshots_keep_exactly_the_live_offsets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flusher = Flusher::new("test").expect("flusher");
        let store = OffsetStore::open(dir.path(), flusher.clone(), false).expect("open");
        // Leftovers of an interrupted snapshot into generation 1: removed, not reused.
        let leftover = dir.path().join("fjord-offsets").join("1");
        std::fs::create_dir_all(&leftover).expect("mkdir");
        std::fs::write(leftover.join("junk"), b"junk").expect("junk");
        // Enough superseded commits to force at least two snapshots.
        for round in 0..(GARBAGE_ALLOWANCE as i64 / 25 + 10) {
            let entries: Vec<_> = (0..100).map(|p| (tp("t", p), committed(round))).collect();
            store.write("g", &entries).expect("commit");
        }
        let generation = store.lock().generation;
        assert!(generation > 1, "fewer than two snapshots were written");
        let last = GARBAGE_ALLOWANCE as i64 / 25 + 9;
        assert!(!leftover.join("junk").exists());
        // Only the current generation is left on disk.
        let dirs: Vec<_> = std::fs::read_dir(dir.path().join("fjord-offsets"))
            .expect("list")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .collect();
        assert_eq!(dirs.len(), 1);
        drop(store);
        // Reopen without a clean close, as after a crash.
        let store = OffsetStore::open(dir.path(), flusher, false).expect("reopen");
        for p in 0..100 {
            assert_eq!(
                store.committed("g", "t", p),
                committed(last),
                "partition {p}"
            );
        }
        assert_eq!(store.lock().live, 100);
    }

    /// Copies the store's directory tree, as a crash would leave it on disk.
    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("list") {
            let entry = entry.expect("entry");
            let target = to.join(entry.file_name());
            if entry.path().is_dir() {
                copy_tree(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).expect("copy");
            }
        }
    }

    #[test]
    fn a_failed_directory_sync_keeps_the_old_generation_and_holds_commits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("fjord-offsets");
        let fault = std::sync::Arc::new(fjord_storage::fault::FaultIo::new());
        let flusher =
            Flusher::with_io("test", fjord_storage::Io::new(fault.clone())).expect("flusher");
        let store = OffsetStore::open(dir.path(), flusher.clone(), false).expect("open");
        // The offsets directory's own sync fails (not the syncs of files in it).
        fault.fail_exact(fjord_storage::fault::Op::Sync, &root, libc::EIO, false);
        // Commit rounds until one triggers a snapshot: its own commit is taken (it went
        // to the old generation first), the switch is made, and its sync fails.
        let mut acknowledged = 0;
        for round in 1..=200 {
            let entries: Vec<_> = (0..100).map(|p| (tp("t", p), committed(round))).collect();
            store
                .write("g", &entries)
                .expect("the commit before the switch");
            acknowledged = round;
            if store.lock().generation != 0 {
                break;
            }
        }
        assert_eq!(
            store.lock().generation,
            1,
            "no snapshot switch in 200 rounds"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("CURRENT")).expect("CURRENT"),
            "1"
        );
        assert!(root.join("0").is_dir(), "the old generation is kept");
        // While the switch is not durable, commits are refused and change nothing.
        let refused: Vec<_> = (0..100).map(|p| (tp("t", p), committed(-7))).collect();
        assert!(store.write("g", &refused).is_err());
        assert!(store.write("g", &refused).is_err());
        assert_eq!(store.committed("g", "t", 0), committed(acknowledged));
        // A crash now: whichever CURRENT the disk kept, every acknowledged commit is there.
        for current in ["0", "1"] {
            let crashed = tempfile::tempdir().expect("tempdir");
            copy_tree(dir.path(), crashed.path());
            std::fs::write(crashed.path().join("fjord-offsets/CURRENT"), current).expect("CURRENT");
            let reopened =
                OffsetStore::open(crashed.path(), flusher.clone(), false).expect("reopen");
            for p in 0..100 {
                assert_eq!(
                    reopened.committed("g", "t", p),
                    committed(acknowledged),
                    "CURRENT {current}, partition {p}"
                );
            }
        }
        // Once the sync succeeds, the old generation goes and commits are taken again.
        fault.clear();
        let entries: Vec<_> = (0..100).map(|p| (tp("t", p), committed(99_999))).collect();
        store
            .write("g", &entries)
            .expect("commit after the sync recovered");
        assert!(!root.join("0").exists(), "the old generation is removed");
        drop(store);
        let store = OffsetStore::open(dir.path(), flusher, false).expect("reopen");
        assert_eq!(store.committed("g", "t", 42), committed(99_999));
    }

    #[test]
    fn an_unreadable_current_pointer_is_an_error_not_a_wipe() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flusher = Flusher::new("test").expect("flusher");
        let store = OffsetStore::open(dir.path(), flusher.clone(), false).expect("open");
        store
            .write("g", &[(tp("a", 0), committed(5))])
            .expect("commit");
        store.close().expect("close");
        drop(store);
        let root = dir.path().join("fjord-offsets");
        std::fs::write(root.join("CURRENT"), b"garbage").expect("write");
        assert!(OffsetStore::open(dir.path(), flusher, false).is_err());
        assert!(root.join("0").exists(), "the data is still there");
    }
}
