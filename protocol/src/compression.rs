//! The record-batch codecs, written and read the way Kafka clients do.
//!
//! - gzip: a plain gzip stream.
//! - snappy: written with the xerial framing the Java client expects; read both the xerial
//!   framing and the raw block librdkafka may send.
//! - lz4: the LZ4 frame format (magic `0x184D2204`).
//! - zstd: one zstd frame.
//!
//! Decompression always takes a byte limit so a small hostile batch cannot expand into
//! gigabytes.

use std::io::Read;

use crate::error::{Error, Result};

/// A batch's codec, from bits 0-2 of its attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Records stored as they are.
    #[default]
    None,
    /// gzip (codec 1).
    Gzip,
    /// snappy (codec 2).
    Snappy,
    /// lz4 frame (codec 3).
    Lz4,
    /// zstd (codec 4).
    Zstd,
}

/// Magic that opens a xerial-framed snappy stream.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// Xerial header: magic, version i32, compatible version i32.
const XERIAL_HEADER_LEN: usize = 16;
/// Largest uncompressed block the xerial writer emits (what the Java client uses).
const XERIAL_BLOCK: usize = 32 * 1024;

impl Compression {
    /// The codec named by attribute bits 0-2.
    pub fn from_attributes(attributes: i16) -> Result<Self> {
        match attributes & 0x07 {
            0 => Ok(Self::None),
            1 => Ok(Self::Gzip),
            2 => Ok(Self::Snappy),
            3 => Ok(Self::Lz4),
            4 => Ok(Self::Zstd),
            codec => Err(Error::UnknownCodec { codec }),
        }
    }

    /// The attribute bits for this codec.
    pub fn attribute_bits(self) -> i16 {
        match self {
            Self::None => 0,
            Self::Gzip => 1,
            Self::Snappy => 2,
            Self::Lz4 => 3,
            Self::Zstd => 4,
        }
    }

    /// Compresses `input` as one block of this codec.
    pub fn compress(self, input: &[u8]) -> Result<Vec<u8>> {
        let corrupt = |reason: String| Error::CorruptCompressed {
            codec: self,
            reason,
        };
        match self {
            Self::None => Ok(input.to_vec()),
            Self::Gzip => {
                use std::io::Write;
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(input).map_err(|e| corrupt(e.to_string()))?;
                enc.finish().map_err(|e| corrupt(e.to_string()))
            }
            Self::Snappy => xerial_compress(input).map_err(|e| corrupt(e.to_string())),
            Self::Lz4 => {
                use std::io::Write;
                let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
                enc.write_all(input).map_err(|e| corrupt(e.to_string()))?;
                enc.finish().map_err(|e| corrupt(e.to_string()))
            }
            Self::Zstd => zstd::bulk::compress(input, 1).map_err(|e| corrupt(e.to_string())),
        }
    }

    /// Decompresses `input`, failing if the result would exceed `limit` bytes.
    pub fn decompress(self, input: &[u8], limit: usize) -> Result<Vec<u8>> {
        match self {
            Self::None => {
                if input.len() > limit {
                    return Err(Error::DecompressedTooLarge { codec: self, limit });
                }
                Ok(input.to_vec())
            }
            Self::Gzip => read_bounded(self, flate2::read::MultiGzDecoder::new(input), limit),
            Self::Snappy => snappy_decompress(input, limit),
            Self::Lz4 => read_bounded(self, lz4_flex::frame::FrameDecoder::new(input), limit),
            Self::Zstd => {
                let dec = zstd::stream::read::Decoder::new(input).map_err(|e| {
                    Error::CorruptCompressed {
                        codec: self,
                        reason: e.to_string(),
                    }
                })?;
                read_bounded(self, dec, limit)
            }
        }
    }
}

/// Reads `reader` to its end, refusing to hold more than `limit` bytes.
fn read_bounded(codec: Compression, reader: impl Read, limit: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| Error::CorruptCompressed {
            codec,
            reason: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(Error::DecompressedTooLarge { codec, limit });
    }
    Ok(out)
}

fn xerial_compress(input: &[u8]) -> std::result::Result<Vec<u8>, snap::Error> {
    let mut out = Vec::with_capacity(XERIAL_HEADER_LEN + input.len() / 2 + 64);
    out.extend_from_slice(&XERIAL_MAGIC);
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    for chunk in input.chunks(XERIAL_BLOCK) {
        let block = encoder.compress_vec(chunk)?;
        let len = i32::try_from(block.len()).unwrap_or(i32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&block);
    }
    Ok(out)
}

fn snappy_decompress(input: &[u8], limit: usize) -> Result<Vec<u8>> {
    let codec = Compression::Snappy;
    let corrupt = |reason: String| Error::CorruptCompressed { codec, reason };
    let mut decoder = snap::raw::Decoder::new();
    let mut decode_block = |block: &[u8], out: &mut Vec<u8>| -> Result<()> {
        let len = snap::raw::decompress_len(block).map_err(|e| corrupt(e.to_string()))?;
        if out.len().saturating_add(len) > limit {
            return Err(Error::DecompressedTooLarge { codec, limit });
        }
        let start = out.len();
        out.resize(start + len, 0);
        let written = decoder
            .decompress(block, &mut out[start..])
            .map_err(|e| corrupt(e.to_string()))?;
        out.truncate(start + written);
        Ok(())
    };
    let mut out = Vec::new();
    if !input.starts_with(&XERIAL_MAGIC) {
        decode_block(input, &mut out)?;
        return Ok(out);
    }
    let mut pos = XERIAL_HEADER_LEN.min(input.len());
    while pos < input.len() {
        let len_bytes = input
            .get(pos..pos + 4)
            .ok_or_else(|| corrupt(format!("truncated xerial block length at {pos}")))?;
        let len = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        let len =
            usize::try_from(len).map_err(|_| corrupt(format!("negative block length at {pos}")))?;
        let block = input
            .get(pos + 4..pos + 4 + len)
            .ok_or_else(|| corrupt(format!("truncated xerial block at {pos}")))?;
        decode_block(block, &mut out)?;
        pos += 4 + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn sample() -> Vec<u8> {
        (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn every_codec_round_trips() {
        let input = sample();
        for codec in ALL {
            let packed = codec.compress(&input).expect("compress");
            let unpacked = codec.decompress(&packed, input.len()).expect("decompress");
            assert_eq!(unpacked, input, "{codec:?}");
        }
    }

    #[test]
    fn limit_is_enforced() {
        let input = sample();
        for codec in ALL {
            let packed = codec.compress(&input).expect("compress");
            let err = codec
                .decompress(&packed, input.len() - 1)
                .expect_err("over limit");
            assert_eq!(
                err,
                Error::DecompressedTooLarge {
                    codec,
                    limit: input.len() - 1
                }
            );
        }
    }

    #[test]
    fn snappy_reads_raw_blocks_and_xerial_frames() {
        let input = sample();
        let raw = snap::raw::Encoder::new().compress_vec(&input).expect("raw");
        assert_eq!(
            Compression::Snappy
                .decompress(&raw, usize::MAX)
                .expect("raw"),
            input
        );
        let framed = Compression::Snappy.compress(&input).expect("xerial");
        assert!(framed.starts_with(&XERIAL_MAGIC));
        assert_eq!(
            Compression::Snappy
                .decompress(&framed, usize::MAX)
                .expect("xerial"),
            input
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let garbage: Vec<u8> = (0..500u32).map(|i| (i * 7 + 3) as u8).collect();
        for codec in &ALL[1..] {
            assert!(codec.decompress(&garbage, 1 << 20).is_err(), "{codec:?}");
        }
        let mut framed = Compression::Snappy.compress(&sample()).expect("xerial");
        framed.truncate(framed.len() - 10);
        assert!(Compression::Snappy.decompress(&framed, usize::MAX).is_err());
    }

    #[test]
    fn codec_bits_map_both_ways() {
        for codec in ALL {
            assert_eq!(
                Compression::from_attributes(codec.attribute_bits()),
                Ok(codec)
            );
        }
        assert_eq!(
            Compression::from_attributes(5),
            Err(Error::UnknownCodec { codec: 5 })
        );
    }
}
