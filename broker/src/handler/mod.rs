//! Request dispatch: a frame in, a response out. Each API lives in its own file as a
//! plain async function from the decoded request and the broker state to the response,
//! testable without sockets.

mod admin;
mod api_versions;
mod create_topics;
mod fetch;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod produce;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use fjord_protocol::kafka_protocol::messages::ApiKey;
use fjord_protocol::kafka_protocol::protocol::{Decodable, Encodable};
use fjord_protocol::request_header::{peek_header_fixed, RequestHeader};

pub use api_versions::SUPPORTED;
pub use fetch::{FetchResponse, Part};

use crate::state::Broker;

/// What to send back for one request.
#[derive(Debug)]
pub enum Response {
    /// Nothing (Produce with acks=0).
    None,
    /// A whole response frame, size prefix included.
    Frame(BytesMut),
    /// A fetch response: in-memory parts and file regions to splice.
    Fetch(FetchResponse),
}

/// Why the connection must be closed instead of answered.
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    /// The request cannot be parsed far enough to answer it.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// An API key we do not know, or a version we do not speak (Kafka closes too).
    #[error("unsupported api {api_key} v{api_version}")]
    Unsupported {
        /// The key.
        api_key: i16,
        /// The version.
        api_version: i16,
    },
}

/// The request being answered: what every handler needs from the header.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// Correlation id to echo.
    pub correlation_id: i32,
    /// The API version of the request (and response).
    pub version: i16,
    /// Response header version (0, or 1 for flexible versions).
    pub response_header_version: i16,
}

/// Decodes a request body with `kafka-protocol`, turning its errors (and, as a last line
/// of defence, any panic inside it) into [`Fatal::Malformed`].
pub(crate) fn decode<T: Decodable>(mut body: Bytes, version: i16) -> Result<T, Fatal> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| T::decode(&mut body, version))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Fatal::Malformed(format!("{e:#}"))),
        Err(_) => Err(Fatal::Malformed("decoder panicked".to_string())),
    }
}

/// Encodes a response frame: size, correlation id, header tagged fields if flexible, body.
pub(crate) fn encode<T: Encodable>(ctx: Ctx, body: &T) -> Response {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    buf.put_i32(ctx.correlation_id);
    if ctx.response_header_version >= 1 {
        buf.put_u8(0);
    }
    if let Err(e) = body.encode(&mut buf, ctx.version) {
        // Our own response failing to encode is a bug; say so and close the connection.
        tracing::error!(error = %e, "response encoding failed");
        return Response::None;
    }
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Response::Frame(buf)
}

/// Handles one request frame.
pub async fn handle(broker: &Arc<Broker>, frame: Bytes) -> Result<Response, Fatal> {
    let (api_key, api_version, correlation_id) =
        peek_header_fixed(&frame).map_err(|e| Fatal::Malformed(e.to_string()))?;
    let unsupported = Fatal::Unsupported {
        api_key,
        api_version,
    };
    let key = ApiKey::try_from(api_key).map_err(|_| Fatal::Unsupported {
        api_key,
        api_version,
    })?;
    let supported = SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (*min, *max));
    let in_range = supported.is_some_and(|(min, max)| (min..=max).contains(&api_version));
    if key == ApiKey::ApiVersions && !in_range {
        // KIP-511: answer in v0 with UNSUPPORTED_VERSION and our ranges.
        return Ok(api_versions::unsupported_version(correlation_id));
    }
    if !in_range {
        return Err(unsupported);
    }
    let (header, body) = RequestHeader::parse(frame, key.request_header_version(api_version))
        .map_err(|e| Fatal::Malformed(e.to_string()))?;
    let ctx = Ctx {
        correlation_id: header.correlation_id,
        version: api_version,
        // ApiVersions responses always use header v0 so any client can read them.
        response_header_version: if key == ApiKey::ApiVersions {
            0
        } else {
            key.response_header_version(api_version)
        },
    };
    match key {
        ApiKey::ApiVersions => Ok(api_versions::handle(ctx)),
        ApiKey::Metadata => metadata::handle(broker, ctx, decode(body, api_version)?),
        ApiKey::CreateTopics => create_topics::handle(broker, ctx, decode(body, api_version)?),
        ApiKey::Produce => produce::handle(broker, ctx, decode(body, api_version)?).await,
        ApiKey::ListOffsets => list_offsets::handle(broker, ctx, decode(body, api_version)?),
        ApiKey::Fetch => fetch::handle(broker, ctx, decode(body, api_version)?).await,
        ApiKey::InitProducerId => init_producer_id::handle(broker, ctx, decode(body, api_version)?),
        ApiKey::DeleteTopics => admin::delete_topics(broker, ctx, decode(body, api_version)?),
        ApiKey::CreatePartitions => {
            admin::create_partitions(broker, ctx, decode(body, api_version)?)
        }
        ApiKey::DescribeConfigs => admin::describe_configs(broker, ctx, decode(body, api_version)?),
        ApiKey::DescribeCluster => admin::describe_cluster(broker, ctx, decode(body, api_version)?),
        _ => Err(unsupported),
    }
}

/// The Kafka error code for a storage error: the one place that mapping lives.
pub(crate) fn storage_error_code(e: &fjord_storage::StorageError) -> i16 {
    use fjord_protocol::kafka_protocol::ResponseError as E;
    use fjord_storage::StorageError as S;
    match e {
        S::InvalidBatch { .. } | S::EmptyAppend | S::Corrupt { .. } => E::CorruptMessage.code(),
        S::BatchTooLarge { .. } => E::MessageTooLarge.code(),
        S::OffsetOutOfRange { .. } => E::OffsetOutOfRange.code(),
        S::InvalidConfig(_) => E::InvalidConfig.code(),
        _ => E::KafkaStorageError.code(),
    }
}
