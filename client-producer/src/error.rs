//! What can go wrong with a send, split as Kafka's clients split it: retriable errors the
//! producer already retried until the delivery timeout, and fatal ones.

use fjord_client_common::ClientError;

/// Why a record was not delivered (or the producer could not be built).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProduceError {
    /// A setting is unknown or invalid.
    #[error("invalid producer config: {0}")]
    Config(String),
    /// The record (with its overhead) is larger than `max.request.size`.
    #[error("record of {size} bytes is larger than max.request.size ({max})")]
    RecordTooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The topic does not exist (and was not created) within `max.block.ms`.
    #[error("topic {0} not present in metadata")]
    UnknownTopic(String),
    /// The record names a partition the topic does not have.
    #[error("partition {partition} of topic {topic} does not exist")]
    UnknownPartition {
        /// Topic.
        topic: String,
        /// Partition asked for.
        partition: i32,
    },
    /// No buffer space freed up within `max.block.ms`.
    #[error("buffer.memory exhausted for max.block.ms")]
    BufferExhausted,
    /// The record was not acknowledged within `delivery.timeout.ms` (the last error is
    /// attached); retrying it later may succeed.
    #[error("delivery timed out after retries: {last}")]
    DeliveryTimeout {
        /// What the last attempt got.
        last: String,
    },
    /// The broker refused the record with a non-retriable Kafka error.
    #[error("broker refused the record: error {code} ({name})")]
    Broker {
        /// Kafka error code.
        code: i16,
        /// Its name.
        name: String,
    },
    /// Talking to the cluster failed in a way retries cannot fix.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The producer was closed before the record could be sent.
    #[error("producer closed")]
    Closed,
    /// The transactional producer cannot go on: a newer producer with the same
    /// `transactional.id` fenced it, it is not authorized, or the broker cannot do what
    /// it needs. Close it (the Java client's fatal errors, `ProducerFencedException`
    /// first among them).
    #[error("transactional producer failed: {reason}")]
    TransactionFatal {
        /// The Kafka error code behind it (-1 if none).
        code: i16,
        /// What happened.
        reason: String,
    },
    /// The transaction cannot commit (a record failed, an offset commit was refused, the
    /// coordinator did not answer): abort it, then a new one may begin.
    #[error("transaction must be aborted: {reason}")]
    TransactionAbortable {
        /// The Kafka error code behind it (-1 if none).
        code: i16,
        /// What happened.
        reason: String,
    },
    /// The call does not fit the producer's transaction state (a send before
    /// `begin_transaction`, a commit without a transaction, `begin_transaction` before
    /// `init_transactions`).
    #[error("{0}")]
    TransactionState(String),
    /// The record was dropped unsent because its transaction was aborted.
    #[error("transaction aborted before the record was sent")]
    TransactionAborted,
}

impl ProduceError {
    /// Whether sending the same record again later may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            ProduceError::DeliveryTimeout { .. } | ProduceError::BufferExhausted => true,
            ProduceError::UnknownTopic(_) => true,
            ProduceError::Client(e) => e.is_retriable(),
            ProduceError::Broker { code, .. } => {
                fjord_protocol::kafka_protocol::ResponseError::try_from_code(*code)
                    .is_some_and(|e| e.is_retriable())
            }
            ProduceError::Config(_)
            | ProduceError::RecordTooLarge { .. }
            | ProduceError::UnknownPartition { .. }
            | ProduceError::Closed
            | ProduceError::TransactionFatal { .. }
            | ProduceError::TransactionAbortable { .. }
            | ProduceError::TransactionState(_)
            | ProduceError::TransactionAborted => false,
        }
    }

    /// Whether a transactional producer must be closed after this error (nothing it
    /// does will succeed again). Errors that are not fatal leave the transaction to be
    /// aborted (or, for a state error, the call to be made at the right time).
    pub fn is_fatal(&self) -> bool {
        matches!(self, ProduceError::TransactionFatal { .. })
    }

    /// The Kafka error code behind this error, if there is one.
    pub fn code(&self) -> Option<i16> {
        match self {
            ProduceError::Broker { code, .. }
            | ProduceError::TransactionFatal { code, .. }
            | ProduceError::TransactionAbortable { code, .. } => (*code >= 0).then_some(*code),
            ProduceError::Client(ClientError::Broker { code, .. }) => Some(*code),
            _ => None,
        }
    }

    pub(crate) fn broker(code: i16) -> Self {
        let name = fjord_client_common::kafka_error_name(code);
        ProduceError::Broker { code, name }
    }
}

impl From<fjord_client_common::settings::BadSetting> for ProduceError {
    fn from(e: fjord_client_common::settings::BadSetting) -> Self {
        Self::Config(e.to_string())
    }
}
