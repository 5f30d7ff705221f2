//! Kafka framing: every request and response is a 4-byte big-endian size, then that many
//! bytes.
//!
//! "Not a whole frame yet" is `Ok(None)`, a normal state. A size that is negative or over
//! the limit is refused before anything is reserved for it.

use bytes::{Buf, Bytes, BytesMut};

/// Why a frame cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The size prefix is negative or larger than the configured maximum
    /// (`socket.request.max.bytes`).
    #[error("frame size {size} outside 0..={max}")]
    BadSize {
        /// The size the peer sent.
        size: i32,
        /// The limit.
        max: usize,
    },
}

/// Takes one whole frame off the front of `buf`, if there is one. Reserves room for the
/// rest of a frame only once its size has been checked against `max`.
pub fn decode_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let len = usize::try_from(size).map_err(|_| FrameError::BadSize { size, max })?;
    if len > max {
        return Err(FrameError::BadSize { size, max });
    }
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(len).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_frames_only() {
        let mut buf = BytesMut::from(&[0, 0, 0, 3, b'a', b'b'][..]);
        assert_eq!(decode_frame(&mut buf, 100), Ok(None));
        buf.extend_from_slice(&[b'c', 0, 0]);
        assert_eq!(
            decode_frame(&mut buf, 100),
            Ok(Some(Bytes::from_static(b"abc")))
        );
        assert_eq!(decode_frame(&mut buf, 100), Ok(None));
        assert_eq!(buf.len(), 2);
    }

    #[test]
    fn bad_sizes_are_refused_before_reserving() {
        let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
        assert!(decode_frame(&mut buf, 1 << 20).is_err());
        assert!(buf.capacity() < 1 << 20);
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        assert_eq!(
            decode_frame(&mut buf, 100),
            Err(FrameError::BadSize { size: -1, max: 100 })
        );
    }
}
