//! The sparse time index: 12-byte entries (timestamp i64, offset relative to the segment
//! base as u32). Each entry says "up to the batch at this offset, no timestamp is larger
//! than this", so a lookup starts scanning at the last entry at or below its target.
//!
//! Entries are added beside offset-index entries, only when the largest timestamp seen
//! has grown, so timestamps strictly increase along the file.

use std::path::Path;

use crate::error::Result;
use crate::index_file::IndexFile;
use crate::io::Io;

/// Size of one entry.
pub(crate) const ENTRY_SIZE: usize = 12;

/// One decoded entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    /// Largest timestamp up to and including the batch at `relative_offset`.
    pub(crate) timestamp: i64,
    /// Base offset (minus segment base) of the batch holding that timestamp.
    pub(crate) relative_offset: u32,
}

fn decode(e: &[u8]) -> TimeEntry {
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&e[..8]);
    TimeEntry {
        timestamp: i64::from_be_bytes(ts),
        relative_offset: u32::from_be_bytes([e[8], e[9], e[10], e[11]]),
    }
}

/// A segment's time index.
#[derive(Debug)]
pub(crate) struct TimeIndex {
    file: IndexFile,
}

impl TimeIndex {
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

    pub(crate) fn get(&self, i: usize) -> TimeEntry {
        decode(self.file.entry(i))
    }

    pub(crate) fn last(&self) -> Option<TimeEntry> {
        self.len().checked_sub(1).map(|i| self.get(i))
    }

    /// The last entry with a timestamp at or below `timestamp`.
    pub(crate) fn lookup(&self, timestamp: i64) -> Option<TimeEntry> {
        self.file
            .floor(timestamp, |e| decode(e).timestamp)
            .map(|i| self.get(i))
    }

    /// Appends `(timestamp, relative_offset)` if it raises the largest timestamp indexed.
    pub(crate) fn maybe_push(&mut self, timestamp: i64, relative_offset: u32) {
        if self.last().is_some_and(|last| last.timestamp >= timestamp) {
            return;
        }
        let mut e = [0u8; ENTRY_SIZE];
        e[..8].copy_from_slice(&timestamp.to_be_bytes());
        e[8..].copy_from_slice(&relative_offset.to_be_bytes());
        self.file.push(&e);
    }

    pub(crate) fn seal(&mut self) -> Result<()> {
        self.file.seal()
    }

    pub(crate) fn flush(&self) -> Result<()> {
        self.file.flush()
    }
}
