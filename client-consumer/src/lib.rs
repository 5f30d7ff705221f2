//! Fjord's pure-Rust async Kafka consumer: consumer groups on the classic protocol
//! (range, roundrobin and cooperative-sticky assignors, static membership) or on
//! KIP-848's consumer protocol (`group.protocol=consumer`: the broker assigns), commits,
//! seek, pause and resume, and a fetch pipeline per broker that keeps the next response
//! in flight while the application reads the current one. Records' keys and values are
//! slices of the fetched bytes, never copied.
//!
//! ```no_run
//! # async fn demo() -> Result<(), fjord_consumer::ConsumeError> {
//! use fjord_consumer::Consumer;
//! let mut consumer = Consumer::builder()
//!     .set("bootstrap.servers", "127.0.0.1:9092")
//!     .set("group.id", "billing")
//!     .set("auto.offset.reset", "earliest")
//!     .build()?;
//! consumer.subscribe(&["events"])?;
//! let record = consumer.recv().await?;
//! println!("{}-{}@{}: {:?}", record.topic, record.partition, record.offset, record.value);
//! consumer.close().await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`config`]: settings under Kafka's names.
//! - [`record`]: what comes out.
//! - `consumer`: the public API; `fetcher`: per-broker fetch pipelines; `chunk`: lazy,
//!   zero-copy decoding of fetched record sets.
//! - `group` and `assignors`: classic membership and partition assignment;
//!   `consumer_protocol`: membership on the consumer protocol.
//! - [`error`]: typed errors.

mod aborted;
mod assignors;
mod chunk;
mod cluster;
pub mod config;
mod consumer;
mod consumer_protocol;
pub mod error;
mod fetcher;
mod group;
mod inner;
mod offsets;
mod partition;
pub mod record;

pub use config::{ConsumerConfig, GroupProtocol, OffsetReset};
pub use consumer::{Consumer, ConsumerBuilder, RebalanceListener};
pub use error::ConsumeError;
pub use fjord_client_common::ConsumerGroupMetadata;
pub use record::{ConsumerRecord, TimestampKind, TopicPartition};
