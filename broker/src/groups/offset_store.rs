//! Committed offsets: a map in memory, made durable by a [`KeyedLog`] of Kafka-format
//! offset records (see [`super::offset_records`]) under `<log.dir>/fjord-offsets/`.
//!
//! Every commit appends one batch (so a commit of many partitions is all or nothing) and
//! then updates the map. At startup the log is replayed; when superseded records
//! outnumber live ones, the live set is snapshotted into a new generation.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use fjord_storage::{FlushTicket, Flusher};

use super::offset_records::{Committed, OffsetKey};
pub use crate::keyed_log::StoreError as OffsetStoreError;
use crate::keyed_log::{KeyedLog, KeyedRecord, PendingBatch, Replayed};

type Result<T> = std::result::Result<T, OffsetStoreError>;

/// (topic, partition).
pub type TopicPartition = (String, i32);

/// Offsets committed in a transaction (TxnOffsetCommit), not yet visible: they count
/// once the transaction's COMMIT marker is written, and go with its ABORT.
#[derive(Debug, Default)]
struct Pending {
    epoch: i16,
    offsets: BTreeMap<(String, TopicPartition), Committed>,
}

/// The maps the log is replayed into.
#[derive(Debug, Default)]
struct Maps {
    /// Open transactions' offsets, by producer id.
    pending: BTreeMap<i64, Pending>,
    groups: BTreeMap<String, BTreeMap<TopicPartition, Committed>>,
    /// The other group-coordinator records (KIP-848 group state, key types 2 and up):
    /// the latest value of each key, as encoded.
    raw: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Live entries across groups.
    live: u64,
}

#[derive(Debug)]
struct Inner {
    log: KeyedLog,
    maps: Maps,
}

/// The durable committed offsets of every group.
#[derive(Debug)]
pub struct OffsetStore {
    inner: Mutex<Inner>,
}

impl OffsetStore {
    /// Opens (or creates) the store under `log_dir` and replays it. With `fsync`, each
    /// commit's ticket completes once it is on disk.
    pub fn open(log_dir: &Path, flusher: Flusher, fsync: bool) -> Result<Self> {
        let mut maps = Maps::default();
        let log =
            KeyedLog::open_replaying(log_dir.join("fjord-offsets"), flusher, fsync, |r| match r {
                Replayed::Record {
                    key,
                    value,
                    producer: None,
                } => replay_record(&mut maps, key, value),
                Replayed::Record {
                    key,
                    value: Some(value),
                    producer: Some(producer),
                } => replay_pending(&mut maps, producer, key, value),
                Replayed::Record { .. } => {}
                Replayed::Marker {
                    producer_id,
                    commit,
                } => end_pending(&mut maps, producer_id, commit),
            })?;
        let store = Self {
            inner: Mutex::new(Inner { log, maps }),
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
        self.lock().log.set_fsync(fsync)
    }

    /// Whether commits wait for the disk.
    pub fn fsync(&self) -> bool {
        self.lock().log.fsync()
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
        let records: Vec<KeyedRecord> = entries
            .iter()
            .map(|((topic, partition), value)| {
                let key = OffsetKey {
                    group: group.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                };
                (key.encode(), value.as_ref().map(Committed::encode))
            })
            .collect();
        self.append(&records, |maps| {
            for ((topic, partition), value) in entries {
                apply(maps, group, (topic.clone(), *partition), value.clone());
            }
        })
    }

    /// Appends `records`, then applies them to the maps with `apply`, then snapshots
    /// if due. The one write path of the store.
    fn append(
        &self,
        records: &[KeyedRecord],
        apply: impl FnOnce(&mut Maps),
    ) -> Result<Option<FlushTicket>> {
        let mut inner = self.lock();
        let durable = inner.log.append(records)?;
        apply(&mut inner.maps);
        // The write is done; a failed snapshot only postpones compaction.
        if let Err(e) = self.maybe_snapshot(&mut inner) {
            if inner.log.switch_pending() {
                tracing::error!(error = %e, "offsets generation switched, but the directory sync failed; commits wait for it");
            } else {
                tracing::error!(error = %e, "offsets snapshot failed; will retry");
            }
        }
        Ok(durable)
    }

    /// Records offsets committed in `producer`'s transaction (TxnOffsetCommit): durable
    /// now, visible once its COMMIT marker is written ([`OffsetStore::end_transaction`]).
    /// `verify` (the transaction still open, holding the group) runs under the store's
    /// lock, which the marker also takes: the offsets cannot land after their marker.
    /// Its error is handed back, and nothing is written then.
    pub fn write_pending(
        &self,
        producer: (i64, i16),
        group: &str,
        entries: &[(TopicPartition, Committed)],
        verify: impl FnOnce() -> std::result::Result<(), i16>,
    ) -> Result<std::result::Result<Option<FlushTicket>, i16>> {
        let records: Vec<KeyedRecord> = entries
            .iter()
            .map(|(tp, c)| (offset_key(group, tp).encode(), Some(c.encode())))
            .collect();
        let mut inner = self.lock();
        if let Err(code) = verify() {
            return Ok(Err(code));
        }
        if entries.is_empty() {
            return Ok(Ok(None));
        }
        let durable = inner.log.append_transactional(producer, &records)?;
        for (tp, c) in entries {
            add_pending(
                &mut inner.maps,
                producer,
                (group.to_string(), tp.clone()),
                c.clone(),
            );
        }
        Ok(Ok(durable))
    }

    /// Ends `producer_id`'s transaction here: its offsets become the committed ones
    /// (commit) or are dropped (abort), behind a marker in the log. Nothing is written
    /// when it committed no offsets.
    pub fn end_transaction(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<Option<FlushTicket>> {
        let mut inner = self.lock();
        if !inner.maps.pending.contains_key(&producer_id) {
            return Ok(None);
        }
        let durable = inner.log.append_marker((producer_id, epoch), commit)?;
        end_pending(&mut inner.maps, producer_id, commit);
        if let Err(e) = self.maybe_snapshot(&mut inner) {
            tracing::error!(error = %e, "offsets snapshot failed; will retry");
        }
        Ok(durable)
    }

    /// Whether an open transaction holds an offset of `group` for this partition
    /// (OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT then).
    pub fn has_pending(&self, group: &str, topic: &str, partition: i32) -> bool {
        let key = (group.to_string(), (topic.to_string(), partition));
        self.lock()
            .maps
            .pending
            .values()
            .any(|p| p.offsets.contains_key(&key))
    }

    /// Records other group-coordinator records (keys of type 2 and up, in Kafka's
    /// `__consumer_offsets` layout; a value of `None` is a tombstone), one batch for all.
    pub fn write_raw(&self, entries: &[KeyedRecord]) -> Result<Option<FlushTicket>> {
        if entries.is_empty() {
            return Ok(None);
        }
        self.append(entries, |maps| {
            for (key, value) in entries {
                apply_raw(maps, key.clone(), value.clone());
            }
        })
    }

    /// Every other group-coordinator record, as (key, value).
    pub fn raw(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.lock()
            .maps
            .raw
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The committed offset of one partition.
    pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<Committed> {
        self.lock()
            .maps
            .groups
            .get(group)?
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    /// Every committed offset of `group`, by topic and partition.
    pub fn group(&self, group: &str) -> BTreeMap<TopicPartition, Committed> {
        self.lock()
            .maps
            .groups
            .get(group)
            .cloned()
            .unwrap_or_default()
    }

    /// Whether `group` has committed offsets (cheaper than [`OffsetStore::group`]).
    pub fn has_group(&self, group: &str) -> bool {
        self.lock().maps.groups.contains_key(group)
    }

    /// Groups with at least one committed offset.
    pub fn groups(&self) -> Vec<String> {
        self.lock().maps.groups.keys().cloned().collect()
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
        self.lock().log.close()
    }

    /// Writes the live entries to a new generation when superseded records dominate.
    fn maybe_snapshot(&self, inner: &mut Inner) -> Result<()> {
        let live = inner.maps.live;
        if !inner.log.snapshot_due(live) {
            return Ok(());
        }
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = inner
            .maps
            .raw
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        entries.extend(inner.maps.groups.iter().flat_map(|(g, offsets)| {
            offsets.iter().map(move |((t, p), c)| {
                let key = OffsetKey {
                    group: g.clone(),
                    topic: t.clone(),
                    partition: *p,
                };
                (key.encode(), c.encode())
            })
        }));
        let pending: Vec<PendingBatch> = inner
            .maps
            .pending
            .iter()
            .map(|(&producer_id, p)| PendingBatch {
                producer: (producer_id, p.epoch),
                records: p
                    .offsets
                    .iter()
                    .map(|((g, tp), c)| (offset_key(g, tp).encode(), c.encode()))
                    .collect(),
            })
            .collect();
        inner.log.snapshot_with_pending(live, &entries, &pending)
    }
}

fn offset_key(group: &str, (topic, partition): &TopicPartition) -> OffsetKey {
    OffsetKey {
        group: group.to_string(),
        topic: topic.clone(),
        partition: *partition,
    }
}

/// Holds one offset of an open transaction.
fn add_pending(maps: &mut Maps, producer: (i64, i16), key: (String, TopicPartition), c: Committed) {
    let p = maps.pending.entry(producer.0).or_default();
    p.epoch = producer.1;
    if p.offsets.insert(key, c).is_none() {
        maps.live += 1;
    }
}

/// Ends a transaction's offsets: committed ones replace the group's, aborted ones go.
fn end_pending(maps: &mut Maps, producer_id: i64, commit: bool) {
    let Some(p) = maps.pending.remove(&producer_id) else {
        return;
    };
    maps.live = maps.live.saturating_sub(p.offsets.len() as u64);
    if commit {
        for ((group, tp), c) in p.offsets {
            apply(maps, &group, tp, Some(c));
        }
    }
}

/// A replayed transactional offset record.
fn replay_pending(maps: &mut Maps, producer: (i64, i16), key: &[u8], value: &[u8]) {
    match (OffsetKey::decode(key), Committed::decode(value)) {
        (Ok(k), Ok(c)) => add_pending(maps, producer, (k.group, (k.topic, k.partition)), c),
        _ => tracing::warn!("skipping an undecodable transactional offsets record"),
    }
}

/// Applies one record to the map.
fn apply(maps: &mut Maps, group: &str, tp: TopicPartition, value: Option<Committed>) {
    match value {
        Some(c) => {
            let offsets = maps.groups.entry(group.to_string()).or_default();
            if offsets.insert(tp, c).is_none() {
                maps.live += 1;
            }
        }
        None => {
            if let Some(offsets) = maps.groups.get_mut(group) {
                if offsets.remove(&tp).is_some() {
                    maps.live -= 1;
                }
                if offsets.is_empty() {
                    maps.groups.remove(group);
                }
            }
        }
    }
}

/// Applies one record of another kind.
fn apply_raw(maps: &mut Maps, key: Vec<u8>, value: Option<Vec<u8>>) {
    match value {
        Some(v) => {
            if maps.raw.insert(key, v).is_none() {
                maps.live += 1;
            }
        }
        None => {
            if maps.raw.remove(&key).is_some() {
                maps.live -= 1;
            }
        }
    }
}

/// Whether a record key is of a kind other than an offset commit (types 0 and 1).
fn is_raw_key(key: &[u8]) -> bool {
    key.get(..2)
        .is_some_and(|v| i16::from_be_bytes([v[0], v[1]]) >= 2)
}

/// Applies one replayed record. Records that do not decode are skipped with a warning:
/// one bad record must not cost every group its offsets.
fn replay_record(maps: &mut Maps, key: &[u8], value: Option<&[u8]>) {
    if is_raw_key(key) {
        apply_raw(maps, key.to_vec(), value.map(<[u8]>::to_vec));
        return;
    }
    match (
        OffsetKey::decode(key),
        value.map(Committed::decode).transpose(),
    ) {
        (Ok(key), Ok(value)) => apply(maps, &key.group, (key.topic, key.partition), value),
        _ => tracing::warn!("skipping an undecodable offsets record"),
    }
}

pub(crate) use crate::keyed_log::now_ms;

#[cfg(test)]
#[path = "offset_store_txn_tests.rs"]
mod txn_tests;

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
        for round in 0..(crate::keyed_log::GARBAGE_ALLOWANCE as i64 / 25 + 10) {
            let entries: Vec<_> = (0..100).map(|p| (tp("t", p), committed(round))).collect();
            store.write("g", &entries).expect("commit");
        }
        let generation = store.lock().log.generation();
        assert!(generation > 1, "fewer than two snapshots were written");
        let last = crate::keyed_log::GARBAGE_ALLOWANCE as i64 / 25 + 9;
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
        assert_eq!(store.lock().maps.live, 100);
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
            if store.lock().log.generation() != 0 {
                break;
            }
        }
        assert_eq!(
            store.lock().log.generation(),
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
