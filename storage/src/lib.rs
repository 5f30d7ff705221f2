//! Fjord's storage engine: one [`Log`] per partition, the part of Kafka that makes writes
//! sequential and reads cheap.
//!
//! A log is a directory of segments named by their 20-digit base offset. Each segment is a
//! `.log` file of RecordBatch v2 bytes exactly as clients sent them (only the base offset
//! patched), a sparse `.index` (relative offset u32, position u32) and a sparse
//! `.timeindex` (timestamp i64, relative offset u32), both memory-mapped. The byte-level
//! format is in `docs/storage-format.md`.
//!
//! # Layout
//! - [`log`]: [`Log`], the public face: append, read, lookups, truncation, retention.
//! - `segment`: one segment's in-memory state and its lazily opened files.
//! - `recovery`: turning files on disk back into a segment, after a clean or unclean stop.
//! - `index_file`: the memory-mapped fixed-size-entry file both indexes share (the only
//!   `unsafe` in the crate); `offset_index` and `time_index` give it meaning.
//! - `batch_scan`: reading batch headers out of a `.log` file.
//! - `timestamp_search`: record-level timestamp lookups inside one batch.
//! - `clean_shutdown`: the marker that lets a cleanly closed log open without scanning.
//! - [`flusher`]: group commit, one `fdatasync` for every append waiting on it.
//! - [`config`], [`error`], [`file_region`]: settings, errors, and the zero-copy read result.

mod batch_scan;
mod clean_shutdown;
pub mod config;
pub mod error;
pub mod file_region;
pub mod flusher;
mod index_file;
pub mod log;
mod offset_index;
mod recovery;
mod retention;
mod segment;
mod time_index;
mod timestamp_search;

pub use config::{Durability, LogConfig};
pub use error::{Result, StorageError};
pub use file_region::FileRegion;
pub use flusher::{FlushTicket, Flusher};
pub use log::{AppendInfo, Log, RetentionOutcome, TimestampOffset};
