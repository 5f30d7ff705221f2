//! ListOffsets' lookups: a timestamp to the first offset at or after it, earliest,
//! latest and max-timestamp (KIP-734).

use super::{Log, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, MAX_TIMESTAMP};
use crate::error::Result;
use crate::segment::Segment;
use crate::timestamp_search::{max_timestamp_record, search_segment, TimestampOffset};

impl Log {
    /// Kafka's ListOffsets for one partition: [`LATEST_TIMESTAMP`] (-1) gives the log end
    /// offset, [`EARLIEST_TIMESTAMP`] (-2) the log start offset, [`MAX_TIMESTAMP`] (-3)
    /// the record with the largest timestamp; any other timestamp the first record whose
    /// timestamp is at or after it, or `None` when there is none.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<TimestampOffset>> {
        match timestamp {
            LATEST_TIMESTAMP => Ok(Some(TimestampOffset {
                offset: self.log_end_offset(),
                timestamp: -1,
            })),
            EARLIEST_TIMESTAMP => Ok(Some(TimestampOffset {
                offset: self.log_start_offset,
                timestamp: -1,
            })),
            MAX_TIMESTAMP => self.max_timestamp_offset(),
            t if t < 0 => Ok(None),
            target => self.search_timestamp(target),
        }
    }
    fn live_segments(&self) -> impl Iterator<Item = (u64, &Segment)> {
        let start = self
            .segments
            .range(..=self.log_start_offset)
            .next_back()
            .map_or(0, |(b, _)| *b);
        self.segments.range(start..).map(|(b, s)| (*b, s))
    }
    fn search_timestamp(&self, target: i64) -> Result<Option<TimestampOffset>> {
        let ctx = self.ctx();
        let active_base = self.active_base();
        for (base, segment) in self.live_segments() {
            let active = base == active_base;
            let meta = segment.meta(ctx, active)?;
            if meta.max_timestamp.is_none_or(|m| m.timestamp < target) {
                continue;
            }
            let min = self.log_start_offset;
            let hit = segment.with_open(ctx, active, |meta, files| {
                search_segment(base, meta, files, target, min)
            })?;
            if hit.is_some() {
                return Ok(hit);
            }
        }
        Ok(None)
    }
    fn max_timestamp_offset(&self) -> Result<Option<TimestampOffset>> {
        let ctx = self.ctx();
        let active_base = self.active_base();
        let mut best: Option<(i64, u64)> = None;
        for (base, segment) in self.live_segments() {
            if let Some(max) = segment.meta(ctx, base == active_base)?.max_timestamp {
                if best.is_none_or(|(ts, _)| max.timestamp > ts) {
                    best = Some((max.timestamp, base));
                }
            }
        }
        let Some((_, base)) = best else {
            return Ok(None);
        };
        let segment = &self.segments[&base];
        segment.with_open(ctx, base == active_base, |meta, files| {
            max_timestamp_record(base, meta, files)
        })
    }
}
