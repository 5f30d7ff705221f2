//! The error type of `fjord-protocol`.

use crate::compression::Compression;

/// Why bytes could not be read as (or turned into) Kafka protocol data.
///
/// Each variant says where in the input the problem is, so a log line can point at it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The input ended before a field or a whole batch was complete.
    #[error("unexpected end of input at byte {offset}: need {need} bytes, have {have}")]
    UnexpectedEof {
        /// Position in the input where the read started.
        offset: usize,
        /// Bytes the read needed.
        need: usize,
        /// Bytes that were there.
        have: usize,
    },
    /// A batch declared a magic byte other than 2 (only RecordBatch v2 is accepted).
    #[error("unsupported record batch magic {magic} (only 2 is supported)")]
    UnsupportedMagic {
        /// The magic byte found.
        magic: i8,
    },
    /// The batchLength field is too small to hold a header, or larger than allowed.
    #[error("invalid batch length {length}")]
    InvalidBatchLength {
        /// The declared length.
        length: i32,
    },
    /// The stored CRC does not match the CRC-32C of the batch.
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// The CRC found in the header.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// recordsCount and lastOffsetDelta disagree, or are negative.
    #[error("record count {records_count} does not match last offset delta {last_offset_delta}")]
    RecordCountMismatch {
        /// The recordsCount field.
        records_count: i32,
        /// The lastOffsetDelta field.
        last_offset_delta: i32,
    },
    /// The codec bits of the attributes name no known codec.
    #[error("unknown compression codec {codec}")]
    UnknownCodec {
        /// The value of attribute bits 0-2.
        codec: i16,
    },
    /// A varint ran past 10 bytes or past the end of the input.
    #[error("malformed varint at byte {offset}")]
    MalformedVarint {
        /// Where the varint starts.
        offset: usize,
    },
    /// A record field is inconsistent (a negative length other than -1, a record longer than
    /// its batch, a header count that cannot fit).
    #[error("malformed record at byte {offset}: {what}")]
    MalformedRecord {
        /// Where in the records payload the bad field is.
        offset: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// A record without a key in a batch for a compacted topic (Kafka's INVALID_RECORD:
    /// compaction keeps the latest record per key, so every record needs one).
    #[error("record {index} of the batch has no key, and the topic is compacted")]
    MissingKey {
        /// The record's position in its batch.
        index: usize,
    },
    /// Decompressing would produce more bytes than the caller allows.
    #[error("decompressed {codec:?} payload exceeds the limit of {limit} bytes")]
    DecompressedTooLarge {
        /// The codec in use.
        codec: Compression,
        /// The limit in bytes.
        limit: usize,
    },
    /// The codec library rejected the payload.
    #[error("corrupt {codec:?} payload: {reason}")]
    CorruptCompressed {
        /// The codec in use.
        codec: Compression,
        /// The library's message.
        reason: String,
    },
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
