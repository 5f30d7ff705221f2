//! The `fjord` broker: serves the Kafka protocol from `fjord-storage` logs.
//!
//! # Layout
//! - [`config`]: settings under Kafka's names (defaults, file, `--set`).
//! - [`state`]: the broker's topics and partitions, persisted in the log directory.
//! - [`acceptor`]: the listener and connection limit; `connection`: one client's request
//!   loop; `sendfile`: zero-copy record sets.
//! - [`handler`]: one file per API, each a function from request to response.
//! - [`maintenance`]: flush.ms, retention and idle-segment closing in the background.
//! - [`groups`]: consumer groups and their committed offsets.
//! - [`metrics`]: Prometheus counters and the `/metrics` and `/health` endpoint.
//! - [`producer_state`]: idempotent producers' sequence tracking per partition.

pub mod acceptor;
pub mod cleaner;
pub mod cleaner_metrics;
pub mod config;
mod connection;
pub mod fd_budget;
pub mod groups;
pub mod handler;
pub mod keyed_log;
pub mod maintenance;
pub mod metrics;
pub mod producer_state;
mod sendfile;
pub mod state;
pub mod txn;
