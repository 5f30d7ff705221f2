//! Fjord's pure-Rust async Kafka producer: per-partition batching bounded by `batch.size`
//! and `linger.ms`, compression once per batch (gzip, snappy, lz4, zstd), pipelined
//! Produce requests per broker, retries within `delivery.timeout.ms`, idempotence by
//! default, and Kafka's partitioners (murmur2 for keys, sticky otherwise).
//!
//! ```no_run
//! # async fn demo() -> Result<(), fjord_producer::ProduceError> {
//! use fjord_producer::{Producer, ProducerRecord};
//! let producer = Producer::builder()
//!     .set("bootstrap.servers", "127.0.0.1:9092")
//!     .set("linger.ms", "5")
//!     .build()?;
//! let delivery = producer.send(ProducerRecord::new("events", "hello").key("k")).await?;
//! let written = delivery.await?;
//! println!("{}-{}@{}", written.topic, written.partition, written.offset);
//! producer.close().await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`config`]: settings under Kafka's names.
//! - [`record`]: what is sent and what comes back.
//! - `accumulator` and `batch_writer`: per-partition batches, written in wire format.
//! - `sender`: one task per broker keeping requests in flight.
//! - [`partitioner`]: murmur2 (as Java computes it), sticky, round robin, or your own.
//! - [`error`]: typed errors, retriable or not.

mod accumulator;
mod batch_writer;
pub mod config;
mod delivery;
pub mod error;
mod inner;
pub mod partitioner;
mod producer;
pub mod record;
mod sender;
mod transaction;
mod transactional;
mod txn_requests;

pub use config::{Acks, ProducerConfig};
pub use delivery::DeliveryFuture;
pub use error::ProduceError;
pub use fjord_client_common::ConsumerGroupMetadata;
pub use partitioner::{murmur2, murmur2_partition, DefaultPartitioner, Partitioner};
pub use producer::{Producer, ProducerBuilder};
pub use record::{ProducerRecord, RecordMetadata};
