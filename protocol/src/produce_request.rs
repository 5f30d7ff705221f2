//! Produce requests (v3 to v12; v10-v12 lay out the request as v9 does) written by hand so that record batches are not copied: the
//! request is a list of parts, small encoded pieces between the batches' own buffers,
//! gathered into one `writev` by the connection. Checked against `kafka-protocol`'s
//! decoder at every version in [`VERSIONS`].

use std::ops::RangeInclusive;

use bytes::{BufMut, Bytes, BytesMut};

use crate::varint::{put_length, put_string, put_unsigned_varint as put_uvarint};

/// The Produce API key.
const PRODUCE: i16 = 0;

/// The versions [`encode`] writes (9 is the first flexible one; 10 adds KIP-951's
/// leader hints and 11-12 KIP-890's error codes, all in the response). v13 names topics
/// by ID.
pub const VERSIONS: RangeInclusive<i16> = 3..=12;

/// One partition's batch.
#[derive(Debug)]
pub struct PartitionBatch {
    /// The partition.
    pub partition: i32,
    /// Its record batches, as built (sent without a copy).
    pub records: Bytes,
}

/// A Produce request as the connection sends it: `head` (size, header, first fields),
/// then `tail`.
#[derive(Debug)]
pub struct EncodedRequest {
    /// Size prefix, header and the fields before the first batch.
    pub head: BytesMut,
    /// The rest: batches and the small pieces between them.
    pub tail: Vec<Bytes>,
}

/// Encodes a Produce request at `version` (3 to 12; 9 is the first flexible one) for
/// `topics`, each with its partitions' batches. A transactional producer names its
/// `transactional_id`: Kafka refuses transactional batches in a request without it
/// (TRANSACTIONAL_ID_AUTHORIZATION_FAILED).
pub fn encode(
    version: i16,
    client_id: &str,
    transactional_id: Option<&str>,
    acks: i16,
    timeout_ms: i32,
    topics: &[(&str, Vec<PartitionBatch>)],
) -> EncodedRequest {
    let flexible = version >= 9;
    let mut tail = Vec::new();
    let mut cur = BytesMut::with_capacity(128);
    cur.put_i32(0); // size, set below
    cur.put_i16(PRODUCE);
    cur.put_i16(version);
    cur.put_i32(0); // correlation id, set by the connection
                    // Request header v1 (v2 when flexible): the client id is a classic nullable string.
    cur.put_i16(i16::try_from(client_id.len()).unwrap_or(i16::MAX));
    cur.put_slice(&client_id.as_bytes()[..client_id.len().min(i16::MAX as usize)]);
    if flexible {
        cur.put_u8(0); // header tagged fields
    }
    match transactional_id {
        Some(id) => put_string(&mut cur, id, flexible),
        None if flexible => put_uvarint(&mut cur, 0), // null (compact)
        None => cur.put_i16(-1),                      // null
    }
    cur.put_i16(acks);
    cur.put_i32(timeout_ms);
    put_length(&mut cur, topics.len(), flexible);
    let mut head: Option<BytesMut> = None;
    for (name, partitions) in topics {
        put_string(&mut cur, name, flexible);
        put_length(&mut cur, partitions.len(), flexible);
        for p in partitions {
            cur.put_i32(p.partition);
            if flexible {
                put_uvarint(&mut cur, p.records.len() as u64 + 1);
            } else {
                cur.put_i32(i32::try_from(p.records.len()).unwrap_or(i32::MAX));
            }
            let piece = std::mem::replace(&mut cur, BytesMut::with_capacity(32));
            match head {
                None => head = Some(piece),
                Some(_) => tail.push(piece.freeze()),
            }
            tail.push(p.records.clone());
            if flexible {
                cur.put_u8(0); // partition tagged fields
            }
        }
        if flexible {
            cur.put_u8(0); // topic tagged fields
        }
    }
    if flexible {
        cur.put_u8(0); // request tagged fields
    }
    let mut head = match head {
        Some(h) => {
            if !cur.is_empty() {
                tail.push(cur.freeze());
            }
            h
        }
        None => cur,
    };
    let total = head.len() + tail.iter().map(Bytes::len).sum::<usize>() - 4;
    head[..4].copy_from_slice(&i32::try_from(total).unwrap_or(i32::MAX).to_be_bytes());
    EncodedRequest { head, tail }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_request::ProduceRequest;
    use kafka_protocol::messages::RequestHeader;
    use kafka_protocol::protocol::Decodable;

    #[test]
    fn kafka_protocol_decodes_what_we_encode_at_every_version() {
        let a = Bytes::from_static(b"first batch bytes");
        let b = Bytes::from_static(b"second");
        for version in VERSIONS {
            let topics = vec![
                (
                    "alpha",
                    vec![
                        PartitionBatch {
                            partition: 0,
                            records: a.clone(),
                        },
                        PartitionBatch {
                            partition: 3,
                            records: b.clone(),
                        },
                    ],
                ),
                (
                    "beta",
                    vec![PartitionBatch {
                        partition: 1,
                        records: a.clone(),
                    }],
                ),
            ];
            let txn_id = (version % 2 == 0).then_some("txn-7");
            let req = encode(version, "me", txn_id, -1, 1234, &topics);
            let mut whole = BytesMut::from(&req.head[..]);
            for t in &req.tail {
                whole.extend_from_slice(t);
            }
            let size = i32::from_be_bytes(whole[..4].try_into().expect("size"));
            assert_eq!(size as usize, whole.len() - 4);
            let mut frame = whole.freeze().slice(4..);
            let header_version = if version >= 9 { 2 } else { 1 };
            let header = RequestHeader::decode(&mut frame, header_version).expect("header");
            assert_eq!(
                (header.request_api_key, header.request_api_version),
                (0, version)
            );
            assert_eq!(header.client_id.as_deref(), Some("me"));
            let decoded = ProduceRequest::decode(&mut frame, version).expect("body");
            assert!(frame.is_empty(), "v{version}: bytes left over");
            assert_eq!((decoded.acks, decoded.timeout_ms), (-1, 1234));
            assert_eq!(
                decoded.transactional_id.as_ref().map(|t| t.0.as_str()),
                txn_id,
                "v{version}"
            );
            assert_eq!(decoded.topic_data.len(), 2);
            assert_eq!(decoded.topic_data[0].name.0.as_str(), "alpha");
            assert_eq!(decoded.topic_data[0].partition_data[1].index, 3);
            assert_eq!(
                decoded.topic_data[0].partition_data[1].records,
                Some(b.clone())
            );
            assert_eq!(
                decoded.topic_data[1].partition_data[0].records,
                Some(a.clone())
            );
        }
    }
}
