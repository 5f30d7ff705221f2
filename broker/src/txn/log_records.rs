//! The records of the transaction coordinator's log, in Kafka's `__transaction_state`
//! layout, so its state is what Kafka's tools and Kafka's own coordinator would read:
//!
//! - key: version 0, then the transactional id (`TransactionLogKey`);
//! - value: version 0 (fixed-width strings and arrays) or version 1 (flexible: compact
//!   strings and arrays, and tagged fields for the previous and next producer ids and
//!   the client's transaction version, KIP-890), then the transaction's metadata
//!   (`TransactionLogValue`). A null value is a tombstone: the id expired.
//!
//! Every length read is checked against the bytes left before anything is allocated.

use std::collections::BTreeMap;

use bytes::BufMut;

use super::state::TxnState;

/// What the coordinator keeps of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    /// The producer id in use.
    pub producer_id: i64,
    /// The producer id of the last committed transaction (version 1; -1: none).
    pub previous_producer_id: i64,
    /// The newest producer id given to the client (version 1; -1: none).
    pub next_producer_id: i64,
    /// The producer epoch.
    pub producer_epoch: i16,
    /// The client's `transaction.timeout.ms`.
    pub timeout_ms: i32,
    /// Where the transaction is.
    pub state: TxnState,
    /// Partitions in the transaction, by topic.
    pub partitions: BTreeMap<String, Vec<i32>>,
    /// When the metadata last changed (ms since the epoch).
    pub last_update_ms: i64,
    /// When the transaction began (ms since the epoch; -1 when none is under way).
    pub start_ms: i64,
    /// The client's transaction version (version 1; 0: before KIP-890's part 2).
    pub client_txn_version: i16,
}

/// Why a stored record could not be read back.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("undecodable transaction log record: {0}")]
pub struct DecodeError(&'static str);

/// Key schema version (`TransactionLogKey` v0).
const KEY_VERSION: i16 = 0;

/// The record key of `transactional_id`.
pub fn encode_key(transactional_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + transactional_id.len());
    out.put_i16(KEY_VERSION);
    put_str(&mut out, transactional_id);
    out
}

/// The transactional id of a record key.
pub fn decode_key(buf: &[u8]) -> Result<String, DecodeError> {
    let mut r = Reader(buf);
    if r.i16()? != KEY_VERSION {
        return Err(DecodeError("unknown key version"));
    }
    r.string()?.ok_or(DecodeError("null transactional id"))
}

impl TxnMetadata {
    /// The record value in schema `version` (0 or 1; Kafka writes 1 for clients on
    /// transaction version 2). Version 0 has no room for the tagged fields.
    pub fn encode(&self, version: i16) -> Vec<u8> {
        let flexible = version >= 1;
        let mut out = Vec::with_capacity(64);
        out.put_i16(if flexible { 1 } else { 0 });
        out.put_i64(self.producer_id);
        out.put_i16(self.producer_epoch);
        out.put_i32(self.timeout_ms);
        out.put_i8(self.state.id());
        // Kafka writes no partitions (a null array) for an Empty transaction, and the
        // list, empty or not, for every other state.
        if self.state == TxnState::Empty {
            put_null_len(&mut out, flexible);
        } else {
            put_len(&mut out, self.partitions.len(), flexible);
        }
        for (topic, ids) in self
            .partitions
            .iter()
            .filter(|_| self.state != TxnState::Empty)
        {
            if flexible {
                put_compact_str(&mut out, topic);
            } else {
                put_str(&mut out, topic);
            }
            put_len(&mut out, ids.len(), flexible);
            for id in ids {
                out.put_i32(*id);
            }
            if flexible {
                put_uvarint(&mut out, 0); // the partition entry's tagged fields
            }
        }
        out.put_i64(self.last_update_ms);
        out.put_i64(self.start_ms);
        if flexible {
            self.put_tagged_fields(&mut out);
        }
        out
    }

    /// Tags 0, 1 and 2, each only when not at its default (as Kafka writes them).
    fn put_tagged_fields(&self, out: &mut Vec<u8>) {
        let mut fields: Vec<(u32, Vec<u8>)> = Vec::new();
        if self.previous_producer_id != -1 {
            fields.push((0, self.previous_producer_id.to_be_bytes().to_vec()));
        }
        if self.next_producer_id != -1 {
            fields.push((1, self.next_producer_id.to_be_bytes().to_vec()));
        }
        if self.client_txn_version != 0 {
            fields.push((2, self.client_txn_version.to_be_bytes().to_vec()));
        }
        put_uvarint(out, fields.len() as u32);
        for (tag, bytes) in fields {
            put_uvarint(out, tag);
            put_uvarint(out, bytes.len() as u32);
            out.put_slice(&bytes);
        }
    }

    /// Reads a value of version 0 or 1.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(buf);
        let flexible = match r.i16()? {
            0 => false,
            1 => true,
            _ => return Err(DecodeError("unknown value version")),
        };
        let producer_id = r.i64()?;
        let producer_epoch = r.i16()?;
        let timeout_ms = r.i32()?;
        let state = TxnState::from_id(r.i8()?).ok_or(DecodeError("unknown state"))?;
        let mut partitions = BTreeMap::new();
        // Null (or empty) partitions: none.
        for _ in 0..r.len(flexible, 2)?.unwrap_or(0) {
            let topic = if flexible {
                r.compact_string()?
            } else {
                r.string()?
            }
            .ok_or(DecodeError("null topic"))?;
            let count = r
                .len(flexible, 4)?
                .ok_or(DecodeError("null partition ids"))?;
            let mut ids = Vec::with_capacity(count);
            for _ in 0..count {
                ids.push(r.i32()?);
            }
            if flexible {
                r.skip_tagged_fields()?;
            }
            partitions.entry(topic).or_insert_with(Vec::new).extend(ids);
        }
        let mut value = Self {
            producer_id,
            previous_producer_id: -1,
            next_producer_id: -1,
            producer_epoch,
            timeout_ms,
            state,
            partitions,
            last_update_ms: r.i64()?,
            start_ms: r.i64()?,
            client_txn_version: 0,
        };
        if flexible {
            value.read_tagged_fields(&mut r)?;
        }
        Ok(value)
    }

    fn read_tagged_fields(&mut self, r: &mut Reader<'_>) -> Result<(), DecodeError> {
        for _ in 0..r.uvarint()? {
            let tag = r.uvarint()?;
            let size = r.uvarint()? as usize;
            let mut field = Reader(r.take(size)?);
            match (tag, size) {
                (0, 8) => self.previous_producer_id = field.i64()?,
                (1, 8) => self.next_producer_id = field.i64()?,
                (2, 2) => self.client_txn_version = field.i16()?,
                (0..=2, _) => return Err(DecodeError("tagged field of the wrong size")),
                _ => {} // a tag from a later version: skipped, as Kafka does
            }
        }
        Ok(())
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Transactional ids and topic names come off the wire with an i16 length.
    let bytes = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
    out.put_i16(bytes.len() as i16);
    out.put_slice(bytes);
}

fn put_compact_str(out: &mut Vec<u8>, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
    put_uvarint(out, bytes.len() as u32 + 1);
    out.put_slice(bytes);
}

/// An array length: i32 (version 0) or unsigned varint of length + 1 (flexible).
fn put_len(out: &mut Vec<u8>, len: usize, flexible: bool) {
    let len = u32::try_from(len).unwrap_or(u32::MAX - 1);
    if flexible {
        put_uvarint(out, len + 1);
    } else {
        out.put_i32(len as i32);
    }
}

/// A null array: -1 (version 0) or 0 (flexible).
fn put_null_len(out: &mut Vec<u8>, flexible: bool) {
    if flexible {
        put_uvarint(out, 0);
    } else {
        out.put_i32(-1);
    }
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// Bounds-checked reads off a record.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn i8(&mut self) -> Result<i8, DecodeError> {
        Ok(i8::from_be_bytes(self.fixed()?))
    }

    fn i16(&mut self) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.fixed()?))
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.fixed()?))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.fixed()?))
    }

    fn uvarint(&mut self) -> Result<u32, DecodeError> {
        let mut v: u32 = 0;
        for shift in (0..35).step_by(7) {
            let b = self.take(1)?[0];
            v |= u32::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint too long"))
    }

    fn utf8(&mut self, len: usize) -> Result<String, DecodeError> {
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| DecodeError("string not UTF-8"))
    }

    fn string(&mut self) -> Result<Option<String>, DecodeError> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        self.utf8(len as usize).map(Some)
    }

    fn compact_string(&mut self) -> Result<Option<String>, DecodeError> {
        match self.uvarint()? {
            0 => Ok(None),
            n => self.utf8(n as usize - 1).map(Some),
        }
    }

    /// An array length (None: null), bounded by the bytes left at `min_item` bytes an
    /// item, so a corrupt count never allocates.
    fn len(&mut self, flexible: bool, min_item: usize) -> Result<Option<usize>, DecodeError> {
        let len = if flexible {
            match self.uvarint()? {
                0 => return Ok(None),
                n => (n - 1) as usize,
            }
        } else {
            match self.i32()? {
                n if n < 0 => return Ok(None),
                n => n as usize,
            }
        };
        if len.saturating_mul(min_item) > self.0.len() {
            return Err(DecodeError("array longer than the record"));
        }
        Ok(Some(len))
    }

    fn skip_tagged_fields(&mut self) -> Result<(), DecodeError> {
        for _ in 0..self.uvarint()? {
            self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.take(size)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TxnMetadata {
        TxnMetadata {
            producer_id: 1000,
            previous_producer_id: 999,
            next_producer_id: 1001,
            producer_epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: BTreeMap::from([
                ("a".to_string(), vec![0, 2]),
                ("bb".to_string(), vec![1]),
            ]),
            last_update_ms: 1_700_000_000_500,
            start_ms: 1_700_000_000_000,
            client_txn_version: 2,
        }
    }

    #[test]
    fn keys_are_kafkas_bytes_and_round_trip() {
        assert_eq!(encode_key("tx"), [0, 0, 0, 2, b't', b'x']);
        assert_eq!(
            decode_key(&encode_key("orders-tx")).as_deref(),
            Ok("orders-tx")
        );
        assert!(
            decode_key(&[0, 1, 0, 0]).is_err(),
            "key version 1 does not exist"
        );
    }

    #[test]
    fn version_1_round_trips_every_field_and_version_0_the_untagged_ones() {
        let m = sample();
        assert_eq!(TxnMetadata::decode(&m.encode(1)), Ok(m.clone()));
        let v0 = TxnMetadata::decode(&m.encode(0)).expect("v0");
        let untagged = TxnMetadata {
            previous_producer_id: -1,
            next_producer_id: -1,
            client_txn_version: 0,
            ..m
        };
        assert_eq!(v0, untagged);
    }

    #[test]
    fn version_0_is_laid_out_as_kafkas_schema() {
        let m = TxnMetadata {
            partitions: BTreeMap::from([("t".to_string(), vec![5])]),
            ..sample()
        };
        let expected = [
            &[0, 0][..],                         // version 0
            &1000i64.to_be_bytes(),              // producer id
            &3i16.to_be_bytes(),                 // epoch
            &60_000i32.to_be_bytes(),            // timeout
            &[1],                                // Ongoing
            &1i32.to_be_bytes(),                 // one topic
            &[0, 1, b't'],                       // its name
            &1i32.to_be_bytes(),                 // one partition
            &5i32.to_be_bytes(),                 // partition 5
            &1_700_000_000_500i64.to_be_bytes(), // last update
            &1_700_000_000_000i64.to_be_bytes(), // start
        ]
        .concat();
        assert_eq!(m.encode(0), expected);
    }

    #[test]
    fn an_empty_transaction_has_null_partitions_as_kafka_writes_it() {
        let empty = TxnMetadata {
            state: TxnState::Empty,
            partitions: BTreeMap::new(),
            ..sample()
        };
        assert_eq!(empty.encode(0)[17..21], (-1i32).to_be_bytes());
        assert_eq!(empty.encode(1)[17], 0);
        assert_eq!(TxnMetadata::decode(&empty.encode(1)), Ok(empty));
    }

    #[test]
    fn a_tag_from_a_later_version_is_skipped() {
        let mut bytes = TxnMetadata {
            previous_producer_id: -1,
            next_producer_id: -1,
            client_txn_version: 0,
            ..sample()
        }
        .encode(1);
        // Replace the empty tagged-field section with one unknown tag 9 of 3 bytes.
        assert_eq!(bytes.pop(), Some(0));
        bytes.extend_from_slice(&[1, 9, 3, 7, 7, 7]);
        let m = TxnMetadata::decode(&bytes).expect("decodes");
        assert_eq!(m.producer_id, 1000);
    }

    #[test]
    fn damaged_values_are_errors_not_panics_or_huge_allocations() {
        for version in [0, 1] {
            let bytes = sample().encode(version);
            for n in 0..bytes.len() {
                assert!(
                    TxnMetadata::decode(&bytes[..n]).is_err(),
                    "v{version} cut at {n}"
                );
            }
        }
        // A topic count of 2^31 - 1 in a tiny record.
        let mut bytes = sample().encode(0);
        bytes[17..21].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(
            TxnMetadata::decode(&bytes),
            Err(DecodeError("array longer than the record"))
        );
        let mut bytes = sample().encode(0);
        bytes[16] = 42;
        assert_eq!(
            TxnMetadata::decode(&bytes),
            Err(DecodeError("unknown state"))
        );
    }
}
