//! Fjord's storage engine: one [`Log`] per partition, the part of Kafka that makes writes
//! sequential and reads cheap.
//!
//! A log is a directory of segments named by their 20-digit base offset. Each segment is a
//! `.log` file of RecordBatch v2 bytes exactly as clients sent them (only the base offset
//! patched), a sparse `.index` (relative offset u32, position u32) and a sparse
//! `.timeindex` (timestamp i64, relative offset u32), both memory-mapped. The byte-level
//! format is in `docs/storage-format.md`.
//!
//! ```
//! use fjord_protocol::compression::Compression;
//! use fjord_protocol::record_batch::{BatchBuilder, RecordSpec};
//! use fjord_storage::{Flusher, Log, LogConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let flusher = Flusher::new("example")?;
//! let mut log = Log::open(dir.path().join("orders-0"), LogConfig::default(), flusher)?;
//!
//! // What a producer sends: one RecordBatch v2.
//! let mut batch = BatchBuilder::new(Compression::Lz4, 1_700_000_000_000);
//! batch.push(RecordSpec::value("hello").with_key("k1"));
//! batch.push(RecordSpec::value("world").with_key("k2"));
//! let info = log.append(&batch.build()?)?;
//! assert_eq!((info.first_offset, info.last_offset), (0, 1));
//!
//! // What a fetch sends: file regions for sendfile (or copied, here).
//! let regions = log.read(0, 1 << 20)?;
//! assert_eq!(regions.len(), 1);
//! log.close()?; // the next open reads no segment
//! # Ok(())
//! # }
//! ```
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
//! - [`io`]: the one seam every change to the disk goes through, so tests can inject
//!   faults and power losses.
//! - [`config`], [`error`], [`file_region`]: settings, errors, and the zero-copy read result.

mod batch_scan;
mod clean_shutdown;
pub mod cleaner;
pub mod config;
pub mod error;
#[cfg(any(test, feature = "fault-injection"))]
pub mod fault;
pub mod file_region;
pub mod flusher;
mod index_file;
pub mod io;
pub mod leader_epochs;
pub mod log;
mod offset_index;
mod recovery;
mod retention;
mod segment;
mod time_index;
mod timestamp_search;

pub use config::{Compaction, Durability, LogConfig};
pub use error::{Result, StorageError};
pub use file_region::FileRegion;
pub use flusher::{FlushTicket, Flusher};
pub use io::{FileIo, Io, OpenMode, RealIo};
pub use leader_epochs::EpochEntry;
pub use log::{AbortedTxn, AppendInfo, Log, RetentionOutcome, TimestampOffset};
