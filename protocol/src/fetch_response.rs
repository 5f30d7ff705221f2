//! Fetch responses (v4 to v12) laid out around record sets that are not in memory.
//!
//! A broker sends record sets straight from segment files (`sendfile`), so the
//! response cannot be one encoded buffer: [`encode`] writes the size prefix, header and
//! every partition's fields into byte pieces, and leaves a [`Piece::Records`] marker
//! where each partition's record bytes go. The caller sends the pieces in order, each
//! marker replaced by exactly `records_len` bytes. Checked against `kafka-protocol`'s
//! decoder and encoder at every version in [`VERSIONS`]. Sessions are not kept: session
//! id 0 (KIP-227 lets a broker decline them).
//!
//! ```text
//! size i32 | correlation_id i32 | [tagged fields: v12]
//! throttle_time_ms i32 | error_code i16, session_id i32: v7+
//! topics [ name | partitions [ index i32, error i16, high_watermark i64,
//!          last_stable_offset i64, log_start_offset i64: v5+,
//!          aborted_transactions (null), preferred_read_replica i32: v11+,
//!          records (length, then the bytes) | tagged: v12 ] | tagged: v12 ]
//! | tagged: v12
//! ```

use std::ops::RangeInclusive;

use bytes::{BufMut, Bytes, BytesMut};

use crate::varint::{put_length, put_string};

/// The versions [`encode`] writes (12 is the first flexible one).
pub const VERSIONS: RangeInclusive<i16> = 4..=12;

/// One partition's fields; its records are sent where [`encode`] puts its marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionHead {
    /// The partition.
    pub index: i32,
    /// Its error code (0 for none).
    pub error_code: i16,
    /// The high watermark.
    pub high_watermark: i64,
    /// The last stable offset (the high watermark without transactions).
    pub last_stable_offset: i64,
    /// The log start offset (v5+).
    pub log_start_offset: i64,
    /// Bytes of record sets that follow.
    pub records_len: u64,
}

/// A piece of a response, in wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Encoded bytes (the first one starts with the size prefix, which counts every
    /// piece and record set).
    Bytes(Bytes),
    /// Where the record bytes of partition `partition` of topic `topic` (indexes into
    /// what [`encode`] was given) go: exactly its `records_len` bytes.
    Records {
        /// Index of the topic.
        topic: usize,
        /// Index of the partition within it.
        partition: usize,
    },
}

fn put_partition(buf: &mut BytesMut, version: i16, p: &PartitionHead) {
    let flexible = version >= 12;
    buf.put_i32(p.index);
    buf.put_i16(p.error_code);
    buf.put_i64(p.high_watermark);
    buf.put_i64(p.last_stable_offset);
    if version >= 5 {
        buf.put_i64(p.log_start_offset);
    }
    if flexible {
        buf.put_u8(0); // aborted_transactions: null
    } else {
        buf.put_i32(-1);
    }
    if version >= 11 {
        buf.put_i32(-1); // preferred_read_replica
    }
    put_length(
        buf,
        usize::try_from(p.records_len).unwrap_or(usize::MAX),
        flexible,
    );
}

/// Lays out a response at `version` (in [`VERSIONS`]) for `topics`: each topic's name
/// and its partitions' fields, in order.
pub fn encode(
    version: i16,
    correlation_id: i32,
    topics: &[(&str, &[PartitionHead])],
) -> Vec<Piece> {
    let flexible = version >= 12;
    let mut pieces = Vec::new();
    let mut buf = BytesMut::with_capacity(256);
    let mut total: u64 = 0;
    buf.put_i32(0); // size, patched below
    buf.put_i32(correlation_id);
    if flexible {
        buf.put_u8(0); // header tagged fields
    }
    buf.put_i32(0); // throttle_time_ms
    if version >= 7 {
        buf.put_i16(0);
        buf.put_i32(0); // session_id: sessions not kept
    }
    put_length(&mut buf, topics.len(), flexible);
    for (t, (name, partitions)) in topics.iter().enumerate() {
        put_string(&mut buf, name, flexible);
        put_length(&mut buf, partitions.len(), flexible);
        for (i, p) in partitions.iter().enumerate() {
            put_partition(&mut buf, version, p);
            if p.records_len > 0 {
                total += buf.len() as u64 + p.records_len;
                pieces.push(Piece::Bytes(std::mem::take(&mut buf).freeze()));
                pieces.push(Piece::Records {
                    topic: t,
                    partition: i,
                });
            }
            if flexible {
                buf.put_u8(0); // partition tagged fields
            }
        }
        if flexible {
            buf.put_u8(0); // topic tagged fields
        }
    }
    if flexible {
        buf.put_u8(0); // response tagged fields
    }
    total += buf.len() as u64;
    pieces.push(Piece::Bytes(buf.freeze()));
    let size = i32::try_from(total - 4).unwrap_or(i32::MAX);
    if let Some(Piece::Bytes(first)) = pieces.first_mut() {
        let mut head = BytesMut::from(&first[..]);
        head[..4].copy_from_slice(&size.to_be_bytes());
        *first = head.freeze();
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::Compression;
    use crate::record_batch::{BatchBuilder, RecordSpec};
    use kafka_protocol::messages::fetch_response::FetchResponse;
    use kafka_protocol::protocol::{Decodable, Encodable};

    fn batch(values: &[&str]) -> Vec<u8> {
        let mut b = BatchBuilder::new(Compression::None, 1_000);
        for v in values {
            b.push(RecordSpec::value(v.to_string()));
        }
        b.build().expect("batch")
    }

    /// The response as one buffer: the pieces with each marker replaced by its records.
    fn whole(pieces: &[Piece], records: &[Vec<Vec<u8>>]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in pieces {
            match p {
                Piece::Bytes(b) => out.extend_from_slice(b),
                Piece::Records { topic, partition } => {
                    out.extend_from_slice(&records[*topic][*partition]);
                }
            }
        }
        out
    }

    #[test]
    fn kafka_protocol_reads_and_rewrites_what_we_lay_out_at_every_version() {
        let records = vec![
            vec![batch(&["a", "b"]), Vec::new(), batch(&["c"])],
            vec![batch(&["long value"; 3])],
        ];
        let heads = |t: usize| -> Vec<PartitionHead> {
            records[t]
                .iter()
                .enumerate()
                .map(|(i, r)| PartitionHead {
                    index: i as i32 * 2,
                    error_code: if r.is_empty() { 1 } else { 0 },
                    high_watermark: 40 + i as i64,
                    last_stable_offset: 40 + i as i64,
                    log_start_offset: 3,
                    records_len: r.len() as u64,
                })
                .collect()
        };
        let (alpha, beta) = (heads(0), heads(1));
        for version in VERSIONS {
            let pieces = encode(version, 77, &[("alpha", &alpha), ("beta", &beta)]);
            let bytes = whole(&pieces, &records);
            let size = i32::from_be_bytes(bytes[..4].try_into().expect("size"));
            assert_eq!(size as usize, bytes.len() - 4, "v{version}: size prefix");
            assert_eq!(&bytes[4..8], &77i32.to_be_bytes());
            let header = if version >= 12 { 9 } else { 8 };
            let mut body = Bytes::copy_from_slice(&bytes[header..]);
            let decoded = FetchResponse::decode(&mut body, version).expect("decode");
            assert!(body.is_empty(), "v{version}: bytes left over");
            assert_eq!(decoded.responses.len(), 2);
            for (t, (name, expect)) in [("alpha", &alpha), ("beta", &beta)].iter().enumerate() {
                let got = &decoded.responses[t];
                assert_eq!(got.topic.0.as_str(), *name);
                for (i, p) in got.partitions.iter().enumerate() {
                    assert_eq!(p.partition_index, expect[i].index);
                    assert_eq!(p.error_code, expect[i].error_code);
                    assert_eq!(p.high_watermark, expect[i].high_watermark);
                    if version >= 5 {
                        assert_eq!(p.log_start_offset, 3);
                    }
                    assert_eq!(p.records.as_deref().unwrap_or_default(), &records[t][i][..]);
                }
            }
            // kafka-protocol's own encoder writes the same bytes from what it read.
            let mut again = BytesMut::new();
            decoded.encode(&mut again, version).expect("encode");
            assert_eq!(
                &again[..],
                &bytes[header..],
                "v{version}: differs from kafka-protocol"
            );
        }
    }

    #[test]
    fn every_truncated_response_fails_to_decode() {
        let records = vec![vec![batch(&["x"])]];
        let head = [PartitionHead {
            index: 0,
            error_code: 0,
            high_watermark: 1,
            last_stable_offset: 1,
            log_start_offset: 0,
            records_len: records[0][0].len() as u64,
        }];
        for version in [4, 11, 12] {
            let bytes = whole(&encode(version, 1, &[("t", &head)]), &records);
            let header = if version >= 12 { 9 } else { 8 };
            for cut in header..bytes.len() {
                let mut body = Bytes::copy_from_slice(&bytes[header..cut]);
                assert!(
                    FetchResponse::decode(&mut body, version).is_err(),
                    "v{version} cut at {cut}"
                );
            }
        }
    }
}
