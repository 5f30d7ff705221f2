//! Cleaning passes against a model: random batches (keys, values, tombstones, codecs,
//! idempotent producers), passes with small key maps that cut the mapped range, a clock
//! that moves. Every record that stays is one that was written, at its offset; the
//! latest record of each key stays (a tombstone until its delete horizon passed); a
//! record goes only if a later record has its key, it has no key, or it is an expired
//! tombstone; after a pass over everything nothing superseded is left; a producer's
//! last batch is never dropped.

use std::collections::{BTreeMap, BTreeSet};

use fjord_protocol::compression::Compression;
use fjord_protocol::record_batch::{
    stored_batches as batches, BatchBuilder, BatchHeader, RecordIter, RecordSpec, BATCH_HEADER_LEN,
};
use proptest::prelude::*;

use super::*;

const RETENTION: i64 = 1_000;

#[derive(Debug, Clone)]
struct Written {
    key: Option<u8>,
    value: Option<Vec<u8>>,
}

fn codec() -> impl Strategy<Value = Compression> {
    prop_oneof![
        Just(Compression::None),
        Just(Compression::Gzip),
        Just(Compression::Snappy),
        Just(Compression::Lz4),
        Just(Compression::Zstd),
    ]
}

fn written() -> impl Strategy<Value = Written> {
    (
        prop_oneof![1 => Just(None), 9 => (0u8..6).prop_map(Some)],
        prop_oneof![1 => Just(None), 4 => proptest::collection::vec(any::<u8>(), 0..6).prop_map(Some)],
    )
        .prop_map(|(key, value)| Written { key, value })
}

/// (codec, producer or none, records) per batch.
type Batches = Vec<(Compression, Option<i64>, Vec<Written>)>;

fn log_of(spec: &Batches) -> (Vec<u8>, BTreeMap<i64, Written>) {
    let mut log = Vec::new();
    let mut model = BTreeMap::new();
    let mut next = 0i64;
    let mut sequences: BTreeMap<i64, i32> = BTreeMap::new();
    for (codec, producer, records) in spec {
        let mut b = BatchBuilder::new(*codec, 100);
        if let Some(pid) = producer {
            let seq = sequences.entry(*pid).or_default();
            b = b.with_producer(*pid, 0, *seq);
            *seq += records.len() as i32;
        }
        for r in records {
            let mut spec = RecordSpec {
                key: r.key.map(|k| vec![k]),
                value: r.value.clone(),
                headers: vec![(b"h".to_vec(), Some(vec![1]))],
                timestamp: Some(100 + next),
            };
            spec.timestamp = Some(100 + next);
            b.push(spec);
            model.insert(next, r.clone());
            next += 1;
        }
        let mut bytes = b.build().expect("build");
        BatchHeader::write_base_offset(&mut bytes, next - records.len() as i64);
        BatchHeader::seal_crc(&mut bytes);
        log.extend_from_slice(&bytes);
    }
    (log, model)
}

/// offset -> (key, value) of every record in `log`, checking each batch.
fn read(log: &[u8]) -> BTreeMap<i64, (Option<u8>, Option<Vec<u8>>)> {
    let mut out = BTreeMap::new();
    for batch in batches(log) {
        let (h, bytes) = batch.expect("a valid batch");
        let payload = h
            .compression()
            .expect("codec")
            .decompress(&bytes[BATCH_HEADER_LEN..], 1 << 20)
            .expect("decompress");
        for r in RecordIter::new(&payload, h.records_count as usize) {
            let r = r.expect("record");
            let offset = h.base_offset + i64::from(r.offset_delta);
            assert!(
                out.keys().next_back().is_none_or(|last| *last < offset),
                "offsets in order"
            );
            out.insert(offset, (r.key.map(|k| k[0]), r.value.map(<[u8]>::to_vec)));
        }
    }
    out
}

/// Offsets of each producer's last batch in `log`.
fn last_batches(log: &[u8]) -> BTreeMap<i64, i64> {
    let mut out = BTreeMap::new();
    for batch in batches(log) {
        let (h, _) = batch.expect("batch");
        if h.producer_id >= 0 {
            out.insert(h.producer_id, h.last_offset());
        }
    }
    out
}

/// One pass over `log`: map `[from, until)` within `budget` keys, rewrite the batches
/// that start below the cut. Returns the new log, the cut, and the end of the batches
/// rewritten.
fn pass(log: &[u8], from: i64, until: i64, budget: usize, now_ms: i64) -> (Vec<u8>, i64, i64) {
    let mut map = KeyMap::with_budget(budget * super::super::key_map::BYTES_PER_ENTRY * 10 / 9 + 1);
    let cut = build_map(
        log,
        from,
        until,
        &mut map,
        &mut TxnTracker::new(vec![]),
        1 << 20,
    )
    .expect("map");
    map.set_end(cut);
    let lasts = last_batches(log);
    let (mut below, mut above) = (Vec::new(), Vec::new());
    let mut rewritten_until = 0;
    for batch in batches(log) {
        let (h, bytes) = batch.expect("batch");
        if h.base_offset < cut {
            rewritten_until = h.last_offset() + 1;
            below.extend_from_slice(bytes);
        } else {
            above.extend_from_slice(bytes);
        }
    }
    let rules = Rules {
        now_ms,
        delete_retention_ms: RETENTION,
        max_decompressed: 1 << 20,
    };
    let mut out = Vec::new();
    let stats = clean_batches(
        &below,
        &map,
        &rules,
        &mut TxnTracker::new(vec![]),
        |h| lasts.get(&h.producer_id) == Some(&h.last_offset()),
        |b| out.extend_from_slice(b),
    )
    .expect("clean");
    assert_eq!(stats.bytes_written as usize, out.len());
    assert!(stats.records_kept <= stats.records_read);
    out.extend_from_slice(&above);
    (out, cut, rewritten_until)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn passes_keep_exactly_what_the_rules_allow(
        spec in proptest::collection::vec(
            (codec(), proptest::option::of(0i64..3), proptest::collection::vec(written(), 1..6)),
            1..14,
        ),
        plan in proptest::collection::vec((0u8..=100, 1usize..8, 0i64..1_500), 1..4),
    ) {
        let (mut log, model) = log_of(&spec);
        let end = model.keys().next_back().map_or(0, |o| o + 1);
        let producers_last = last_batches(&log);
        let mut from = 0;
        let mut now = 10_000;
        // First time each offset was in a pass's rewritten range.
        let mut first_cleaned: BTreeMap<i64, i64> = BTreeMap::new();
        let mut passes = plan.clone();
        // Then one pass over everything with room for every key, and one far later.
        passes.push((100, 64, 0));
        passes.push((100, 64, 10 * RETENTION));
        for (share, budget, advance) in passes {
            now += advance;
            let until = from.max(end * i64::from(share) / 100);
            let (next, cut, rewritten_until) = pass(&log, from, until, budget, now);
            prop_assert!(cut >= from && cut <= until);
            for o in model.keys().filter(|o| **o < rewritten_until) {
                first_cleaned.entry(*o).or_insert(now);
            }
            log = next;
            let got = read(&log);
            let latest: BTreeMap<u8, i64> = model.iter().filter_map(|(o, w)| w.key.map(|k| (k, *o))).collect();
            for (offset, (key, value)) in &got {
                let w = &model[offset];
                prop_assert_eq!((key, value), (&w.key, &w.value), "offset {} is as written", offset);
            }
            for (offset, w) in &model {
                if got.contains_key(offset) {
                    continue;
                }
                let superseded = w.key.is_some_and(|k| latest[&k] > *offset);
                let expired = w.value.is_none() && first_cleaned.get(offset).is_some_and(|t| now >= t + RETENTION);
                prop_assert!(w.key.is_none() || superseded || expired, "offset {} went without a reason", offset);
            }
            for offset in latest.values() {
                if model[offset].value.is_some() {
                    prop_assert!(got.contains_key(offset), "the latest record of a key stays: {}", offset);
                }
            }
            // Every producer's last batch is still there (possibly as a header).
            let lasts = last_batches(&log);
            prop_assert_eq!(&lasts, &producers_last);
            from = cut;
        }
        // After the full passes: one record per key at most, and no tombstone left.
        let got = read(&log);
        let keys: Vec<u8> = got.values().filter_map(|(k, _)| *k).collect();
        let distinct: BTreeSet<u8> = keys.iter().copied().collect();
        prop_assert_eq!(keys.len(), distinct.len(), "nothing superseded is left");
        prop_assert!(got.values().all(|(k, v)| k.is_some() && v.is_some()), "no keyless record or tombstone left");
    }
}
