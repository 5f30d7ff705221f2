//! Log compaction (Kafka's log cleaner), in layers:
//!
//! - [`key_map`]: the bounded key-to-latest-offset map built over a log's dirty section;
//! - [`pass`]: one pass with no I/O: the map, then every batch of the segments being
//!   rewritten through the record filter (`fjord_protocol::record_batch::filter_batch`
//!   rewrites one batch, keeping offsets, producer fields and the last offset delta);
//! - to come: the driver that picks the dirtiest log (`min.cleanable.dirty.ratio`),
//!   reads its segments within the I/O throttle, writes `.cleaned` files and swaps them
//!   in through `.swap` (recovered at start), and keeps `cleaner-offset-checkpoint`.
//!
//! Transactions will add to the filter (aborted records, markers, the last stable
//! offset) without changing its shape: a record's fate is decided per record with the
//! batch at hand.

pub mod key_map;
pub mod pass;

pub use key_map::KeyMap;
pub use pass::{build_map, clean_batches, PassStats, Rules};
