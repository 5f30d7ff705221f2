//! Compaction through the real broker, checked against a model: rounds of random keys,
//! values and tombstones, each round in batches of another codec, with the log cleaner
//! running in the background and the broker killed with SIGKILL at random moments
//! (often in the middle of a pass: cleaning, swapping, merging). After every restart
//! the partition, read back whole by librdkafka, must hold only what the rules allow:
//!
//! - every record read was acknowledged at that offset with that key and value, and
//!   offsets rise;
//! - the newest record of every key is there, unless it is a tombstone (those go once
//!   their delete horizon passes), and a key whose tombstone went has no older record
//!   left (no deleted key comes back);
//! - a record once seen gone never comes back (an interrupted swap must not revive
//!   records a finished pass removed).
//!
//! The seed is printed; `FJORD_TEST_SEED=N` replays a run.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fjord_integration_tests::reading::{read_partition, Read};
use fjord_integration_tests::topics::create_topic;
use fjord_integration_tests::BrokerProcess;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

const SETS: &[&str] = &["log.cleaner.backoff.ms=50"];
const TOPIC: &str = "model";
const KEYS: u64 = 40;
const ROUNDS: usize = 12;
const RECORDS_PER_ROUND: usize = 250;
const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

/// What was acknowledged: offset -> (key, value; `None` is a tombstone).
type Model = BTreeMap<i64, (Vec<u8>, Option<Vec<u8>>)>;

/// xorshift64*: a small seeded generator, so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed() -> u64 {
    std::env::var("FJORD_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        })
}

/// The model's topic: small segments, cleaned eagerly, tombstones kept 1.5 s.
async fn create_model_topic(bootstrap: &str) {
    let configs = [
        ("cleanup.policy", "compact"),
        ("segment.bytes", "4096"),
        ("min.cleanable.dirty.ratio", "0.01"),
        ("delete.retention.ms", "1500"),
    ];
    create_topic(bootstrap, TOPIC, &configs).await;
}

/// One round: records in batches compressed with `codec`, each acknowledged and
/// added to the model.
async fn produce_round(bootstrap: &str, codec: &str, rng: &mut Rng, model: &mut Model) {
    // Batches well under a segment, so cleaned segments have gaps between batches.
    let batch_bytes = (300 + rng.below(1200)).to_string();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("compression.type", codec)
        .set("batch.size", &batch_bytes)
        .set("linger.ms", "5")
        .set("acks", "all")
        .create()
        .expect("producer");
    let mut sends = Vec::new();
    for _ in 0..RECORDS_PER_ROUND {
        let key = format!("key-{}", rng.below(KEYS)).into_bytes();
        let value = (rng.below(100) >= 15).then(|| {
            let len = 10 + rng.below(150) as usize;
            let fill = b'a' + rng.below(26) as u8;
            let mut v = format!("{}:", rng.next()).into_bytes();
            v.resize(len, fill);
            v
        });
        let p = producer.clone();
        let (k, v) = (key.clone(), value.clone());
        sends.push(async move {
            let mut record = FutureRecord::to(TOPIC).key(&k);
            if let Some(v) = &v {
                record = record.payload(v);
            }
            let offset = p
                .send(record, Duration::from_secs(30))
                .await
                .expect("acknowledged")
                .offset;
            (offset, k, v)
        });
    }
    for (offset, key, value) in futures_join(sends).await {
        model.insert(offset, (key, value));
    }
}

/// Runs the sends concurrently (so they batch) and collects their results in order.
async fn futures_join<F: std::future::Future<Output = T> + Send + 'static, T: Send + 'static>(
    sends: Vec<F>,
) -> Vec<T> {
    let handles: Vec<_> = sends.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("send task"));
    }
    out
}

/// Checks a full read against the model and what earlier reads saw gone.
fn check(read: &[Read], model: &Model, gone: &mut BTreeSet<i64>, context: &str) {
    let mut present = BTreeSet::new();
    let mut last = -1;
    for (offset, key, value) in read {
        assert!(
            *offset > last,
            "{context}: offsets rise ({last}, then {offset})"
        );
        last = *offset;
        let Some((k, v)) = model.get(offset) else {
            panic!("{context}: offset {offset} was never acknowledged");
        };
        assert_eq!(
            key.as_deref(),
            Some(k.as_slice()),
            "{context}: key at {offset}"
        );
        assert_eq!(value, v, "{context}: value at {offset}");
        assert!(
            !gone.contains(offset),
            "{context}: offset {offset} came back"
        );
        present.insert(*offset);
    }
    let mut newest: BTreeMap<&[u8], i64> = BTreeMap::new();
    for (offset, (key, _)) in model {
        newest.insert(key, *offset);
    }
    for (key, offset) in newest {
        let tombstone = model[&offset].1.is_none();
        if !tombstone {
            assert!(
                present.contains(&offset),
                "{context}: the newest record of {} (offset {offset}) is missing",
                String::from_utf8_lossy(key)
            );
        } else if !present.contains(&offset) {
            let older = model
                .range(..offset)
                .filter(|(o, (k, _))| k.as_slice() == key && present.contains(o))
                .count();
            assert_eq!(
                older,
                0,
                "{context}: {} was deleted, its tombstone went, but older records are back",
                String::from_utf8_lossy(key)
            );
        }
    }
    gone.extend(model.keys().filter(|o| !present.contains(o)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_matches_the_model_across_kills() {
    let seed = seed();
    eprintln!("compaction model: FJORD_TEST_SEED={seed}");
    let mut rng = Rng(seed);
    let mut broker = BrokerProcess::start(SETS);
    let data_dir = broker.take_data_dir().expect("data dir");
    create_model_topic(&broker.bootstrap).await;
    let mut model = Model::new();
    let mut gone = BTreeSet::new();
    let mut kills = 0;
    for round in 0..ROUNDS {
        let codec = CODECS[round % CODECS.len()];
        produce_round(&broker.bootstrap, codec, &mut rng, &mut model).await;
        // Let the cleaner start on what is now sealed, then often kill it mid-pass.
        tokio::time::sleep(Duration::from_millis(rng.below(400))).await;
        if rng.below(100) < 70 {
            broker.kill();
            kills += 1;
            broker = BrokerProcess::start_in(data_dir.path(), 0, SETS);
        }
        let read = read_partition(&broker.bootstrap, TOPIC, 0);
        check(
            &read,
            &model,
            &mut gone,
            &format!("seed {seed}, round {round}"),
        );
    }
    // The cleaner had work to do and did it: records went, and the newest ones stayed.
    assert!(kills > 0, "seed {seed}: no kill");
    assert!(
        !gone.is_empty(),
        "seed {seed}: the cleaner removed nothing from {} records",
        model.len()
    );
    // Once the broker is left alone, tombstones' horizons pass and they go too.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let read = read_partition(&broker.bootstrap, TOPIC, 0);
    check(&read, &model, &mut gone, &format!("seed {seed}, at rest"));
}
