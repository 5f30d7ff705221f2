//! The `fjord` client tools (topics, produce, consume) against a real broker, output
//! parsed: what an operator types, checked end to end.

use fjord_integration_tests::{fjord, BrokerProcess};

#[test]
fn topics_produce_and_consume_from_the_command_line() {
    let broker = BrokerProcess::start(&["auto.create.topics.enable=false"]);
    let b = ["--bootstrap-server", broker.bootstrap.as_str()];
    let with = |cmd: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        v.extend(b.iter().map(|s| s.to_string()));
        v
    };
    let run = |cmd: &[&str], stdin: Option<&str>| {
        let args = with(cmd);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        fjord(&refs, stdin)
    };

    let (ok, out, err) = run(
        &[
            "topics",
            "create",
            "--topic",
            "orders",
            "--partitions",
            "3",
            "--config",
            "retention.ms=3600000",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "created topic orders");
    let (ok, _, err) = run(&["topics", "create", "--topic", "orders"], None);
    assert!(!ok, "creating twice must fail");
    assert!(err.contains("TopicAlreadyExists"), "{err}");
    let (_, out, _) = run(&["topics", "list"], None);
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["orders"]);

    let lines: String = (0..30).map(|i| format!("k{}|v{i}\n", i % 5)).collect();
    let (ok, _, err) = run(
        &[
            "produce",
            "--topic",
            "orders",
            "--key-separator",
            "|",
            "--header",
            "src=cli",
        ],
        Some(&lines),
    );
    assert!(ok, "{err}");

    let (ok, out, err) = run(&["topics", "describe", "--topic", "orders"], None);
    assert!(ok, "{err}");
    assert!(
        out.contains("Partitions: 3") && out.contains("retention.ms=3600000"),
        "{out}"
    );
    let ends: i64 = out
        .lines()
        .filter_map(|l| l.split("LogEndOffset: ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|n| n.parse::<i64>().expect("offset"))
        .sum();
    assert_eq!(ends, 30, "{out}");

    let (ok, out, err) = run(
        &[
            "consume",
            "--topic",
            "orders",
            "--from-beginning",
            "--max-messages",
            "30",
            "--format",
            "json",
        ],
        None,
    );
    assert!(ok, "{err}");
    let records: Vec<&str> = out.lines().collect();
    assert_eq!(records.len(), 30);
    assert!(
        records
            .iter()
            .all(|r| r.contains("\"headers\":{\"src\":\"cli\"}")),
        "{out}"
    );
    for i in 0..30 {
        let want = format!("\"key\":\"k{}\",\"value\":\"v{i}\"", i % 5);
        assert!(out.contains(&want), "missing {want}");
    }
    // The same key always lands on the same partition.
    let (ok, out, _) = run(
        &[
            "consume",
            "--topic",
            "orders",
            "--from-beginning",
            "--max-messages",
            "30",
            "--format",
            "%k %p\\n",
        ],
        None,
    );
    assert!(ok);
    let mut placement = std::collections::HashMap::new();
    for line in out.lines() {
        let (k, p) = line.split_once(' ').expect("key partition");
        assert_eq!(*placement.entry(k.to_string()).or_insert(p.to_string()), p);
    }
    assert_eq!(placement.len(), 5);

    // Values only by default; a group consumer starts where the group left off.
    let (ok, out, err) = run(
        &[
            "consume",
            "--topic",
            "orders",
            "--group",
            "g",
            "--from-beginning",
            "--max-messages",
            "30",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 30);
    assert!(out.lines().all(|l| l.starts_with('v')), "{out}");
    let more: String = (0..5).map(|i| format!("w{i}\n")).collect();
    let (ok, _, err) = run(&["produce", "--topic", "orders"], Some(&more));
    assert!(ok, "{err}");
    // --from-beginning applies only where the group has no committed offset: the group
    // resumes after the 30 it committed and reads exactly the 5 new records.
    let (ok, out, err) = run(
        &[
            "consume",
            "--topic",
            "orders",
            "--group",
            "g",
            "--from-beginning",
            "--max-messages",
            "5",
            "--timeout-ms",
            "20000",
        ],
        None,
    );
    assert!(ok, "{err}");
    let mut got: Vec<&str> = out.lines().collect();
    got.sort_unstable();
    assert_eq!(got, vec!["w0", "w1", "w2", "w3", "w4"], "{out}");

    // The group, as the operator sees it: every partition committed at its log end.
    let (ok, out, err) = run(&["groups", "list"], None);
    assert!(ok, "{err}");
    assert!(out.lines().any(|l| l.starts_with("g\t")), "{out}");
    let more: String = (0..4).map(|i| format!("z{i}\n")).collect();
    let (ok, _, err) = run(&["produce", "--topic", "orders"], Some(&more));
    assert!(ok, "{err}");
    let (ok, out, err) = run(&["groups", "describe", "--group", "g"], None);
    assert!(ok, "{err}");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .filter(|l| l.starts_with("orders\t"))
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), 3, "{out}");
    let lag: i64 = rows.iter().map(|r| r[4].parse::<i64>().expect("lag")).sum();
    assert_eq!(
        lag, 4,
        "the 4 records produced after the last commit: {out}"
    );
    for r in &rows {
        let (current, end): (i64, i64) =
            (r[2].parse().expect("current"), r[3].parse().expect("end"));
        assert_eq!(end - current, r[4].parse::<i64>().expect("lag"), "{out}");
    }
    // Reset: a dry run changes nothing; --execute moves the group to the start.
    let (ok, out, err) = run(
        &[
            "groups",
            "reset-offsets",
            "--group",
            "g",
            "--topic",
            "orders",
            "--to-earliest",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(out.contains("dry run"), "{out}");
    let (ok, _, err) = run(
        &[
            "groups",
            "reset-offsets",
            "--group",
            "g",
            "--topic",
            "orders",
            "--to-earliest",
            "--execute",
        ],
        None,
    );
    assert!(ok, "{err}");
    let (_, out, _) = run(&["groups", "describe", "--group", "g"], None);
    let currents: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("orders\t"))
        .map(|l| l.split('\t').nth(2).unwrap_or_default())
        .collect();
    assert_eq!(currents, vec!["0", "0", "0"], "{out}");
    let (ok, out, err) = run(&["groups", "delete", "--group", "g"], None);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "deleted group g");
    let (_, out, _) = run(&["groups", "list"], None);
    assert!(!out.lines().any(|l| l.starts_with("g\t")), "{out}");

    // --timestamp: only what was produced at or after that time.
    let (ok, _, err) = run(
        &["topics", "create", "--topic", "timed", "--partitions", "2"],
        None,
    );
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["produce", "--topic", "timed"], Some("early1\nearly2\n"));
    assert!(ok, "{err}");
    std::thread::sleep(std::time::Duration::from_millis(50));
    let cut = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis()
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let (ok, _, err) = run(&["produce", "--topic", "timed"], Some("late1\nlate2\n"));
    assert!(ok, "{err}");
    let (ok, out, err) = run(
        &[
            "consume",
            "--topic",
            "timed",
            "--timestamp",
            &cut,
            "--timeout-ms",
            "3000",
        ],
        None,
    );
    assert!(ok, "{err}");
    let mut got: Vec<&str> = out.lines().collect();
    got.sort_unstable();
    assert_eq!(got, vec!["late1", "late2"], "{out}");
    let (ok, _, err) = run(&["topics", "delete", "--topic", "timed"], None);
    assert!(ok, "{err}");

    let (ok, out, err) = run(
        &["topics", "alter", "--topic", "orders", "--partitions", "4"],
        None,
    );
    assert!(ok, "{err}");
    assert!(out.contains("4 partitions"));
    let (ok, _, err) = run(&["topics", "delete", "--topic", "orders"], None);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["topics", "delete", "--topic", "orders"], None);
    assert!(!ok);
    assert!(err.starts_with("error: "), "{err}");
    let (_, out, _) = run(&["topics", "list"], None);
    assert!(out.trim().is_empty(), "{out}");
}

/// `fjord ARGS --bootstrap-server B` with `stdin`: (success, stdout, stderr).
fn run_at(bootstrap: &str, cmd: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut args = cmd.to_vec();
    args.extend(["--bootstrap-server", bootstrap]);
    fjord(&args, stdin)
}

/// (current, log end, lag) of each row of `fjord groups describe` for `topic`.
fn group_rows(out: &str, topic: &str) -> Vec<(i64, i64, i64)> {
    out.lines()
        .filter(|l| l.starts_with(&format!("{topic}\t")))
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            let n = |i: usize| cols[i].parse::<i64>().unwrap_or_else(|_| panic!("{l}"));
            (n(2), n(3), n(4))
        })
        .collect()
}

#[test]
fn files_codecs_offsets_and_targeted_resets() {
    let broker = BrokerProcess::start(&["auto.create.topics.enable=false"]);
    let run = |cmd: &[&str], stdin: Option<&str>| run_at(&broker.bootstrap, cmd, stdin);
    let (ok, _, err) = run(&["topics", "create", "--topic", "files"], None);
    assert!(ok, "{err}");

    // Lines from a file, keyed, zstd-compressed: the batch on disk says zstd (codec 4).
    let input = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(input.path(), "a=1\nb=2\nc=3\nd=4\ne=5\nf=6\n").expect("write input");
    let path = input.path().display().to_string();
    let (ok, _, err) = run(
        &[
            "produce",
            "--topic",
            "files",
            "--file",
            &path,
            "--key-separator",
            "=",
            "--compression",
            "zstd",
        ],
        None,
    );
    assert!(ok, "{err}");
    let log = std::fs::read(broker.data.join("files-0/00000000000000000000.log")).expect("log");
    assert!(log.len() > 61, "a batch was written");
    let attributes = i16::from_be_bytes([log[21], log[22]]);
    assert_eq!(attributes & 7, 4, "zstd batch");
    let (ok, _, err) = run(
        &["produce", "--topic", "files", "--compression", "brotli"],
        Some("x\n"),
    );
    assert!(!ok && err.contains("brotli"), "{err}");

    // From an offset, as key TAB value.
    let (ok, out, err) = run(
        &[
            "consume",
            "--topic",
            "files",
            "--offset",
            "2",
            "--max-messages",
            "4",
            "--format",
            "kv",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["c\t3", "d\t4", "e\t5", "f\t6"]
    );

    // A group reads everything, then is moved to an offset and to the end.
    let (ok, _, err) = run(
        &[
            "consume",
            "--topic",
            "files",
            "--group",
            "h",
            "--from-beginning",
            "--max-messages",
            "6",
        ],
        None,
    );
    assert!(ok, "{err}");
    let reset = |target: &[&str]| {
        let mut cmd = vec![
            "groups",
            "reset-offsets",
            "--group",
            "h",
            "--topic",
            "files",
            "--execute",
        ];
        cmd.extend(target);
        let (ok, _, err) = run(&cmd, None);
        assert!(ok, "{err}");
        let (ok, out, err) = run(&["groups", "describe", "--group", "h"], None);
        assert!(ok, "{err}");
        group_rows(&out, "files")
    };
    assert_eq!(reset(&["--to-offset", "4"]), vec![(4, 6, 2)]);
    assert_eq!(reset(&["--to-latest"]), vec![(6, 6, 0)]);

    // topics alter sets configs too.
    let (ok, _, err) = run(
        &[
            "topics",
            "alter",
            "--topic",
            "files",
            "--config",
            "retention.ms=1234",
        ],
        None,
    );
    assert!(ok, "{err}");
    let (ok, out, err) = run(&["topics", "describe", "--topic", "files"], None);
    assert!(ok, "{err}");
    assert!(out.contains("Configs: retention.ms=1234"), "{out}");
}

/// LogStartOffset of partition 0 in `fjord topics describe`.
fn log_start(bootstrap: &str, topic: &str) -> i64 {
    let (ok, out, err) = run_at(bootstrap, &["topics", "describe", "--topic", topic], None);
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.contains("Partition: 0\t"))
        .unwrap_or_else(|| panic!("{out}"));
    let field = line
        .split('\t')
        .find_map(|f| f.strip_prefix("LogStartOffset: "))
        .unwrap_or_else(|| panic!("{line}"));
    field.parse().unwrap_or_else(|_| panic!("{line}"))
}

#[test]
fn delete_records_moves_the_log_start_and_it_survives_a_kill() {
    let mut broker = BrokerProcess::start(&["auto.create.topics.enable=false"]);
    let b = broker.bootstrap.clone();
    let (ok, _, err) = run_at(
        &b,
        &["topics", "create", "--topic", "dr", "--partitions", "1"],
        None,
    );
    assert!(ok, "{err}");
    let lines: String = (0..10).map(|i| format!("v{i}\n")).collect();
    let (ok, _, err) = run_at(&b, &["produce", "--topic", "dr"], Some(&lines));
    assert!(ok, "{err}");

    let (ok, out, err) = run_at(
        &b,
        &["topics", "delete-records", "--topic", "dr", "--offset", "4"],
        None,
    );
    assert!(
        ok && out.contains("partition 0: log start offset 4"),
        "{out}{err}"
    );
    assert_eq!(log_start(&b, "dr"), 4);
    // Past the high watermark: Kafka's OFFSET_OUT_OF_RANGE, and a failing exit.
    let (ok, _, err) = run_at(
        &b,
        &[
            "topics",
            "delete-records",
            "--topic",
            "dr",
            "--offset",
            "11",
        ],
        None,
    );
    assert!(!ok && err.contains("OffsetOutOfRange"), "{err}");

    // SIGKILL: the new start was made durable before the answer.
    let port = broker.port();
    let keep = broker.take_data_dir().expect("data dir");
    broker.kill();
    let broker = BrokerProcess::start_in(keep.path(), port, &["auto.create.topics.enable=false"]);
    let b = broker.bootstrap.clone();
    assert_eq!(log_start(&b, "dr"), 4);
    let (ok, out, _) = run_at(
        &b,
        &[
            "consume",
            "--topic",
            "dr",
            "--from-beginning",
            "--max-messages",
            "6",
        ],
        None,
    );
    assert!(ok);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["v4", "v5", "v6", "v7", "v8", "v9"]
    );
    // kcat (librdkafka 2.0.2) reading from the beginning starts at the new log start.
    assert_eq!(kcat_all(&b, "dr"), vec!["v4", "v5", "v6", "v7", "v8", "v9"]);

    // kafka-delete-records' JSON file.
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("offsets.json");
    std::fs::write(
        &json,
        r#"{"partitions": [{"topic": "dr", "partition": 0, "offset": 6}], "version": 1}"#,
    )
    .expect("json");
    let file = json.display().to_string();
    let (ok, out, err) = run_at(
        &b,
        &["topics", "delete-records", "--offset-json-file", &file],
        None,
    );
    assert!(
        ok && out.contains("dr partition 0: log start offset 6"),
        "{out}{err}"
    );
    assert_eq!(kcat_all(&b, "dr"), vec!["v6", "v7", "v8", "v9"]);

    // -1: up to the high watermark.
    let (ok, out, err) = run_at(
        &b,
        &[
            "topics",
            "delete-records",
            "--topic",
            "dr",
            "--partition",
            "0",
            "--offset",
            "-1",
        ],
        None,
    );
    assert!(ok && out.contains("log start offset 10"), "{out}{err}");
    assert_eq!(log_start(&b, "dr"), 10);
}

/// Every record of `topic` from the beginning, as kcat reads them (values).
fn kcat_all(bootstrap: &str, topic: &str) -> Vec<String> {
    let out = std::process::Command::new("kcat")
        .args([
            "-C",
            "-b",
            bootstrap,
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
        ])
        .output()
        .expect("kcat runs (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}
