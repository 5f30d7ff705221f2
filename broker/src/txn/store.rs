//! The transaction coordinator's durable state: every transactional id's metadata, as
//! records in Kafka's `__transaction_state` layout ([`super::log_records`]) in a
//! [`KeyedLog`] under `<log.dir>/fjord-transactions/`, replayed at startup.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use fjord_storage::Flusher;

use super::log_records::{decode_key, encode_key, TxnMetadata};
use crate::keyed_log::{KeyedLog, StoreError};

/// Value schema version written: 0, as Kafka writes for clients on transaction
/// version 1 (KIP-890 part 2's epoch bump per transaction is not served).
const VALUE_VERSION: i16 = 0;

/// Every transactional id's metadata, in memory and on disk.
#[derive(Debug)]
pub struct TxnStore {
    log: KeyedLog,
    ids: BTreeMap<String, TxnMetadata>,
    /// Producer id to transactional id, for checking transactional produce.
    by_producer: HashMap<i64, String>,
}

impl TxnStore {
    /// Opens (or creates) the store under `log_dir` and replays it. Records that do not
    /// decode are skipped with a warning.
    pub fn open(log_dir: &Path, flusher: Flusher, fsync: bool) -> Result<Self, StoreError> {
        let mut ids = BTreeMap::new();
        let log = KeyedLog::open(
            log_dir.join("fjord-transactions"),
            flusher,
            fsync,
            |key, value| {
                let Ok(id) = decode_key(key) else {
                    tracing::warn!("skipping an undecodable transaction log key");
                    return;
                };
                match value.map(TxnMetadata::decode) {
                    None => {
                        ids.remove(&id);
                    }
                    Some(Ok(meta)) => {
                        ids.insert(id, meta);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(%id, error = %e, "skipping a transaction record")
                    }
                }
            },
        )?;
        let by_producer = ids
            .iter()
            .map(|(id, m)| (m.producer_id, id.clone()))
            .collect();
        Ok(Self {
            log,
            ids,
            by_producer,
        })
    }

    /// The metadata of `id`.
    pub fn get(&self, id: &str) -> Option<&TxnMetadata> {
        self.ids.get(id)
    }

    /// The transactional id using `producer_id`.
    pub fn id_of_producer(&self, producer_id: i64) -> Option<&str> {
        self.by_producer.get(&producer_id).map(String::as_str)
    }

    /// Every transactional id with its metadata.
    pub fn all(&self) -> impl Iterator<Item = (&String, &TxnMetadata)> {
        self.ids.iter()
    }

    /// Writes `meta` as the new state of `id`, waits for the disk when the store
    /// fsyncs, then takes it as current. Nothing changes in memory if the write fails.
    pub fn put(&mut self, id: &str, meta: TxnMetadata) -> Result<(), StoreError> {
        let record = (encode_key(id), Some(meta.encode(VALUE_VERSION)));
        self.write(&[record])?;
        if let Some(old) = self.ids.insert(id.to_string(), meta) {
            if self.ids[id].producer_id != old.producer_id {
                self.by_producer.remove(&old.producer_id);
            }
        }
        self.by_producer
            .insert(self.ids[id].producer_id, id.to_string());
        self.maybe_snapshot();
        Ok(())
    }

    /// Removes `id` (a tombstone: its transactional id expired).
    pub fn remove(&mut self, id: &str) -> Result<(), StoreError> {
        self.write(&[(encode_key(id), None)])?;
        if let Some(old) = self.ids.remove(id) {
            self.by_producer.remove(&old.producer_id);
        }
        self.maybe_snapshot();
        Ok(())
    }

    fn write(&mut self, records: &[crate::keyed_log::KeyedRecord]) -> Result<(), StoreError> {
        if let Some(ticket) = self.log.append(records)? {
            crate::keyed_log::wait_durable(ticket)?;
        }
        Ok(())
    }

    /// Whether writes wait for the disk from now on.
    pub fn set_fsync(&mut self, fsync: bool) -> Result<(), StoreError> {
        self.log.set_fsync(fsync)
    }

    /// Makes everything durable and closes the log (clean shutdown).
    pub fn close(&mut self) -> Result<(), StoreError> {
        self.log.close()
    }

    fn maybe_snapshot(&mut self) {
        let live = self.ids.len() as u64;
        if !self.log.snapshot_due(live) {
            return;
        }
        let entries: Vec<(Vec<u8>, Vec<u8>)> = self
            .ids
            .iter()
            .map(|(id, m)| (encode_key(id), m.encode(VALUE_VERSION)))
            .collect();
        // The write is done; a failed snapshot only postpones compaction.
        if let Err(e) = self.log.snapshot(live, &entries) {
            tracing::error!(error = %e, "transaction log snapshot failed; will retry");
        }
    }

    /// The generation of the store's log (tests watch snapshots with it).
    #[cfg(test)]
    pub fn generation(&self) -> u64 {
        self.log.generation()
    }
}
