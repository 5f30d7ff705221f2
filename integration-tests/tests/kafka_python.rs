//! kafka-python (a pure-Python client with its own protocol code) against the real
//! broker: admin, produce with every codec, consume with keys and headers.
//! scripts/test installs kafka-python and the codec libraries.

use std::process::Command;

use fjord_integration_tests::BrokerProcess;

#[test]
fn kafka_python_round_trip() {
    let broker = BrokerProcess::start(&[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/round_trip.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&broker.bootstrap)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "kafka-python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("round trip ok: 500 records"));
}

#[test]
fn kafka_python_consumer_groups() {
    let broker = BrokerProcess::start(&["group.initial.rebalance.delay.ms=0"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/groups.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&broker.bootstrap)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "kafka-python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("kafka-python groups ok"));
}
