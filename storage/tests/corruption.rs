//! Damage to files on disk: open never panics, keeps every valid batch before the damage,
//! drops what follows, and the log stays writable.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::*;
use fjord_protocol::record_batch::batches;
use fjord_storage::LogConfig;
use proptest::prelude::*;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 8192,
        index_interval_bytes: 200,
        ..small_config()
    }
}

/// A log of 80 batches of varying sizes, left by an unclean stop. Returns the batches as
/// written (base offsets patched) per segment file, oldest first.
fn build(dir: &Path) -> Vec<(PathBuf, Vec<Vec<u8>>)> {
    let mut log = open(dir, config());
    for i in 0..80usize {
        log.append(&batch(1 + i % 4, (i * 37) % 250, i as i64))
            .expect("append");
    }
    drop(log);
    segment_files(dir)
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).expect("read segment");
            let list = batches(&bytes)
                .map(|b| b.expect("valid").1.to_vec())
                .collect();
            (path, list)
        })
        .collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

/// Position of the last entry of a `.index` file (0 if none), reading it raw.
fn last_index_position(log_path: &Path) -> u64 {
    let bytes = std::fs::read(log_path.with_extension("index")).unwrap_or_default();
    bytes
        .chunks_exact(8)
        .take_while(|e| e != &[0u8; 8])
        .last()
        .map_or(0, |e| {
            u64::from(u32::from_be_bytes([e[4], e[5], e[6], e[7]]))
        })
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    Truncate,
    ZeroTail,
    FlipByte,
}

/// Applies `damage` at `fraction` of segment `target` and checks what survives.
fn check(damage: Damage, target_pick: usize, fraction: f64) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let segments = build(dir.path());
    let target = target_pick % segments.len();
    let path = &segments[target].0;
    let len = std::fs::metadata(path).expect("stat").len();
    let low = match damage {
        Damage::FlipByte => last_index_position(path),
        _ => 0,
    };
    let at = low + ((len - low) as f64 * fraction) as u64;
    let at = at.min(len.saturating_sub(1));
    // Zeroing bytes that were already zero damages nothing: the damage starts at the
    // first byte that really changes.
    let at = match damage {
        Damage::ZeroTail => {
            let original = std::fs::read(path).expect("read segment");
            (at..len)
                .find(|&p| original[p as usize] != 0)
                .unwrap_or(len)
        }
        _ => at,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open segment");
    match damage {
        Damage::Truncate => file.set_len(at).expect("truncate"),
        Damage::ZeroTail => file
            .write_all_at(&vec![0u8; (len - at) as usize], at)
            .expect("zero"),
        Damage::FlipByte => {
            let mut b = [0u8; 1];
            file.read_exact_at(&mut b, at).expect("read byte");
            file.write_all_at(&[b[0] ^ 0x5a], at).expect("flip");
        }
    }
    drop(file);

    // What must survive: everything before the damaged batch. A flip inside a batch's
    // partitionLeaderEpoch (bytes 12..16, outside the CRC by design) damages nothing.
    let mut expected = Vec::new();
    for (i, (_, list)) in segments.iter().enumerate() {
        let mut starts = Vec::new();
        let mut pos = 0u64;
        for b in list {
            starts.push(pos);
            pos += b.len() as u64;
        }
        let harmless = matches!(damage, Damage::FlipByte)
            && starts.iter().any(|p| (p + 12..p + 16).contains(&at));
        for (b, start) in list.iter().zip(&starts) {
            if i != target || harmless || start + b.len() as u64 <= at {
                expected.extend_from_slice(b);
            } else {
                break;
            }
        }
    }

    let mut log = open(dir.path(), config());
    let got = read_all(&log);
    prop_assert_eq!(batches(&got).count(), batches(&expected).count());
    prop_assert!(
        strip_epochs(&got) == strip_epochs(&expected),
        "kept bytes differ"
    );
    let end = log.log_end_offset();
    let info = log.append(&batch(2, 10, 0)).expect("append after recovery");
    prop_assert_eq!(info.first_offset, end);
    let tail = log.read_to_vec(end, 1 << 20).expect("read new batch");
    prop_assert_eq!(batches(&tail).count(), 1);
    Ok(())
}

/// Batches with partitionLeaderEpoch zeroed: a flip there is invisible by design.
fn strip_epochs(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let mut pos = 0;
    while pos + 12 <= out.len() {
        let len =
            i32::from_be_bytes([out[pos + 8], out[pos + 9], out[pos + 10], out[pos + 11]]) as usize;
        out[pos + 12..pos + 16].fill(0);
        pos += 12 + len;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn truncated_segment_keeps_its_valid_prefix(target in 0usize..100, fraction in 0.0f64..1.0) {
        check(Damage::Truncate, target, fraction)?;
    }

    #[test]
    fn zeroed_tail_is_cut_off(target in 0usize..100, fraction in 0.0f64..1.0) {
        check(Damage::ZeroTail, target, fraction)?;
    }

    #[test]
    fn flipped_byte_in_the_tail_is_cut_off(target in 0usize..100, fraction in 0.0f64..1.0) {
        check(Damage::FlipByte, target, fraction)?;
    }
}

#[test]
fn missing_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let segments = build(dir.path());
    let all: Vec<u8> = segments.iter().flat_map(|(_, l)| l.concat()).collect();
    for (path, _) in &segments {
        std::fs::remove_file(path.with_extension("index")).expect("remove index");
    }
    std::fs::remove_file(segments[0].0.with_extension("timeindex")).expect("remove timeindex");
    let log = open(dir.path(), config());
    assert_eq!(read_all(&log), all);
    assert_eq!(
        log.offset_for_timestamp(3)
            .expect("lookup")
            .map(|t| t.timestamp),
        Some(3)
    );
    assert!(
        std::fs::metadata(segments[0].0.with_extension("index"))
            .expect("rebuilt")
            .len()
            > 0
    );
}

#[test]
fn index_entries_past_the_end_are_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let segments = build(dir.path());
    let all: Vec<u8> = segments.iter().flat_map(|(_, l)| l.concat()).collect();
    let (active, _) = segments.last().expect("active");
    let index = active.with_extension("index");
    let n = std::fs::read(&index)
        .expect("index")
        .chunks_exact(8)
        .take_while(|e| e != &[0u8; 8])
        .count();
    let mut entry = [0u8; 8];
    entry[..4].copy_from_slice(&100_000u32.to_be_bytes());
    entry[4..].copy_from_slice(&900_000u32.to_be_bytes());
    let file = OpenOptions::new()
        .write(true)
        .open(&index)
        .expect("open index");
    file.write_all_at(&entry, (n * 8) as u64)
        .expect("write bogus entry");
    // A sealed segment's index with garbage in the middle.
    let sealed = segments[0].0.with_extension("index");
    let file = OpenOptions::new()
        .write(true)
        .open(&sealed)
        .expect("open sealed index");
    file.write_all_at(&[0xff; 8], 8).expect("garbage");
    let log = open(dir.path(), config());
    assert_eq!(read_all(&log), all);
}

#[test]
fn clean_marker_not_matching_the_files_is_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), config());
    for i in 0..20 {
        log.append(&batch(2, 100, i)).expect("append");
    }
    log.close().expect("close");
    let active = segment_files(dir.path()).pop().expect("active");
    let before = std::fs::read(&active).expect("read");
    let file = OpenOptions::new().write(true).open(&active).expect("open");
    file.set_len(before.len() as u64 - 5).expect("truncate");
    let log = open(dir.path(), config());
    let kept = batches(&before).count() - 1;
    assert_eq!(
        batches(&std::fs::read(&active).expect("read")).count(),
        kept
    );
    assert_eq!(log.log_end_offset(), 40 - 2);
}

#[test]
fn garbage_files_never_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut seed = 0x2545f4914f6cdd1du64;
    for size in [0usize, 1, 11, 12, 60, 61, 62, 500, 5000] {
        let bytes: Vec<u8> = (0..size)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let sub = dir.path().join(format!("g{size}"));
        std::fs::create_dir_all(&sub).expect("dir");
        std::fs::write(sub.join("00000000000000000000.log"), &bytes).expect("log");
        std::fs::write(sub.join("00000000000000000000.index"), &bytes).expect("index");
        std::fs::write(sub.join("00000000000000000000.timeindex"), &bytes).expect("timeindex");
        std::fs::write(sub.join(".clean-shutdown"), &bytes).expect("marker");
        let mut log = open(&sub, config());
        assert_eq!(log.log_end_offset(), 0);
        log.append(&batch(1, 1, 0)).expect("append");
        assert_eq!(read_all(&log).len(), batch(1, 1, 0).len());
    }
}
