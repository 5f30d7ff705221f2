//! Kafka Streams with `processing.guarantee=exactly_once_v2` on Fjord, under kill -9:
//! `integration-tests/java`'s `StreamsEosApp` counts the records of each key of an
//! input that keeps flowing, writing every new count to an output topic. The app's JVM
//! is killed with SIGKILL and started again three times, and the broker once, each while
//! the app is mid-transaction (its producers retry what the broker lost, its restarts
//! abort what it left open). A read_committed reader of the output must see, for each
//! key, exactly 1, 2, ..., n, where n is how many records of that key were written:
//! nothing counted twice, skipped, or lost.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fjord_consumer::TopicPartition;
use fjord_integration_tests::reading::read_committed_consumer;
use fjord_integration_tests::{create_topic, BrokerProcess};
use fjord_producer::{Producer, ProducerRecord};

const INPUT: &str = "eos-in";
const OUTPUT: &str = "eos-out";
const PARTITIONS: i32 = 4;
const KEYS: usize = 24;

/// The Maven module.
fn module() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/java"))
}

/// Compiles the module's classes and returns the class path to run `StreamsEosApp`
/// with (its classes and every dependency Maven resolved).
fn classpath() -> String {
    let file = module().join("target/streams-eos-classpath.txt");
    let out = Command::new("mvn")
        .args(["-q", "-B", "test-compile", "dependency:build-classpath"])
        .arg(format!("-Dmdep.outputFile={}", file.display()))
        .current_dir(module())
        .output()
        .expect("mvn runs (scripts/test installs Maven)");
    assert!(
        out.status.success(),
        "mvn test-compile failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let deps = std::fs::read_to_string(&file).expect("class path file");
    format!(
        "{}:{}",
        module().join("target/test-classes").display(),
        deps.trim()
    )
}

/// One run of the Streams application's JVM, killed with SIGKILL on drop.
struct StreamsApp {
    child: Child,
    log: PathBuf,
}

impl StreamsApp {
    fn start(classpath: &str, bootstrap: &str, state: &Path, run: usize) -> Self {
        let log = state.with_extension(format!("run{run}.log"));
        let file = std::fs::File::create(&log).expect("app log");
        let child = Command::new("java")
            .arg("-cp")
            .arg(classpath)
            .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
            .arg("dev.fjord.StreamsEosApp")
            .args([bootstrap, &state.display().to_string(), INPUT, OUTPUT])
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("java runs");
        Self { child, log }
    }

    /// Fails the test if Streams gave up (the app exits only then).
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!("the Streams app exited ({status}):\n{log}");
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for StreamsApp {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the read_committed reader of the output has seen.
#[derive(Default)]
struct Seen {
    /// Each key's latest count.
    counts: BTreeMap<String, i64>,
    /// Records read.
    records: u64,
    /// Counts that did not follow the key's previous one by exactly 1.
    anomalies: Vec<String>,
}

/// Reads the output, read_committed, from the start until `stop`.
async fn read_output(bootstrap: String, seen: Arc<Mutex<Seen>>, stop: Arc<AtomicBool>) {
    let mut c = read_committed_consumer(&bootstrap, "eos-checker");
    let all: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(OUTPUT, p))
        .collect();
    c.assign(&all).await.expect("assign");
    while !stop.load(Ordering::Acquire) {
        let Ok(next) = tokio::time::timeout(Duration::from_millis(200), c.recv()).await else {
            continue;
        };
        let Ok(r) = next else { continue };
        let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
        let bytes: [u8; 8] = r
            .value
            .as_deref()
            .unwrap_or_default()
            .try_into()
            .unwrap_or([0; 8]);
        let count = i64::from_be_bytes(bytes);
        let mut s = seen.lock().expect("seen");
        s.records += 1;
        let previous = s.counts.insert(key.clone(), count).unwrap_or(0);
        if count != previous + 1 {
            let at = (r.partition, r.offset);
            s.anomalies
                .push(format!("{key}: {count} after {previous} at {at:?}"));
        }
    }
    let _ = c.close().await;
}

/// Writes input records, keys in turn, until `stop`; returns how many of each key were
/// acknowledged (all must be: the idempotent producer retries across the broker's kill).
async fn write_input(bootstrap: String, stop: Arc<AtomicBool>) -> BTreeMap<String, i64> {
    let p = Producer::builder()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .build()
        .expect("producer");
    let mut sent = Vec::new();
    let mut i = 0usize;
    while !stop.load(Ordering::Acquire) {
        let key = format!("key-{}", i % KEYS);
        let record = ProducerRecord::new(INPUT, format!("v{i}")).key(key.clone());
        sent.push((key, p.send(record).await.expect("send input")));
        i += 1;
        if i.is_multiple_of(10) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let mut written = BTreeMap::new();
    for (key, delivery) in sent {
        delivery.await.expect("input written");
        *written.entry(key).or_insert(0) += 1;
    }
    written
}

/// Waits until the reader has seen `more` records beyond what it had, with the app
/// running: the app is then between commits, with a transaction open.
async fn wait_for_progress(seen: &Mutex<Seen>, app: &mut StreamsApp, more: u64) {
    let target = seen.lock().expect("seen").records + more;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.lock().expect("seen").records < target {
        app.assert_running();
        assert!(
            Instant::now() < deadline,
            "the Streams app made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_exactly_once_v2_counts_exactly_across_kills() {
    let classpath = classpath();
    let sets = [
        "group.initial.rebalance.delay.ms=0",
        "transaction.abort.timed.out.transaction.cleanup.interval.ms=1000",
    ];
    let mut broker = BrokerProcess::start(&sets);
    let port = broker.port();
    let data = broker.take_data_dir().expect("data dir");
    let b = broker.bootstrap.clone();
    create_topic(&b, INPUT, PARTITIONS).await;
    create_topic(&b, OUTPUT, PARTITIONS).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop_reading = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn(read_output(
        b.clone(),
        Arc::clone(&seen),
        Arc::clone(&stop_reading),
    ));
    let stop_writing = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_input(b.clone(), Arc::clone(&stop_writing)));

    let state_root = tempfile::tempdir().expect("state dir");
    let state = state_root.path().join("streams");
    let mut runs = 0;
    let mut app = StreamsApp::start(&classpath, &b, &state, runs);
    // kill -9 of the app, of the broker, then of the app twice more.
    for victim in ["app", "broker", "app", "app"] {
        wait_for_progress(&seen, &mut app, 200).await;
        if victim == "app" {
            app.kill();
            runs += 1;
            app = StreamsApp::start(&classpath, &b, &state, runs);
        } else {
            broker.kill();
            tokio::time::sleep(Duration::from_millis(300)).await;
            broker = BrokerProcess::start_in(data.path(), port, &sets);
        }
    }
    wait_for_progress(&seen, &mut app, 200).await;
    stop_writing.store(true, Ordering::Release);
    let written = writer.await.expect("writer");

    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.lock().expect("seen").counts != written {
        app.assert_running();
        let over: Vec<String> = {
            let s = seen.lock().expect("seen");
            let counted = |k: &String| written.get(k).copied().unwrap_or(0);
            s.counts
                .iter()
                .filter(|(k, c)| **c > counted(k))
                .map(|(k, c)| format!("{k}: {c} of {}", counted(k)))
                .collect()
        };
        assert!(over.is_empty(), "counted more than was written: {over:?}");
        assert!(
            Instant::now() < deadline,
            "counts never reached what was written: {:?} vs {written:?}",
            seen.lock().expect("seen").counts
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Anything written twice would show up after the expected end.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_reading.store(true, Ordering::Release);
    reader.await.expect("reader");
    let seen = seen.lock().expect("seen");
    assert!(
        seen.anomalies.is_empty(),
        "not exactly once: {:?}",
        seen.anomalies
    );
    assert_eq!(seen.counts, written);
    let total: i64 = written.values().sum();
    assert_eq!(seen.records, total as u64, "one output per input record");
    drop(app);
    drop(broker);
}
