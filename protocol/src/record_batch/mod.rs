//! RecordBatch v2: the unit Kafka clients produce, the broker stores, and consumers fetch.
//!
//! The broker only ever handles the wire form ([`BatchHeader`] over the original bytes);
//! decoding records ([`RecordIter`]) is for clients, tests and the few broker paths that
//! need record timestamps (ListOffsets by time).

mod builder;
mod header;
mod records;
mod validate;

pub use builder::{BatchBuilder, RecordSpec};
pub use header::{
    batches, next_offset_after_whole_batches, peek_entry, validate_batch, BatchHeader,
    TimestampType, ATTRIBUTES_OFFSET, ATTR_CONTROL, ATTR_TIMESTAMP_TYPE, ATTR_TRANSACTIONAL,
    BATCH_HEADER_LEN, CRC_OFFSET, CRC_START, LOG_OVERHEAD, MAGIC_OFFSET, MAX_TIMESTAMP_OFFSET,
    NO_TIMESTAMP,
};
pub use records::{Header, HeaderIter, Record, RecordIter};
pub use validate::{validate_records, RecordValidation};
