//! Transactions (KIP-98), coming in slices: first the transaction coordinator's durable
//! records in Kafka's own `__transaction_state` layout and the moves between states.

pub mod log_records;
pub mod state;
