//! What can go wrong while consuming.

use fjord_client_common::ClientError;

/// A consumer error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConsumeError {
    /// A setting is unknown or invalid.
    #[error("invalid consumer config: {0}")]
    Config(String),
    /// `subscribe` or a commit needs a `group.id`.
    #[error("this needs group.id")]
    NoGroup,
    /// A batch failed its CRC or could not be parsed; the partition stops at `offset`
    /// until the application seeks past it.
    #[error("corrupt record batch in {topic}-{partition} at offset {offset}: {reason}")]
    Corrupt {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// First offset of the bad batch.
        offset: i64,
        /// What is wrong.
        reason: String,
    },
    /// The position is outside the log and `auto.offset.reset` is `none`.
    #[error("offset {offset} out of range for {topic}-{partition}")]
    OffsetOutOfRange {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The position that was asked for.
        offset: i64,
    },
    /// The partition is not assigned to this consumer.
    #[error("{topic}-{partition} is not assigned")]
    NotAssigned {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// A commit was refused (for example after a rebalance took the partitions away).
    #[error("commit failed: error {code} ({name})")]
    CommitFailed {
        /// Kafka error code.
        code: i16,
        /// Its name.
        name: String,
    },
    /// The broker answered a group request with an error that needs the application.
    #[error("group error {code} ({name})")]
    Group {
        /// Kafka error code.
        code: i16,
        /// Its name.
        name: String,
    },
    /// Talking to the cluster failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The consumer was closed.
    #[error("consumer closed")]
    Closed,
}

pub(crate) use fjord_client_common::kafka_error_name;

impl From<fjord_client_common::settings::BadSetting> for ConsumeError {
    fn from(e: fjord_client_common::settings::BadSetting) -> Self {
        Self::Config(e.to_string())
    }
}
