//! The broker side of transaction markers: a control batch appended to a partition's
//! log under its write lock, recorded in the partition's producer state (which ends the
//! producer's transaction there and moves the last stable offset), for an ABORT an entry
//! in the aborted-transaction index, and waited for like an acks=all write.

use fjord_protocol::record_batch::{end_txn_batch, BatchHeader, EndTxnMarker};
use fjord_storage::AbortedTxn;

use super::coordinator::{MarkerError, MarkerWriter};
use crate::keyed_log::now_ms;
use crate::state::Broker;

/// The coordinator epoch a single-node broker writes into markers.
pub(crate) const COORDINATOR_EPOCH: i32 = 0;

/// One marker to append to a partition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Marker {
    /// The producer whose transaction it ends.
    pub producer_id: i64,
    /// Its epoch.
    pub epoch: i16,
    /// COMMIT, or ABORT.
    pub commit: bool,
    /// The epoch of the coordinator that decided (Fjord's own is always 0).
    pub coordinator_epoch: i32,
    /// Refuse it if its epoch is older than the producer's here: an administrator's
    /// WriteTxnMarkers (KIP-664) must not end a newer producer's transaction. The
    /// coordinator's own markers are not refused: it is the authority, and a refusal
    /// would leave its decision unfinished.
    pub refuse_stale: bool,
}

/// Why a marker of an administrator was not written.
#[derive(Debug)]
pub(crate) enum AdminMarkerError {
    /// See [`MarkerError`].
    Marker(MarkerError),
    /// The producer has a newer epoch here (INVALID_PRODUCER_EPOCH).
    StaleEpoch,
}

impl MarkerWriter for Broker {
    fn write_marker(
        &self,
        topic: &str,
        partition: i32,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), MarkerError> {
        let marker = Marker {
            producer_id,
            epoch,
            commit,
            coordinator_epoch: COORDINATOR_EPOCH,
            refuse_stale: false,
        };
        self.append_marker(topic, partition, marker)
            .map_err(|e| match e {
                AdminMarkerError::Marker(e) => e,
                AdminMarkerError::StaleEpoch => MarkerError::Failed("stale epoch".into()),
            })
    }
}

impl Broker {
    /// Appends `marker` to `topic`-`partition` (or, for `__consumer_offsets`, ends the
    /// transaction's offsets) and waits until it is as durable as the partition's
    /// writes.
    pub(crate) fn append_marker(
        &self,
        topic: &str,
        partition: i32,
        marker: Marker,
    ) -> Result<(), AdminMarkerError> {
        let failed = |e: &dyn std::fmt::Display| {
            AdminMarkerError::Marker(MarkerError::Failed(e.to_string()))
        };
        if topic == crate::handler::OFFSETS_TOPIC {
            // Committed offsets live in the offsets store, which ends the transaction's
            // offsets behind a marker of its own.
            let durable = self
                .groups
                .offsets
                .end_transaction(marker.producer_id, marker.epoch, marker.commit)
                .map_err(|e| failed(&e))?;
            if let Some(ticket) = durable {
                crate::keyed_log::wait_durable(ticket).map_err(|e| failed(&e))?;
            }
            return Ok(());
        }
        let partition = self
            .topic(topic)
            .and_then(|t| t.partition(partition).cloned())
            .ok_or(AdminMarkerError::Marker(MarkerError::Gone))?;
        let end = EndTxnMarker {
            commit: marker.commit,
            coordinator_epoch: marker.coordinator_epoch,
        };
        let batch = end_txn_batch(marker.producer_id, marker.epoch, end, now_ms())
            .map_err(|e| failed(&e))?;
        let header = BatchHeader::parse(&batch).map_err(|e| failed(&e))?;
        let durable = {
            let mut log = partition.write();
            if partition.is_offline() {
                return Err(failed(&"partition offline"));
            }
            let mut producers = partition
                .producers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let current = producers.epoch(marker.producer_id);
            if marker.refuse_stale && current.is_some_and(|e| marker.epoch < e) {
                return Err(AdminMarkerError::StaleEpoch);
            }
            let first = producers.txn_start(marker.producer_id);
            let info = match (marker.commit, first) {
                (false, Some(first_offset)) => {
                    let (start, pid) = (log.log_start_offset(), marker.producer_id);
                    let entry = |at: u64| AbortedTxn {
                        producer_id: pid,
                        first_offset,
                        last_offset: at,
                        last_stable_offset: producers.last_stable_offset_after(pid, start, at + 1),
                    };
                    // The entry is durable before the marker; a failure may leave it
                    // on disk without one, which only a reopen drops: the partition
                    // goes offline, as for a failed fsync.
                    log.append_abort_marker(&batch, entry).map_err(|e| {
                        partition.mark_offline(&e);
                        failed(&e)
                    })?
                }
                _ => log.append(&batch).map_err(|e| failed(&e))?,
            };
            producers.record(&header, info.first_offset);
            info.durable
        };
        self.notify_appended();
        if let Some(ticket) = durable {
            if let Err(e) = crate::keyed_log::wait_durable(ticket) {
                partition.mark_offline(&e);
                return Err(failed(&e));
            }
        }
        Ok(())
    }
}
