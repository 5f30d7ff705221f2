//! The files of a log directory other than segments: listing segments (and removing
//! leftovers), the index-coverage check of a clean-shutdown marker, and the durable
//! log start offset.

use std::path::Path;

use crate::error::{IoContext, Result};
use crate::io::{Io, TMP_SUFFIX};
use crate::segment::segment_path;

/// The durable log start offset's file.
pub(super) const LOG_START_FILE: &str = "log-start-offset";

/// The offset a log directory file's stem spells: exactly 20 decimal digits.
pub(super) fn parse_offset_stem(stem: &str) -> Option<u64> {
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit())).then(|| stem.parse().ok())?
}

/// A `.log` file name's base offset, if the name is one.
pub(super) fn parse_segment_name(name: &str) -> Option<u64> {
    parse_offset_stem(name.strip_suffix(".log")?)
}

/// `.log` files in `dir` as (base offset, size), sorted; removes leftovers that belong to
/// no segment (temporary files, orphan indexes).
pub(super) fn list_segments(io: &Io, dir: &Path) -> Result<Vec<(u64, u64)>> {
    super::swap::recover_swaps(io, dir)?;
    let mut logs = Vec::new();
    let mut others = Vec::new();
    for entry in std::fs::read_dir(dir).io_context("list log dir", dir)? {
        let entry = entry.io_context("list log dir", dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(base) = parse_segment_name(&name) {
            let len = entry
                .metadata()
                .io_context("stat segment", &entry.path())?
                .len();
            logs.push((base, len));
        } else {
            others.push(name);
        }
    }
    logs.sort_unstable();
    for name in others {
        let stem = name
            .strip_suffix(".index")
            .or_else(|| name.strip_suffix(".timeindex"));
        let orphan = stem.is_some_and(|s| {
            s.parse::<u64>()
                .is_ok_and(|b| logs.binary_search_by_key(&b, |l| l.0).is_err())
        });
        if orphan || name.ends_with(TMP_SUFFIX) || name.ends_with(".tmp") {
            let path = dir.join(&name);
            tracing::info!(file = %path.display(), "removing leftover file");
            io.remove_file(&path).io_context("remove leftover", &path)?;
        }
    }
    Ok(logs)
}

/// Whether the index files are long enough for the entry counts a marker claims.
pub(super) fn indexes_cover(dir: &Path, base: u64, meta: &crate::segment::SegmentMeta) -> bool {
    let len = |ext| std::fs::metadata(segment_path(dir, base, ext)).map_or(0, |m| m.len());
    let need = |n: usize, size: usize| n.checked_mul(size).map_or(u64::MAX, |b| b as u64);
    len("index") >= need(meta.offset_entries, crate::offset_index::ENTRY_SIZE)
        && len("timeindex") >= need(meta.time_entries, crate::time_index::ENTRY_SIZE)
}

pub(super) fn read_log_start(dir: &Path) -> Result<Option<u64>> {
    let path = dir.join(LOG_START_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim().parse().ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).io_context("read log start offset", &path),
    }
}

/// Persists the log start offset durably (temp file, fsync, rename, directory fsync):
/// segments below it may be deleted right after.
pub(super) fn write_log_start(io: &Io, dir: &Path, offset: u64) -> Result<()> {
    io.write_durably(dir, LOG_START_FILE, format!("{offset}\n").as_bytes())
}
