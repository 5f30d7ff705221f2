//! Apache Kafka's Java client (kafka-clients 4.x, the reference implementation of the
//! protocol) against the real broker: `integration-tests/java` is a Maven module of
//! JUnit tests (KafkaProducer with its defaults and every codec, five requests in flight,
//! large and too-large records; KafkaConsumer in classic groups with range and
//! cooperative-sticky assignors, static membership, sync and async commits, seek,
//! offsetsForTimes and the log bounds; AdminClient topics, partitions, configs,
//! incremental changes, log dirs, offsets and groups, and the APIs Fjord lacks), run
//! here with the broker's address. Maven
//! downloads kafka-clients into `~/.m2` on the first run; scripts/test installs Maven
//! and a JDK where they are missing.

use std::process::Command;

use fjord_integration_tests::BrokerProcess;

#[test]
fn the_java_client_passes_its_tests_against_fjord() {
    // A low controller mutation quota for QuotaTest; each other test creates a few
    // partitions per client id, well under it.
    let broker = BrokerProcess::start(&[
        "group.initial.rebalance.delay.ms=0",
        "fjord.controller.mutation.rate=20",
    ]);
    let module = format!("{}/java", env!("CARGO_MANIFEST_DIR"));
    // Reports of an earlier run must not stand in for this one's.
    let _ = std::fs::remove_dir_all(format!("{module}/target/surefire-reports"));
    let out = Command::new("mvn")
        .args(["-q", "-B", "test"])
        .arg(format!("-Dfjord.bootstrap={}", broker.bootstrap))
        .current_dir(&module)
        .output()
        .expect("mvn runs (scripts/test installs Maven)");
    let reports = std::fs::read_dir(format!("{module}/target/surefire-reports"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                .filter(|t| t.starts_with("----"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    assert!(
        out.status.success(),
        "Java client tests failed:\n{}\n{}\n{reports}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Every test class ran (a module that compiled no test would pass vacuously).
    for class in [
        "dev.fjord.ProduceConsumeTest",
        "dev.fjord.AdminTest",
        "dev.fjord.GroupsAndOffsetsTest",
        "dev.fjord.QuotaTest",
        "dev.fjord.ProducerTest",
        "dev.fjord.AdminPartitionsAndConfigsTest",
    ] {
        assert!(
            reports.contains(&format!("Test set: {class}")),
            "{class} did not run:\n{reports}"
        );
    }
    assert!(!reports.contains("FAILURE"), "{reports}");
}
