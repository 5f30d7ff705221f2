//! The error type of `fjord-storage`.

use std::path::PathBuf;
use std::sync::Arc;

/// Why a log operation failed. The broker maps each variant to a Kafka error code in one
/// place.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("open", "write", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An appended batch failed validation; nothing was written.
    #[error("invalid record batch at byte {position} of the append: {source}")]
    InvalidBatch {
        /// Where in the appended buffer the bad batch starts.
        position: usize,
        /// What is wrong with it.
        source: fjord_protocol::Error,
    },
    /// An append held no batch at all.
    #[error("empty append")]
    EmptyAppend,
    /// A batch is larger than the log's `max_batch_bytes`.
    #[error("record batch of {size} bytes exceeds the limit of {max}")]
    BatchTooLarge {
        /// The batch size.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// The offset lies outside `[log_start_offset, log_end_offset]`.
    #[error("offset {offset} out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: u64,
        /// First offset still in the log.
        log_start_offset: u64,
        /// Offset the next append will get.
        log_end_offset: u64,
    },
    /// A setting is out of its legal range.
    #[error("invalid log config: {0}")]
    InvalidConfig(String),
    /// A batch read back from disk is corrupt (found while searching it).
    #[error("corrupt batch in {path} at position {position}: {reason}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte position of the batch.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// An fsync for a waiting append failed; the data may not be durable.
    #[error("flush failed: {0}")]
    Flush(Arc<std::io::Error>),
    /// The flusher stopped before completing the request.
    #[error("flusher stopped")]
    FlusherStopped,
    /// A truncation would shorten a segment file that a region read earlier still
    /// covers (a fetch may be sending or mapping it): try again once reads finish.
    #[error("segment {base_offset} cannot be truncated while reads of it are in flight")]
    RegionsInUse {
        /// The segment's base offset.
        base_offset: u64,
    },
}

/// Result with [`StorageError`].
pub type Result<T> = std::result::Result<T, StorageError>;

/// Adds the operation and path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn io_context(self, op: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io_context(self, op: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| StorageError::Io {
            op,
            path: path.to_path_buf(),
            source,
        })
    }
}
