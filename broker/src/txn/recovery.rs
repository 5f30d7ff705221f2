//! At startup: where each transaction the coordinator still has open began in each of
//! its partitions. The producer state rebuilt from the active segment only sees a
//! transaction that began there; one that began in an older segment would otherwise
//! get too late a start, so the last stable offset would pass records still undecided
//! and an abort would not cover them all.

use fjord_protocol::record_batch::BatchHeader;

use super::state::TxnState;
use crate::state::Broker;

/// The first offset of `producer_id`'s transaction still open at the end of the
/// headers `visit` is fed (the first transactional batch after its last marker).
#[derive(Debug, Default)]
struct OpenStart {
    producer_id: i64,
    start: Option<u64>,
}

impl OpenStart {
    fn visit(&mut self, h: &BatchHeader) {
        if h.producer_id != self.producer_id {
            return;
        }
        if h.is_control() {
            self.start = None;
        } else if h.is_transactional() && self.start.is_none() {
            self.start = u64::try_from(h.base_offset).ok();
        }
    }
}

/// Restores the start of every transaction open (or prepared, its markers still to be
/// written) in the coordinator, scanning its partitions' batch headers from the log
/// start. Only partitions of such transactions are read; a partition that cannot be
/// read keeps what the active segment showed, with a warning.
pub fn restore_open_transactions(broker: &Broker) -> usize {
    let mut restored = 0;
    for (id, meta) in broker.txn.list() {
        let open = matches!(
            meta.state,
            TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort
        );
        if !open {
            continue;
        }
        for (topic, partitions) in &meta.partitions {
            for &index in partitions {
                let Some(partition) = broker
                    .topic(topic)
                    .and_then(|t| t.partition(index).cloned())
                else {
                    continue;
                };
                let log = partition.read();
                let mut scan = OpenStart {
                    producer_id: meta.producer_id,
                    start: None,
                };
                if let Err(e) = log.for_each_batch_header(log.log_start_offset(), |h| scan.visit(h))
                {
                    tracing::warn!(transactional_id = %id, topic, partition = index, error = %e, "scanning for an open transaction failed");
                    continue;
                }
                if let Some(start) = scan.start {
                    partition
                        .producers
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .restore_txn_start(meta.producer_id, start);
                    restored += 1;
                }
            }
        }
    }
    restored
}
