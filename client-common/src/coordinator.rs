//! Finding a coordinator with FindCoordinator: the broker that owns a consumer group or a
//! transactional id. Both clients use it: the consumer for its group, the transactional
//! producer for its transaction and for the group it commits offsets to.

use fjord_protocol::kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use fjord_protocol::kafka_protocol::messages::ApiKey;
use fjord_protocol::kafka_protocol::protocol::StrBytes;

use crate::{ClientError, Connection};

/// What a coordinator is asked for (FindCoordinator's `key_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoordinatorKey<'a> {
    /// A consumer group's coordinator (key type 0).
    Group(&'a str),
    /// A transactional id's coordinator (key type 1, FindCoordinator v1+).
    Transaction(&'a str),
}

/// Where a coordinator is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorAddress {
    /// The broker's node id.
    pub node_id: i32,
    /// "host:port".
    pub addr: String,
}

/// Asks `conn`'s broker where `key`'s coordinator is. A Kafka error comes back as
/// [`ClientError::Broker`] with its code (COORDINATOR_NOT_AVAILABLE while Kafka creates
/// its internal topics, for one).
pub async fn find_coordinator(
    conn: &Connection,
    key: CoordinatorKey<'_>,
) -> Result<CoordinatorAddress, ClientError> {
    let (name, key_type, min) = match key {
        CoordinatorKey::Group(g) => (g, 0, 0),
        CoordinatorKey::Transaction(t) => (t, 1, 1),
    };
    // v4+ batches keys in another field; one key a request is all we need.
    let version = conn.version(ApiKey::FindCoordinator, min, 3)?;
    let mut req = FindCoordinatorRequest::default();
    req.key = StrBytes::from_string(name.to_string());
    req.key_type = key_type;
    let resp = conn.request(&req, version).await?;
    if resp.error_code != 0 {
        return Err(ClientError::Broker {
            code: resp.error_code,
            message: format!("FindCoordinator for {name}"),
        });
    }
    Ok(CoordinatorAddress {
        node_id: resp.node_id.0,
        addr: format!("{}:{}", resp.host, resp.port),
    })
}

/// The consumer-group identity offsets are committed under: what a transactional
/// producer passes to `send_offsets_to_transaction` so the coordinator can fence a
/// zombie member (KIP-447), as the Java client's `ConsumerGroupMetadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupMetadata {
    /// `group.id`.
    pub group_id: String,
    /// The member's generation (-1 outside one).
    pub generation_id: i32,
    /// The member id ("" outside a generation).
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
}

impl ConsumerGroupMetadata {
    /// A group's identity without a member: offsets committed so are not fenced by
    /// generation (what the Java client's `new ConsumerGroupMetadata(groupId)` sends).
    pub fn new(group_id: impl Into<String>) -> Self {
        Self {
            group_id: group_id.into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
        }
    }
}
