//! Swapping cleaned segments in, crash-safe as Kafka's. A cleaned segment replaces a
//! group of consecutive sealed segments (small segments merge, as Kafka's
//! `groupSegmentsBySize`), and takes the first one's base:
//!
//! 1. each `<base>.log.cleaned` (already synced) is renamed `<base>-<end>.log.swap`,
//!    naming the offsets `[base, end)` it replaces, and the directory synced: from here
//!    an open finishes the swap;
//! 2. the first segment's indexes and the other segments of the group (log and
//!    indexes) are removed and the directory synced (a stale index must never describe
//!    the new file);
//! 3. the swap file is renamed over `<base>.log` (atomic: a reader opening the name sees
//!    the old file or the new one), the directory synced, and the segment reloaded: its
//!    indexes are rebuilt on first use.
//!
//! The end is in the name rather than read back from the swap file's batches because
//! the group's last segments may have been cleaned down to nothing: recovery must still
//! remove them, or superseded records (a deleted key's old value) would come back.
//!
//! A group whose range has aborted-transaction entries gets its `.txnindex` replaced
//! too: before step 1, `<base>-<end>.txnindex.swap` is written (synced, through a temp
//! file) and the directory synced, so the new index is never behind the new log; an
//! open finishes it as it finishes a log's swap (every `.txnindex` of the range goes,
//! the swap file becomes `<base>.txnindex`). The new index with the old log is safe: an
//! entry leaves only in a pass that found none of its transaction's batches.

use std::path::Path;

use crate::cleaner::files::{self, file_path, CleanedSegment, SWAP_SUFFIX};
use crate::error::{IoContext, Result};
use crate::io::Io;
use crate::log::aborted::encode_entries;
use crate::log::files::{parse_offset_stem, parse_segment_name};
use crate::log::Log;
use crate::segment::{segment_path, Segment};

/// Suffix of an aborted index being swapped in with its cleaned segment.
const INDEX_SWAP_SUFFIX: &str = "txnindex.swap";

/// The swap file of a cleaned segment replacing the segments in `[base, end)`.
pub(crate) fn swap_path(dir: &Path, base: u64, end: u64) -> std::path::PathBuf {
    dir.join(format!("{base:020}-{end:020}.{SWAP_SUFFIX}"))
}

/// (base, end) of a swap file's name: `<base>-<end>.log.swap`, or `<base>.log.swap`
/// as single-segment swaps were once named (it replaces its own base only).
fn parse_swap_name(name: &str) -> Option<(u64, Option<u64>)> {
    let stem = name.strip_suffix(&format!(".{SWAP_SUFFIX}"))?;
    match stem.split_once('-') {
        Some((base, end)) => Some((parse_offset_stem(base)?, Some(parse_offset_stem(end)?))),
        None => Some((parse_offset_stem(stem)?, None)),
    }
}

impl Log {
    /// Swaps cleaned segments in (see the module doc). A cleaned segment any of whose
    /// originals is gone or changed since it was read keeps the originals, and its
    /// cleaned file is removed. Returns how many original segments were replaced.
    pub fn swap_cleaned(&mut self, cleaned: &[CleanedSegment]) -> Result<usize> {
        let io = self.flusher.io().clone();
        let dir = self.dir.clone();
        let active = self.active_segment_base();
        let mut ready = Vec::new();
        for c in cleaned {
            let from = file_path(&dir, c.base, files::CLEANED_SUFFIX);
            let unchanged = c.replaces.iter().all(|&(base, size)| {
                base < active && self.segments.get(&base).map(Segment::size) == Some(size)
            });
            if !unchanged || c.replaces.is_empty() {
                io.remove_file(&from)
                    .io_context("remove cleaned segment", &from)?;
                continue;
            }
            let to = swap_path(&dir, c.base, c.end);
            io.rename(&from, &to)
                .io_context("rename cleaned segment", &to)?;
            ready.push(c);
        }
        if ready.is_empty() {
            return Ok(0);
        }
        self.write_index_swaps(&io, &ready)?;
        io.sync_dir_at(&dir)?;
        for c in &ready {
            for &(base, _) in &c.replaces {
                if let Some(segment) = self.segments.remove(&base) {
                    segment.drop_files();
                }
                remove_segment_files(&io, &dir, base, base != c.base)?;
            }
        }
        io.sync_dir_at(&dir)?;
        let txnindexes = txnindex_bases(&dir)?;
        for c in &ready {
            let log = segment_path(&dir, c.base, "log");
            io.rename(&swap_path(&dir, c.base, c.end), &log)
                .io_context("swap cleaned segment", &log)?;
            if let Some(entries) = &c.aborted {
                finish_index_swap(&io, &dir, c.base, c.end, &txnindexes)?;
                self.replace_aborted(c.base, c.end, entries.clone());
            }
        }
        io.sync_dir_at(&dir)?;
        for c in &ready {
            self.segments
                .insert(c.base, Segment::swapped_in(c.base, c.size));
        }
        let replaced = ready.iter().map(|c| c.replaces.len()).sum();
        tracing::debug!(dir = %dir.display(), replaced, into = ready.len(), "swapped cleaned segments");
        Ok(replaced)
    }
}

impl Log {
    /// Writes each group's new aborted index as `<base>-<end>.txnindex.swap` (synced;
    /// the caller syncs the directory).
    fn write_index_swaps(&self, io: &Io, ready: &[&CleanedSegment]) -> Result<()> {
        for c in ready {
            if let Some(entries) = &c.aborted {
                let name = index_swap_name(c.base, c.end);
                io.replace_file(&self.dir, &name, &encode_entries(entries))?;
            }
        }
        Ok(())
    }
}

/// The swap file of an aborted index replacing the `.txnindex` files in `[base, end)`.
fn index_swap_name(base: u64, end: u64) -> String {
    format!("{base:020}-{end:020}.{INDEX_SWAP_SUFFIX}")
}

/// The bases of the `.txnindex` files in `dir`, listed once for all of a swap's groups.
fn txnindex_bases(dir: &Path) -> Result<Vec<u64>> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir).io_context("list log dir", dir)? {
        let entry = entry.io_context("list log dir", dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(base) = name.strip_suffix(".txnindex").and_then(parse_offset_stem) {
            bases.push(base);
        }
    }
    Ok(bases)
}

/// Removes every `.txnindex` of `bases` (those in `dir`) in `[base, end)` and renames
/// the range's index swap file to `<base>.txnindex`, or removes it if it holds no
/// entry.
fn finish_index_swap(io: &Io, dir: &Path, base: u64, end: u64, bases: &[u64]) -> Result<()> {
    let swap = dir.join(index_swap_name(base, end));
    for b in bases.iter().filter(|b| (base..end).contains(b)) {
        let path = segment_path(dir, *b, "txnindex");
        match io.remove_file(&path) {
            Ok(()) => {}
            // A crash may have removed it already.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).io_context("remove txnindex", &path),
        }
    }
    let empty = std::fs::metadata(&swap)
        .io_context("stat txnindex swap", &swap)?
        .len()
        == 0;
    if empty {
        io.remove_file(&swap)
            .io_context("remove txnindex swap", &swap)
    } else {
        let to = segment_path(dir, base, "txnindex");
        io.rename(&swap, &to).io_context("swap txnindex", &to)
    }
}

/// Finishes the aborted-index swaps a crash interrupted (before the log's own).
fn recover_index_swaps(io: &Io, dir: &Path) -> Result<()> {
    let mut swaps = Vec::new();
    for entry in std::fs::read_dir(dir).io_context("list log dir", dir)? {
        let entry = entry.io_context("list log dir", dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let range = name
            .strip_suffix(&format!(".{INDEX_SWAP_SUFFIX}"))
            .and_then(|stem| stem.split_once('-'))
            .and_then(|(b, e)| Some((parse_offset_stem(b)?, parse_offset_stem(e)?)));
        if let Some(range) = range {
            swaps.push(range);
        }
    }
    if swaps.is_empty() {
        return Ok(());
    }
    let bases = txnindex_bases(dir)?;
    for (base, end) in swaps {
        tracing::info!(dir = %dir.display(), base, end, "finishing a txnindex swap");
        finish_index_swap(io, dir, base, end, &bases)?;
    }
    Ok(())
}

/// Removes a segment's indexes, and its `.log` too if `with_log`. Missing files are
/// fine (a crash may have removed them already).
fn remove_segment_files(io: &Io, dir: &Path, base: u64, with_log: bool) -> Result<()> {
    let exts: &[&str] = if with_log {
        &["log", "index", "timeindex"]
    } else {
        &["index", "timeindex"]
    };
    for ext in exts {
        let path = segment_path(dir, base, ext);
        match io.remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).io_context("remove segment file", &path),
        }
    }
    Ok(())
}

/// Finishes swaps a crash interrupted and removes cleaned files never swapped in: run
/// at open, before the segments are listed.
pub(super) fn recover_swaps(io: &Io, dir: &Path) -> Result<()> {
    recover_index_swaps(io, dir)?;
    let mut swaps = Vec::new();
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir).io_context("list log dir", dir)? {
        let entry = entry.io_context("list log dir", dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let cleaned = name
            .strip_suffix(&format!(".{}", files::CLEANED_SUFFIX))
            .and_then(parse_offset_stem)
            .is_some();
        if cleaned {
            let path = entry.path();
            tracing::info!(file = %path.display(), "removing a cleaned segment never swapped in");
            io.remove_file(&path)
                .io_context("remove cleaned segment", &path)?;
        } else if let Some((base, end)) = parse_swap_name(&name) {
            swaps.push((base, end, entry.path()));
        } else if let Some(base) = parse_segment_name(&name) {
            bases.push(base);
        }
    }
    if swaps.is_empty() {
        return Ok(());
    }
    for (base, end, _) in &swaps {
        remove_segment_files(io, dir, *base, false)?;
        let end = end.unwrap_or(*base);
        for other in bases.iter().filter(|b| **b > *base && **b < end) {
            tracing::info!(
                segment = other,
                swap = base,
                "removing a segment merged by an interrupted swap"
            );
            remove_segment_files(io, dir, *other, true)?;
        }
    }
    io.sync_dir_at(dir)?;
    for (base, _, swap) in &swaps {
        let log = segment_path(dir, *base, "log");
        io.rename(swap, &log)
            .io_context("finish segment swap", &log)?;
        tracing::info!(segment = %log.display(), "finished a cleaned segment's swap");
    }
    io.sync_dir_at(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_names_carry_the_range_they_replace() {
        let dir = Path::new("/d");
        let p = swap_path(dir, 42, 1_000);
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        assert_eq!(parse_swap_name(name), Some((42, Some(1_000))));
        assert_eq!(
            parse_swap_name("00000000000000000042.log.swap"),
            Some((42, None))
        );
        assert_eq!(parse_swap_name("42.log.swap"), None);
        assert_eq!(parse_swap_name("00000000000000000042-x.log.swap"), None);
        assert_eq!(parse_swap_name("00000000000000000042.log"), None);
    }
}
