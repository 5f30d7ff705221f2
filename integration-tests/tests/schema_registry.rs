//! A schema registry on Fjord: Apicurio Registry 3.0.9 (from Maven Central, resolved by
//! `integration-tests/registry/apicurio.sh`) keeps its whole state in a compacted Kafka
//! topic (its `kafkasql` storage: every change is a record of the journal topic, and a
//! starting registry replays the journal). Through the Confluent-compatible API that
//! serializers use, it registers Avro schemas, evolves them under BACKWARD
//! compatibility, refuses an incompatible one, and reads them back. The broker's
//! cleaner cleans the journal; then the broker is killed with SIGKILL, the registry is
//! restarted from nothing, and every schema, id, version and rule comes back from Fjord.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use fjord_integration_tests::http::request;
use fjord_integration_tests::metrics::free_metrics_listener;
use fjord_integration_tests::topics::describe_topic;
use fjord_integration_tests::{free_port, BrokerProcess};
use serde_json::{json, Value};

const API: &str = "/apis/ccompat/v7";
const JOURNAL: &str = "kafkasql-journal";
const SUBJECTS: [&str; 3] = ["orders-value", "users-value", "payments-value"];
const VERSIONS: usize = 3;

/// The registry's runner jar, resolved (downloaded on first use) by the script.
fn registry_jar() -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/registry/apicurio.sh");
    let out = Command::new(script)
        .arg("jar")
        .output()
        .expect("integration-tests/registry/apicurio.sh runs");
    assert!(
        out.status.success(),
        "Apicurio Registry could not be resolved: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A running registry process, killed on drop.
struct Registry {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Registry {
    /// Starts the registry on a free port against `bootstrap`, its log in `dir`, and
    /// waits until it reports ready (its journal replayed).
    fn start(jar: &Path, bootstrap: &str, dir: &Path, run: u32) -> Self {
        let port = free_port();
        let log = dir.join(format!("registry-{run}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new("java")
            .arg("-Xmx512m")
            .arg("-Dapicurio.storage.kind=kafkasql")
            .arg(format!("-Dapicurio.kafkasql.bootstrap.servers={bootstrap}"))
            // The journal as a compacted topic, in small segments cleaned eagerly, so the
            // broker's cleaner rewrites it while the registry runs.
            .arg("-Dapicurio.kafkasql.topic.cleanup.policy=compact")
            .arg("-Dapicurio.kafkasql.topic.segment.bytes=2048")
            .arg("-Dapicurio.kafkasql.topic.min.cleanable.dirty.ratio=0.01")
            .arg("-Dquarkus.http.host=127.0.0.1")
            .arg(format!("-Dquarkus.http.port={port}"))
            .arg("-jar")
            .arg(jar)
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("java runs (scripts/test installs a JDK)");
        let mut registry = Self {
            child,
            addr: format!("127.0.0.1:{port}"),
            log,
        };
        registry.await_ready();
        registry
    }

    fn await_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the registry exited ({status}):\n{}", self.log_tail());
            }
            if std::net::TcpStream::connect(&self.addr).is_ok()
                && request(&self.addr, "GET", "/health/ready", None).0 == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the registry was not ready in 180 s:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// A ccompat API call: the status code and the parsed JSON body.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        let (status, text) = request(&self.addr, method, &format!("{API}{path}"), body.as_deref());
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// Registers `schema` under `subject`; the id the registry gave it.
    fn register(&self, subject: &str, schema: &str) -> i64 {
        let (status, body) = self.call(
            "POST",
            &format!("/subjects/{subject}/versions"),
            Some(json!({ "schema": schema })),
        );
        assert_eq!(status, 200, "register {subject}: {body}");
        body["id"].as_i64().expect("id")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Version `v` (1-based) of the Avro record of `subject`: each version adds a field
/// with a default, which BACKWARD compatibility allows.
fn schema(subject: &str, v: usize) -> String {
    let mut fields = vec![json!({"name": "id", "type": "string"})];
    for f in 1..v {
        fields.push(json!({"name": format!("f{f}"), "type": "int", "default": 0}));
    }
    let name = subject.replace('-', "_");
    json!({"type": "record", "name": name, "fields": fields}).to_string()
}

/// The same record with `id` turned into an int: not BACKWARD compatible.
fn incompatible(subject: &str) -> String {
    let name = subject.replace('-', "_");
    json!({"type": "record", "name": name, "fields": [{"name": "id", "type": "int"}]}).to_string()
}

/// Everything a reader asks the registry, checked against the ids it gave out.
fn assert_registry_holds(registry: &Registry, ids: &[(String, usize, i64)]) {
    let (status, subjects) = registry.call("GET", "/subjects", None);
    assert_eq!(status, 200, "{subjects}");
    let mut listed: Vec<&str> = subjects
        .as_array()
        .expect("subject list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    listed.sort_unstable();
    let mut expected = SUBJECTS.to_vec();
    expected.sort_unstable();
    assert_eq!(listed, expected);
    for (subject, v, id) in ids {
        let (status, got) =
            registry.call("GET", &format!("/subjects/{subject}/versions/{v}"), None);
        assert_eq!(status, 200, "{subject} v{v}: {got}");
        assert_eq!(got["id"].as_i64(), Some(*id), "{subject} v{v}: {got}");
        let text = got["schema"].as_str().expect("schema text");
        let parsed: Value = serde_json::from_str(text).expect("schema is JSON");
        let want: Value = serde_json::from_str(&schema(subject, *v)).expect("schema");
        assert_eq!(parsed, want, "{subject} v{v}");
        let (status, by_id) = registry.call("GET", &format!("/schemas/ids/{id}"), None);
        assert_eq!(status, 200, "id {id}: {by_id}");
        assert_eq!(by_id["schema"].as_str(), Some(text), "id {id}");
    }
    for subject in SUBJECTS {
        let (_, latest) =
            registry.call("GET", &format!("/subjects/{subject}/versions/latest"), None);
        assert_eq!(
            latest["version"].as_u64(),
            Some(VERSIONS as u64),
            "{latest}"
        );
        let (_, config) = registry.call("GET", &format!("/config/{subject}"), None);
        assert_eq!(config["compatibilityLevel"], "BACKWARD", "{config}");
        // The rule is still enforced, not only listed.
        let (status, body) = registry.call(
            "POST",
            &format!("/subjects/{subject}/versions"),
            Some(json!({ "schema": incompatible(subject) })),
        );
        assert_eq!(status, 409, "an incompatible schema for {subject}: {body}");
    }
}

/// Waits until a starting registry serves the last schema registered before it: it
/// may answer ready while its journal consumer is still catching up.
fn await_replayed(registry: &Registry, ids: &[(String, usize, i64)]) {
    let last = ids.last().expect("registered schemas").2;
    let deadline = Instant::now() + Duration::from_secs(60);
    while registry
        .call("GET", &format!("/schemas/ids/{last}"), None)
        .0
        != 200
    {
        assert!(
            Instant::now() < deadline,
            "schema {last} not back after 60 s:\n{}",
            registry.log_tail()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `fjord topics describe --topic JOURNAL`.
fn describe_journal(bootstrap: &str) -> String {
    describe_topic(bootstrap, JOURNAL)
}

#[test]
fn a_schema_registry_keeps_its_schemas_in_a_compacted_topic_across_restarts() {
    let jar = registry_jar();
    let logs = tempfile::tempdir().expect("tempdir");
    let (metrics, _) = free_metrics_listener();
    let sets = ["log.cleaner.backoff.ms=200", metrics.as_str()];
    let mut broker = BrokerProcess::start(&sets);
    let registry = Registry::start(&jar, &broker.bootstrap, logs.path(), 1);
    assert!(describe_journal(&broker.bootstrap).contains("cleanup.policy=compact"));

    let mut ids = Vec::new();
    for subject in SUBJECTS {
        let (status, body) = registry.call(
            "PUT",
            &format!("/config/{subject}"),
            Some(json!({"compatibility": "BACKWARD"})),
        );
        assert_eq!(status, 200, "{body}");
        for v in 1..=VERSIONS {
            ids.push((
                subject.to_string(),
                v,
                registry.register(subject, &schema(subject, v)),
            ));
        }
        // Registering a schema the subject has is idempotent: the same id, no version.
        let again = registry.register(subject, &schema(subject, 1));
        assert_eq!(
            Some(&again),
            ids.iter()
                .find(|(s, v, _)| s == subject && *v == 1)
                .map(|i| &i.2)
        );
    }
    let mut unique: Vec<i64> = ids.iter().map(|i| i.2).collect();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        ids.len(),
        "every new schema gets its own id: {ids:?}"
    );
    assert_registry_holds(&registry, &ids);

    // The cleaner has been over the journal (the registry wrote well over a segment).
    let deadline = Instant::now() + Duration::from_secs(60);
    while describe_journal(&broker.bootstrap).contains("LastCleaned: not-since-start") {
        assert!(
            Instant::now() < deadline,
            "{}",
            describe_journal(&broker.bootstrap)
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A crash of the broker under a stopped registry; a fresh registry (no local state:
    // its store is in memory) rebuilds everything from the cleaned journal.
    drop(registry);
    let port = broker.port();
    let data = broker.take_data_dir().expect("data dir");
    broker.kill();
    let broker = BrokerProcess::start_in(data.path(), port, &sets);
    let registry = Registry::start(&jar, &broker.bootstrap, logs.path(), 2);
    await_replayed(&registry, &ids);
    assert_registry_holds(&registry, &ids);

    // And it goes on: a new version gets an id none of the old ones has.
    let next = registry.register(SUBJECTS[0], &schema(SUBJECTS[0], VERSIONS + 1));
    assert!(!unique.contains(&next), "id {next} reused: {ids:?}");
}
