//! A memory-mapped file of fixed-size, big-endian entries: the shared body of the offset
//! and time indexes.
//!
//! An index of the active segment is preallocated to `segment.index.bytes` and mapped
//! read-write; entries past `len` are zero. Sealing (at a segment roll) trims the file to
//! its entries and maps it read-only. A clean shutdown does not trim the active index: the
//! clean-shutdown marker records its entry count instead. The file descriptor is closed right after mapping: an open index costs a
//! mapping, not a descriptor.
//!
//! This module holds the crate's only `unsafe`: creating the mappings.
#![allow(unsafe_code)]

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use crate::io::{Io, OpenMode};

use memmap2::{Advice, Mmap, MmapMut};

use crate::error::{IoContext, Result};

/// The tail of an index that lookups try first (Kafka's "warm section": 8 KiB, two
/// pages, enough for the entries of the last few MiB of a segment).
const WARM_BYTES: usize = 8192;

#[derive(Debug)]
enum Map {
    /// No entries and nothing mapped (empty sealed index).
    Empty,
    ReadOnly(Mmap),
    Writable(MmapMut),
}

/// One mapped index file.
#[derive(Debug)]
pub(crate) struct IndexFile {
    io: Io,
    path: PathBuf,
    entry_size: usize,
    len: usize,
    capacity: usize,
    map: Map,
}

impl IndexFile {
    /// Opens (creating if needed) a writable index whose first `len` entries are valid,
    /// preallocated to `capacity` entries. Whatever the file held past `len` is discarded
    /// by cutting the file there and extending it again: the kernel supplies zero pages,
    /// so preallocation touches no memory and writes nothing.
    pub(crate) fn open_writable(
        io: &Io,
        path: &Path,
        entry_size: usize,
        len: usize,
        capacity: usize,
    ) -> Result<Self> {
        let file = io
            .open(path, OpenMode::ReadWrite)
            .io_context("open index", path)?;
        let capacity = capacity.max(len).max(1);
        io.set_len(path, &file, (len * entry_size) as u64)
            .io_context("trim index", path)?;
        io.set_len(path, &file, (capacity * entry_size) as u64)
            .io_context("preallocate index", path)?;
        // SAFETY: the mapping covers exactly the file's length, set just above. The file is
        // private to this log directory and only this process writes it while the log is
        // open; entries are decoded from bytes with bounds checks, so even an outside writer
        // could produce wrong entries but not undefined behaviour in safe code reading them.
        let map = unsafe { MmapMut::map_mut(&file) }.io_context("map index", path)?;
        // Appends touch one new page at a time; readahead on a fault would fill megabytes
        // of page cache from the preallocated hole (measured: 3.7 ms on a segment's first
        // index entry, and 6% of append time).
        map.advise(Advice::Random)
            .io_context("advise index", path)?;
        Ok(Self {
            io: io.clone(),
            path: path.to_path_buf(),
            entry_size,
            len,
            capacity,
            map: Map::Writable(map),
        })
    }

    /// Opens a sealed index read-only; every whole entry in the file counts as an entry.
    /// A missing file is an error the caller turns into a rebuild.
    pub(crate) fn open_read_only(io: &Io, path: &Path, entry_size: usize) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .open(path)
            .io_context("open index", path)?;
        let file_len = file.metadata().io_context("stat index", path)?.len();
        let len = usize::try_from(file_len).unwrap_or(usize::MAX) / entry_size;
        let map = if len == 0 {
            Map::Empty
        } else {
            // SAFETY: read-only mapping of a file only this process writes; a sealed index
            // is never written again (a truncation reopens it writable first). Bounds are
            // checked on every access.
            let map = unsafe { Mmap::map(&file) }.io_context("map index", path)?;
            // Binary search jumps around: no readahead.
            map.advise(Advice::Random)
                .io_context("advise index", path)?;
            Map::ReadOnly(map)
        };
        Ok(Self {
            io: io.clone(),
            path: path.to_path_buf(),
            entry_size,
            len,
            capacity: len,
            map,
        })
    }

    fn bytes(&self) -> &[u8] {
        match &self.map {
            Map::Empty => &[],
            Map::ReadOnly(m) => m,
            Map::Writable(m) => m,
        }
    }

    /// Number of valid entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the index is mapped for appends.
    pub(crate) fn is_writable(&self) -> bool {
        matches!(self.map, Map::Writable(_))
    }

    /// The raw bytes of entry `i`; `i` must be below [`IndexFile::len`].
    pub(crate) fn entry(&self, i: usize) -> &[u8] {
        let at = i * self.entry_size;
        &self.bytes()[at..at + self.entry_size]
    }

    /// Largest `i` in `0..len` with `key(entry(i)) <= target`, by binary search. Keys
    /// must not decrease with `i`. Targets in the last [`WARM_BYTES`] of entries, the
    /// ones readers at the tail look up, are searched there alone, so their lookups touch
    /// only the pages appends keep in memory (as Kafka's indexes do).
    pub(crate) fn floor(&self, target: i64, key: impl Fn(&[u8]) -> i64) -> Option<usize> {
        let (lo, hi) = match self.len - (WARM_BYTES / self.entry_size).min(self.len) {
            0 => (0, self.len),
            warm if key(self.entry(warm)) <= target => (warm, self.len),
            warm => (0, warm),
        };
        self.floor_in(lo, hi, target, &key)
    }

    /// Largest `i` in `lo..hi` with `key(entry(i)) <= target`, or `lo - 1` if none is
    /// (`None` when `lo` is 0).
    fn floor_in(
        &self,
        mut lo: usize,
        mut hi: usize,
        target: i64,
        key: impl Fn(&[u8]) -> i64,
    ) -> Option<usize> {
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if key(self.entry(mid)) <= target {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1)
    }

    /// Appends one entry. The caller checks [`IndexFile::is_full`] and writability first;
    /// a full or read-only index ignores the call (an index is an accelerator: a missing
    /// entry costs a longer scan, never a wrong answer).
    pub(crate) fn push(&mut self, entry: &[u8]) {
        debug_assert_eq!(entry.len(), self.entry_size);
        if self.len >= self.capacity {
            return;
        }
        if let Map::Writable(map) = &mut self.map {
            let at = self.len * self.entry_size;
            map[at..at + self.entry_size].copy_from_slice(entry);
            self.len += 1;
        }
    }

    /// Writes dirty pages back (for a writable map).
    pub(crate) fn flush(&self) -> Result<()> {
        if let Map::Writable(map) = &self.map {
            self.io
                .sync_map(&self.path, map)
                .io_context("flush index", &self.path)?;
        }
        Ok(())
    }

    /// Trims the file to its entries and remaps it read-only (a segment roll), so the next
    /// open can take the file length as the entry count.
    pub(crate) fn seal(&mut self) -> Result<()> {
        if !self.is_writable() {
            return Ok(());
        }
        let result = self.trim_and_remap();
        if result.is_err() {
            // The mapping is gone; an index with no entries is still correct (lookups
            // scan from the segment start) and recovery rebuilds it at the next open.
            self.map = Map::Empty;
            self.len = 0;
            self.capacity = 0;
        }
        result
    }

    fn trim_and_remap(&mut self) -> Result<()> {
        let len = self.len;
        self.map = Map::Empty;
        let file = self
            .io
            .open(&self.path, OpenMode::WriteExisting)
            .io_context("open index", &self.path)?;
        self.io
            .set_len(&self.path, &file, (len * self.entry_size) as u64)
            .io_context("trim index", &self.path)?;
        *self = Self::open_read_only(&self.io, &self.path, self.entry_size)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(e: &[u8]) -> i64 {
        i64::from(u32::from_be_bytes([e[0], e[1], e[2], e[3]]))
    }

    #[test]
    fn append_floor_seal_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.index");
        let mut idx = IndexFile::open_writable(&Io::real(), &path, 8, 0, 4).expect("open");
        for k in [10u32, 20, 30] {
            let mut e = [0u8; 8];
            e[..4].copy_from_slice(&k.to_be_bytes());
            idx.push(&e);
        }
        assert_eq!(idx.floor(5, key), None);
        assert_eq!(idx.floor(10, key), Some(0));
        assert_eq!(idx.floor(29, key), Some(1));
        assert_eq!(idx.floor(1000, key), Some(2));
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), 32);
        idx.seal().expect("seal");
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), 24);
        let ro = IndexFile::open_read_only(&Io::real(), &path, 8).expect("reopen");
        assert_eq!(ro.len(), 3);
        assert_eq!(ro.floor(25, key), Some(1));
    }

    #[test]
    fn floor_finds_the_same_entry_in_and_outside_the_warm_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.index");
        // 3,000 entries of 8 bytes: the last 1,024 (8 KiB) are the warm tail.
        let mut idx = IndexFile::open_writable(&Io::real(), &path, 8, 0, 4096).expect("open");
        let keys: Vec<u32> = (0..3000u32).map(|i| 10 + i * 3).collect();
        for k in &keys {
            let mut e = [0u8; 8];
            e[..4].copy_from_slice(&k.to_be_bytes());
            idx.push(&e);
        }
        for target in (0..9100i64).chain([i64::MIN, i64::MAX]) {
            let expected = keys.iter().rposition(|k| i64::from(*k) <= target);
            assert_eq!(idx.floor(target, key), expected, "target {target}");
        }
        // A small index is all warm.
        let small = IndexFile::open_writable(&Io::real(), &dir.path().join("y.index"), 8, 0, 16)
            .expect("open");
        assert_eq!(small.floor(5, key), None);
    }

    #[test]
    fn reopening_writable_discards_entries_past_len_without_touching_pages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.index");
        let mut idx = IndexFile::open_writable(&Io::real(), &path, 8, 0, 1024).expect("open");
        for k in 1u32..=5 {
            let mut e = [0u8; 8];
            e[..4].copy_from_slice(&k.to_be_bytes());
            idx.push(&e);
        }
        drop(idx);
        let idx = IndexFile::open_writable(&Io::real(), &path, 8, 2, 1024).expect("reopen");
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), 8 * 1024);
        drop(idx);
        let bytes = std::fs::read(&path).expect("read");
        assert_ne!(&bytes[8..16], &[0u8; 8], "kept entries survive");
        assert!(
            bytes[16..].iter().all(|b| *b == 0),
            "stale entries are gone"
        );
    }
}
