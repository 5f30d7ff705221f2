//! How deeply a produced batch is checked beyond its header and CRC.
//!
//! Kafka always decompresses to validate; Fjord by default does not (the broker stores
//! what it received), and offers the full check per topic for operators who want it.

use crate::compression::Compression;
use crate::error::{Error, Result};
use crate::record_batch::header::{BatchHeader, BATCH_HEADER_LEN};
use crate::record_batch::records::RecordIter;
use crate::varint::read_varint;

/// Depth of record validation on append (`fjord.produce.validation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordValidation {
    /// Header fields and CRC only (what `validate_batch` checks): the storage engine's
    /// own default.
    Header,
    /// Uncompressed batches: walk the record length prefixes, which must add up to the
    /// payload exactly; compressed payloads are not opened. Costs one pass over the
    /// varints, no copy.
    #[default]
    Lengths,
    /// Decompress and decode every record: offset deltas must count 0, 1, 2, ..., and
    /// keys, values and headers must be well formed.
    Full,
}

/// Checks the records of `batch` (whose header is `header`) at `level`. `max_decompressed`
/// bounds the memory a compressed batch may expand to.
pub fn validate_records(
    batch: &[u8],
    header: &BatchHeader,
    level: RecordValidation,
    max_decompressed: usize,
) -> Result<()> {
    let payload = batch.get(BATCH_HEADER_LEN..).unwrap_or_default();
    let count = usize::try_from(header.records_count).unwrap_or(0);
    let codec = header.compression()?;
    match (level, codec) {
        (RecordValidation::Header, _) => Ok(()),
        (RecordValidation::Lengths, Compression::None) => walk_lengths(payload, count),
        (RecordValidation::Lengths, _) => Ok(()),
        (RecordValidation::Full, codec) => {
            let owned;
            let records = if codec == Compression::None {
                payload
            } else {
                owned = codec.decompress(payload, max_decompressed)?;
                &owned
            };
            for (i, record) in RecordIter::new(records, count).enumerate() {
                let record = record?;
                if usize::try_from(record.offset_delta).ok() != Some(i) {
                    return Err(Error::MalformedRecord {
                        offset: i,
                        what: "offset deltas must count up from 0",
                    });
                }
                for h in record.headers() {
                    h?;
                }
            }
            Ok(())
        }
    }
}

/// Checks that every record of `batch` has a key (a compacted topic's rule, as Kafka's
/// `LogValidator`): the payload is decompressed for it, within `max_decompressed`.
pub fn require_keys(batch: &[u8], header: &BatchHeader, max_decompressed: usize) -> Result<()> {
    if header.is_control() {
        return Ok(());
    }
    let payload = batch.get(BATCH_HEADER_LEN..).unwrap_or_default();
    let count = usize::try_from(header.records_count).unwrap_or(0);
    let codec = header.compression()?;
    let owned;
    let records = if codec == Compression::None {
        payload
    } else {
        owned = codec.decompress(payload, max_decompressed)?;
        &owned
    };
    for (index, record) in RecordIter::new(records, count).enumerate() {
        if record?.key.is_none() {
            return Err(Error::MissingKey { index });
        }
    }
    Ok(())
}

/// `count` records whose varint length prefixes cover `payload` exactly.
fn walk_lengths(payload: &[u8], count: usize) -> Result<()> {
    let mut pos = 0;
    for _ in 0..count {
        let at = pos;
        // Records under 64 bytes have a one-byte prefix: decode it inline.
        let len = match payload.get(pos) {
            Some(&b) if b < 0x80 => {
                pos += 1;
                i64::from(b >> 1) ^ -i64::from(b & 1)
            }
            _ => i64::from(read_varint(payload, &mut pos)?),
        };
        let len = usize::try_from(len).map_err(|_| Error::MalformedRecord {
            offset: at,
            what: "negative record length",
        })?;
        pos = pos
            .checked_add(len)
            .filter(|end| *end <= payload.len())
            .ok_or(Error::MalformedRecord {
                offset: at,
                what: "record longer than batch",
            })?;
    }
    if pos != payload.len() {
        return Err(Error::MalformedRecord {
            offset: pos,
            what: "bytes left after the last record",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_batch::{validate_batch, BatchBuilder, RecordSpec};

    fn batch(codec: Compression) -> Vec<u8> {
        let mut b = BatchBuilder::new(codec, 0);
        for i in 0..20 {
            b.push(
                RecordSpec::value(vec![i as u8; 30])
                    .with_key("k")
                    .with_header("h", Some(b"v".to_vec())),
            );
        }
        b.build().expect("build")
    }

    fn resign(bytes: &mut [u8]) {
        let crc = crate::crc::crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn good_batches_pass_at_every_level() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = batch(codec);
            let h = validate_batch(&b).expect("valid");
            validate_records(&b, &h, RecordValidation::Header, 1 << 20).expect("header");
            validate_records(&b, &h, RecordValidation::Lengths, 1 << 20).expect("lengths");
            validate_records(&b, &h, RecordValidation::Full, 1 << 20).expect("full");
        }
    }

    #[test]
    fn a_wrong_record_length_fails_the_cheap_walk() {
        let mut b = batch(Compression::None);
        b[61] = b[61].wrapping_add(2); // first record's length prefix
        resign(&mut b);
        let h = validate_batch(&b).expect("header and crc still valid");
        assert!(validate_records(&b, &h, RecordValidation::Lengths, 1 << 20).is_err());
    }

    #[test]
    fn garbage_inside_a_compressed_batch_needs_the_full_check() {
        let mut b = batch(Compression::Lz4);
        let n = b.len();
        b[n - 20..n - 8].fill(0xee);
        resign(&mut b);
        let h = validate_batch(&b).expect("header and crc still valid");
        assert!(
            validate_records(&b, &h, RecordValidation::Lengths, 1 << 20).is_ok(),
            "not opened"
        );
        assert!(validate_records(&b, &h, RecordValidation::Full, 1 << 20).is_err());
    }
}
