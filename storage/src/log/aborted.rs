//! The aborted-transaction index (Kafka's `.txnindex`): one entry per transaction
//! aborted in this log, so a read_committed fetch learns which records to drop without
//! reading the log.
//!
//! An entry is written to `<base>.txnindex` of the segment the ABORT marker went to,
//! in Kafka's layout (34 bytes, big-endian): version i16 (0), producer id i64, first
//! offset i64, last offset i64 (the marker's), last stable offset i64. Every entry is
//! also kept in memory (aborts are rare; an entry is 40 bytes). A cleaning pass swaps
//! in one file for the segments it merges, without the entries whose markers it
//! removed (`log::swap`); a file goes when every segment up to the next one is
//! deleted. A torn last entry (a crash mid-write) is ignored.

use std::collections::BTreeMap;
use std::io::IoSlice;
use std::path::Path;

use crate::error::{IoContext, Result};
use crate::io::{Io, OpenMode};
use crate::log::files::parse_offset_stem;
use crate::log::Log;
use crate::segment::segment_path;

/// Bytes of one entry.
const ENTRY_LEN: usize = 34;
const EXTENSION: &str = "txnindex";

/// A transaction aborted in this log: its producer, its records' range and the marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    /// The producer whose transaction was aborted.
    pub producer_id: i64,
    /// The offset of its first record in this log.
    pub first_offset: u64,
    /// The offset of its ABORT marker.
    pub last_offset: u64,
    /// The last stable offset once the marker was written.
    pub last_stable_offset: u64,
}

impl AbortedTxn {
    fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut out = [0u8; ENTRY_LEN];
        out[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        out[10..18].copy_from_slice(&(self.first_offset as i64).to_be_bytes());
        out[18..26].copy_from_slice(&(self.last_offset as i64).to_be_bytes());
        out[26..34].copy_from_slice(&(self.last_stable_offset as i64).to_be_bytes());
        out
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let i64_at = |at: usize| {
            b.get(at..at + 8)
                .and_then(|s| s.try_into().ok())
                .map(i64::from_be_bytes)
        };
        if b.get(..2)? != [0, 0] {
            return None;
        }
        let offset = |at| i64_at(at).and_then(|v| u64::try_from(v).ok());
        Some(Self {
            producer_id: i64_at(2)?,
            first_offset: offset(10)?,
            last_offset: offset(18)?,
            last_stable_offset: offset(26)?,
        })
    }
}

/// `entries` in the file layout.
pub(crate) fn encode_entries(entries: &[AbortedTxn]) -> Vec<u8> {
    entries.iter().flat_map(AbortedTxn::encode).collect()
}

/// The aborted transactions of one log, by the base offset of the file holding them.
#[derive(Debug, Default)]
pub(crate) struct AbortedIndex {
    by_file: BTreeMap<u64, Vec<AbortedTxn>>,
    /// Files whose names are known durable (the directory was synced since they were
    /// created): a file may exist that a crash could still take, if it was created
    /// by an attempt that failed before its directory sync.
    named: std::collections::HashSet<u64>,
}

impl AbortedIndex {
    /// Reads every `.txnindex` file of `dir`, dropping entries whose marker lies at or
    /// past `end` (a tail the recovery cut off, or an entry made durable before a
    /// marker that never was: [`Log::append_abort_marker`]). A file that lost entries
    /// is rewritten without them (synced), or they would come back once the log grows
    /// past their offsets again.
    pub(crate) fn load(io: &Io, dir: &Path, end: u64) -> Result<Self> {
        let mut by_file = BTreeMap::new();
        let mut rewritten = false;
        for entry in std::fs::read_dir(dir).io_context("list log dir", dir)? {
            let entry = entry.io_context("list log dir", dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(base) = name
                .strip_suffix(&format!(".{EXTENSION}"))
                .and_then(parse_offset_stem)
            else {
                continue;
            };
            let bytes = std::fs::read(entry.path()).io_context("read txnindex", &entry.path())?;
            let all: Vec<AbortedTxn> = bytes
                .chunks_exact(ENTRY_LEN)
                .filter_map(AbortedTxn::decode)
                .collect();
            let entries: Vec<AbortedTxn> = all
                .iter()
                .copied()
                .filter(|e| e.last_offset < end)
                .collect();
            if entries.len() < all.len() {
                tracing::info!(file = %entry.path().display(), dropped = all.len() - entries.len(), "dropping aborted-index entries past the log end");
                io.replace_file(dir, &name, &encode_entries(&entries))?;
                rewritten = true;
            }
            by_file.insert(base, entries);
        }
        if rewritten {
            io.sync_dir_at(dir)?;
        }
        Ok(Self {
            by_file,
            named: std::collections::HashSet::new(),
        })
    }
}

impl Log {
    /// Records an aborted transaction whose marker was already appended at
    /// `entry.last_offset`, in the active segment's `.txnindex` (synced, and its name
    /// too for a new file). For tools and tests: a broker appends the marker with
    /// [`Log::append_abort_marker`], which orders the two writes crash-safely.
    pub fn record_aborted(&mut self, entry: AbortedTxn) -> Result<()> {
        let base = self.active_segment_base();
        let io = self.flusher.io().clone();
        let path = segment_path(&self.dir, base, EXTENSION);
        let file = io
            .open(&path, OpenMode::Append { create: true })
            .io_context("open txnindex", &path)?;
        let bytes = entry.encode();
        io.write_all_vectored(&path, &file, &mut [IoSlice::new(&bytes)])
            .io_context("append txnindex", &path)?;
        io.sync(&file, false).io_context("sync txnindex", &path)?;
        if !self.aborted.named.contains(&base) {
            io.sync_dir_at(&self.dir)?;
            self.aborted.named.insert(base);
        }
        self.aborted.by_file.entry(base).or_default().push(entry);
        Ok(())
    }

    /// Appends an ABORT marker (`batch`) with its aborted-index entry (`entry` makes it
    /// from the marker's offset), the entry written and synced first: a crash between
    /// the two leaves an entry past the log end, which the next open drops, never a
    /// marker without its entry (whose aborted records read_committed readers would
    /// then see). An error may leave the entry on disk without its marker: the caller
    /// must stop writing to the log until it is reopened (a broker takes the partition
    /// offline).
    pub fn append_abort_marker(
        &mut self,
        batch: &[u8],
        entry: impl FnOnce(u64) -> AbortedTxn,
    ) -> Result<crate::AppendInfo> {
        let at = self.log_end_offset();
        // The entry goes in the file of the segment the marker will land in: roll
        // first if the marker would roll it.
        let header = fjord_protocol::record_batch::BatchHeader::parse(batch).map_err(|source| {
            crate::StorageError::InvalidBatch {
                position: 0,
                source,
            }
        })?;
        self.maybe_roll(batch.len() as u64, at, header.max_timestamp)?;
        self.record_aborted(entry(at))?;
        // The append assigns the log end, `at`, under the same `&mut self`.
        self.append(batch)
    }

    /// The aborted transactions that may touch records in `[from, upper)`: every entry
    /// whose marker is at or after `from` and whose first record is before `upper`.
    pub fn aborted_between(&self, from: u64, upper: u64) -> Vec<AbortedTxn> {
        // A file holds markers of its segment only, all below the next segment's base:
        // files before the segment holding `from` have none at or after it.
        let first = self
            .segments
            .range(..=from)
            .next_back()
            .map_or(0, |(base, _)| *base);
        self.aborted
            .by_file
            .range(first..)
            .flat_map(|(_, entries)| entries)
            .filter(|e| e.last_offset >= from && e.first_offset < upper)
            .copied()
            .collect()
    }

    /// Cuts `regions` (read from this log, in order) so that they end before the batch
    /// holding `offset`: a read_committed fetch stops at the last stable offset. Stays
    /// zero-copy: the regions only get shorter.
    pub fn cut_regions_at(&self, regions: &mut Vec<crate::FileRegion>, offset: u64) -> Result<()> {
        let Some(cut) = regions.iter().position(|r| r.first_offset >= offset) else {
            if regions.is_empty() {
                return Ok(());
            }
            return self.shorten_last(regions, offset);
        };
        regions.truncate(cut);
        if regions.is_empty() {
            return Ok(());
        }
        self.shorten_last(regions, offset)
    }

    /// Shortens the last region to end where the batch holding `offset` starts, if that
    /// batch is in the region's segment.
    fn shorten_last(&self, regions: &mut Vec<crate::FileRegion>, offset: u64) -> Result<()> {
        let Some(last) = regions.last_mut() else {
            return Ok(());
        };
        let Some((&base, segment)) = self.segments.range(..=offset).next_back() else {
            return Ok(());
        };
        if last.first_offset < base {
            return Ok(()); // the region ends in an earlier segment
        }
        let active = base == self.active_segment_base();
        if let Some(position) = segment.position_of(self.ctx(), active, offset)? {
            last.len = last.len.min(position.saturating_sub(last.position));
            if last.len == 0 {
                regions.pop();
            }
        }
        Ok(())
    }

    /// Replaces the entries of the files in `[base, end)` with `entries`, in `base`'s
    /// file (what a compaction swap did on disk).
    pub(crate) fn replace_aborted(&mut self, base: u64, end: u64, entries: Vec<AbortedTxn>) {
        let doomed: Vec<u64> = self
            .aborted
            .by_file
            .range(base..end)
            .map(|(b, _)| *b)
            .collect();
        for b in doomed {
            self.aborted.by_file.remove(&b);
        }
        if !entries.is_empty() {
            self.aborted.by_file.insert(base, entries);
        }
    }

    /// Whether an abort of `producer_id` with its marker at `last_offset` is recorded.
    pub fn has_aborted(&self, producer_id: i64, last_offset: u64) -> bool {
        self.aborted
            .by_file
            .values()
            .flatten()
            .any(|e| e.producer_id == producer_id && e.last_offset == last_offset)
    }

    /// Removes the `.txnindex` files of segments now all deleted: those below the first
    /// segment left.
    pub(crate) fn forget_aborted_below_first_segment(&mut self, io: &Io) -> Result<()> {
        let first = self.segments.keys().next().copied().unwrap_or(0);
        let doomed: Vec<u64> = self
            .aborted
            .by_file
            .range(..first)
            .map(|(b, _)| *b)
            .collect();
        for base in doomed {
            let path = segment_path(&self.dir, base, EXTENSION);
            match io.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).io_context("remove txnindex", &path),
            }
            self.aborted.by_file.remove(&base);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_kafkas_34_bytes_and_round_trip() {
        let e = AbortedTxn {
            producer_id: 7,
            first_offset: 10,
            last_offset: 12,
            last_stable_offset: 13,
        };
        let b = e.encode();
        assert_eq!(&b[..2], &[0, 0], "version 0");
        assert_eq!(&b[2..10], &7i64.to_be_bytes());
        assert_eq!(&b[26..34], &13i64.to_be_bytes());
        assert_eq!(AbortedTxn::decode(&b), Some(e));
        let mut bad = b;
        bad[1] = 1;
        assert_eq!(AbortedTxn::decode(&bad), None, "unknown version");
        assert_eq!(AbortedTxn::decode(&b[..20]), None);
    }
}
