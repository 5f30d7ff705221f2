//! fjord-bench end to end: each workload, with each client, against a broker it spawns,
//! prints the JSON object scripts rely on, with plausible numbers.

use std::path::PathBuf;
use std::process::Command;

fn bench() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fjord-bench"))
}

/// The broker binary built next to fjord-bench (scripts/test builds it first).
fn fjord() -> PathBuf {
    std::env::var_os("FJORD_BIN").map_or_else(|| bench().with_file_name("fjord"), PathBuf::from)
}

/// The number after `"key":` in `json`.
fn number(json: &str, key: &str) -> Option<f64> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &json[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[test]
fn every_workload_reports_json_with_both_clients() {
    let fjord = fjord();
    assert!(
        fjord.exists(),
        "{} not built (cargo build --bin fjord)",
        fjord.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    for (command, extra) in [
        ("produce", &[][..]),
        ("consume", &[][..]),
        ("e2e", &["--rate", "20000"][..]),
        // Every record read back from several partitions, whoever picked them.
        ("produce", &["--partitions", "3"][..]),
        (
            "consume",
            &["--partitions", "3", "--partitioner", "round-robin"][..],
        ),
    ] {
        for client in ["fjord", "rdkafka"] {
            let out = Command::new(bench())
                .args([
                    command,
                    "--spawn-broker",
                    "--records",
                    "20000",
                    "--client",
                    client,
                    "--json",
                ])
                .args(extra)
                .env("FJORD_BIN", &fjord)
                .current_dir(dir.path())
                .output()
                .expect("fjord-bench runs");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{command} {client}: {}\n{stdout}",
                String::from_utf8_lossy(&out.stderr)
            );
            let json = stdout.lines().last().unwrap_or_default();
            let rps = number(json, "records_per_sec").unwrap_or(0.0);
            assert!(rps > 100.0, "{command} {client}: {json}");
            assert!(
                number(json, "mb_per_sec").is_some_and(|m| m > 0.0),
                "{json}"
            );
            if command != "consume" {
                assert!(
                    number(json, "p99").is_some_and(|p| p > 0.0),
                    "{command} {client}: {json}"
                );
            }
            if command != "e2e" {
                assert!(
                    number(json, "limit_ratio").is_some_and(|r| r > 0.0),
                    "{json}"
                );
            }
        }
    }
}

#[test]
fn storage_benchmarks_print_each_figure_next_to_its_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(bench())
        .args([
            "storage",
            "--quick",
            "--only",
            "lookup",
            "--only",
            "partitions",
            "--only",
            "clean",
        ])
        .arg("--dir")
        .arg(dir.path())
        .output()
        .expect("fjord-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    for prefix in ["clean 16 MiB of keyed records", "appends while a pass runs"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no '{prefix}' line: {stdout}"));
        assert!(line.contains("ratio") && line.contains("target"), "{line}");
    }
    let lookup = stdout
        .lines()
        .find(|l| l.starts_with("random read lookup"))
        .unwrap_or_else(|| panic!("no lookup line: {stdout}"));
    assert!(lookup.contains("p99 ratio lookup/pread"), "{lookup}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("1000 partitions: open")),
        "{stdout}"
    );
    // Its data is gone afterwards.
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn rebalance_reports_each_protocol_and_only_eager_stops_kept_partitions() {
    let fjord = fjord();
    let out = Command::new(bench())
        .args([
            "rebalance",
            "--spawn-broker",
            "--partitions",
            "12",
            "--members",
            "3",
            "--json",
        ])
        .env("FJORD_BIN", &fjord)
        .output()
        .expect("fjord-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("\"rebalance\""))
        .collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    for (row, protocol) in rows.iter().zip(["range", "cooperative-sticky", "consumer"]) {
        assert!(
            row.contains(&format!("\"protocol\":\"{protocol}\"")),
            "{row}"
        );
        let settled = number(row, "settled_ms").expect("settled_ms");
        assert!(settled > 0.0 && settled < 60_000.0, "{row}");
        let pause = number(row, "kept_pause_ms").expect("kept_pause_ms");
        if protocol != "range" {
            assert_eq!(
                pause, 0.0,
                "{protocol} never revokes what a member keeps: {row}"
            );
        }
    }
}
