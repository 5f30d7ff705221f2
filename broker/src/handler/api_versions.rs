//! ApiVersions: the versions of each API this broker implements end to end.

use bytes::{BufMut, BytesMut};
use fjord_protocol::kafka_protocol::messages::api_versions_response::{
    ApiVersion, ApiVersionsResponse,
};
use fjord_protocol::kafka_protocol::messages::ApiKey;
use fjord_protocol::kafka_protocol::protocol::Encodable;
use fjord_protocol::kafka_protocol::ResponseError;

use super::{encode, Ctx, Fatal, Response};

/// (API, min version, max version) advertised; clients pick the highest common version.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    // The versions the protocol crate lays the response out for, beside its encoder.
    (
        ApiKey::Fetch,
        *fjord_protocol::fetch_response::VERSIONS.start(),
        *fjord_protocol::fetch_response::VERSIONS.end(),
    ),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
];

fn body(error_code: i16) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = error_code;
    r.api_keys = SUPPORTED
        .iter()
        .map(|(key, min, max)| {
            let mut v = ApiVersion::default();
            v.api_key = *key as i16;
            v.min_version = *min;
            v.max_version = *max;
            v
        })
        .collect();
    r
}

/// The normal answer.
pub(super) fn handle(ctx: Ctx) -> Result<Response, Fatal> {
    encode(ctx, &body(0))
}

/// KIP-511: a version we do not know gets a v0 answer with UNSUPPORTED_VERSION and the
/// ranges, so the client can retry with one we do.
pub(super) fn unsupported_version(correlation_id: i32) -> Response {
    let r = body(ResponseError::UnsupportedVersion.code());
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i32(0);
    buf.put_i32(correlation_id);
    if r.encode(&mut buf, 0).is_err() {
        return Response::None;
    }
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Response::Frame(buf)
}
