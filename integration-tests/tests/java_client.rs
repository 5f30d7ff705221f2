//! Apache Kafka's Java client (kafka-clients 4.x, the reference implementation of the
//! protocol) against the real broker: `integration-tests/java` is a Maven module of
//! JUnit tests (KafkaProducer with its defaults and every codec, five requests in flight,
//! large and too-large records; KafkaConsumer in classic groups with range and
//! cooperative-sticky assignors, static membership, sync and async commits, seek,
//! offsetsForTimes and the log bounds; AdminClient topics, partitions, configs,
//! incremental changes, log dirs, offsets and groups, and the APIs Fjord lacks), run
//! here with the broker's address; then the idempotent producer across a SIGKILL and
//! restart of the broker, every record kept once and in order. Maven
//! downloads kafka-clients into `~/.m2` on the first run; scripts/test installs Maven
//! and a JDK where they are missing.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fjord_integration_tests::metrics::{free_metrics_listener, highest_version_served};
use fjord_integration_tests::BrokerProcess;

/// The Maven module.
fn module() -> String {
    format!("{}/java", env!("CARGO_MANIFEST_DIR"))
}

/// The text of every surefire report (each starts with a `----` line).
fn reports() -> String {
    std::fs::read_dir(format!("{}/target/surefire-reports", module()))
        .map(|d| {
            d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                .filter(|t| t.starts_with("----"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// `mvn -q -B test` with `args`, after removing earlier reports (they must not stand in
/// for this run's).
fn maven_test(args: &[String]) -> std::process::Child {
    let _ = std::fs::remove_dir_all(format!("{}/target/surefire-reports", module()));
    Command::new("mvn")
        .args(["-q", "-B", "test"])
        .args(args)
        .current_dir(module())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mvn runs (scripts/test installs Maven)")
}

fn assert_passed(out: &Output, classes: &[&str]) {
    let reports = reports();
    assert!(
        out.status.success(),
        "Java client tests failed:\n{}\n{}\n{reports}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Every test class ran (a module that compiled no test would pass vacuously).
    for class in classes {
        assert!(
            reports.contains(&format!("Test set: {class}")),
            "{class} did not run:\n{reports}"
        );
    }
    assert!(!reports.contains("FAILURE"), "{reports}");
}

/// One test, so the two Maven runs (which share the module's target dir) never overlap.
#[test]
fn the_java_client_passes_its_tests_against_fjord() {
    // A low controller mutation quota for QuotaTest; each other test creates a few
    // partitions per client id, well under it.
    let (metrics, metrics_addr) = free_metrics_listener();
    let broker = BrokerProcess::start(&[
        "group.initial.rebalance.delay.ms=0",
        "fjord.controller.mutation.rate=20",
        // KIP-848 groups reconcile one heartbeat at a time: 500 ms instead of 5 s.
        "group.consumer.min.heartbeat.interval.ms=100",
        "group.consumer.heartbeat.interval.ms=500",
        &metrics,
    ]);
    let out = maven_test(&[format!("-Dfjord.bootstrap={}", broker.bootstrap)])
        .wait_with_output()
        .expect("mvn finished");
    assert_passed(
        &out,
        &[
            "dev.fjord.ProduceConsumeTest",
            "dev.fjord.AdminTest",
            "dev.fjord.GroupsAndOffsetsTest",
            "dev.fjord.QuotaTest",
            "dev.fjord.ProducerTest",
            "dev.fjord.AdminPartitionsAndConfigsTest",
            "dev.fjord.ConsumerProtocolTest",
        ],
    );
    // The client ran on its newest code paths: the versions Kafka 4.x serves.
    for (api, version) in [
        ("Produce", 13),
        ("Fetch", 18),
        ("ConsumerGroupHeartbeat", 1),
    ] {
        assert_eq!(
            highest_version_served(&metrics_addr, api),
            Some(version),
            "{api}"
        );
    }
    drop(broker);
    producer_retries_across_a_broker_crash();
}

/// ProducerRetryAcrossCrashTest sends (and a consumer reads along); once half is sent
/// (its marker file), the broker is killed with SIGKILL and restarted on the same port
/// and data, where it leads the partition in a new leader epoch.
fn producer_retries_across_a_broker_crash() {
    let mut broker = BrokerProcess::start(&[]);
    let port = broker.port();
    let keep = broker.take_data_dir().expect("data dir");
    let marker = keep.path().join("half-sent");
    let mut child = maven_test(&[
        format!("-Dfjord.bootstrap={}", broker.bootstrap),
        "-Dtest=ProducerRetryAcrossCrashTest".to_string(),
        format!("-Dfjord.crash.marker={}", marker.display()),
    ]);
    let deadline = Instant::now() + Duration::from_secs(180);
    while !Path::new(&marker).exists() {
        if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
            let _ = child.kill();
            let out = child.wait_with_output().expect("mvn finished");
            panic!(
                "the producer never sent half its records:\n{}\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                reports()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    broker.kill();
    // The producer sends its second half only now, against a dead broker.
    std::fs::write(format!("{}.killed", marker.display()), "killed").expect("killed marker");
    std::thread::sleep(Duration::from_millis(300));
    let (metrics, metrics_addr) = free_metrics_listener();
    let _restarted = BrokerProcess::start_in(keep.path(), port, &[&metrics]);
    let out = child.wait_with_output().expect("mvn finished");
    assert_passed(&out, &["dev.fjord.ProducerRetryAcrossCrashTest"]);
    // The consumer reading along validated its position in the new leader epoch.
    assert_eq!(
        highest_version_served(&metrics_addr, "OffsetForLeaderEpoch"),
        Some(4),
        "the Java consumer never asked where its epoch ended"
    );
    // The crash fell inside the run: the producer logged its retries (the Java client's
    // Sender warns "Got error produce response ..., retrying").
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("retrying") || log.contains("could not be established"),
        "no retry happened, the crash missed the run:\n{log}"
    );
}
