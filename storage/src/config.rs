//! Per-log settings, named after Kafka's topic configs.

use fjord_protocol::record_batch::{RecordValidation, TimestampType};

use crate::error::{Result, StorageError};

/// When appended bytes are forced from the page cache to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Never fsync on the write path; the OS writes back (Kafka's default). Rolled segments
    /// and clean shutdowns are still flushed.
    #[default]
    PageCache,
    /// Kafka's `flush.messages` / `flush.ms`: fsync in the background once this many
    /// messages are unflushed, or once the oldest unflushed append is this old (checked by
    /// [`crate::Log::maybe_flush`]).
    Interval {
        /// `flush.messages`.
        messages: Option<u64>,
        /// `flush.ms`.
        ms: Option<u64>,
    },
    /// Every append returns a [`crate::FlushTicket`] that completes once its bytes are on
    /// disk; concurrent appends share one `fdatasync` (group commit).
    FsyncOnAck,
}

/// Settings of one log. `Default` gives Kafka's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would exceed this (default 1 GiB).
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment's first batch is this old (default 7 days).
    pub segment_ms: Option<u64>,
    /// `segment.index.bytes`: size each index is preallocated to (default 10 MiB).
    pub segment_index_bytes: u64,
    /// `index.interval.bytes`: bytes of log between two index entries (default 4096).
    pub index_interval_bytes: u64,
    /// `retention.ms`: delete segments whose newest record is older (default 7 days).
    pub retention_ms: Option<u64>,
    /// `retention.bytes`: delete old segments while the log is larger (default unlimited).
    pub retention_bytes: Option<u64>,
    /// `max.message.bytes`: largest batch accepted (default 1 MiB + 12 bytes, as Kafka).
    pub max_batch_bytes: usize,
    /// `message.timestamp.type`: keep the producer's timestamps or stamp the append time.
    pub timestamp_type: TimestampType,
    /// `flush.messages` / `flush.ms` / fsync-on-ack.
    pub durability: Durability,
    /// `fjord.produce.validation`: how deeply appended records are checked beyond header
    /// and CRC (default: not at all here; the broker's default walks record lengths).
    pub record_validation: RecordValidation,
    /// `cleanup.policy` with `compact`: the cleaner's settings (records then need keys).
    pub compaction: Option<Compaction>,
}

/// A compacted log's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compaction {
    /// `min.cleanable.dirty.ratio`, in parts per million.
    pub min_cleanable_ratio_ppm: u32,
    /// `delete.retention.ms`.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`.
    pub max_compaction_lag_ms: i64,
}

const WEEK_MS: u64 = 7 * 24 * 60 * 60 * 1000;

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: Some(WEEK_MS),
            segment_index_bytes: 10 << 20,
            index_interval_bytes: 4096,
            retention_ms: Some(WEEK_MS),
            retention_bytes: None,
            max_batch_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            durability: Durability::PageCache,
            record_validation: RecordValidation::Header,
            compaction: None,
        }
    }
}

impl LogConfig {
    /// Checks the settings against the limits of the file format: positions are u32 and
    /// each index must hold at least one entry.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(StorageError::InvalidConfig(what.to_string()));
        if self.segment_bytes < 14 || self.segment_bytes > i32::MAX as u64 {
            return bad("segment.bytes must be between 14 and 2147483647");
        }
        if self.segment_index_bytes < 12 || self.segment_index_bytes > i32::MAX as u64 {
            return bad("segment.index.bytes must be between 12 and 2147483647");
        }
        if self.max_batch_bytes < 61 {
            return bad("max.message.bytes must be at least 61");
        }
        if let Durability::Interval {
            messages: Some(0), ..
        } = self.durability
        {
            return bad("flush.messages must be at least 1");
        }
        Ok(())
    }

    /// Entries an offset index (8-byte entries) can hold.
    pub(crate) fn offset_index_capacity(&self) -> usize {
        (self.segment_index_bytes / 8) as usize
    }

    /// Entries a time index (12-byte entries) can hold.
    pub(crate) fn time_index_capacity(&self) -> usize {
        (self.segment_index_bytes / 12) as usize
    }
}
