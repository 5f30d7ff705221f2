//! The hot window: which recently appended bytes of the active segment a fetch may
//! read without ever blocking (`Log::read_hot`).

/// How far back from the end reads count as hot: between this and twice this many bytes
/// of the active segment, all appended by this process moments ago, so their pages (and
/// the index entries and batch headers a read looks up) are in memory.
const HOT_BYTES: u64 = 32 << 20;

/// The start of the recently appended bytes of the active segment: `floor` is the
/// first hot offset; `mark` (at byte `mark_position`) becomes the floor once
/// [`HOT_BYTES`] more have been appended after it.
#[derive(Debug, Clone, Copy)]
pub(super) struct HotWindow {
    pub(super) floor: u64,
    mark: u64,
    mark_position: u64,
}

impl HotWindow {
    /// Nothing hot yet: only what is appended from `end` (at byte `position`) on.
    pub(super) fn from_end(end: u64, position: u64) -> Self {
        Self {
            floor: end,
            mark: end,
            mark_position: position,
        }
    }

    /// An append of the batches from `first_offset`, written at byte `position`.
    pub(super) fn appended(&mut self, first_offset: u64, position: u64) {
        if position.saturating_sub(self.mark_position) >= HOT_BYTES {
            self.floor = self.mark;
            self.mark = first_offset;
            self.mark_position = position;
        }
    }
}
