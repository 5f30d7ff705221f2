//! The response header, read by clients before the body:
//!
//! ```text
//! v0: correlation_id i32
//! v1: + tagged fields (flexible versions; never for ApiVersions)
//! ```

use bytes::{Buf, Bytes};

use crate::error::{Error, Result};
use crate::request_header::skip_tagged_fields;

/// Reads the header of a response `frame` (size prefix already removed) at
/// `header_version`: the correlation id and the body after the header.
pub fn parse_response_header(mut frame: Bytes, header_version: i16) -> Result<(i32, Bytes)> {
    if frame.len() < 4 {
        return Err(Error::UnexpectedEof {
            offset: 0,
            need: 4,
            have: frame.len(),
        });
    }
    let correlation_id = frame.get_i32();
    if header_version >= 1 {
        skip_tagged_fields(&mut frame)?;
    }
    Ok((correlation_id, frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1_frame() -> Vec<u8> {
        let mut f = 7i32.to_be_bytes().to_vec();
        // One tagged field: tag 3, 2 bytes.
        f.extend_from_slice(&[1, 3, 2, 0xaa, 0xbb]);
        f.extend_from_slice(b"body");
        f
    }

    #[test]
    fn the_header_is_skipped_and_the_body_kept() {
        let (id, body) = parse_response_header(Bytes::from(v1_frame()), 1).expect("v1");
        assert_eq!((id, &body[..]), (7, &b"body"[..]));
        let mut v0 = 9i32.to_be_bytes().to_vec();
        v0.push(1);
        let (id, body) = parse_response_header(Bytes::from(v0), 0).expect("v0");
        assert_eq!((id, &body[..]), (9, &[1u8][..]));
    }

    #[test]
    fn every_truncated_header_fails() {
        let whole = v1_frame();
        // The header is 9 bytes: id, count, tag, size, two bytes of field.
        for cut in 0..9 {
            assert!(
                parse_response_header(Bytes::copy_from_slice(&whole[..cut]), 1).is_err(),
                "{cut}"
            );
        }
    }
}
