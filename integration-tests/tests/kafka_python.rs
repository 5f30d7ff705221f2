//! kafka-python (a pure-Python client with its own protocol code) against the real
//! broker: admin, produce with every codec, consume with keys and headers, groups,
//! configs and log dirs. scripts/test installs kafka-python and the codec libraries.

use std::process::Command;

use fjord_integration_tests::BrokerProcess;

/// Runs `python/SCRIPT HOST:PORT` against a fresh broker started with `sets`; its stdout
/// (the script exits non-zero on any mismatch, which fails the test).
fn run_script(script: &str, sets: &[&str]) -> String {
    let broker = BrokerProcess::start(sets);
    let path = format!("{}/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(path)
        .arg(&broker.bootstrap)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "kafka-python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn kafka_python_round_trip() {
    let out = run_script("round_trip.py", &[]);
    assert!(out.contains("round trip ok: 500 records"), "{out}");
}

#[test]
fn kafka_python_consumer_groups() {
    let out = run_script("groups.py", &["group.initial.rebalance.delay.ms=0"]);
    assert!(out.contains("kafka-python groups ok"), "{out}");
}

#[test]
fn kafka_python_configs_and_log_dirs() {
    let out = run_script("configs.py", &[]);
    assert!(out.contains("kafka-python configs ok"), "{out}");
}

#[test]
fn kafka_python_transactions() {
    let out = run_script("transactions.py", &[]);
    assert!(out.contains("kafka-python transactions ok"), "{out}");
}
