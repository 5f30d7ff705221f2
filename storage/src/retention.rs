//! Retention: deleting whole old segments by age (`retention.ms`) and by total size
//! (`retention.bytes`). The active segment is never deleted; the log start offset moves
//! to the first remaining segment.

use crate::error::Result;
use crate::log::Log;
use crate::segment::segment_path;

/// What a retention pass removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionOutcome {
    /// Segments deleted.
    pub segments_deleted: usize,
    /// Bytes deleted.
    pub bytes_deleted: u64,
    /// Log start offset afterwards.
    pub log_start_offset: u64,
}

impl Log {
    /// Deletes the oldest sealed segments that are past `retention.ms` (their newest
    /// record older than `now_ms - retention.ms`) or beyond `retention.bytes`.
    /// Only the oldest segment(s) are examined, so a pass costs O(deleted + 1).
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<RetentionOutcome> {
        let sealed: Vec<u64> = self.segments.keys().rev().skip(1).rev().copied().collect();
        let by_time = self.expired_by_time(&sealed, now_ms)?;
        let by_size = self.excess_by_size(&sealed);
        let doomed = &sealed[..by_time.max(by_size)];
        let bytes_deleted: u64 = doomed.iter().map(|b| self.segments[b].size()).sum();
        if !doomed.is_empty() {
            tracing::info!(
                dir = %self.dir.display(),
                segments = doomed.len(),
                bytes = bytes_deleted,
                "retention deleted segments"
            );
            self.delete_segments(doomed)?;
            let first = self.segments.keys().next().copied().unwrap_or(0);
            self.log_start_offset = self.log_start_offset.max(first);
            let start = self.log_start_offset;
            self.change_epochs(|c| c.truncate_from_start(start))?;
        }
        Ok(RetentionOutcome {
            segments_deleted: doomed.len(),
            bytes_deleted,
            log_start_offset: self.log_start_offset,
        })
    }

    /// How many of the oldest sealed segments are entirely older than `retention.ms`.
    fn expired_by_time(&self, sealed: &[u64], now_ms: i64) -> Result<usize> {
        let Some(retention) = self.config.retention_ms else {
            return Ok(0);
        };
        let ctx = self.ctx();
        let mut n = 0;
        for base in sealed {
            let meta = self.segments[base].meta(ctx, false)?;
            // Segments without timestamps age by their file's modification time, as Kafka.
            let newest = match meta.max_timestamp {
                Some(m) if m.timestamp >= 0 => m.timestamp,
                _ => modified_ms(&segment_path(&self.dir, *base, "log")),
            };
            if now_ms.saturating_sub(newest) <= retention as i64 {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    /// How many of the oldest sealed segments must go to bring the log within
    /// `retention.bytes`.
    fn excess_by_size(&self, sealed: &[u64]) -> usize {
        let Some(limit) = self.config.retention_bytes else {
            return 0;
        };
        let mut excess = self.size_bytes().saturating_sub(limit);
        let mut n = 0;
        for base in sealed {
            let size = self.segments[base].size();
            if size > excess {
                break;
            }
            excess -= size;
            n += 1;
        }
        n
    }
}

fn modified_ms(path: &std::path::Path) -> i64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(i64::MAX, |d| d.as_millis() as i64)
}
