//! Configs changed at runtime, end to end: `fjord configs` (IncrementalAlterConfigs)
//! and librdkafka's admin client (the older AlterConfigs) against a real broker, each
//! reading what the other wrote; changes reach producing clients at once and survive a
//! restart. Also `fjord topics describe`'s sizes against the files on disk.

use std::time::Duration;

use fjord_integration_tests::{fjord, BrokerProcess};
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

/// `fjord ARGS --bootstrap-server B`: (success, stdout, stderr).
fn cli(bootstrap: &str, args: &[&str]) -> (bool, String, String) {
    let mut all = args.to_vec();
    all.extend(["--bootstrap-server", bootstrap]);
    fjord(&all, None)
}

/// The `CONFIG SOURCE READ-ONLY VALUE` rows of `fjord configs describe`, as
/// (name, source, value).
fn rows(out: &str) -> Vec<(String, String, String)> {
    out.lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() == 4).then(|| (cols[0].into(), cols[1].into(), cols[3].into()))
        })
        .collect()
}

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin")
}

/// (value, source) of a topic config, as librdkafka reads it (the source as its
/// `ConfigSource` variant's name).
async fn rdkafka_config(bootstrap: &str, topic: &str, name: &str) -> (Option<String>, String) {
    let described = admin(bootstrap)
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .expect("describe");
    let resource = described[0].as_ref().expect("topic configs");
    let entry = resource.get(name).expect("config present");
    (entry.value.clone(), format!("{:?}", entry.source))
}

/// Produces one record of `size` bytes with librdkafka (no retries): the error, if any.
async fn produce(bootstrap: &str, topic: &str, size: usize) -> Option<RDKafkaErrorCode> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", "10000")
        .set("enable.idempotence", "false")
        .set("retries", "0")
        .create()
        .expect("producer");
    let value = vec![b'x'; size];
    producer
        .send(
            FutureRecord::<(), _>::to(topic)
                .partition(0)
                .payload(&value),
            Duration::from_secs(10),
        )
        .await
        .err()
        .and_then(|(e, _)| e.rdkafka_error_code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_change_at_runtime_from_the_cli_and_librdkafka() {
    let mut broker = BrokerProcess::start(&["auto.create.topics.enable=false"]);
    let b = broker.bootstrap.clone();
    let (ok, _, err) = cli(
        &b,
        &["topics", "create", "--topic", "events", "--partitions", "2"],
    );
    assert!(ok, "{err}");
    assert_eq!(produce(&b, "events", 5000).await, None);

    // The CLI sets topic overrides; librdkafka reads them back, and the broker applies a
    // smaller max.message.bytes to the next produce at once.
    let (ok, out, err) = cli(
        &b,
        &[
            "configs",
            "alter",
            "--topic",
            "events",
            "--add-config",
            "retention.ms=60000,max.message.bytes=2000",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("retention.ms = 60000"), "{out}");
    assert_eq!(
        rdkafka_config(&b, "events", "retention.ms").await,
        (Some("60000".to_string()), "DynamicTopic".to_string())
    );
    assert_eq!(
        produce(&b, "events", 5000).await,
        Some(RDKafkaErrorCode::MessageSizeTooLarge)
    );
    assert_eq!(produce(&b, "events", 500).await, None);

    // librdkafka's AlterConfigs replaces the whole set: the two overrides go.
    let alter =
        AlterConfig::new(ResourceSpecifier::Topic("events")).set("retention.bytes", "1048576");
    let altered = admin(&b)
        .alter_configs(&[alter], &AdminOptions::new())
        .await
        .expect("alter");
    assert!(altered[0].is_ok(), "{altered:?}");
    let (ok, out, err) = cli(&b, &["configs", "describe", "--topic", "events"]);
    assert!(ok, "{err}");
    assert_eq!(
        rows(&out),
        vec![(
            "retention.bytes".to_string(),
            "topic".to_string(),
            "1048576".to_string()
        )],
        "{out}"
    );
    assert_eq!(produce(&b, "events", 5000).await, None);

    // Broker defaults change at runtime and reach topics without an override.
    let (ok, _, err) = cli(
        &b,
        &[
            "configs",
            "alter",
            "--broker",
            "1",
            "--add-config",
            "log.retention.ms=7200000",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        rdkafka_config(&b, "events", "retention.ms").await,
        (Some("7200000".to_string()), "DynamicBroker".to_string())
    );

    // What cannot change is refused with Kafka's error, and nothing changes.
    let (ok, _, err) = cli(
        &b,
        &[
            "configs",
            "alter",
            "--broker",
            "1",
            "--add-config",
            "listeners=PLAINTEXT://:1",
        ],
    );
    assert!(!ok && err.contains("InvalidRequest"), "{err}");
    let (ok, _, err) = cli(
        &b,
        &[
            "configs",
            "alter",
            "--topic",
            "events",
            "--add-config",
            "retention.ms=1,cleanup.policy=shred",
        ],
    );
    assert!(!ok && err.contains("InvalidConfig"), "{err}");
    // Compaction can be turned on at runtime (and off again).
    for policy in ["compact", "delete"] {
        let setting = format!("cleanup.policy={policy}");
        let (ok, out, err) = cli(
            &b,
            &[
                "configs",
                "alter",
                "--topic",
                "events",
                "--add-config",
                &setting,
            ],
        );
        assert!(ok, "{out}{err}");
        let (ok, out, err) = cli(&b, &["configs", "describe", "--topic", "events"]);
        let shown = out
            .lines()
            .any(|l| l.starts_with("cleanup.policy") && l.trim_end().ends_with(policy));
        assert!(ok && shown, "{out}{err}");
    }
    let (ok, out, err) = cli(
        &b,
        &[
            "configs",
            "alter",
            "--topic",
            "events",
            "--delete-config",
            "cleanup.policy",
        ],
    );
    assert!(ok, "{out}{err}");
    let (ok, _, err) = cli(
        &b,
        &[
            "configs",
            "alter",
            "--topic",
            "nope",
            "--add-config",
            "retention.ms=1",
        ],
    );
    assert!(!ok && err.contains("UnknownTopicOrPartition"), "{err}");
    let (ok, out, _) = cli(
        &b,
        &[
            "configs",
            "alter",
            "--topic",
            "events",
            "--add-config",
            "retention.ms=1",
            "--validate-only",
        ],
    );
    assert!(ok && out.contains("validated only"), "{out}");

    // Both survive a restart.
    let port = broker.port();
    let keep = broker.take_data_dir().expect("data dir");
    assert!(broker.terminate(), "clean exit");
    let broker = BrokerProcess::start_in(keep.path(), port, &["auto.create.topics.enable=false"]);
    let b = broker.bootstrap.clone();
    let (ok, out, err) = cli(&b, &["configs", "describe", "--topic", "events"]);
    assert!(ok, "{err}");
    assert_eq!(
        rows(&out),
        vec![(
            "retention.bytes".to_string(),
            "topic".to_string(),
            "1048576".to_string()
        )],
        "{out}"
    );
    let (ok, out, err) = cli(&b, &["configs", "describe", "--broker", "1"]);
    assert!(ok, "{err}");
    assert_eq!(
        rows(&out),
        vec![(
            "log.retention.ms".to_string(),
            "dynamic-broker".to_string(),
            "7200000".to_string()
        )],
        "{out}"
    );
    // --all lists static settings too, read-only ones included.
    let (ok, out, _) = cli(&b, &["configs", "describe", "--broker", "1", "--all"]);
    assert!(ok);
    let all = rows(&out);
    assert!(
        all.iter().any(|(n, s, v)| n == "auto.create.topics.enable"
            && s == "static-broker"
            && v == "false"),
        "{out}"
    );
    // The cluster-wide defaults are a scope of their own, which this broker's settings
    // win over.
    let (ok, _, err) = cli(
        &b,
        &[
            "configs",
            "alter",
            "--broker-defaults",
            "--add-config",
            "log.retention.ms=5000,log.segment.bytes=2097152",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        rdkafka_config(&b, "events", "segment.bytes").await,
        (
            Some("2097152".to_string()),
            "DynamicDefaultBroker".to_string()
        )
    );
    assert_eq!(
        rdkafka_config(&b, "events", "retention.ms").await,
        (Some("7200000".to_string()), "DynamicBroker".to_string())
    );
    let (ok, out, _) = cli(&b, &["configs", "describe", "--broker-defaults"]);
    assert!(ok);
    assert_eq!(rows(&out).len(), 2, "{out}");
    let (ok, _, err) = cli(
        &b,
        &[
            "configs",
            "alter",
            "--broker",
            "1",
            "--delete-config",
            "log.retention.ms",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        rdkafka_config(&b, "events", "retention.ms").await,
        (Some("5000".to_string()), "DynamicDefaultBroker".to_string())
    );
    let (ok, _, err) = cli(
        &b,
        &[
            "configs",
            "alter",
            "--broker-defaults",
            "--delete-config",
            "log.retention.ms,log.segment.bytes",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        rdkafka_config(&b, "events", "retention.ms").await,
        (Some("604800000".to_string()), "Default".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_describe_reports_the_bytes_on_disk() {
    let broker = BrokerProcess::start(&[]);
    let b = broker.bootstrap.clone();
    let (ok, _, err) = cli(
        &b,
        &["topics", "create", "--topic", "sized", "--partitions", "3"],
    );
    assert!(ok, "{err}");
    for size in [100, 2000, 30_000] {
        assert_eq!(produce(&b, "sized", size).await, None);
    }
    let (ok, out, err) = cli(&b, &["topics", "describe", "--topic", "sized"]);
    assert!(ok, "{err}");
    let sizes: Vec<i64> = out
        .lines()
        .filter(|l| l.contains("Partition:"))
        .map(|l| {
            l.split("Size: ")
                .nth(1)
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or_else(|| panic!("no size in {l}"))
        })
        .collect();
    // Every partition's bytes are its .log files on disk.
    let on_disk: Vec<i64> = (0..3)
        .map(|p| {
            std::fs::read_dir(broker.data.join(format!("sized-{p}")))
                .expect("partition dir")
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .map(|e| e.metadata().expect("metadata").len() as i64)
                .sum()
        })
        .collect();
    assert_eq!(sizes, on_disk, "{out}");
    assert!(sizes[0] > 32_000 && sizes[1] == 0 && sizes[2] == 0, "{out}");
    let total: i64 = sizes.iter().sum();
    assert!(out.contains(&format!("Size: {total} (")), "{out}");
}
