//! Records inside an uncompressed (or already decompressed) RecordBatch v2 payload.
//!
//! Each record: varint length, attributes i8, varlong timestampDelta, varint offsetDelta,
//! varint key length (-1 = null) + key, varint value length (-1 = null) + value, varint
//! header count, then headers (varint key length + key, varint value length + value).
//! Records borrow from the payload: iterating allocates nothing.

use crate::error::{Error, Result};
use crate::varint::{read_varint, read_varlong};

/// One record, borrowing its key, value and headers from the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Record attributes (unused by Kafka today).
    pub attributes: i8,
    /// Timestamp minus the batch's base timestamp.
    pub timestamp_delta: i64,
    /// Offset minus the batch's base offset.
    pub offset_delta: i32,
    /// Key, or `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// Value, or `None` for a null value (a tombstone).
    pub value: Option<&'a [u8]>,
    header_count: usize,
    headers: &'a [u8],
}

/// One record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// Header key (UTF-8 by convention, not checked).
    pub key: &'a [u8],
    /// Header value, or `None` for null.
    pub value: Option<&'a [u8]>,
}

impl<'a> Record<'a> {
    /// The record's headers, in order.
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter {
            buf: self.headers,
            pos: 0,
            left: self.header_count,
        }
    }
}

/// Reads a varint length and that many bytes; -1 means null.
fn read_bytes<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Option<&'a [u8]>> {
    let at = *pos;
    let len = read_varint(buf, pos)?;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| Error::MalformedRecord {
        offset: at,
        what: "negative length",
    })?;
    let bytes = buf.get(*pos..*pos + len).ok_or(Error::MalformedRecord {
        offset: at,
        what: "field longer than record",
    })?;
    *pos += len;
    Ok(Some(bytes))
}

/// Iterator over the headers of one record.
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    buf: &'a [u8],
    pos: usize,
    left: usize,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = Result<Header<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let at = self.pos;
        let header = read_bytes(self.buf, &mut self.pos).and_then(|key| {
            let key = key.ok_or(Error::MalformedRecord {
                offset: at,
                what: "null header key",
            })?;
            let value = read_bytes(self.buf, &mut self.pos)?;
            Ok(Header { key, value })
        });
        if header.is_err() {
            self.left = 0;
        }
        Some(header)
    }
}

/// Iterator over the records of an uncompressed payload (the bytes after the 61-byte
/// header, or the output of decompressing them). Yields at most `count` records, then
/// checks that the payload was used up exactly; stops after the first error.
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    buf: &'a [u8],
    pos: usize,
    left: usize,
    failed: bool,
}

impl<'a> RecordIter<'a> {
    /// Iterates `count` records in `payload`.
    pub fn new(payload: &'a [u8], count: usize) -> Self {
        Self {
            buf: payload,
            pos: 0,
            left: count,
            failed: false,
        }
    }

    fn read_record(&mut self) -> Result<Record<'a>> {
        let start = self.pos;
        let len = read_varint(self.buf, &mut self.pos)?;
        let len = usize::try_from(len).map_err(|_| Error::MalformedRecord {
            offset: start,
            what: "negative record length",
        })?;
        let body_start = self.pos;
        let body = self
            .buf
            .get(body_start..body_start + len)
            .ok_or(Error::MalformedRecord {
                offset: start,
                what: "record longer than batch",
            })?;
        self.pos = body_start + len;
        let mut p = 0;
        let attributes = *body.first().ok_or(Error::MalformedRecord {
            offset: start,
            what: "empty record",
        })? as i8;
        p += 1;
        let timestamp_delta = read_varlong(body, &mut p)?;
        let offset_delta = read_varint(body, &mut p)?;
        let key = read_bytes(body, &mut p)?;
        let value = read_bytes(body, &mut p)?;
        let count_at = p;
        let header_count = read_varint(body, &mut p)?;
        let header_count = usize::try_from(header_count).map_err(|_| Error::MalformedRecord {
            offset: body_start + count_at,
            what: "negative header count",
        })?;
        // Each header takes at least two bytes: a bound before anyone iterates them.
        if header_count > (body.len() - p) / 2 {
            return Err(Error::MalformedRecord {
                offset: body_start + count_at,
                what: "header count exceeds record size",
            });
        }
        Ok(Record {
            attributes,
            timestamp_delta,
            offset_delta,
            key,
            value,
            header_count,
            headers: &body[p..],
        })
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<Record<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.left == 0 {
            if self.pos != self.buf.len() {
                self.failed = true;
                return Some(Err(Error::MalformedRecord {
                    offset: self.pos,
                    what: "bytes left after the last record",
                }));
            }
            return None;
        }
        self.left -= 1;
        let record = self.read_record();
        self.failed = record.is_err();
        Some(record)
    }
}
