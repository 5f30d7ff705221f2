//! The clean-shutdown marker: written by [`crate::Log::close`] after everything is on
//! disk, removed before the first change after opening. When present and consistent with
//! the files, the log opens without reading any segment: the active segment's summary is
//! in the marker.

use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::io::Io;
use crate::segment::{MaxTimestamp, SegmentMeta};

const FILE_NAME: &str = ".clean-shutdown";
const HEADER: &str = "fjord-clean-shutdown v1";

pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Writes the marker for active segment `base` durably (temp file, fsync, rename).
pub(crate) fn write(io: &Io, dir: &Path, base: u64, meta: &SegmentMeta) -> Result<()> {
    let opt = |v: Option<i64>| v.map_or_else(|| "none".to_string(), |v| v.to_string());
    let text = format!(
        "{HEADER}\nactive_base={base}\nsize={}\nnext_offset={}\nmax_timestamp={}\nmax_timestamp_batch={}\noffset_entries={}\ntime_entries={}\nbytes_since_index={}\nfirst_batch_timestamp={}\n",
        meta.size,
        meta.next_offset,
        opt(meta.max_timestamp.map(|m| m.timestamp)),
        meta.max_timestamp.map_or(0, |m| m.batch_offset),
        meta.offset_entries,
        meta.time_entries,
        meta.bytes_since_index,
        opt(meta.first_batch_timestamp),
    );
    io.write_durably(dir, FILE_NAME, text.as_bytes())
}

/// Reads the marker: the active segment's base offset and summary. `None` when absent or
/// unreadable (both mean "recover").
pub(crate) fn read(dir: &Path) -> Option<(u64, SegmentMeta)> {
    let text = std::fs::read_to_string(path(dir)).ok()?;
    let mut lines = text.lines();
    if lines.next()? != HEADER {
        return None;
    }
    let mut field = |name: &str| -> Option<String> {
        let line = lines.next()?;
        line.strip_prefix(name)?
            .strip_prefix('=')
            .map(str::to_string)
    };
    let num = |s: Option<String>| -> Option<u64> { s?.parse().ok() };
    let opt_i64 = |s: Option<String>| -> Option<Option<i64>> {
        let s = s?;
        if s == "none" {
            Some(None)
        } else {
            s.parse().ok().map(Some)
        }
    };
    let base = num(field("active_base"))?;
    let size = num(field("size"))?;
    let next_offset = num(field("next_offset"))?;
    let max_ts = opt_i64(field("max_timestamp"))?;
    let max_batch = num(field("max_timestamp_batch"))?;
    let offset_entries = usize::try_from(num(field("offset_entries"))?).ok()?;
    let time_entries = usize::try_from(num(field("time_entries"))?).ok()?;
    let bytes_since_index = num(field("bytes_since_index"))?;
    let first_batch_timestamp = opt_i64(field("first_batch_timestamp"))?;
    let meta = SegmentMeta {
        size,
        next_offset,
        max_timestamp: max_ts.map(|timestamp| MaxTimestamp {
            timestamp,
            batch_offset: max_batch,
        }),
        offset_entries,
        time_entries,
        bytes_since_index,
        first_batch_timestamp,
    };
    Some((base, meta))
}

/// Removes the marker (before the first change to a log opened clean). The directory is
/// not synced here: if a power loss brings the marker back, its recorded size no longer
/// matches the grown file and the open recovers anyway.
pub(crate) fn remove(io: &Io, dir: &Path) -> Result<()> {
    let p = path(dir);
    match io.remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).io_context("remove marker", &p)
        }
        _ => Ok(()),
    }
}
