//! The request header, hand-written so a broker can read it before it knows whether it
//! supports the API and version (KIP-511 needs that for ApiVersions).
//!
//! ```text
//! v0: api_key i16, api_version i16, correlation_id i32
//! v1: + client_id nullable STRING (i16 length, even in flexible versions)
//! v2: + tagged fields
//! ```

use bytes::{Buf, Bytes};

use crate::error::{Error, Result};

/// A request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    /// Which API.
    pub api_key: i16,
    /// Which version of it.
    pub api_version: i16,
    /// Echoed in the response so the client can match it.
    pub correlation_id: i32,
    /// The client's self-chosen name, if sent.
    pub client_id: Option<Bytes>,
}

fn eof(offset: usize, need: usize, have: usize) -> Error {
    Error::UnexpectedEof { offset, need, have }
}

/// Reads the fixed part of a header (key, version, correlation id) without consuming it.
pub fn peek_header_fixed(frame: &[u8]) -> Result<(i16, i16, i32)> {
    if frame.len() < 8 {
        return Err(eof(0, 8, frame.len()));
    }
    Ok((
        i16::from_be_bytes([frame[0], frame[1]]),
        i16::from_be_bytes([frame[2], frame[3]]),
        i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    ))
}

/// Reads an unsigned varint off `buf`.
fn read_uvarint(buf: &mut Bytes, start: usize) -> Result<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        if !buf.has_remaining() {
            return Err(Error::MalformedVarint { offset: start });
        }
        let byte = buf.get_u8();
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(Error::MalformedVarint { offset: start })
}

/// Skips a tagged-fields section (count, then tag + size + bytes each).
pub fn skip_tagged_fields(buf: &mut Bytes) -> Result<()> {
    let count = read_uvarint(buf, 0)?;
    for _ in 0..count {
        let _tag = read_uvarint(buf, 0)?;
        let size = read_uvarint(buf, 0)?;
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size > buf.remaining() {
            return Err(eof(0, size, buf.remaining()));
        }
        buf.advance(size);
    }
    Ok(())
}

impl RequestHeader {
    /// Splits a request frame into its header (of `header_version`, 0 to 2) and body.
    /// The body shares the frame's memory.
    pub fn parse(mut frame: Bytes, header_version: i16) -> Result<(Self, Bytes)> {
        let (api_key, api_version, correlation_id) = peek_header_fixed(&frame)?;
        frame.advance(8);
        let mut client_id = None;
        if header_version >= 1 {
            if frame.remaining() < 2 {
                return Err(eof(8, 2, frame.remaining()));
            }
            let len = frame.get_i16();
            if len >= 0 {
                let len = len as usize;
                if frame.remaining() < len {
                    return Err(eof(10, len, frame.remaining()));
                }
                client_id = Some(frame.split_to(len));
            }
        }
        if header_version >= 2 {
            skip_tagged_fields(&mut frame)?;
        }
        Ok((
            Self {
                api_key,
                api_version,
                correlation_id,
                client_id,
            },
            frame,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_v2() -> Vec<u8> {
        let mut b = vec![0, 18, 0, 3, 0, 0, 0, 7, 0, 4];
        b.extend_from_slice(b"kcat");
        b.push(0); // no tagged fields
        b.extend_from_slice(b"body");
        b
    }

    #[test]
    fn parses_v2_and_keeps_the_body() {
        let (h, body) = RequestHeader::parse(Bytes::from(header_v2()), 2).expect("parse");
        assert_eq!((h.api_key, h.api_version, h.correlation_id), (18, 3, 7));
        assert_eq!(h.client_id.as_deref(), Some(&b"kcat"[..]));
        assert_eq!(&body[..], b"body");
    }

    #[test]
    fn every_truncated_prefix_fails() {
        let full = header_v2();
        for cut in 0..full.len() - 4 {
            assert!(
                RequestHeader::parse(Bytes::from(full[..cut].to_vec()), 2).is_err(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn null_client_id() {
        let b = vec![0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff];
        let (h, body) = RequestHeader::parse(Bytes::from(b), 1).expect("parse");
        assert_eq!(h.client_id, None);
        assert!(body.is_empty());
    }
}
