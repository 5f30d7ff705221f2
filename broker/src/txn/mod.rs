//! Transactions (KIP-98): the transaction coordinator, its durable records in Kafka's
//! own `__transaction_state` layout, the moves between states, and the markers it
//! writes into partitions.

pub mod coordinator;
#[cfg(test)]
mod coordinator_tests;
pub mod log_records;
pub(crate) mod markers;
pub mod metrics;
pub mod recovery;
pub mod state;
pub mod store;

pub use coordinator::{MarkerError, MarkerWriter, TxnConfig, TxnCoordinator};
