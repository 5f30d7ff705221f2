//! The records of the committed-offsets log, in Kafka's own `__consumer_offsets` layout:
//! key version 1 (group, topic, partition) and value version 3 (offset, leader epoch,
//! metadata, commit timestamp). A null value is a tombstone: the commit was deleted.

use bytes::{Buf, BufMut};

/// Key schema version of an offset commit (Kafka's `OffsetCommitKey` v1).
const KEY_VERSION: i16 = 1;
/// Value schema version written (Kafka's `OffsetCommitValue` v3).
const VALUE_VERSION: i16 = 3;

/// Which partition of which group a commit is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OffsetKey {
    /// The consumer group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The next offset the group will read.
    pub offset: i64,
    /// The leader epoch the consumer saw, or -1.
    pub leader_epoch: i32,
    /// The client's metadata string.
    pub metadata: Option<String>,
    /// When the commit was made (ms since the epoch).
    pub commit_ms: i64,
}

/// Why a stored record could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("undecodable offsets record: {0}")]
pub struct DecodeError(&'static str);

fn put_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    // Group ids and topic names are bounded by the request that carried them (i16 length).
    out.put_i16(i16::try_from(bytes.len()).unwrap_or(i16::MAX));
    out.put_slice(&bytes[..bytes.len().min(i16::MAX as usize)]);
}

fn get_str(buf: &mut &[u8]) -> Result<Option<String>, DecodeError> {
    if buf.remaining() < 2 {
        return Err(DecodeError("truncated string length"));
    }
    let len = buf.get_i16();
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if buf.remaining() < len {
        return Err(DecodeError("truncated string"));
    }
    let s = std::str::from_utf8(&buf[..len]).map_err(|_| DecodeError("string not UTF-8"))?;
    let s = s.to_string();
    buf.advance(len);
    Ok(Some(s))
}

impl OffsetKey {
    /// The record key bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(10 + self.group.len() + self.topic.len());
        out.put_i16(KEY_VERSION);
        put_str(&mut out, &self.group);
        put_str(&mut out, &self.topic);
        out.put_i32(self.partition);
        out
    }

    /// Reads a key written by [`OffsetKey::encode`] (versions 0 and 1 share the layout).
    pub fn decode(mut buf: &[u8]) -> Result<Self, DecodeError> {
        if buf.remaining() < 2 {
            return Err(DecodeError("truncated key"));
        }
        if !matches!(buf.get_i16(), 0 | 1) {
            return Err(DecodeError("not an offset commit key"));
        }
        let group = get_str(&mut buf)?.ok_or(DecodeError("null group"))?;
        let topic = get_str(&mut buf)?.ok_or(DecodeError("null topic"))?;
        if buf.remaining() < 4 {
            return Err(DecodeError("truncated partition"));
        }
        Ok(Self {
            group,
            topic,
            partition: buf.get_i32(),
        })
    }
}

impl Committed {
    /// The record value bytes.
    pub fn encode(&self) -> Vec<u8> {
        let metadata = self.metadata.as_deref().unwrap_or("");
        let mut out = Vec::with_capacity(24 + metadata.len());
        out.put_i16(VALUE_VERSION);
        out.put_i64(self.offset);
        out.put_i32(self.leader_epoch);
        put_str(&mut out, metadata);
        out.put_i64(self.commit_ms);
        out
    }

    /// Reads a value of version 3 (the one written).
    pub fn decode(mut buf: &[u8]) -> Result<Self, DecodeError> {
        if buf.remaining() < 2 || buf.get_i16() != VALUE_VERSION {
            return Err(DecodeError("unknown value version"));
        }
        if buf.remaining() < 12 {
            return Err(DecodeError("truncated value"));
        }
        let offset = buf.get_i64();
        let leader_epoch = buf.get_i32();
        let metadata = get_str(&mut buf)?;
        if buf.remaining() < 8 {
            return Err(DecodeError("truncated timestamp"));
        }
        Ok(Self {
            offset,
            leader_epoch,
            metadata: metadata.filter(|m| !m.is_empty()),
            commit_ms: buf.get_i64(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        let key = OffsetKey {
            group: "g".into(),
            topic: "orders".into(),
            partition: 7,
        };
        assert_eq!(OffsetKey::decode(&key.encode()).expect("key"), key);
        // Kafka's layout, byte for byte.
        assert_eq!(
            key.encode(),
            [&[0, 1, 0, 1, b'g', 0, 6][..], b"orders", &[0, 0, 0, 7]].concat()
        );
        let value = Committed {
            offset: 42,
            leader_epoch: 3,
            metadata: Some("m".into()),
            commit_ms: 1_700_000_000_000,
        };
        assert_eq!(Committed::decode(&value.encode()).expect("value"), value);
    }

    #[test]
    fn truncated_records_are_errors() {
        let key = OffsetKey {
            group: "group".into(),
            topic: "t".into(),
            partition: 0,
        }
        .encode();
        for n in 0..key.len() {
            assert!(OffsetKey::decode(&key[..n]).is_err(), "{n}");
        }
        let value = Committed {
            offset: 1,
            leader_epoch: -1,
            metadata: None,
            commit_ms: 5,
        }
        .encode();
        for n in 0..value.len() {
            assert!(Committed::decode(&value[..n]).is_err(), "{n}");
        }
    }
}
