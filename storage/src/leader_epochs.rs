//! The leader-epoch cache of one log, kept as Kafka's `leader-epoch-checkpoint` file:
//! for each leader epoch that wrote records, the offset of its first one.
//!
//! A client that read up to some offset in epoch E asks (OffsetForLeaderEpoch) where E
//! ends on the leader; if that is below its position, records it saw are gone (a power
//! loss took unsynced ones, or, with replication, a new leader never had them) and it
//! truncates or resets instead of silently reading different records at the same
//! offsets. Every batch also carries its epoch (`partition_leader_epoch`).
//!
//! The file (text, as Kafka writes it): a version line `0`, a count line, then one
//! `epoch start_offset` line per entry, epochs and offsets rising. It is replaced
//! durably whenever the cache changes, which happens on the first append of a new epoch,
//! a truncation, or a move of the log start; never on the ordinary append path.

use std::path::Path;

use crate::error::{Result, StorageError};
use crate::io::Io;

/// The checkpoint's file name, as Kafka names it.
pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

/// Kafka's "no epoch" (`UNDEFINED_EPOCH`) and "no offset" (`UNDEFINED_EPOCH_OFFSET`).
pub const UNDEFINED: i64 = -1;

/// An epoch and the offset of its first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    /// The leader epoch.
    pub epoch: i32,
    /// The offset of the first record written in it.
    pub start_offset: u64,
}

/// The epochs of one log, oldest first.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct LeaderEpochs {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochs {
    /// Reads the checkpoint in `dir`; none (a new log, or one written before Fjord kept
    /// epochs) is an empty cache.
    pub(crate) fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(CHECKPOINT_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(StorageError::Io {
                    op: "read leader epochs",
                    path,
                    source,
                })
            }
        };
        parse(&text).map_err(|reason| StorageError::Corrupt {
            path,
            position: 0,
            reason,
        })
    }

    /// Writes the checkpoint into `dir` durably.
    pub(crate) fn persist(&self, io: &Io, dir: &Path) -> Result<()> {
        let mut text = format!("0\n{}\n", self.entries.len());
        for e in &self.entries {
            text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        io.write_durably(dir, CHECKPOINT_FILE, text.as_bytes())
    }

    /// The newest entry.
    pub(crate) fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Every entry, oldest first.
    pub(crate) fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// Records that `epoch` starts at `start_offset`, as Kafka's `assign`: entries of
    /// this epoch or later, or starting at or after this offset, give way to it. Returns
    /// whether anything changed (a batch of the newest epoch changes nothing).
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: u64) -> bool {
        if epoch < 0 {
            return false;
        }
        if let Some(last) = self.latest() {
            if last.epoch == epoch && last.start_offset <= start_offset {
                return false;
            }
        }
        self.entries
            .retain(|e| e.epoch < epoch && e.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Forgets epochs that start at or after `end_offset` (the log was cut there).
    pub(crate) fn truncate_from_end(&mut self, end_offset: u64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        self.entries.len() != before
    }

    /// A power loss took the log back to `end`: epochs that started past it lost their
    /// records but keep their place, the newest of them now starting at `end` (as if it
    /// had just begun there), so the next epoch is still one past it and no epoch is
    /// ever used for two different sets of records.
    pub(crate) fn fit_to_end(&mut self, end: u64) -> bool {
        let Some(latest) = self.latest().filter(|l| l.start_offset > end) else {
            return false;
        };
        self.entries.retain(|e| e.start_offset < end);
        self.entries.push(EpochEntry {
            epoch: latest.epoch,
            start_offset: end,
        });
        true
    }

    /// The log now starts at `start_offset`: epochs wholly below it go, and the one that
    /// covers it starts there (Kafka's `truncateFromStart`).
    pub(crate) fn truncate_from_start(&mut self, start_offset: u64) -> bool {
        let below = self
            .entries
            .iter()
            .take_while(|e| e.start_offset < start_offset)
            .count();
        let Some(covering) = below.checked_sub(1).map(|i| self.entries[i]) else {
            return false;
        };
        self.entries.drain(..below);
        self.entries.insert(
            0,
            EpochEntry {
                epoch: covering.epoch,
                start_offset,
            },
        );
        true
    }

    /// Forgets every epoch.
    pub(crate) fn clear(&mut self) -> bool {
        let changed = !self.entries.is_empty();
        self.entries.clear();
        changed
    }

    /// Where `requested` ends, as Kafka's `endOffsetFor`: (the largest epoch at or below
    /// it, the start of the next one), with the log's newest epoch ending at
    /// `log_end_offset`. `current` is the epoch the log is written in now, which may
    /// have no entry yet (nothing written in it): it is the newest. An epoch newer than
    /// any known, or -1, is ([`UNDEFINED`], [`UNDEFINED`]); one older than every entry
    /// ends where the first entry starts.
    pub(crate) fn end_offset_for(
        &self,
        requested: i32,
        current: i32,
        log_end_offset: u64,
    ) -> (i32, i64) {
        let undefined = (UNDEFINED as i32, UNDEFINED);
        let end = i64::try_from(log_end_offset).unwrap_or(i64::MAX);
        let mut entries = self.entries.clone();
        if current >= 0 && self.latest().is_none_or(|l| l.epoch < current) {
            entries.push(EpochEntry {
                epoch: current,
                start_offset: log_end_offset,
            });
        }
        if requested < 0 {
            return undefined;
        }
        match entries.last() {
            None => return undefined,
            Some(latest) if latest.epoch == requested => return (requested, end),
            Some(_) => {}
        }
        let Some(higher) = entries.iter().find(|e| e.epoch > requested) else {
            return undefined;
        };
        let next_start = i64::try_from(higher.start_offset).unwrap_or(i64::MAX);
        match entries.iter().rev().find(|e| e.epoch <= requested) {
            Some(floor) => (floor.epoch, next_start),
            None => (requested, next_start),
        }
    }

    /// The epoch the record at `offset` was written in, if known.
    pub(crate) fn epoch_for_offset(&self, offset: u64) -> Option<i32> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.start_offset <= offset)
            .map(|e| e.epoch)
    }
}

fn parse(text: &str) -> std::result::Result<LeaderEpochs, String> {
    let mut lines = text.lines();
    match lines.next().map(str::trim) {
        Some("0") => {}
        other => return Err(format!("unknown leader-epoch checkpoint version {other:?}")),
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or("leader-epoch checkpoint without a count")?;
    let mut entries: Vec<EpochEntry> = Vec::with_capacity(count.min(1024));
    for line in lines.by_ref().take(count) {
        let mut fields = line.split_whitespace();
        let (Some(epoch), Some(start), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(format!("bad leader-epoch entry {line:?}"));
        };
        let entry = EpochEntry {
            epoch: epoch
                .parse()
                .map_err(|_| format!("bad epoch in {line:?}"))?,
            start_offset: start
                .parse()
                .map_err(|_| format!("bad offset in {line:?}"))?,
        };
        if entries
            .last()
            .is_some_and(|l| l.epoch >= entry.epoch || l.start_offset > entry.start_offset)
            || entry.epoch < 0
        {
            return Err(format!("leader-epoch entries out of order at {line:?}"));
        }
        entries.push(entry);
    }
    if entries.len() != count || lines.any(|l| !l.trim().is_empty()) {
        return Err(format!(
            "leader-epoch checkpoint declares {count} entries, holds {}",
            entries.len()
        ));
    }
    Ok(LeaderEpochs { entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, u64)]) -> LeaderEpochs {
        LeaderEpochs {
            entries: entries
                .iter()
                .map(|&(epoch, start_offset)| EpochEntry {
                    epoch,
                    start_offset,
                })
                .collect(),
        }
    }

    #[test]
    fn end_offsets_follow_kafkas_rules() {
        // Epochs 1 from 0, 3 from 10, 4 from 25; the log ends at 40, written in epoch 4.
        let c = cache(&[(1, 0), (3, 10), (4, 25)]);
        assert_eq!(
            c.end_offset_for(4, 4, 40),
            (4, 40),
            "the newest ends at the end"
        );
        assert_eq!(c.end_offset_for(3, 4, 40), (3, 25));
        assert_eq!(
            c.end_offset_for(2, 4, 40),
            (1, 10),
            "a gap: the epoch below it"
        );
        assert_eq!(c.end_offset_for(0, 4, 40), (0, 0), "older than all");
        assert_eq!(c.end_offset_for(5, 4, 40), (-1, -1), "newer than any");
        assert_eq!(c.end_offset_for(-1, 4, 40), (-1, -1));
        // Written in epoch 5 now, nothing in it yet: 4 ends at the end, 5 is the newest.
        assert_eq!(c.end_offset_for(4, 5, 40), (4, 40));
        assert_eq!(c.end_offset_for(5, 5, 40), (5, 40));
        assert_eq!(LeaderEpochs::default().end_offset_for(0, -1, 0), (-1, -1));
    }

    #[test]
    fn assign_and_truncations_keep_entries_rising() {
        let mut c = LeaderEpochs::default();
        assert!(c.assign(0, 0));
        assert!(
            !c.assign(0, 5),
            "a later batch of the same epoch changes nothing"
        );
        assert!(c.assign(2, 10));
        assert!(c.assign(3, 20));
        // A new epoch at an offset an entry already covers replaces the later entries.
        assert!(c.assign(4, 15));
        assert_eq!(c, cache(&[(0, 0), (2, 10), (4, 15)]));
        assert!(c.truncate_from_end(15));
        assert_eq!(c, cache(&[(0, 0), (2, 10)]));
        assert!(c.truncate_from_start(12));
        assert_eq!(c, cache(&[(2, 12)]));
        assert!(!c.truncate_from_start(5), "below the first entry: nothing");
        let mut lost = cache(&[(0, 0), (2, 10), (3, 20), (5, 30)]);
        assert!(lost.fit_to_end(10));
        assert_eq!(
            lost,
            cache(&[(0, 0), (5, 10)]),
            "the newest epoch keeps its place"
        );
        assert!(!lost.fit_to_end(10));
        assert_eq!(c.epoch_for_offset(11), None);
        assert_eq!(c.epoch_for_offset(30), Some(2));
    }

    #[test]
    fn the_checkpoint_reads_back_and_damage_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = cache(&[(0, 0), (7, 123)]);
        c.persist(&Io::real(), dir.path()).expect("persist");
        let text = std::fs::read_to_string(dir.path().join(CHECKPOINT_FILE)).expect("file");
        assert_eq!(text, "0\n2\n0 0\n7 123\n", "Kafka's layout");
        assert_eq!(LeaderEpochs::load(dir.path()).expect("load"), c);
        for bad in [
            "1\n0\n",
            "0\n2\n0 0\n",
            "0\n1\n5 x\n",
            "0\n2\n3 10\n2 20\n",
            "0\n1\n1 2 3\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let empty = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            LeaderEpochs::load(empty.path()).expect("none"),
            LeaderEpochs::default()
        );
    }
}
