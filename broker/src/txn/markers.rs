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

impl MarkerWriter for Broker {
    fn write_marker(
        &self,
        topic: &str,
        partition: i32,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), MarkerError> {
        if topic == crate::handler::OFFSETS_TOPIC {
            // Committed offsets live in the offsets store, which ends the transaction's
            // offsets behind a marker of its own.
            let durable = self
                .groups
                .offsets
                .end_transaction(producer_id, epoch, commit)
                .map_err(|e| MarkerError::Failed(e.to_string()))?;
            if let Some(ticket) = durable {
                crate::keyed_log::wait_durable(ticket)
                    .map_err(|e| MarkerError::Failed(e.to_string()))?;
            }
            return Ok(());
        }
        let partition = self
            .topic(topic)
            .and_then(|t| t.partition(partition).cloned())
            .ok_or(MarkerError::Gone)?;
        let marker = EndTxnMarker {
            commit,
            coordinator_epoch: COORDINATOR_EPOCH,
        };
        let batch = end_txn_batch(producer_id, epoch, marker, now_ms())
            .map_err(|e| MarkerError::Failed(e.to_string()))?;
        let header = BatchHeader::parse(&batch).map_err(|e| MarkerError::Failed(e.to_string()))?;
        let durable = {
            let mut log = partition.write();
            if partition.is_offline() {
                return Err(MarkerError::Failed("partition offline".into()));
            }
            let mut producers = partition
                .producers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let first = producers.txn_start(producer_id);
            let info = log
                .append(&batch)
                .map_err(|e| MarkerError::Failed(e.to_string()))?;
            producers.record(&header, info.first_offset);
            if let (false, Some(first_offset)) = (commit, first) {
                let entry = AbortedTxn {
                    producer_id,
                    first_offset,
                    last_offset: info.first_offset,
                    last_stable_offset: producers.last_stable_offset(log.log_end_offset()),
                };
                // A marker without its index entry would let read_committed consumers
                // see the aborted records: the partition goes offline, as for a failed
                // fsync.
                if let Err(e) = log.record_aborted(entry) {
                    partition.mark_offline(&e);
                    return Err(MarkerError::Failed(e.to_string()));
                }
            }
            info.durable
        };
        self.notify_appended();
        if let Some(ticket) = durable {
            if let Err(e) = crate::keyed_log::wait_durable(ticket) {
                partition.mark_offline(&e);
                return Err(MarkerError::Failed(e.to_string()));
            }
        }
        Ok(())
    }
}
