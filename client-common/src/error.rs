//! Errors of the client plumbing.

/// A Kafka error code's name (`NotLeaderOrFollower`), for messages.
pub fn kafka_error_name(code: i16) -> String {
    fjord_protocol::kafka_protocol::ResponseError::try_from_code(code)
        .map_or_else(|| format!("unknown error {code}"), |e| format!("{e:?}"))
}

/// Why a request to a broker failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// Connecting, reading or writing failed; the connection is gone.
    #[error("connection to {addr}: {message}")]
    Io {
        /// The broker's address.
        addr: String,
        /// What failed.
        message: String,
    },
    /// The connection was closed (by us or the broker) before the answer came.
    #[error("connection to {0} closed")]
    Closed(String),
    /// No answer within the request timeout.
    #[error("request to {0} timed out")]
    Timeout(String),
    /// The broker does not support a version of this API that we speak.
    #[error("broker does not support {api} at any version we speak")]
    Unsupported {
        /// The API's name.
        api: &'static str,
    },
    /// A message could not be encoded or a response could not be decoded.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The broker answered with a Kafka error code where the request needed success.
    #[error("broker error {code}: {message}")]
    Broker {
        /// Kafka error code.
        code: i16,
        /// Context.
        message: String,
    },
}

impl ClientError {
    /// Whether retrying (after reconnecting) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Io { .. } | ClientError::Closed(_) | ClientError::Timeout(_) => true,
            ClientError::Broker { code, .. } => {
                fjord_protocol::kafka_protocol::ResponseError::try_from_code(*code)
                    .is_some_and(|e| e.is_retriable())
            }
            ClientError::Unsupported { .. } | ClientError::Protocol(_) => false,
        }
    }
}
