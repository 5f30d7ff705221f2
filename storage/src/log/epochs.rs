//! The log's leader epochs: the epoch it writes in, stamped into every batch appended,
//! and the cache of where each epoch starts (see [`crate::leader_epochs`]).

use super::Log;
use crate::error::{Result, StorageError};
use crate::leader_epochs::{EpochEntry, LeaderEpochs};

impl Log {
    /// Starts writing in a new leader epoch, as a broker does when it becomes the
    /// partition's leader: one past the newest epoch that wrote records here (so every
    /// restart after writes moves to a new epoch, and one without writes keeps it), or
    /// 0 for a log that has none. An epoch whose records a power loss took all of still
    /// counts: epochs never repeat, or a reader of the lost records could not tell the
    /// new ones at the same offsets apart. Returns the epoch.
    ///
    /// The epoch's entry is recorded with the first batch appended in it, so logs that
    /// stay idle write nothing.
    pub fn begin_leader_epoch(&mut self) -> i32 {
        let epoch = self
            .leader_epochs
            .latest()
            .map_or(0, |e| e.epoch.saturating_add(1));
        self.leader_epoch = epoch;
        epoch
    }

    /// The epoch this log writes in (-1 until [`Log::begin_leader_epoch`]).
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    /// Where `epoch` ends here: (the epoch found, its end offset), by Kafka's rules
    /// for OffsetForLeaderEpoch; (-1, -1) for an epoch newer than any or -1.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.leader_epochs
            .end_offset_for(epoch, self.leader_epoch, self.log_end_offset())
    }

    /// The epoch the record at `offset` was written in: the one written in now for the
    /// log end offset; `None` when no epoch is known for it (written before Fjord kept
    /// epochs).
    pub fn epoch_for_offset(&self, offset: u64) -> Option<i32> {
        if offset >= self.log_end_offset() && self.leader_epoch >= 0 {
            return Some(self.leader_epoch);
        }
        self.leader_epochs.epoch_for_offset(offset)
    }

    /// The epochs and their start offsets, oldest first.
    pub fn leader_epoch_entries(&self) -> Vec<EpochEntry> {
        self.leader_epochs.entries().to_vec()
    }

    /// Before an append at `first_offset`: the first batch of a new epoch records its
    /// start, durably, before any record of it is written.
    pub(super) fn note_epoch_start(&mut self, first_offset: u64) -> Result<()> {
        let mut next = self.leader_epochs.clone();
        if next.assign(self.leader_epoch, first_offset) {
            next.persist(self.flusher.io(), &self.dir)?;
            self.leader_epochs = next;
        }
        Ok(())
    }

    /// Applies a change to the cache and persists it if anything changed.
    pub(crate) fn change_epochs(
        &mut self,
        change: impl FnOnce(&mut LeaderEpochs) -> bool,
    ) -> Result<()> {
        let mut next = self.leader_epochs.clone();
        if change(&mut next) {
            next.persist(self.flusher.io(), &self.dir)?;
            self.leader_epochs = next;
        }
        Ok(())
    }

    /// The cache as the checkpoint holds it, fitted to the log after recovery: epochs
    /// past its end (lost to a power loss) or below its start go. A damaged checkpoint
    /// is rebuilt from the epochs stamped in the batches, so epochs never go back.
    /// The fitting is written with the next change.
    pub(super) fn load_epochs(&mut self) -> Result<()> {
        let loaded = match LeaderEpochs::load(&self.dir) {
            Ok(loaded) => loaded,
            Err(StorageError::Corrupt { reason, .. }) => {
                tracing::warn!(dir = %self.dir.display(), %reason, "leader-epoch checkpoint damaged; rebuilding it from the batches");
                self.epochs_from_batches()?
            }
            Err(e) => return Err(e),
        };
        self.leader_epochs = loaded;
        let (start, end) = (self.log_start_offset, self.log_end_offset());
        self.leader_epochs.fit_to_end(end);
        self.leader_epochs.truncate_from_start(start);
        Ok(())
    }

    fn epochs_from_batches(&self) -> Result<LeaderEpochs> {
        let mut rebuilt = LeaderEpochs::default();
        self.for_each_batch_header(self.log_start_offset, |h| {
            if let Ok(base) = u64::try_from(h.base_offset) {
                rebuilt.assign(h.partition_leader_epoch, base);
            }
        })?;
        Ok(rebuilt)
    }
}
