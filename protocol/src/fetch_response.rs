//! Fetch responses (v4 to v18) laid out around record sets that are not in memory.
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
//! size i32 | correlation_id i32 | [tagged fields: v12+]
//! throttle_time_ms i32 | error_code i16, session_id i32: v7+
//! topics [ name (v4-12) or topic_id uuid (v13+)
//!        | partitions [ index i32, error i16, high_watermark i64,
//!          last_stable_offset i64, log_start_offset i64: v5+,
//!          aborted_transactions (null; the list under read_committed), preferred_read_replica i32: v11+,
//!          records (length, then the bytes)
//!          | tagged (v12+): 1 current_leader {leader_id i32, leader_epoch i32} ]
//!        | tagged: v12+ ]
//! | tagged (v12+): 0 node_endpoints [ node_id i32, host, port i32, rack ] (v16+)
//! ```

use std::ops::RangeInclusive;

use bytes::{BufMut, Bytes, BytesMut};

use crate::varint::{put_length, put_string, put_unsigned_varint};

/// The versions [`encode`] writes (12 is the first flexible one, 13 the first that names
/// topics by ID).
pub const VERSIONS: RangeInclusive<i16> = 4..=18;

/// The first version that names topics by ID instead of by name.
pub const TOPIC_ID_VERSION: i16 = 13;

/// A topic as the response names it: by name up to v12, by ID from v13.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicKey<'a> {
    /// The topic's name.
    pub name: &'a str,
    /// The topic's ID (its UUID's 16 bytes; all zero when unknown).
    pub id: [u8; 16],
}

/// The partition's leader and its epoch, sent with FENCED_LEADER_EPOCH or
/// NOT_LEADER_OR_FOLLOWER so a client need not ask Metadata first (KIP-951).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentLeader {
    /// The leader's node ID.
    pub leader_id: i32,
    /// Its leader epoch.
    pub leader_epoch: i32,
}

/// A broker a response's current leaders name (v16+), so a client can reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEndpoint {
    /// The node ID.
    pub node_id: i32,
    /// Its advertised host.
    pub host: String,
    /// Its advertised port.
    pub port: i32,
    /// Its rack, if any.
    pub rack: Option<String>,
}

/// A transaction aborted in the fetched range (read_committed): its producer and the
/// offset of its first record, so the client drops that producer's records from there
/// to its ABORT marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTransaction {
    /// The producer.
    pub producer_id: i64,
    /// Its first record's offset.
    pub first_offset: i64,
}

/// One partition's fields; its records are sent where [`encode`] puts its marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionHead<'a> {
    /// The partition.
    pub index: i32,
    /// Its error code (0 for none).
    pub error_code: i16,
    /// The high watermark.
    pub high_watermark: i64,
    /// The last stable offset (the high watermark without transactions).
    pub last_stable_offset: i64,
    /// Aborted transactions of the range (read_committed); `None` (null) otherwise.
    pub aborted: Option<&'a [AbortedTransaction]>,
    /// The log start offset (v5+).
    pub log_start_offset: i64,
    /// Bytes of record sets that follow.
    pub records_len: u64,
    /// The leader to tell the client about (v12+), if any.
    pub current_leader: Option<CurrentLeader>,
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

fn put_partition(buf: &mut BytesMut, version: i16, p: &PartitionHead<'_>) {
    let flexible = version >= 12;
    buf.put_i32(p.index);
    buf.put_i16(p.error_code);
    buf.put_i64(p.high_watermark);
    buf.put_i64(p.last_stable_offset);
    if version >= 5 {
        buf.put_i64(p.log_start_offset);
    }
    match p.aborted {
        None if flexible => buf.put_u8(0), // null
        None => buf.put_i32(-1),
        Some(aborted) => {
            put_length(buf, aborted.len(), flexible);
            for a in aborted {
                buf.put_i64(a.producer_id);
                buf.put_i64(a.first_offset);
                if flexible {
                    buf.put_u8(0); // the entry's tagged fields
                }
            }
        }
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

/// A partition's tagged fields: `current_leader` (tag 1) when set.
fn put_partition_tags(buf: &mut BytesMut, p: &PartitionHead<'_>) {
    match p.current_leader {
        None => buf.put_u8(0),
        Some(leader) => {
            buf.put_u8(1); // one tagged field
            buf.put_u8(1); // tag 1: current_leader
            buf.put_u8(9); // its size: two i32 and an empty tag buffer
            buf.put_i32(leader.leader_id);
            buf.put_i32(leader.leader_epoch);
            buf.put_u8(0);
        }
    }
}

/// The response's tagged fields: `node_endpoints` (tag 0, v16+) when there are any.
fn put_response_tags(buf: &mut BytesMut, version: i16, nodes: &[NodeEndpoint]) {
    if version < 16 || nodes.is_empty() {
        buf.put_u8(0);
        return;
    }
    let mut field = BytesMut::new();
    put_length(&mut field, nodes.len(), true);
    for n in nodes {
        field.put_i32(n.node_id);
        put_string(&mut field, &n.host, true);
        field.put_i32(n.port);
        match &n.rack {
            Some(rack) => put_string(&mut field, rack, true),
            None => field.put_u8(0), // null
        }
        field.put_u8(0); // node tagged fields
    }
    buf.put_u8(1); // one tagged field
    buf.put_u8(0); // tag 0: node_endpoints
    put_unsigned_varint(buf, field.len() as u64);
    buf.put_slice(&field);
}

/// Lays out a response at `version` (in [`VERSIONS`]) for `topics`: each topic's name
/// (or ID from v13) and its partitions' fields, in order; `nodes` are the brokers the
/// partitions' current leaders name (sent from v16).
pub fn encode(
    version: i16,
    correlation_id: i32,
    topics: &[(TopicKey<'_>, &[PartitionHead<'_>])],
    nodes: &[NodeEndpoint],
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
    for (t, (topic, partitions)) in topics.iter().enumerate() {
        if version >= TOPIC_ID_VERSION {
            buf.put_slice(&topic.id);
        } else {
            put_string(&mut buf, topic.name, flexible);
        }
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
                put_partition_tags(&mut buf, p);
            }
        }
        if flexible {
            buf.put_u8(0); // topic tagged fields
        }
    }
    if flexible {
        put_response_tags(&mut buf, version, nodes);
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

    fn key(name: &str) -> TopicKey<'_> {
        let mut id = [0u8; 16];
        for (i, b) in name.bytes().enumerate().take(16) {
            id[i] = b;
        }
        id[15] = 7;
        TopicKey { name, id }
    }

    #[test]
    fn kafka_protocol_reads_and_rewrites_what_we_lay_out_at_every_version() {
        let records = vec![
            vec![batch(&["a", "b"]), Vec::new(), batch(&["c"])],
            vec![batch(&["long value"; 3])],
        ];
        let aborted = [
            AbortedTransaction {
                producer_id: 9,
                first_offset: 30,
            },
            AbortedTransaction {
                producer_id: 4,
                first_offset: 38,
            },
        ];
        let heads = |t: usize| -> Vec<PartitionHead<'_>> {
            records[t]
                .iter()
                .enumerate()
                .map(|(i, r)| PartitionHead {
                    index: i as i32 * 2,
                    error_code: if r.is_empty() { 74 } else { 0 },
                    high_watermark: 40 + i as i64,
                    last_stable_offset: 40 + i as i64,
                    // read_committed lists aborted transactions (none, or two).
                    aborted: (i > 0).then_some(&aborted[..i.min(2)]),
                    log_start_offset: 3,
                    records_len: r.len() as u64,
                    // A fenced partition names its leader.
                    current_leader: r.is_empty().then_some(CurrentLeader {
                        leader_id: 1,
                        leader_epoch: 5,
                    }),
                })
                .collect()
        };
        let nodes = [NodeEndpoint {
            node_id: 1,
            host: "broker.example".into(),
            port: 9092,
            rack: None,
        }];
        let (alpha, beta) = (heads(0), heads(1));
        for version in VERSIONS {
            let topics = [
                (key("alpha"), alpha.as_slice()),
                (key("beta"), beta.as_slice()),
            ];
            let pieces = encode(version, 77, &topics, &nodes);
            let bytes = whole(&pieces, &records);
            let size = i32::from_be_bytes(bytes[..4].try_into().expect("size"));
            assert_eq!(size as usize, bytes.len() - 4, "v{version}: size prefix");
            assert_eq!(&bytes[4..8], &77i32.to_be_bytes());
            let header = if version >= 12 { 9 } else { 8 };
            let mut body = Bytes::copy_from_slice(&bytes[header..]);
            let decoded = FetchResponse::decode(&mut body, version).expect("decode");
            assert!(body.is_empty(), "v{version}: bytes left over");
            assert_eq!(decoded.responses.len(), 2);
            for (t, (topic, expect)) in topics.iter().enumerate() {
                let got = &decoded.responses[t];
                if version >= TOPIC_ID_VERSION {
                    assert_eq!(got.topic_id.as_bytes(), &topic.id, "v{version}: topic id");
                } else {
                    assert_eq!(got.topic.0.as_str(), topic.name);
                }
                for (i, p) in got.partitions.iter().enumerate() {
                    assert_eq!(p.partition_index, expect[i].index);
                    assert_eq!(p.error_code, expect[i].error_code);
                    assert_eq!(p.high_watermark, expect[i].high_watermark);
                    if version >= 5 {
                        assert_eq!(p.log_start_offset, 3);
                    }
                    let got_aborted: Option<Vec<(i64, i64)>> =
                        p.aborted_transactions.as_ref().map(|a| {
                            a.iter()
                                .map(|a| (a.producer_id.0, a.first_offset))
                                .collect()
                        });
                    let want: Option<Vec<(i64, i64)>> = expect[i]
                        .aborted
                        .map(|a| a.iter().map(|a| (a.producer_id, a.first_offset)).collect());
                    assert_eq!(got_aborted, want, "v{version}: aborted transactions");
                    if version >= 12 {
                        let leader = expect[i]
                            .current_leader
                            .map_or((-1, -1), |l| (l.leader_id, l.leader_epoch));
                        assert_eq!(
                            (p.current_leader.leader_id.0, p.current_leader.leader_epoch),
                            leader
                        );
                    }
                    assert_eq!(p.records.as_deref().unwrap_or_default(), &records[t][i][..]);
                }
            }
            if version >= 16 {
                assert_eq!(decoded.node_endpoints.len(), 1);
                assert_eq!(decoded.node_endpoints[0].host.as_str(), "broker.example");
                assert_eq!(decoded.node_endpoints[0].port, 9092);
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
            aborted: Some(&[]),
            log_start_offset: 0,
            records_len: records[0][0].len() as u64,
            current_leader: None,
        }];
        for version in [4, 11, 12, 13, 18] {
            let bytes = whole(&encode(version, 1, &[(key("t"), &head)], &[]), &records);
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
