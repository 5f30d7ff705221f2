//! Log compaction (Kafka's log cleaner), in layers:
//!
//! - [`key_map`]: the bounded key-to-latest-offset map built over a log's dirty section;
//! - [`pass`]: one pass with no I/O: the map, then every batch of the segments being
//!   rewritten through the record filter (`fjord_protocol::record_batch::filter_batch`
//!   rewrites one batch, keeping offsets, producer fields and the last offset delta);
//! - [`files`]: sealed segments read batch by batch, each cleaned into
//!   `<base>.log.cleaned`; `Log::compact` (in `log/compaction.rs`) runs a pass over one
//!   log and swaps the cleaned files in through `<base>.log.swap`, which an open
//!   finishes after a crash, and keeps the dirty section's start in
//!   `cleaner-offset-checkpoint`;
//! - to come: the broker's cleaner thread that picks the dirtiest log
//!   (`min.cleanable.dirty.ratio`, `max.compaction.lag.ms`) within the I/O throttle.
//!
//! - [`txn`]: what a pass knows of transactions as it reads: aborted batches go (and
//!   stay out of the key map), markers go once nothing is left for them to guard, and
//!   a pass never maps past the last stable offset (records of open transactions).

pub mod files;
pub mod key_map;
pub mod pass;
pub mod txn;

pub use files::{CleanedSegment, SealedSegment};
pub use key_map::KeyMap;
pub use pass::{build_map, clean_batches, PassStats, Rules};
pub use txn::{TxnFate, TxnTracker};
