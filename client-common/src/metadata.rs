//! The cluster as a client sees it: brokers by node id, and each topic's partitions with
//! their leaders, from a Metadata request.

use std::collections::HashMap;

use fjord_protocol::kafka_protocol::messages::metadata_request::{
    MetadataRequest, MetadataRequestTopic,
};
use fjord_protocol::kafka_protocol::messages::{ApiKey, TopicName};
use fjord_protocol::kafka_protocol::protocol::StrBytes;

use crate::connection::Connection;
use crate::error::ClientError;

/// One partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// Partition index.
    pub partition: i32,
    /// Leader's node id (-1 when there is none).
    pub leader: i32,
    /// The partition's error code.
    pub error: i16,
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// The topic's error code (3 = UNKNOWN_TOPIC_OR_PARTITION).
    pub error: i16,
    /// Its ID's 16 bytes (Metadata v10+; all zero when the broker gave none). Fetch v13+
    /// names topics by it.
    pub id: [u8; 16],
    /// Partitions by index.
    pub partitions: Vec<PartitionMetadata>,
}

/// Brokers and topics.
#[derive(Debug, Clone, Default)]
pub struct ClusterMetadata {
    /// "host:port" by node id.
    pub brokers: HashMap<i32, String>,
    /// Topics asked for (or all of them).
    pub topics: HashMap<String, TopicMetadata>,
}

impl ClusterMetadata {
    /// Asks `conn` about `topics` (all topics when `None`); with `auto_create`, unknown
    /// topics are created where the broker allows it.
    pub async fn fetch(
        conn: &Connection,
        topics: Option<&[String]>,
        auto_create: bool,
    ) -> Result<Self, ClientError> {
        let version = conn.version(ApiKey::Metadata, 1, 12)?;
        let mut req = MetadataRequest::default();
        req.topics = topics.map(|names| {
            names
                .iter()
                .map(|n| {
                    let mut t = MetadataRequestTopic::default();
                    t.name = Some(TopicName(StrBytes::from_string(n.clone())));
                    t
                })
                .collect()
        });
        if version >= 4 {
            req.allow_auto_topic_creation = auto_create;
        }
        let resp = conn.request(&req, version).await?;
        let brokers = resp
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
            .collect();
        let topics = resp
            .topics
            .iter()
            .filter_map(|t| {
                let name = t.name.as_ref()?.0.to_string();
                let mut partitions: Vec<PartitionMetadata> = t
                    .partitions
                    .iter()
                    .map(|p| PartitionMetadata {
                        partition: p.partition_index,
                        leader: p.leader_id.0,
                        error: p.error_code,
                    })
                    .collect();
                partitions.sort_by_key(|p| p.partition);
                Some((
                    name,
                    TopicMetadata {
                        error: t.error_code,
                        id: *t.topic_id.as_bytes(),
                        partitions,
                    },
                ))
            })
            .collect();
        Ok(Self { brokers, topics })
    }
}
