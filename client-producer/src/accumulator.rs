//! The record accumulator: per partition, the batch being filled and the closed batches
//! waiting for (or coming back from) the network, in order.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use bytes::Bytes;

use crate::batch_writer::BatchWriter;
use crate::delivery::Completion;

/// A batch still taking records.
#[derive(Debug)]
pub(crate) struct OpenBatch {
    pub(crate) writer: BatchWriter,
    pub(crate) completion: Arc<Completion>,
    pub(crate) created: Instant,
    /// Bytes of `buffer.memory` this batch holds.
    pub(crate) reserved: usize,
}

/// A batch that takes no more records: waiting to be sent, or back for a retry.
#[derive(Debug)]
pub(crate) struct ClosedBatch {
    /// The records, until the batch is sealed into wire bytes.
    pub(crate) writer: Option<BatchWriter>,
    /// The wire bytes once sealed (kept for retries: same sequence, same bytes).
    pub(crate) bytes: Option<Bytes>,
    pub(crate) completion: Arc<Completion>,
    pub(crate) created: Instant,
    pub(crate) reserved: usize,
    pub(crate) records: i32,
    /// (producer id, epoch, base sequence) the bytes were sealed with.
    pub(crate) sequence: Option<(i64, i16, i32)>,
    pub(crate) attempts: u32,
    pub(crate) retry_at: Option<Instant>,
    pub(crate) last_error: Option<String>,
}

impl ClosedBatch {
    pub(crate) fn from_open(open: OpenBatch) -> Self {
        Self {
            records: open.writer.count(),
            writer: Some(open.writer),
            bytes: None,
            completion: open.completion,
            created: open.created,
            reserved: open.reserved,
            sequence: None,
            attempts: 0,
            retry_at: None,
            last_error: None,
        }
    }

    /// Bytes on the wire (an estimate before sealing).
    pub(crate) fn size(&self) -> usize {
        self.bytes.as_ref().map_or_else(
            || self.writer.as_ref().map_or(0, BatchWriter::len),
            Bytes::len,
        )
    }
}

/// One partition's queue.
#[derive(Debug, Default)]
pub(crate) struct PartitionQueue {
    pub(crate) open: Option<OpenBatch>,
    pub(crate) ready: VecDeque<ClosedBatch>,
    /// Completions of batches on the wire.
    pub(crate) in_flight: Vec<Arc<Completion>>,
    /// Next base sequence, for `seq_producer`'s id and epoch.
    pub(crate) next_sequence: i32,
    /// Size of the last batch this partition closed: the next one starts with about that
    /// much room (see `batch_room`), so a busy partition does not regrow its buffer every
    /// batch and an idle one does not hold `batch.size` it never fills.
    pub(crate) last_batch_bytes: usize,
    pub(crate) seq_producer: (i64, i16),
}

impl PartitionQueue {
    /// Closes the open batch (if any) and returns it.
    pub(crate) fn close_open(&mut self) -> Option<ClosedBatch> {
        let open = self.open.take()?;
        self.last_batch_bytes = open.writer.len();
        Some(ClosedBatch::from_open(open))
    }

    /// Puts a batch back for a retry, before any batch with a higher sequence (so
    /// idempotent retries go out in order).
    pub(crate) fn requeue(&mut self, batch: ClosedBatch) {
        let seq = batch.sequence.map(|(_, _, s)| s);
        let at = match seq {
            None => 0,
            Some(s) => self
                .ready
                .iter()
                .position(|b| b.sequence.is_none_or(|(_, _, other)| other > s))
                .unwrap_or(self.ready.len()),
        };
        self.ready.insert(at, batch);
    }
}

/// One partition: its leader and its queue.
#[derive(Debug)]
pub(crate) struct PartitionState {
    pub(crate) index: i32,
    /// The leader's node id (-1 when unknown).
    pub(crate) leader: AtomicI32,
    queue: Mutex<PartitionQueue>,
}

impl PartitionState {
    pub(crate) fn new(index: i32, leader: i32) -> Self {
        Self {
            index,
            leader: AtomicI32::new(leader),
            queue: Mutex::new(PartitionQueue::default()),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, PartitionQueue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn leader(&self) -> i32 {
        self.leader.load(Ordering::Acquire)
    }
}

/// One topic's partitions (replaced by a longer list when partitions are added).
#[derive(Debug)]
pub(crate) struct TopicState {
    pub(crate) name: Arc<str>,
    pub(crate) partitions: Vec<Arc<PartitionState>>,
}

/// `buffer.memory`: bytes of records accepted but not yet acknowledged.
#[derive(Debug)]
pub(crate) struct Memory {
    pub(crate) limit: usize,
    used: AtomicUsize,
    pub(crate) freed: tokio::sync::Notify,
}

impl Memory {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
            freed: tokio::sync::Notify::new(),
        }
    }

    /// Takes `n` bytes if they fit.
    pub(crate) fn try_reserve(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + n <= self.limit || used == 0).then_some(used + n)
            })
            .is_ok()
    }

    pub(crate) fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
        self.freed.notify_waiters();
    }

    /// Bytes held now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}
