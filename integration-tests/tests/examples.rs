//! The programs in `examples/` against the real broker, as a new user runs them: the
//! keyed producer's delivery reports, the group consumer's manual commits (a second
//! run resumes after them), and the consumer used as a Stream.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fjord_integration_tests::{create_topic, fjord_bin, BrokerProcess};

/// `target/<profile>/examples/NAME`, which `cargo test --workspace` builds.
fn example(name: &str) -> PathBuf {
    let bin = fjord_bin()
        .parent()
        .expect("profile dir")
        .join("examples")
        .join(name);
    assert!(
        bin.exists(),
        "{} not built: run `cargo test --workspace` (or `cargo build -p fjord-examples --examples`)",
        bin.display()
    );
    bin
}

/// Runs example `name` with `args`, `env` and `stdin` against `bootstrap`; its stdout.
/// Fails the test if it exits unsuccessfully or runs past 60 s.
fn run(name: &str, bootstrap: &str, args: &[&str], env: &[(&str, &str)], stdin: &str) -> String {
    let mut child = Command::new(example(name))
        .args(args)
        .env("BOOTSTRAP_SERVERS", bootstrap)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("example runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("example {name} did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_run_against_the_broker() {
    let b = BrokerProcess::start(&["group.initial.rebalance.delay.ms=0"]);
    create_topic(&b.bootstrap, "scores", 3).await;
    let input: String = (0..10).map(|i| format!("player{} {i}\n", i % 3)).collect();
    let bootstrap = b.bootstrap.clone();
    let reports = tokio::task::spawn_blocking(move || {
        run("keyed_produce", &bootstrap, &["scores"], &[], &input)
    })
    .await
    .expect("keyed_produce");
    // One report per record (in completion order); a key always lands on one partition.
    let lines: Vec<&str> = reports.lines().collect();
    assert_eq!(lines.len(), 10, "{reports}");
    for key in ["player0", "player1", "player2"] {
        let mine: Vec<(String, i64)> = lines
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("{key} -> ")))
            .map(|rest| {
                let (tp, offset) = rest.split_once(" @ ").expect("TP @ OFFSET");
                (tp.to_string(), offset.parse().expect("offset"))
            })
            .collect();
        assert!(!mine.is_empty(), "{key}: {reports}");
        assert!(
            mine.iter().all(|(tp, _)| *tp == mine[0].0),
            "{key}: {reports}"
        );
    }

    let bootstrap = b.bootstrap.clone();
    let (first, second, streamed) = tokio::task::spawn_blocking(move || {
        let group = ["scores", "example-group"];
        let first = run(
            "consume_group",
            &bootstrap,
            &group,
            &[("MAX_MESSAGES", "10")],
            "",
        );
        run("produce", &bootstrap, &["scores"], &[], "late\n");
        // The group committed all ten: a new run sees only the new record.
        let second = run(
            "consume_group",
            &bootstrap,
            &group,
            &[("MAX_MESSAGES", "1")],
            "",
        );
        let streamed = run(
            "consume_stream",
            &bootstrap,
            &["scores"],
            &[("MAX_MESSAGES", "11")],
            "",
        );
        (first, second, streamed)
    })
    .await
    .expect("consumers");
    assert_eq!(first.lines().count(), 10, "{first}");
    // Per key, the records are stored in the order they were sent: value i has key
    // player{i % 3}, so within a partition each key's values rise with the offset.
    let mut stored: Vec<(String, i64, u32)> = first
        .lines()
        .map(|l| {
            let (tp, rest) = l.split_once(" @ ").expect("TP @ OFFSET: VALUE");
            let (offset, value) = rest.split_once(": ").expect("OFFSET: VALUE");
            (
                tp.to_string(),
                offset.parse().expect("offset"),
                value.parse().expect("value"),
            )
        })
        .collect();
    stored.sort();
    for key in 0..3 {
        let values: Vec<u32> = stored
            .iter()
            .filter(|s| s.2 % 3 == key)
            .map(|s| s.2)
            .collect();
        assert!(
            values.windows(2).all(|w| w[0] < w[1]),
            "player{key}: {first}"
        );
    }
    assert!(second.trim_end().ends_with(": late"), "{second}");
    assert_eq!(second.lines().count(), 1, "{second}");
    assert_eq!(streamed.lines().count(), 11, "{streamed}");
    assert!(streamed.contains(": late"), "{streamed}");
}
