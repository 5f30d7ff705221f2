//! Transactions (KIP-98), coming in slices: first the transaction coordinator's durable
//! records in Kafka's own `__transaction_state` layout.

pub mod log_records;
