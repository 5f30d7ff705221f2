//! KafkaJS (a pure-JavaScript client with its own protocol code, the third independent
//! implementation the broker is checked against after librdkafka and kafka-python):
//! admin, plain, gzip and idempotent produce, a consumer group with commits, resuming,
//! growing partitions, and transactions. scripts/test installs KafkaJS from
//! integration-tests/node's lock file.

use std::process::Command;

use fjord_integration_tests::BrokerProcess;

/// Runs `node/<script>` against a fresh broker; its stdout, after checking it exited 0.
fn run_script(script: &str) -> String {
    let broker = BrokerProcess::start(&["group.initial.rebalance.delay.ms=0"]);
    let script = format!("{}/node/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("node")
        .arg(script)
        .arg(&broker.bootstrap)
        .output()
        .expect("node runs (scripts/test installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "KafkaJS failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn kafkajs_round_trip() {
    let stdout = run_script("round_trip.js");
    assert!(
        stdout.contains("kafkajs round trip ok: 332 records"),
        "{stdout}"
    );
}

/// KafkaJS's transactional producer: commit, abort, offsets in a transaction, and
/// read_committed against read_uncommitted consumers.
#[test]
fn kafkajs_transactions() {
    let stdout = run_script("transactions.js");
    assert!(stdout.contains("kafkajs transactions ok"), "{stdout}");
}
