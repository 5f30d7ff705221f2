//! Walking the batches of a `.log` file by their headers.
//!
//! Reads go through a buffer so a walk over many small batches costs one `pread` per
//! buffer, not one per batch. In verifying mode each batch's CRC-32C is checked too, in
//! chunks, so a huge (or hugely mis-sized) batch never needs its own allocation.

use std::fs::File;
use std::os::unix::fs::FileExt;

use fjord_protocol::record_batch::{BatchHeader, BATCH_HEADER_LEN, CRC_START};

/// What the scanner found at its position.
#[derive(Debug)]
pub(crate) enum Scanned {
    /// A batch at `position`; the scanner has moved past it.
    Batch { position: u64, header: BatchHeader },
    /// The end of the region was reached exactly at a batch boundary.
    End,
    /// The bytes at `position` are not a whole valid batch (torn, zeroed or corrupt).
    Damaged { position: u64, reason: String },
}

/// A forward walk over `[position, end)` of a segment file.
#[derive(Debug)]
pub(crate) struct BatchScanner<'f> {
    file: &'f File,
    position: u64,
    end: u64,
    verify: bool,
    buf: Vec<u8>,
    buf_start: u64,
}

/// Smallest legal batch: the header alone.
const MIN_BATCH: u64 = BATCH_HEADER_LEN as u64;

impl<'f> BatchScanner<'f> {
    /// A scanner reading headers only (lookups on the read path). `expected_span` is how
    /// far the caller expects to walk: reads cover that much (within 512 B to 8 KiB), so a
    /// walk between two index entries is usually one `pread`.
    pub(crate) fn headers(file: &'f File, position: u64, end: u64, expected_span: u64) -> Self {
        let buf = expected_span
            .min(end.saturating_sub(position))
            .clamp(512, 8192) as usize;
        Self::new(file, position, end, false, buf)
    }

    /// A scanner checking every batch completely (recovery).
    pub(crate) fn verifying(file: &'f File, position: u64, end: u64) -> Self {
        Self::new(file, position, end, true, 1 << 20)
    }

    fn new(file: &'f File, position: u64, end: u64, verify: bool, buf_size: usize) -> Self {
        Self {
            file,
            position,
            end,
            verify,
            buf: Vec::with_capacity(buf_size),
            buf_start: position,
        }
    }

    /// The position the next batch would start at.
    pub(crate) fn position(&self) -> u64 {
        self.position
    }

    /// Makes `[at, at + len)` available in the buffer if it fits; returns its slice.
    fn window(&mut self, at: u64, len: usize) -> std::io::Result<Option<&[u8]>> {
        let buf_end = self.buf_start + self.buf.len() as u64;
        if at < self.buf_start || at + len as u64 > buf_end {
            let cap = self.buf.capacity().max(len);
            let want = (self.end - at).min(cap as u64) as usize;
            if want < len {
                return Ok(None);
            }
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, at)?;
            self.buf_start = at;
        }
        let from = (at - self.buf_start) as usize;
        Ok(Some(&self.buf[from..from + len]))
    }

    /// Reads the next batch.
    pub(crate) fn next_batch(&mut self) -> std::io::Result<Scanned> {
        let position = self.position;
        if position >= self.end {
            return Ok(Scanned::End);
        }
        let damaged = |reason: String| Ok(Scanned::Damaged { position, reason });
        if self.end - position < MIN_BATCH {
            return damaged(format!(
                "{} trailing bytes, too few for a batch",
                self.end - position
            ));
        }
        let header = match self.window(position, BATCH_HEADER_LEN)? {
            Some(bytes) => match BatchHeader::parse(bytes) {
                Ok(h) => h,
                Err(e) => return damaged(e.to_string()),
            },
            None => return damaged("short read".to_string()),
        };
        let total = header.total_len() as u64;
        if header.batch_length < (BATCH_HEADER_LEN - 12) as i32 || total > self.end - position {
            return damaged(format!(
                "batch length {} runs past the end",
                header.batch_length
            ));
        }
        if self.verify {
            if let Err(reason) = self.verify_batch(position, &header) {
                return damaged(reason);
            }
        }
        self.position = position + total;
        Ok(Scanned::Batch { position, header })
    }

    fn verify_batch(&mut self, position: u64, header: &BatchHeader) -> Result<(), String> {
        // Compaction leaves fewer records than offsets (none in a producer's emptied
        // last batch), never more.
        let span = i64::from(header.last_offset_delta) + 1;
        if header.records_count < 0
            || header.last_offset_delta < 0
            || i64::from(header.records_count) > span
        {
            return Err(format!(
                "record count {} does not fit last offset delta {}",
                header.records_count, header.last_offset_delta
            ));
        }
        header.compression().map_err(|e| e.to_string())?;
        let total = header.total_len() as u64;
        let mut crc = fjord_protocol::crc::Crc32c::new();
        let mut at = position + CRC_START as u64;
        let end = position + total;
        let chunk = self.buf.capacity().max(BATCH_HEADER_LEN) as u64;
        while at < end {
            let len = (end - at).min(chunk) as usize;
            let bytes = self
                .window(at, len)
                .map_err(|e| e.to_string())?
                .ok_or("short read")?;
            crc.update(bytes);
            at += len as u64;
        }
        let crc = crc.finish();
        if crc != header.crc {
            return Err(format!(
                "crc mismatch: stored {:#010x}, computed {crc:#010x}",
                header.crc
            ));
        }
        Ok(())
    }
}

/// Calls `visit` with every batch header in `[0, end)` of `file`, stopping at the first
/// damaged one (recovery has already cut damage off the tail).
pub(crate) fn for_each_header(
    file: &File,
    end: u64,
    visit: &mut impl FnMut(&BatchHeader),
) -> std::io::Result<()> {
    let mut scanner = BatchScanner::new(file, 0, end, false, 64 * 1024);
    while let Scanned::Batch { header, .. } = scanner.next_batch()? {
        visit(&header);
    }
    Ok(())
}
