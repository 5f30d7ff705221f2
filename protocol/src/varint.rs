//! Zigzag-encoded variable-length integers (protobuf style), as Kafka records use them.
//!
//! `varint` is a zigzag i32, `varlong` a zigzag i64. A record's `timestampDelta` is a
//! varlong: decoding it as a 32-bit varint is a known bug in other implementations.

use crate::error::{Error, Result};

/// Decodes an unsigned LEB128 value of at most `max_bytes` bytes starting at `buf[*pos]`,
/// advancing `pos`.
fn read_unsigned(buf: &[u8], pos: &mut usize, max_bytes: usize) -> Result<u64> {
    let start = *pos;
    let mut value: u64 = 0;
    for i in 0..max_bytes {
        let byte = *buf
            .get(start + i)
            .ok_or(Error::MalformedVarint { offset: start })?;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *pos = start + i + 1;
            return Ok(value);
        }
    }
    Err(Error::MalformedVarint { offset: start })
}

/// Reads a zigzag varint (i32) at `buf[*pos]` and advances `pos` past it.
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<i32> {
    let start = *pos;
    let raw = read_unsigned(buf, pos, 5)?;
    let raw = u32::try_from(raw).map_err(|_| Error::MalformedVarint { offset: start })?;
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Reads a zigzag varlong (i64) at `buf[*pos]` and advances `pos` past it.
pub fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64> {
    let raw = read_unsigned(buf, pos, 10)?;
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

/// Zigzag-maps an i32 (small magnitudes to small numbers), as record fields use it.
pub fn zigzag32(value: i32) -> u64 {
    u64::from(((value << 1) ^ (value >> 31)) as u32)
}

/// Zigzag-maps an i64.
pub fn zigzag64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Number of bytes `value` takes as an unsigned LEB128 varint.
pub fn unsigned_varint_len(mut value: u64) -> usize {
    let mut n = 1;
    while value >= 0x80 {
        value >>= 7;
        n += 1;
    }
    n
}

/// Writes `value` as an unsigned LEB128 varint into any buffer (a `Vec`, a `BytesMut`).
pub fn put_unsigned_varint(out: &mut impl bytes::BufMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// Bytes a record's nullable varint-length field takes (key, value, header key or
/// value): the zigzag length (-1 for null) and the bytes.
pub fn varint_bytes_len(bytes: Option<&[u8]>) -> usize {
    match bytes {
        None => 1,
        Some(b) => unsigned_varint_len(zigzag32(b.len() as i32)) + b.len(),
    }
}

/// Writes a record's nullable varint-length field (see [`varint_bytes_len`]).
pub fn put_varint_bytes(out: &mut impl bytes::BufMut, bytes: Option<&[u8]>) {
    match bytes {
        None => put_unsigned_varint(out, zigzag32(-1)),
        Some(b) => {
            put_unsigned_varint(out, zigzag32(b.len() as i32));
            out.put_slice(b);
        }
    }
}

/// Writes an array or string length of a request or response: in flexible versions an
/// unsigned varint of `n + 1` (COMPACT_*), else an i32.
pub fn put_length(out: &mut impl bytes::BufMut, n: usize, flexible: bool) {
    if flexible {
        put_unsigned_varint(out, n as u64 + 1);
    } else {
        out.put_i32(i32::try_from(n).unwrap_or(i32::MAX));
    }
}

/// Writes a non-null string of a request or response: COMPACT_STRING in flexible
/// versions, else STRING (i16 length). Longer than a STRING can say (32,767 bytes), it
/// is cut there, prefix and bytes alike.
pub fn put_string(out: &mut impl bytes::BufMut, s: &str, flexible: bool) {
    let bytes = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
    if flexible {
        put_unsigned_varint(out, bytes.len() as u64 + 1);
    } else {
        out.put_i16(bytes.len() as i16);
    }
    out.put_slice(bytes);
}

/// Appends `value` as an unsigned LEB128 varint (used for the COMPACT_* length prefixes).
pub fn write_unsigned_varint(out: &mut Vec<u8>, value: u64) {
    put_unsigned_varint(out, value);
}

/// Appends `value` as a zigzag varint.
pub fn write_varint(out: &mut Vec<u8>, value: i32) {
    put_unsigned_varint(out, zigzag32(value));
}

/// Appends `value` as a zigzag varlong.
pub fn write_varlong(out: &mut Vec<u8>, value: i64) {
    put_unsigned_varint(out, zigzag64(value));
}

/// Number of bytes `value` takes as a zigzag varint.
pub fn varint_len(value: i32) -> usize {
    unsigned_varint_len(zigzag32(value))
}

/// Number of bytes `value` takes as a zigzag varlong.
pub fn varlong_len(value: i64) -> usize {
    unsigned_varint_len(zigzag64(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        let mut out = Vec::new();
        write_varint(&mut out, 0);
        write_varint(&mut out, -1);
        write_varint(&mut out, 1);
        write_varint(&mut out, 300);
        assert_eq!(out, [0x00, 0x01, 0x02, 0xd8, 0x04]);
    }

    #[test]
    fn varlong_keeps_values_beyond_i32() {
        let mut out = Vec::new();
        write_varlong(&mut out, 1_700_000_000_000);
        let mut pos = 0;
        assert_eq!(read_varlong(&out, &mut pos), Ok(1_700_000_000_000));
        assert_eq!(pos, out.len());
        let mut pos = 0;
        assert!(
            read_varint(&out, &mut pos).is_err(),
            "a varlong past i32 is not a varint"
        );
    }

    #[test]
    fn overlong_and_truncated_fail() {
        let mut pos = 0;
        assert!(read_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], &mut pos).is_err());
        let mut pos = 0;
        assert!(read_varlong(&[0x80, 0x80], &mut pos).is_err());
        let mut pos = 0;
        assert!(read_varint(&[], &mut pos).is_err());
    }

    proptest! {
        #[test]
        fn varint_round_trip(v: i32) {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            prop_assert_eq!(out.len(), varint_len(v));
            let mut pos = 0;
            prop_assert_eq!(read_varint(&out, &mut pos), Ok(v));
            prop_assert_eq!(pos, out.len());
        }

        #[test]
        fn varlong_round_trip(v: i64) {
            let mut out = Vec::new();
            write_varlong(&mut out, v);
            prop_assert_eq!(out.len(), varlong_len(v));
            let mut pos = 0;
            prop_assert_eq!(read_varlong(&out, &mut pos), Ok(v));
            prop_assert_eq!(pos, out.len());
        }

        #[test]
        fn nullable_bytes_round_trip(b in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300))) {
            let mut out = bytes::BytesMut::new();
            put_varint_bytes(&mut out, b.as_deref());
            prop_assert_eq!(out.len(), varint_bytes_len(b.as_deref()));
            let mut pos = 0;
            let len = read_varint(&out, &mut pos).expect("length");
            match &b {
                None => prop_assert_eq!(len, -1),
                Some(b) => prop_assert_eq!(&out[pos..], &b[..]),
            }
            // Every truncated prefix is short of the field it starts.
            for cut in 0..out.len() {
                let mut pos = 0;
                let fits = match read_varint(&out[..cut], &mut pos) {
                    Err(_) => false,
                    Ok(l) if l < 0 => true,
                    Ok(l) => pos + l as usize <= cut,
                };
                prop_assert!(!fits, "cut {}", cut);
            }
        }
    }
}
