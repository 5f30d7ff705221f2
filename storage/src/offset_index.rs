//! The sparse offset index: 8-byte entries (offset relative to the segment base as u32,
//! byte position in the `.log` as u32), one per `index.interval.bytes` of log.
//!
//! An entry points at the start of the batch whose base offset it holds. The first batch
//! of a segment is never indexed (position 0 is implied), so every real entry has a
//! non-zero offset and position; a zeroed entry marks the end of a preallocated file.

use std::path::Path;

use crate::error::Result;
use crate::index_file::IndexFile;
use crate::io::Io;

/// Size of one entry.
pub(crate) const ENTRY_SIZE: usize = 8;

/// One decoded entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    /// Base offset of the batch minus the segment base.
    pub(crate) relative_offset: u32,
    /// Position of the batch in the `.log` file.
    pub(crate) position: u32,
}

fn decode(e: &[u8]) -> OffsetEntry {
    OffsetEntry {
        relative_offset: u32::from_be_bytes([e[0], e[1], e[2], e[3]]),
        position: u32::from_be_bytes([e[4], e[5], e[6], e[7]]),
    }
}

/// A segment's offset index.
#[derive(Debug)]
pub(crate) struct OffsetIndex {
    file: IndexFile,
}

impl OffsetIndex {
    pub(crate) fn open_writable(io: &Io, path: &Path, len: usize, capacity: usize) -> Result<Self> {
        Ok(Self {
            file: IndexFile::open_writable(io, path, ENTRY_SIZE, len, capacity)?,
        })
    }

    pub(crate) fn open_read_only(io: &Io, path: &Path) -> Result<Self> {
        Ok(Self {
            file: IndexFile::open_read_only(io, path, ENTRY_SIZE)?,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.file.len()
    }

    pub(crate) fn get(&self, i: usize) -> OffsetEntry {
        decode(self.file.entry(i))
    }

    /// The last entry whose batch starts at or before `relative_offset`.
    pub(crate) fn lookup(&self, relative_offset: u32) -> Option<OffsetEntry> {
        self.file
            .floor(i64::from(relative_offset), |e| {
                i64::from(decode(e).relative_offset)
            })
            .map(|i| self.get(i))
    }

    /// [`OffsetIndex::lookup`], plus the position of the entry after it: the batch holding
    /// the offset starts before that position, which bounds the header walk.
    pub(crate) fn lookup_bounded(
        &self,
        relative_offset: u32,
    ) -> (Option<OffsetEntry>, Option<u32>) {
        let i = self.file.floor(i64::from(relative_offset), |e| {
            i64::from(decode(e).relative_offset)
        });
        let next = i.map_or(0, |i| i + 1);
        let next_position = (next < self.len()).then(|| self.get(next).position);
        (i.map(|i| self.get(i)), next_position)
    }

    /// The last entry whose batch starts at or before byte `position`.
    pub(crate) fn lookup_position(&self, position: u32) -> Option<OffsetEntry> {
        self.file
            .floor(i64::from(position), |e| i64::from(decode(e).position))
            .map(|i| self.get(i))
    }

    pub(crate) fn push(&mut self, relative_offset: u32, position: u32) {
        let mut e = [0u8; ENTRY_SIZE];
        e[..4].copy_from_slice(&relative_offset.to_be_bytes());
        e[4..].copy_from_slice(&position.to_be_bytes());
        self.file.push(&e);
    }

    pub(crate) fn seal(&mut self) -> Result<()> {
        self.file.seal()
    }

    pub(crate) fn flush(&self) -> Result<()> {
        self.file.flush()
    }
}
