//! `--client java`: Apache Kafka's Java client, driven by Kafka's own perf tools
//! (kafka-tools' `ProducerPerformance` and `ConsumerPerformance`, what
//! kafka-producer-perf-test.sh and kafka-consumer-perf-test.sh run) and, for `e2e`, by
//! `bench/peers/java/E2eLatency.java` (Kafka's EndToEndLatency sends one record at a time,
//! so it cannot hold a rate). Each runs as a child process on the classpath
//! `bench/peers/kafka.sh` resolves; its figures are parsed from what it prints.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::broker::kafka_peer_script;
use crate::latency::Percentiles;
use crate::options::{Options, Partitioner};
use crate::workload::Outcome;

/// Java's `max.request.size`, as large as the `message.max.bytes` both brokers get, so
/// the 1 MiB-record runs fit (Java's default, 1 MiB, counts the request's overhead too).
const MAX_REQUEST_SIZE: &str = "max.request.size=16777216";

/// Runs `o.command` with the Java client.
pub(crate) fn run(bootstrap: &str, o: &Options) -> Result<Outcome> {
    if o.partitioner == Partitioner::RoundRobin {
        bail!("--client java sends with the Java client's own partitioner only");
    }
    match o.command.as_str() {
        "produce" => produce(bootstrap, o),
        "consume" => consume(bootstrap, o),
        "e2e" => e2e(bootstrap, o),
        other => bail!("--client java runs produce, consume or e2e, not {other}"),
    }
}

/// `key=value` settings of the measured client: the workload's, then `--property`.
fn producer_settings(bootstrap: &str, o: &Options) -> Vec<String> {
    let mut settings = vec![
        format!("bootstrap.servers={bootstrap}"),
        format!("acks={}", o.acks),
        format!("linger.ms={}", o.linger_ms),
        format!("batch.size={}", o.batch_size),
        format!("compression.type={}", o.compression),
        MAX_REQUEST_SIZE.to_string(),
    ];
    settings.extend(o.properties.iter().map(|(k, v)| format!("{k}={v}")));
    settings
}

fn tool(class: &str) -> Command {
    let mut command = Command::new(kafka_peer_script());
    command.arg("tool").arg(class);
    command
}

/// Runs `command`, returning its stdout; its stderr (the client's warnings) passes through.
fn output_of(mut command: Command, what: &str) -> Result<String> {
    let out = command
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("run {what}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("{what} failed ({}): {stdout}", out.status);
    }
    Ok(stdout)
}

fn produce(bootstrap: &str, o: &Options) -> Result<Outcome> {
    let rate = if o.rate == 0 {
        "-1".to_string()
    } else {
        o.rate.to_string()
    };
    let mut command = tool("ProducerPerformance");
    command
        .args(["--topic", &o.topic])
        .args(["--num-records", &o.records.to_string()])
        .args(["--record-size", &o.record_size.to_string()])
        .args(["--throughput", &rate]);
    if o.transactional {
        let id = format!("fjord-bench-java-{}-{}", std::process::id(), o.topic);
        command
            .args(["--transactional-id", &id])
            .args(["--transaction-duration-ms", &o.transaction_ms.to_string()]);
    }
    command
        .arg("--command-property")
        .args(producer_settings(bootstrap, o));
    let stdout = output_of(command, "ProducerPerformance")?;
    parse_producer_performance(&stdout, o.record_size)
}

/// The summary line of ProducerPerformance: `N records sent, R records/sec (M MB/sec),
/// A ms avg latency, X ms max latency, P ms 50th, Q ms 95th, S ms 99th, T ms 99.9th.`
pub(crate) fn parse_producer_performance(stdout: &str, record_size: usize) -> Result<Outcome> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.contains("records sent") && l.contains("99.9th"))
        .with_context(|| format!("no summary line in ProducerPerformance's output: {stdout}"))?;
    let number_before = |suffix: &str| -> Result<f64> {
        let end = line
            .find(suffix)
            .with_context(|| format!("no '{suffix}' in '{line}'"))?;
        let start = line[..end]
            .trim_end()
            .rfind([' ', '('])
            .map_or(0, |i| i + 1);
        line[start..end]
            .trim()
            .parse()
            .with_context(|| format!("the number before '{suffix}' in '{line}'"))
    };
    let records = number_before(" records sent")? as u64;
    let rate = number_before(" records/sec")?;
    let mut outcome = Outcome::new(
        records,
        record_size,
        Duration::from_secs_f64(records as f64 / rate.max(1e-9)),
    );
    outcome.latency = Some(Percentiles {
        p50: number_before(" ms 50th")?,
        p99: number_before(" ms 99th")?,
        p999: number_before(" ms 99.9th")?,
        max: number_before(" ms max latency")?,
        samples: records,
    });
    Ok(outcome)
}

fn consume(bootstrap: &str, o: &Options) -> Result<Outcome> {
    let mut command = tool("ConsumerPerformance");
    command
        .args(["--bootstrap-server", bootstrap])
        .args(["--topic", &o.topic])
        .args(["--num-records", &o.records.to_string()])
        .args([
            "--group",
            &format!("fjord-bench-java-{}", std::process::id()),
        ])
        .args(["--timeout", "600000"]);
    for (k, v) in &o.properties {
        command.arg("--command-property").arg(format!("{k}={v}"));
    }
    let stdout = output_of(command, "ConsumerPerformance")?;
    parse_consumer_performance(&stdout, o.record_size)
}

/// The last line of ConsumerPerformance: `start, end, MB, MB/s, records, records/s,
/// rebalance ms, fetch ms, fetch MB/s, fetch records/s`. The fetch time (after the
/// group's join) is the measured time: the other clients are assigned, not grouped.
pub(crate) fn parse_consumer_performance(stdout: &str, record_size: usize) -> Result<Outcome> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.split(',').count() == 10 && !l.starts_with("start.time"))
        .with_context(|| format!("no summary line in ConsumerPerformance's output: {stdout}"))?;
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let field = |i: usize| -> Result<f64> {
        fields[i]
            .parse()
            .with_context(|| format!("field {i} of '{line}'"))
    };
    let records = field(4)? as u64;
    let fetch_ms = field(7)?;
    Ok(Outcome::new(
        records,
        record_size,
        Duration::from_secs_f64(fetch_ms.max(1.0) / 1e3),
    ))
}

fn e2e(bootstrap: &str, o: &Options) -> Result<Outcome> {
    let classpath = output_of(
        {
            let mut c = Command::new(kafka_peer_script());
            c.arg("classpath");
            c
        },
        "kafka.sh classpath",
    )?;
    let source = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/peers/java/E2eLatency.java"
    ));
    let mut command = Command::new("java");
    command
        .arg("-cp")
        .arg(classpath.trim())
        .arg("-Dlog4j2.level=WARN")
        .arg(source)
        .args([bootstrap, &o.topic])
        .arg(o.partitions.to_string())
        .arg(o.records.to_string())
        .arg(o.rate.to_string())
        .arg(o.record_size.to_string())
        .arg(&o.acks)
        .arg(o.linger_ms.to_string())
        .arg(MAX_REQUEST_SIZE)
        .args(o.properties.iter().map(|(k, v)| format!("{k}={v}")));
    let stdout = output_of(command, "E2eLatency.java")?;
    parse_e2e(&stdout, o.record_size)
}

/// `records=N elapsed_ms=T p50_ms=.. p99_ms=.. p999_ms=.. max_ms=..`.
pub(crate) fn parse_e2e(stdout: &str, record_size: usize) -> Result<Outcome> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("records="))
        .with_context(|| format!("no result line in E2eLatency's output: {stdout}"))?;
    let value = |key: &str| -> Result<f64> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .with_context(|| format!("no {key} in '{line}'"))?
            .parse()
            .with_context(|| format!("{key} in '{line}'"))
    };
    let records = value("records=")? as u64;
    let mut outcome = Outcome::new(
        records,
        record_size,
        Duration::from_secs_f64(value("elapsed_ms=")? / 1e3),
    );
    outcome.latency = Some(Percentiles {
        p50: value("p50_ms=")?,
        p99: value("p99_ms=")?,
        p999: value("p999_ms=")?,
        max: value("max_ms=")?,
        samples: records,
    });
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_performance_summary_is_parsed() {
        let out = "250000 records sent, 50000.0 records/sec (4.77 MB/sec), 2.1 ms avg latency, 97.0 ms max latency.\n\
            500000 records sent, 286041.189931 records/sec (27.28 MB/sec), 29.56 ms avg latency, 534.00 ms max latency, 23 ms 50th, 82 ms 95th, 97 ms 99th, 112 ms 99.9th.\n";
        let o = parse_producer_performance(out, 100).expect("parsed");
        assert_eq!(o.records, 500_000);
        assert_eq!(o.bytes, 50_000_000);
        assert!((o.elapsed.as_secs_f64() - 500_000.0 / 286_041.189_931).abs() < 1e-6);
        let l = o.latency.expect("latency");
        assert_eq!((l.p50, l.p99, l.p999, l.max), (23.0, 97.0, 112.0, 534.0));
        assert!(parse_producer_performance("nothing", 100).is_err());
    }

    #[test]
    fn consumer_performance_summary_is_parsed_with_the_fetch_time() {
        let out = "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n\
            2026-12-01 23:39:49:846, 2026-12-01 23:39:50:947, 47.6837, 43.3095, 500000, 454132.6067, 360, 741, 64.3505, 674763.8327\n";
        let o = parse_consumer_performance(out, 100).expect("parsed");
        assert_eq!(o.records, 500_000);
        assert_eq!(o.elapsed, Duration::from_millis(741));
        assert!(o.latency.is_none());
        assert!(parse_consumer_performance("start.time, end.time\n", 100).is_err());
    }

    #[test]
    fn e2e_result_line_is_parsed() {
        let out = "warning\nrecords=1000 elapsed_ms=20.5 p50_ms=1.25 p99_ms=3.5 p999_ms=4.0 max_ms=9.75\n";
        let o = parse_e2e(out, 100).expect("parsed");
        assert_eq!(o.records, 1000);
        let l = o.latency.expect("latency");
        assert_eq!((l.p50, l.p99, l.p999, l.max), (1.25, 3.5, 4.0, 9.75));
        assert!(parse_e2e("records=x", 100).is_err());
    }
}
