//! Cutting a log: `truncate_to` (the end), `delete_records_before` (the start,
//! DeleteRecords), restarting an emptied log at its durable start, and deleting
//! segments.

use super::files::write_log_start;
use super::hot::HotWindow;
use super::Log;
use crate::error::{Result, StorageError};
use crate::segment::{Segment, SegmentCtx};

impl Log {
    /// Removes everything from the batch holding `offset` on; afterwards the log ends at
    /// `offset`, or at the start of the batch holding it when `offset` falls inside one
    /// (batches are never split). Truncating to or below the first segment empties the
    /// log and restarts it at `offset`.
    ///
    /// Shortens segment files, so it refuses with [`StorageError::RegionsInUse`], before
    /// changing anything, while a [`FileRegion`](crate::FileRegion) read from a segment
    /// it would shorten is alive (a reader that maps regions would fault).
    pub fn truncate_to(&mut self, offset: u64) -> Result<()> {
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        // Segments from `offset` on are deleted (which keeps mapped pages valid) and the
        // one before is cut (which does not); at the first base, the first one is cut to
        // nothing. Check the one that is cut, before changing anything.
        let first_base = self.segments.keys().next().copied().unwrap_or(0);
        let cut = match offset.cmp(&first_base) {
            std::cmp::Ordering::Greater => self.segments.range(..offset).next_back(),
            std::cmp::Ordering::Equal => self.segments.iter().next(),
            std::cmp::Ordering::Less => None,
        };
        if let Some((base, segment)) = cut {
            if segment.has_readers() {
                return Err(StorageError::RegionsInUse { base_offset: *base });
            }
        }
        self.mark_dirty()?;
        if offset <= first_base {
            // Make the new empty segment before deleting anything, so a failure leaves a
            // usable log: below the first base it is a new file, at it the first one cut.
            let keep = if offset < first_base {
                let segment = Segment::create(self.ctx(), offset)?;
                self.segments.insert(offset, segment);
                offset
            } else {
                let ctx = SegmentCtx {
                    dir: &self.dir,
                    config: &self.config,
                    io: self.flusher.io(),
                };
                let first = self.segments.values_mut().next().expect("first segment");
                first.truncate_to(ctx, first_base)?;
                first_base
            };
            // The new start is durable before the old segments go: a crash between the
            // two must not reopen the log at a start it had given up.
            write_log_start(self.flusher.io(), &self.dir, offset)?;
            let others: Vec<u64> = self
                .segments
                .keys()
                .copied()
                .filter(|b| *b != keep)
                .collect();
            self.delete_segments(&others)?;
            self.log_start_offset = offset;
            self.hot = HotWindow::from_end(offset, self.active().1.size());
            return self.change_epochs(|c| c.clear());
        }
        // Newest first: a crash midway must not leave a later segment to become active.
        let doomed: Vec<u64> = self
            .segments
            .range(offset..)
            .rev()
            .map(|(b, _)| *b)
            .collect();
        self.delete_segments(&doomed)?;
        let (ctx, active) = self.active_mut();
        active.truncate_to(ctx, offset)?;
        self.hot = HotWindow::from_end(self.log_end_offset(), self.active().1.size());
        let start = self.log_start_offset.min(self.log_end_offset());
        if start != self.log_start_offset {
            self.log_start_offset = start;
            write_log_start(self.flusher.io(), &self.dir, start)?;
        }
        let end = self.log_end_offset();
        self.change_epochs(|c| c.truncate_from_end(end))
    }
    /// Kafka's DeleteRecords: makes `offset` the log start offset (persisted), deleting
    /// the segments wholly below it. Returns the new log start offset.
    pub fn delete_records_before(&mut self, offset: u64) -> Result<u64> {
        let end = self.log_end_offset();
        if offset > end {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: end,
            });
        }
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        self.mark_dirty()?;
        write_log_start(self.flusher.io(), &self.dir, offset)?;
        self.log_start_offset = offset;
        let bases: Vec<u64> = self.segments.keys().copied().collect();
        let doomed: Vec<u64> = bases
            .windows(2)
            .take_while(|w| w[1] <= offset)
            .map(|w| w[0])
            .collect();
        self.delete_segments(&doomed)?;
        self.change_epochs(|c| c.truncate_from_start(offset))?;
        Ok(offset)
    }
    /// Empties the log and starts it at `start`, past its end: a new empty segment there,
    /// the others deleted.
    pub(super) fn restart_at(&mut self, start: u64) -> Result<()> {
        tracing::warn!(dir = %self.dir.display(), start, end = self.log_end_offset(), "records below the log start offset were lost; restarting the log at it");
        self.mark_dirty()?;
        let segment = Segment::create(self.ctx(), start)?;
        self.flusher.io().sync_dir_at(&self.dir)?;
        let others: Vec<u64> = self.segments.keys().copied().collect();
        self.segments.insert(start, segment);
        self.delete_segments(&others)?;
        self.log_start_offset = start;
        self.hot = HotWindow::from_end(start, 0);
        self.change_epochs(|c| c.clear())
    }
    /// Removes segments (never the active one) from memory and disk.
    /// Deletes in the order given, then makes the deletions durable.
    pub(crate) fn delete_segments(&mut self, bases: &[u64]) -> Result<()> {
        for base in bases {
            if let Some(segment) = self.segments.remove(base) {
                segment.delete_files(self.flusher.io(), &self.dir)?;
            }
        }
        if bases.is_empty() {
            return Ok(());
        }
        let io = self.flusher.io().clone();
        self.forget_aborted_below_first_segment(&io)?;
        io.sync_dir_at(&self.dir)
    }
}
