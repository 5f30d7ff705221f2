//! File descriptors and memory maps: the broker's budget (the descriptor limit, raised
//! to the hard limit at start, and the kernel's map count limit), how many are open, and
//! when segment files must be closed early to stay under it. Each partition holds its
//! active segment open while in use: one descriptor and two index maps. A broker with
//! more partitions than that budget allows must close idle ones sooner than
//! `fjord.segment.idle.close.ms`, and partitions created past half of it start closed.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Share of the limit past which idle segment files are closed early.
const PRESSURE_PERCENT: u64 = 80;

/// Raises the soft descriptor limit to the hard one, as servers holding many files do,
/// and returns the limit now in force (`None`: unlimited).
pub fn raise_limit() -> Option<u64> {
    let now = getrlimit(Resource::Nofile);
    if let (Some(current), Some(maximum)) = (now.current, now.maximum) {
        if maximum > current {
            let raised = Rlimit {
                current: Some(maximum),
                maximum: Some(maximum),
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => {
                    tracing::info!(from = current, to = maximum, "raised the open file limit")
                }
                Err(e) => tracing::warn!(error = %e, "could not raise the open file limit"),
            }
        }
    }
    limit()
}

/// Open segments the broker can hold: the soft descriptor limit, and half the kernel's
/// limit on memory maps (`vm.max_map_count`, 65,530 by default: two index maps per open
/// segment), whichever is lower (`None`: unlimited).
pub fn limit() -> Option<u64> {
    let maps = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok());
    budget(getrlimit(Resource::Nofile).current, maps)
}

/// The budget from a descriptor limit and a map count limit (see [`limit`]).
fn budget(nofile: Option<u64>, max_map_count: Option<u64>) -> Option<u64> {
    match (nofile, max_map_count.map(|m| m / 2)) {
        (Some(f), Some(m)) => Some(f.min(m)),
        (f, m) => f.or(m),
    }
}

/// Descriptors open now; `None` when they cannot be counted (no `/proc`, or no
/// descriptor left to list it with).
pub fn open_count() -> Option<u64> {
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64)
}

/// Whether `open` descriptors are past the share of `limit` where idle files must go.
/// Not knowing counts as pressure: failing to list `/proc/self/fd` is what EMFILE looks
/// like.
pub fn under_pressure(open: Option<u64>, limit: Option<u64>) -> bool {
    let Some(limit) = limit else { return false };
    open.is_none_or(|n| n.saturating_mul(100) > limit.saturating_mul(PRESSURE_PERCENT))
}

/// Whether partitions opened now should start with their files closed: holding
/// `partitions` in all, one open file each would take more than half of `limit`.
pub fn start_closed(partitions: usize, limit: Option<u64>) -> bool {
    limit.is_some_and(|l| partitions as u64 > l / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_and_start_closed_follow_the_limit() {
        assert!(!under_pressure(Some(799), Some(1000)));
        assert!(under_pressure(Some(801), Some(1000)));
        assert!(under_pressure(None, Some(1000)), "uncountable is pressure");
        assert!(!under_pressure(Some(u64::MAX / 2), None));
        assert!(!start_closed(500, Some(1000)));
        // The map count bounds it too: two index maps per open segment.
        assert_eq!(budget(Some(1_048_576), Some(65_530)), Some(32_765));
        assert_eq!(budget(Some(1024), Some(65_530)), Some(1024));
        assert_eq!(budget(None, Some(100)), Some(50));
        assert_eq!(budget(None, None), None);
        assert!(start_closed(501, Some(1000)));
        assert!(!start_closed(1_000_000, None));
        assert!(
            open_count().is_some_and(|n| n > 0),
            "this process has descriptors"
        );
        assert!(limit().is_none_or(|l| l > 0));
    }
}
