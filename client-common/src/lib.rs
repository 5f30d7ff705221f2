//! What Fjord's producer and consumer share: a pipelined connection to one broker that
//! negotiates API versions ([`connection`]), and the cluster's brokers, topics and
//! partition leaders ([`metadata`]).
//!
//! Requests and responses are `kafka-protocol` messages; record batches travel inside them
//! as `Bytes` built and parsed by `fjord-protocol`.

pub mod connection;
pub mod coordinator;
pub mod error;
pub mod metadata;
pub mod settings;

pub use connection::Connection;
pub use coordinator::{
    find_coordinator, ConsumerGroupMetadata, CoordinatorAddress, CoordinatorKey,
};
pub use error::{kafka_error_name, ClientError};
pub use metadata::{ClusterMetadata, PartitionMetadata, TopicMetadata};
