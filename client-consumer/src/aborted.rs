//! read_committed: which batches of a fetched record set belong to aborted
//! transactions, from the fetch response's aborted list (producer id, first offset), as
//! Kafka's consumer decides it: a producer's transactional batches are dropped from its
//! aborted transaction's first offset until its next control batch (the ABORT marker).

use std::collections::HashSet;

use fjord_protocol::record_batch::BatchHeader;

/// The aborted transactions of one partition's record set, consumed batch by batch.
#[derive(Debug, Default)]
pub(crate) struct AbortedFilter {
    /// Not yet reached, by first offset, highest first (popped from the end).
    pending: Vec<(i64, i64)>,
    /// Producers whose aborted transaction is under way at the current batch.
    active: HashSet<i64>,
}

impl AbortedFilter {
    /// A filter over `aborted` as (producer id, first offset), in any order.
    pub(crate) fn new(mut aborted: Vec<(i64, i64)>) -> Self {
        aborted.sort_unstable_by_key(|a| std::cmp::Reverse(a.1));
        Self {
            pending: aborted,
            active: HashSet::new(),
        }
    }

    /// Whether the batch with `header` is to be dropped. Control batches are never
    /// delivered; each ends its producer's aborted transaction.
    pub(crate) fn drops(&mut self, header: &BatchHeader) -> bool {
        while let Some(&(producer, first)) = self.pending.last() {
            if first > header.last_offset() {
                break;
            }
            self.active.insert(producer);
            self.pending.pop();
        }
        if header.is_control() {
            self.active.remove(&header.producer_id);
            return true;
        }
        header.is_transactional() && self.active.contains(&header.producer_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_protocol::compression::Compression;
    use fjord_protocol::record_batch::{end_txn_batch, BatchBuilder, EndTxnMarker, RecordSpec};

    fn at(mut batch: Vec<u8>, offset: i64) -> BatchHeader {
        BatchHeader::write_base_offset(&mut batch, offset);
        BatchHeader::parse(&batch).expect("header")
    }

    fn data(pid: i64, transactional: bool, offset: i64) -> BatchHeader {
        let mut b = BatchBuilder::new(Compression::None, 0).with_producer(pid, 0, 0);
        if transactional {
            b = b.transactional();
        }
        b.push(RecordSpec::value("v"));
        at(b.build().expect("batch"), offset)
    }

    fn marker(pid: i64, commit: bool, offset: i64) -> BatchHeader {
        let m = EndTxnMarker {
            commit,
            coordinator_epoch: 0,
        };
        at(end_txn_batch(pid, 0, m, 0).expect("marker"), offset)
    }

    #[test]
    fn only_the_aborted_transactions_batches_are_dropped() {
        // Producer 1 commits [0, 2), producer 2 aborts [1, 4), producer 1's second
        // transaction [5, 7) is aborted, producer 3 is not transactional.
        let log = [
            (data(1, true, 0), false),
            (data(2, true, 1), true),
            (marker(1, true, 2), true),
            (data(3, false, 3), false),
            (marker(2, false, 4), true),
            (data(1, true, 5), true),
            (data(2, true, 6), false),
            (marker(1, false, 7), true),
            (data(2, true, 8), false),
        ];
        let mut f = AbortedFilter::new(vec![(1, 5), (2, 1)]);
        for (i, (h, dropped)) in log.iter().enumerate() {
            assert_eq!(f.drops(h), *dropped, "batch {i}");
        }
    }
}
