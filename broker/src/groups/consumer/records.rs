//! KIP-848 group state as Kafka keeps it in `__consumer_offsets` (key types 3 to 8 of
//! the group coordinator's records), so a restart gives members back their group,
//! epochs and assignments.
//!
//! Keys: int16 type, group ID (int16-length string), and for member records the member
//! ID. Values: int16 version 0, then the flexible struct (compact strings and arrays,
//! empty tagged fields), field for field as Kafka 4.0's `ConsumerGroup*Value` schemas.

use std::collections::{BTreeMap, BTreeSet};

use bytes::BufMut;
use fjord_protocol::varint::put_unsigned_varint;

use super::assignor::Assignment;
use super::reconcile::{Current, MemberState};

/// ConsumerGroupMetadata: the group epoch.
pub const GROUP_METADATA: i16 = 3;
/// ConsumerGroupPartitionMetadata: the subscribed topics' partition counts.
pub const PARTITION_METADATA: i16 = 4;
/// ConsumerGroupMemberMetadata: a member's subscription and client.
pub const MEMBER_METADATA: i16 = 5;
/// ConsumerGroupTargetAssignmentMetadata: the assignment epoch.
pub const TARGET_METADATA: i16 = 6;
/// ConsumerGroupTargetAssignmentMember: a member's target partitions.
pub const TARGET_MEMBER: i16 = 7;
/// ConsumerGroupCurrentMemberAssignment: a member's epoch, state and partitions.
pub const CURRENT_MEMBER: i16 = 8;

/// A record key: (type, group ID, member ID for member records).
pub fn key(kind: i16, group: &str, member: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_i16(kind);
    for s in std::iter::once(group).chain(member) {
        out.put_i16(i16::try_from(s.len()).unwrap_or(i16::MAX));
        out.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
    }
    out
}

/// A decoded key.
pub fn parse_key(mut buf: &[u8]) -> Option<(i16, String, Option<String>)> {
    let kind = take_i16(&mut buf)?;
    let group = take_string16(&mut buf)?;
    let member = match kind {
        MEMBER_METADATA | TARGET_MEMBER | CURRENT_MEMBER => Some(take_string16(&mut buf)?),
        _ => None,
    };
    Some((kind, group, member))
}

/// Writes a flexible value: version 0, then the struct `fields` writes, then its empty
/// tagged fields.
fn value(fields: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_i16(0);
    fields(&mut out);
    out.put_u8(0);
    out
}

/// Writes a nullable struct as tagged field `tag` (the only tagged field): count, tag,
/// size, Kafka's presence marker 1, then the struct.
fn put_tagged_struct(out: &mut Vec<u8>, tag: u64, body: &[u8]) {
    put_unsigned_varint(out, 1);
    put_unsigned_varint(out, tag);
    put_unsigned_varint(out, body.len() as u64 + 1);
    out.put_u8(1);
    out.put_slice(body);
}

fn put_compact_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_unsigned_varint(out, b.len() as u64 + 1);
    out.put_slice(b);
}

fn put_compact_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.put_u8(0),
        Some(s) => {
            put_unsigned_varint(out, s.len() as u64 + 1);
            out.put_slice(s.as_bytes());
        }
    }
}

fn put_partitions(out: &mut Vec<u8>, a: &Assignment) {
    put_unsigned_varint(out, a.len() as u64 + 1);
    for (topic, parts) in a {
        out.put_slice(topic.as_bytes());
        put_unsigned_varint(out, parts.len() as u64 + 1);
        for p in parts {
            out.put_i32(*p);
        }
        out.put_u8(0);
    }
}

/// The group epoch.
pub fn group_metadata(epoch: i32) -> Vec<u8> {
    value(|o| o.put_i32(epoch))
}

/// The subscribed topics: ID, name, partition count.
pub fn partition_metadata(topics: &[(uuid::Uuid, String, i32)]) -> Vec<u8> {
    value(|o| {
        put_unsigned_varint(o, topics.len() as u64 + 1);
        for (id, name, n) in topics {
            o.put_slice(id.as_bytes());
            put_compact_str(o, Some(name));
            o.put_i32(*n);
            o.put_u8(1); // PartitionMetadata (racks): empty array
            o.put_u8(0);
        }
    })
}

/// What ConsumerGroupMemberMetadata holds of a member.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberMetadata {
    /// Static instance ID.
    pub instance_id: Option<String>,
    /// Rack.
    pub rack_id: Option<String>,
    /// Client ID.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Topic names, sorted.
    pub topic_names: Vec<String>,
    /// Regex subscription.
    pub topic_regex: Option<String>,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Asked-for assignor.
    pub server_assignor: Option<String>,
    /// Set for a member on the classic protocol (Kafka's tagged ClassicMemberMetadata).
    pub classic: Option<ClassicMetadata>,
}

/// How a classic-protocol member of a consumer group joined (KIP-848's online
/// migration): its session timeout and the protocols of its JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClassicMetadata {
    /// The JoinGroup's session timeout.
    pub session_timeout_ms: i32,
    /// (name, metadata) of each protocol it supports, in its order of preference.
    pub protocols: Vec<(String, bytes::Bytes)>,
}

fn classic_metadata(c: &ClassicMetadata) -> Vec<u8> {
    let mut o = Vec::new();
    o.put_i32(c.session_timeout_ms);
    put_unsigned_varint(&mut o, c.protocols.len() as u64 + 1);
    for (name, metadata) in &c.protocols {
        put_compact_str(&mut o, Some(name));
        put_compact_bytes(&mut o, metadata);
        o.put_u8(0);
    }
    o.put_u8(0);
    o
}

/// A member's subscription and client.
pub fn member_metadata(m: &MemberMetadata) -> Vec<u8> {
    let mut o = Vec::new();
    o.put_i16(0);
    put_compact_str(&mut o, m.instance_id.as_deref());
    put_compact_str(&mut o, m.rack_id.as_deref());
    put_compact_str(&mut o, Some(&m.client_id));
    put_compact_str(&mut o, Some(&m.client_host));
    put_unsigned_varint(&mut o, m.topic_names.len() as u64 + 1);
    for n in &m.topic_names {
        put_compact_str(&mut o, Some(n));
    }
    put_compact_str(&mut o, m.topic_regex.as_deref());
    o.put_i32(m.rebalance_timeout_ms);
    put_compact_str(&mut o, m.server_assignor.as_deref());
    match &m.classic {
        Some(c) => put_tagged_struct(&mut o, 0, &classic_metadata(c)),
        None => o.put_u8(0),
    }
    o
}

/// The assignment epoch.
pub fn target_metadata(epoch: i32) -> Vec<u8> {
    value(|o| o.put_i32(epoch))
}

/// A member's target partitions.
pub fn target_member(a: &Assignment) -> Vec<u8> {
    value(|o| put_partitions(o, a))
}

/// A member's epochs, state and partitions.
pub fn current_member(c: &Current, previous_epoch: i32) -> Vec<u8> {
    value(|o| {
        o.put_i32(c.epoch);
        o.put_i32(previous_epoch);
        o.put_i8(c.state.code());
        put_partitions(o, &c.assigned);
        put_partitions(o, &c.pending_revocation);
    })
}

/// A cursor over a value's bytes.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn i16(&mut self) -> Option<i16> {
        take_i16(&mut self.0)
    }
    fn i32(&mut self) -> Option<i32> {
        let (b, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(i32::from_be_bytes(*b))
    }
    fn i8(&mut self) -> Option<i8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b as i8)
    }
    fn uvarint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (b, rest) = self.0.split_first()?;
            self.0 = rest;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    /// A compact array's length (`None` for a null or bad one), bounded by the bytes left.
    fn len(&mut self) -> Option<usize> {
        let n = usize::try_from(self.uvarint()?.checked_sub(1)?).ok()?;
        (n <= self.0.len()).then_some(n)
    }
    fn compact_str(&mut self) -> Option<Option<String>> {
        let raw = self.uvarint()?;
        if raw == 0 {
            return Some(None);
        }
        let n = usize::try_from(raw - 1).ok()?;
        let (s, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(Some(String::from_utf8_lossy(s).into_owned()))
    }
    fn uuid(&mut self) -> Option<uuid::Uuid> {
        let (b, rest) = self.0.split_first_chunk::<16>()?;
        self.0 = rest;
        Some(uuid::Uuid::from_bytes(*b))
    }
    fn compact_bytes(&mut self) -> Option<bytes::Bytes> {
        let n = self.len()?;
        let (b, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(bytes::Bytes::copy_from_slice(b))
    }
    /// The struct's tagged fields: `on_tag(tag, its bytes)` for each.
    fn tags(&mut self, mut on_tag: impl FnMut(u64, &[u8]) -> Option<()>) -> Option<()> {
        for _ in 0..self.uvarint()? {
            let tag = self.uvarint()?;
            let size = usize::try_from(self.uvarint()?).ok()?;
            on_tag(tag, self.0.get(..size)?)?;
            self.0 = self.0.get(size..)?;
        }
        Some(())
    }
    fn skip_tags(&mut self) -> Option<()> {
        for _ in 0..self.uvarint()? {
            let _tag = self.uvarint()?;
            let size = usize::try_from(self.uvarint()?).ok()?;
            self.0 = self.0.get(size..)?;
        }
        Some(())
    }
    fn partitions(&mut self) -> Option<Assignment> {
        let mut out = Assignment::new();
        for _ in 0..self.len()? {
            let topic = self.uuid()?;
            let mut parts = BTreeSet::new();
            for _ in 0..self.len()? {
                parts.insert(self.i32()?);
            }
            self.skip_tags()?;
            out.insert(topic, parts);
        }
        Some(out)
    }
}

fn take_i16(buf: &mut &[u8]) -> Option<i16> {
    let (b, rest) = buf.split_first_chunk::<2>()?;
    *buf = rest;
    Some(i16::from_be_bytes(*b))
}

fn take_string16(buf: &mut &[u8]) -> Option<String> {
    let n = usize::try_from(take_i16(buf)?).ok()?;
    let s = buf.get(..n)?;
    *buf = buf.get(n..)?;
    Some(String::from_utf8_lossy(s).into_owned())
}

/// Reads a value of version 0 with `fields`.
fn read<T>(bytes: &[u8], fields: impl FnOnce(&mut Reader<'_>) -> Option<T>) -> Option<T> {
    let mut r = Reader(bytes);
    (r.i16()? == 0).then_some(())?;
    fields(&mut r)
}

/// The group epoch, or the assignment epoch (types 3 and 6).
pub fn parse_epoch(bytes: &[u8]) -> Option<i32> {
    read(bytes, |r| r.i32())
}

/// The subscribed topics: ID to (name, partition count).
pub fn parse_partition_metadata(bytes: &[u8]) -> Option<BTreeMap<uuid::Uuid, (String, i32)>> {
    read(bytes, |r| {
        let mut out = BTreeMap::new();
        for _ in 0..r.len()? {
            let id = r.uuid()?;
            let name = r.compact_str()?.unwrap_or_default();
            let n = r.i32()?;
            for _ in 0..r.len()? {
                let _partition = r.i32()?;
                for _ in 0..r.len()? {
                    r.compact_str()?;
                }
                r.skip_tags()?;
            }
            r.skip_tags()?;
            out.insert(id, (name, n));
        }
        Some(out)
    })
}

/// A member's subscription and client.
pub fn parse_member_metadata(bytes: &[u8]) -> Option<MemberMetadata> {
    read(bytes, |r| {
        let instance_id = r.compact_str()?;
        let rack_id = r.compact_str()?;
        let client_id = r.compact_str()?.unwrap_or_default();
        let client_host = r.compact_str()?.unwrap_or_default();
        let mut topic_names = Vec::new();
        for _ in 0..r.len()? {
            topic_names.extend(r.compact_str()?);
        }
        let topic_regex = r.compact_str()?;
        let rebalance_timeout_ms = r.i32()?;
        let server_assignor = r.compact_str()?;
        let mut classic = None;
        r.tags(|tag, bytes| {
            if tag == 0 {
                classic = parse_classic_metadata(bytes)?;
            }
            Some(())
        })?;
        Some(MemberMetadata {
            instance_id,
            rack_id,
            client_id,
            client_host,
            topic_names,
            topic_regex,
            rebalance_timeout_ms,
            server_assignor,
            classic,
        })
    })
}

/// The tagged ClassicMemberMetadata: presence marker, then the struct.
fn parse_classic_metadata(bytes: &[u8]) -> Option<Option<ClassicMetadata>> {
    let mut r = Reader(bytes);
    if r.uvarint()? == 0 {
        return Some(None);
    }
    let session_timeout_ms = r.i32()?;
    let mut protocols = Vec::new();
    for _ in 0..r.len()? {
        let name = r.compact_str()?.unwrap_or_default();
        let metadata = r.compact_bytes()?;
        r.skip_tags()?;
        protocols.push((name, metadata));
    }
    r.skip_tags()?;
    Some(Some(ClassicMetadata {
        session_timeout_ms,
        protocols,
    }))
}

/// A member's target partitions.
pub fn parse_target_member(bytes: &[u8]) -> Option<Assignment> {
    read(bytes, |r| r.partitions())
}

/// A member's current assignment and previous epoch.
pub fn parse_current_member(bytes: &[u8]) -> Option<(Current, i32)> {
    read(bytes, |r| {
        let epoch = r.i32()?;
        let previous = r.i32()?;
        let state = match r.i8()? {
            0 => MemberState::Stable,
            1 => MemberState::UnrevokedPartitions,
            2 => MemberState::UnreleasedPartitions,
            _ => return None,
        };
        let assigned = r.partitions()?;
        let pending_revocation = r.partitions()?;
        Some((
            Current {
                epoch,
                state,
                assigned,
                pending_revocation,
            },
            previous,
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_reads_back_and_truncated_ones_do_not() {
        let t = uuid::Uuid::from_bytes([7; 16]);
        let a = Assignment::from([(t, BTreeSet::from([0, 3]))]);
        let current = Current {
            epoch: 5,
            state: MemberState::UnrevokedPartitions,
            assigned: a.clone(),
            pending_revocation: Assignment::from([(t, BTreeSet::from([1]))]),
        };
        let meta = MemberMetadata {
            instance_id: Some("i".into()),
            rack_id: None,
            client_id: "c".into(),
            client_host: "/h".into(),
            topic_names: vec!["a".into(), "b".into()],
            topic_regex: Some("x.*".into()),
            rebalance_timeout_ms: 300_000,
            server_assignor: Some("range".into()),
            classic: None,
        };
        let classic = MemberMetadata {
            classic: Some(ClassicMetadata {
                session_timeout_ms: 10_000,
                protocols: vec![
                    ("range".into(), bytes::Bytes::from_static(b"\x00\x03sub")),
                    ("cooperative-sticky".into(), bytes::Bytes::new()),
                ],
            }),
            ..meta.clone()
        };
        assert_eq!(
            parse_member_metadata(&member_metadata(&classic)),
            Some(classic.clone())
        );
        let whole = member_metadata(&classic);
        for cut in 0..whole.len() - 1 {
            assert!(
                parse_member_metadata(&whole[..cut]).is_none(),
                "cut at {cut}"
            );
        }
        assert_eq!(parse_epoch(&group_metadata(9)), Some(9));
        assert_eq!(parse_target_member(&target_member(&a)), Some(a.clone()));
        assert_eq!(
            parse_current_member(&current_member(&current, 4)),
            Some((current.clone(), 4))
        );
        assert_eq!(
            parse_member_metadata(&member_metadata(&meta)),
            Some(meta.clone())
        );
        let topics = [(t, "a".to_string(), 6)];
        assert_eq!(
            parse_partition_metadata(&partition_metadata(&topics)),
            Some(BTreeMap::from([(t, ("a".to_string(), 6))]))
        );
        assert_eq!(
            parse_key(&key(CURRENT_MEMBER, "g", Some("m"))),
            Some((8, "g".into(), Some("m".into())))
        );
        assert_eq!(
            parse_key(&key(GROUP_METADATA, "g", None)),
            Some((3, "g".into(), None))
        );
        let whole = current_member(&current, 4);
        for cut in 0..whole.len() - 1 {
            assert!(
                parse_current_member(&whole[..cut]).is_none(),
                "cut at {cut}"
            );
        }
        let whole = member_metadata(&meta);
        for cut in 0..whole.len() - 1 {
            assert!(
                parse_member_metadata(&whole[..cut]).is_none(),
                "cut at {cut}"
            );
        }
    }
}
