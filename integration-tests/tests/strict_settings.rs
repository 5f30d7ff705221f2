//! Strict settings, end to end with the real binary: values that do not parse and
//! security Fjord lacks stop the start with a message naming the setting; every
//! listener is bound and advertises itself; a boolean typo sent by librdkafka's admin
//! client changes nothing while any-case `false` is taken.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fjord_integration_tests::{fjord_bin, BrokerProcess};
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

/// Starts `fjord` with `sets` and expects it to exit on its own, unsuccessfully,
/// within 20 s: its stderr. A broker that starts instead fails the test (and is killed).
fn refused_start(sets: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(fjord_bin());
    cmd.arg("--set")
        .arg(format!("log.dirs={}", dir.path().display()));
    for s in sets {
        cmd.arg("--set").arg(s);
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fjord");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("fjord started with {sets:?}; it must refuse");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read stderr");
    assert!(!status.success(), "{sets:?} exited 0: {err}");
    assert!(!err.contains("fjord listening"), "{sets:?} listened: {err}");
    err
}

#[test]
fn a_broker_asked_for_security_it_lacks_does_not_start() {
    // The new user's attempt from the issue: three protected listeners and their keys.
    let err = refused_start(&[
        "listeners=SASL_PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0,SSL://127.0.0.1:0",
    ]);
    assert!(
        err.contains("SASL_PLAINTEXT") && err.contains("does not support yet"),
        "{err}"
    );
    for key in [
        "sasl.enabled.mechanisms=PLAIN",
        "ssl.keystore.location=/etc/fjord/broker.pem",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users=User:admin",
    ] {
        let err = refused_start(&["listeners=PLAINTEXT://127.0.0.1:0", key]);
        let name = key.split('=').next().unwrap_or_default();
        assert!(
            err.contains(name) && err.contains("security setting"),
            "{key}: {err}"
        );
    }
}

#[test]
fn values_that_do_not_parse_stop_the_start_naming_the_setting() {
    for (set, expect) in [
        (
            "fjord.fsync.on.ack=yes",
            "fjord.fsync.on.ack=yes: expected true or false",
        ),
        (
            "auto.create.topics.enable=1",
            "auto.create.topics.enable=1: expected true or false",
        ),
        (
            "num.partitions=0",
            "num.partitions=0: must be between 1 and 2147483647",
        ),
        (
            "log.retention.ms=soon",
            "log.retention.ms=soon: not a valid number",
        ),
        (
            "fjord.fetch.mode=splice",
            "expected one of auto, sendfile, copy, mmap",
        ),
    ] {
        let err = refused_start(&["listeners=PLAINTEXT://127.0.0.1:0", set]);
        assert!(err.contains(expect), "{set}: {err}");
    }
}

/// The port of the one broker in `bootstrap`'s Metadata answer, as librdkafka reads it.
fn advertised_port(bootstrap: &str) -> i32 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    assert_eq!(md.brokers().len(), 1);
    md.brokers()[0].port()
}

#[test]
fn every_listener_is_bound_and_advertises_its_own_address() {
    let b = BrokerProcess::start(&[
        "listeners=PLAINTEXT://127.0.0.1:0,INTERNAL://127.0.0.1:0",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT",
    ]);
    // The harness knows the first listener; the second is the one other port the
    // process listens on, read from /proc.
    let first = b.port();
    let second = listening_ports(b.pid())
        .into_iter()
        .find(|p| *p != first)
        .expect("a second listener is bound");
    assert_eq!(advertised_port(&b.bootstrap), i32::from(first));
    assert_eq!(
        advertised_port(&format!("127.0.0.1:{second}")),
        i32::from(second),
        "a client on the second listener is told the second listener's address"
    );
}

/// TCP ports process `pid` listens on (state 0A in /proc/net/tcp), via its sockets' inodes.
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_string)
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").expect("tcp table");
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let (local, state, inode) = (cols.get(1)?, cols.get(3)?, cols.get(9)?);
            let port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (*state == "0A" && inodes.iter().any(|i| i == inode)).then_some(port)
        })
        .collect()
}

/// rust-rdkafka's AlterConfigs reports every resource as Ok (it drops per-resource
/// errors), so the refusal of a typo is checked here through DescribeConfigs: the value
/// must stay as it was. kafka-python's configs.py checks the INVALID_CONFIG answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boolean_typo_over_the_wire_changes_nothing_and_any_case_false_is_taken() {
    let b = BrokerProcess::start(&[]);
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &b.bootstrap)
        .create()
        .expect("admin");
    let alter = |value: &'static str| {
        let admin = &admin;
        async move {
            let config =
                AlterConfig::new(ResourceSpecifier::Broker(1)).set("fjord.fsync.on.ack", value);
            admin
                .alter_configs(&[config], &AdminOptions::new())
                .await
                .expect("alter");
        }
    };
    let value = || {
        let admin = &admin;
        async move {
            let described = admin
                .describe_configs(&[ResourceSpecifier::Broker(1)], &AdminOptions::new())
                .await
                .expect("describe");
            let resource = described[0].as_ref().expect("broker configs");
            let entry = resource.get("fjord.fsync.on.ack").expect("listed");
            assert!(!entry.is_read_only);
            entry.value.clone()
        }
    };
    assert_eq!(value().await.as_deref(), Some("true"), "durable by default");
    alter("FALSE").await;
    assert_eq!(value().await.as_deref(), Some("FALSE"));
    alter("yes").await;
    assert_eq!(
        value().await.as_deref(),
        Some("FALSE"),
        "the typo changed nothing"
    );
}
