//! Kafka wire-protocol pieces that Fjord hand-writes because they sit on the hot path.
//!
//! This crate does no I/O and knows nothing of tokio: bytes in, types out. Both the broker
//! and the clients depend on it; `fjord-storage` uses it to validate batches before they
//! reach the log.
//!
//! # Layout
//! - [`varint`]: zigzag varints and varlongs as used inside records.
//! - [`record_batch`]: RecordBatch v2 (magic 2). [`record_batch::BatchHeader`] is a view of
//!   the 61-byte header, [`record_batch::validate_batch`] checks a batch without
//!   decompressing it, [`record_batch::RecordIter`] walks the records of an uncompressed
//!   payload, [`record_batch::BatchBuilder`] writes batches.
//! - [`compression`]: the four codecs as Kafka clients write them (gzip, snappy raw and
//!   xerial-framed, lz4 frame, zstd), with a bound on decompressed size.
//! - [`crc`]: CRC-32C, the batch checksum.
//! - [`frame`]: the 4-byte size framing, bounded before allocation.
//! - [`request_header`]: request headers v0-v2, read before the API is known.
//! - [`error`]: the crate's error type.
//!
//! The on-wire batch layout, byte by byte:
//! ```text
//!  0 baseOffset i64           outside the CRC: the broker rewrites it
//!  8 batchLength i32          bytes after this field
//! 12 partitionLeaderEpoch i32 outside the CRC
//! 16 magic i8 (= 2)
//! 17 crc u32                  CRC-32C of bytes 21..end
//! 21 attributes i16           bits 0-2 codec, 3 timestamp type, 4 transactional, 5 control
//! 23 lastOffsetDelta i32
//! 27 baseTimestamp i64
//! 35 maxTimestamp i64
//! 43 producerId i64
//! 51 producerEpoch i16
//! 53 baseSequence i32
//! 57 recordsCount i32
//! 61 records
//! ```

pub mod block_crc;
pub mod compression;
pub mod crc;
pub mod error;
pub mod fetch_response;
pub mod frame;
pub mod produce_request;
pub mod record_batch;
pub mod request_header;
pub mod response_header;
pub mod varint;

pub use error::Error;
/// Message schemas generated from Kafka's JSON files (a patched copy, see `vendor/`).
pub use kafka_protocol;
