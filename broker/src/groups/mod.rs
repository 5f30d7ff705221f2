//! Consumer groups, with Fjord as their coordinator: KIP-848 groups ([`consumer`]), and
//! on Kafka's classic protocol:
//! membership and rebalances ([`group`]), the coordinator holding every group
//! ([`coordinator`]), which kind each group ID is and the migrations between the kinds
//! ([`routing`]), and durable committed offsets ([`offset_store`], in Kafka's record
//! layout from [`offset_records`]).

pub mod consumer;
pub mod coordinator;
pub mod group;
#[cfg(test)]
mod group_tests;
pub mod lag;
pub mod offset_records;
pub mod offset_store;
pub mod routing;

pub use coordinator::{CoordinatorConfig, GroupCoordinator};
pub use group::{GroupLimits, Phase};
pub use offset_store::OffsetStore;
