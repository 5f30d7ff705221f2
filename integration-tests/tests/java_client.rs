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
        // StreamsWordCountTest waits for its changelog to be compacted.
        "log.cleaner.backoff.ms=200",
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
            "dev.fjord.StreamsWordCountTest",
            "dev.fjord.ConnectDistributedTest",
            "dev.fjord.TransactionsTest",
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
    a_consumer_group_member_carries_on_across_a_broker_crash();
}

/// Runs Java test `class` against a broker that is killed with SIGKILL once the class
/// writes its marker file, then restarted on the same port and data (with `sets`); the
/// class waits for the marker's ".killed" twin, so the crash always falls inside the
/// run. Returns Maven's output, the restarted broker and its metrics address.
fn across_a_kill(class: &str, sets: &[&str]) -> (Output, BrokerProcess, String) {
    let mut broker = BrokerProcess::start(sets);
    let port = broker.port();
    let keep = broker.take_data_dir().expect("data dir");
    let marker = keep.path().join("crash-marker");
    let mut child = maven_test(&[
        format!("-Dfjord.bootstrap={}", broker.bootstrap),
        format!("-Dtest={class}"),
        format!("-Dfjord.crash.marker={}", marker.display()),
    ]);
    let deadline = Instant::now() + Duration::from_secs(180);
    while !Path::new(&marker).exists() {
        if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
            let _ = child.kill();
            let out = child.wait_with_output().expect("mvn finished");
            panic!(
                "{class} never reached its crash point:\n{}\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                reports()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    broker.kill();
    std::fs::write(format!("{}.killed", marker.display()), "killed").expect("killed marker");
    std::thread::sleep(Duration::from_millis(300));
    let (metrics, metrics_addr) = free_metrics_listener();
    let mut restart_sets = sets.to_vec();
    restart_sets.push(&metrics);
    let restarted = BrokerProcess::start_in(keep.path(), port, &restart_sets);
    let out = child.wait_with_output().expect("mvn finished");
    assert_passed(&out, &[&format!("dev.fjord.{class}")]);
    (out, restarted, metrics_addr)
}

/// ProducerRetryAcrossCrashTest sends (and a consumer reads along); once half is sent
/// the broker dies and comes back, leading the partition in a new leader epoch.
fn producer_retries_across_a_broker_crash() {
    let (out, _broker, metrics_addr) = across_a_kill("ProducerRetryAcrossCrashTest", &[]);
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

/// ConsumerProtocolAcrossCrashTest: a KIP-848 member goes on in its group after the
/// broker dies and comes back (the group's state restored from its records).
fn a_consumer_group_member_carries_on_across_a_broker_crash() {
    let (_, _broker, metrics_addr) = across_a_kill(
        "ConsumerProtocolAcrossCrashTest",
        &[
            "group.consumer.min.heartbeat.interval.ms=100",
            "group.consumer.heartbeat.interval.ms=500",
        ],
    );
    assert_eq!(
        highest_version_served(&metrics_addr, "ConsumerGroupHeartbeat"),
        Some(1),
        "the member never heartbeated to the restarted broker"
    );
}
