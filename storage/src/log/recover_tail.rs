//! Recovering the end of a log after an unclean stop: the active segment, and the
//! segments before it that a power loss left with nothing past their own end.
//!
//! A new segment's name can become durable before the tail of the segment before it:
//! the flusher syncs the directory first in its batch (so acks for bytes in the new
//! segment are safe), and a log-start write or a segment deletion syncs the directory
//! under the log's lock at any time. A power loss in that window keeps an empty active
//! segment whose base lies past the last record that survived, and the log would end at
//! offsets no batch holds: a consumer there would never progress, and nothing could
//! ever fill the hole. Kafka's recovery leaves that state; Fjord removes such empty
//! segments, so the segment holding the last surviving record is active again and new
//! records take the lost offsets, which no sync had covered.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::recovery::{recover_segment, Indexes};
use crate::segment::{seal_files, Segment, SegmentCtx};

/// Recovers the active segment (the last of `listed`, as (base, size)) and returns every
/// segment the log keeps: the unrecovered sealed ones as [`Segment::unloaded`], the
/// active one last.
pub(super) fn recover_tail(
    ctx: SegmentCtx<'_>,
    listed: &[(u64, u64)],
) -> Result<BTreeMap<u64, Segment>> {
    let mut segments = BTreeMap::new();
    let Some((&(mut active_base, _), sealed)) = listed.split_last() else {
        return Ok(segments);
    };
    let mut kept = sealed.len();
    let (mut meta, mut files) = recover_segment(ctx, active_base, true, Indexes::Expected)?;
    while meta.size == 0 && kept > 0 {
        let previous = sealed[kept - 1].0;
        let (mut prev_meta, mut prev_files) =
            recover_segment(ctx, previous, true, Indexes::Expected)?;
        if prev_meta.next_offset >= active_base {
            // No hole: the previous segment stays sealed, recovered already.
            seal_files(&mut prev_meta, &mut prev_files, previous)?;
            segments.insert(
                previous,
                Segment::loaded(previous, prev_meta, Some(prev_files)),
            );
            kept -= 1;
            break;
        }
        tracing::warn!(
            dir = %ctx.dir.display(),
            empty_segment = active_base,
            records_end = prev_meta.next_offset,
            "an empty segment begins past the last record that survived; removing it"
        );
        Segment::loaded(active_base, meta, Some(files)).delete_files(ctx.io, ctx.dir)?;
        // Durably gone before anything is appended below its base, or a later loss
        // could bring it back overlapping the records appended there.
        ctx.io.sync_dir_at(ctx.dir)?;
        (active_base, meta, files) = (previous, prev_meta, prev_files);
        kept -= 1;
    }
    for &(base, size) in &sealed[..kept] {
        segments.insert(base, Segment::unloaded(base, size));
    }
    segments.insert(active_base, Segment::loaded(active_base, meta, Some(files)));
    Ok(segments)
}
