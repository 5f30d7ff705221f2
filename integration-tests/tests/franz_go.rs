//! franz-go (github.com/twmb/franz-go, pure Go: a fifth independent implementation of
//! the protocol, and the most complete third-party one) against the real broker:
//! `integration-tests/go` is a Go module of tests (produce with every codec, keys and
//! headers; consume in a classic group and commit; kadm topics, partitions, configs,
//! offsets and groups, with Kafka's error codes), run here with the broker's address.
//! The Go module proxy serves franz-go; scripts/test downloads and compiles it first.

use std::process::Command;

use fjord_integration_tests::BrokerProcess;

#[test]
fn franz_go_passes_its_tests_against_fjord() {
    let broker = BrokerProcess::start(&["group.initial.rebalance.delay.ms=0"]);
    let module = format!("{}/go", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("go")
        .args(["test", "-count=1", "-v", "./..."])
        .env("FJORD_BOOTSTRAP", &broker.bootstrap)
        .current_dir(&module)
        .output()
        .expect("go runs (scripts/test checks for it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "franz-go tests failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each test ran and passed (a module that compiled none would pass vacuously).
    for test in ["TestProduceEveryCodecAndConsumeInAGroup", "TestAdminBasics"] {
        assert!(
            stdout.contains(&format!("--- PASS: {test}")),
            "{test} did not pass:\n{stdout}"
        );
    }
}
