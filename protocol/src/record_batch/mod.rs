//! RecordBatch v2: the unit Kafka clients produce, the broker stores, and consumers fetch.
//!
//! The broker only ever handles the wire form ([`BatchHeader`] over the original bytes);
//! decoding records ([`RecordIter`]) is for clients, tests and the few broker paths that
//! need record timestamps (ListOffsets by time), and rewriting a batch without some of
//! its records ([`filter_batch`]) is for the log cleaner.

mod builder;
mod control;
mod filter;
mod header;
mod records;
mod validate;

pub use builder::{BatchBuilder, RecordSpec};
pub use control::{end_txn_batch, read_end_txn_marker, EndTxnMarker};
pub use filter::{
    delete_horizon, filter_batch, filter_marker, Candidate, FilterOptions, FilterStats, Filtered,
    ATTR_DELETE_HORIZON,
};
pub use header::{
    batches, next_offset_after_whole_batches, peek_entry, stored_batches, validate_batch,
    validate_stored_batch, BatchHeader, TimestampType, ATTRIBUTES_OFFSET, ATTR_CONTROL,
    ATTR_TIMESTAMP_TYPE, ATTR_TRANSACTIONAL, BATCH_HEADER_LEN, CRC_OFFSET, CRC_START, LOG_OVERHEAD,
    MAGIC_OFFSET, MAX_TIMESTAMP_OFFSET, NO_TIMESTAMP,
};
pub use records::{Header, HeaderIter, Record, RecordIter};
pub use validate::{require_keys, validate_records, RecordValidation};
