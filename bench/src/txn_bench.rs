//! `fjord-bench transactions`: what transactions cost (issue 19's targets). Produce
//! with the idempotent producer (acks=all) next to the same produce in transactions
//! committed every `--transaction-ms` (100 ms: at least 90% of the idempotent
//! throughput), then consume the transactional topic read_uncommitted next to
//! read_committed (at least 95%). Each measure is 5 pairs of runs in alternating order,
//! each run on a fresh topic (produce) or a fresh group (consume); the pairs' ratios
//! are reported with their median, the machine drifting between pairs more than within
//! one. With `--spawn-broker`, `--spawn-peer kafka` or `--bootstrap`; Fjord's clients
//! or (`--client java`) Kafka's ProducerPerformance and ConsumerPerformance.

use anyhow::{Context, Result};

use crate::broker::Broker;
use crate::latency::Samples;
use crate::options::Options;
use crate::workload::{ensure_topic, run_one};

/// Paired runs per measure, in alternating order.
const PAIRS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One produce run into a fresh topic: records/s.
fn produce(broker: &Broker, o: &Options, topic: String, transactional: bool) -> Result<f64> {
    let mut run = o.clone();
    run.command = "produce".into();
    run.json = true;
    run.topic = topic;
    run.transactional = transactional;
    ensure_topic(&broker.bootstrap, &run.topic, run.partitions)?;
    let report = run_one(&broker.bootstrap, &run, &Samples::default(), broker)?;
    Ok(report.records_per_sec)
}

/// One consume run of `topic` at `isolation`, from the start: records/s.
fn consume(broker: &Broker, o: &Options, topic: &str, isolation: &str) -> Result<f64> {
    let mut run = o.clone();
    run.command = "consume".into();
    run.json = true;
    run.topic = topic.to_string();
    run.properties
        .push(("isolation.level".into(), isolation.to_string()));
    let report = run_one(&broker.bootstrap, &run, &Samples::default(), broker)?;
    Ok(report.records_per_sec)
}

/// `(first, second)` per pair, in alternating order: `first` runs first in even pairs.
fn pairs(
    mut first: impl FnMut(usize) -> Result<f64>,
    mut second: impl FnMut(usize) -> Result<f64>,
) -> Result<Vec<(f64, f64)>> {
    let mut out = Vec::new();
    for pair in 0..PAIRS {
        let (a, b) = if pair % 2 == 0 {
            let a = first(pair)?;
            (a, second(pair)?)
        } else {
            let b = second(pair)?;
            (first(pair)?, b)
        };
        eprintln!("pair {pair}: {a:.0} and {b:.0} records/s");
        out.push((a, b));
    }
    Ok(out)
}

/// One row of the table: the measured (second) next to its comparison (first).
fn row(what: &str, runs: &[(f64, f64)], target: &str) {
    let ratios: Vec<f64> = runs.iter().map(|(base, m)| m / base).collect();
    let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    println!(
        "| {what} | {:.0} rec/s | {:.0} rec/s | **{:.2}** ({}) | {target} |",
        median(runs.iter().map(|r| r.1).collect()),
        median(runs.iter().map(|r| r.0).collect()),
        median(ratios),
        shown.join(", ")
    );
}

/// The whole command.
pub(crate) fn run(o: &Options) -> Result<()> {
    let broker = Broker::for_options(o)?;
    let base = format!("{}-txn-{}", o.topic, std::process::id());
    let produced = pairs(
        |pair| produce(&broker, o, format!("{base}-plain-{pair}"), false),
        |pair| produce(&broker, o, format!("{base}-txn-{pair}"), true),
    )
    .context("produce pairs")?;
    // The last transactional topic, read whole by each consume run.
    let topic = format!("{base}-txn-{}", PAIRS - 1);
    let consumed = pairs(
        |_| consume(&broker, o, &topic, "read_uncommitted"),
        |_| consume(&broker, o, &topic, "read_committed"),
    )
    .context("consume pairs")?;
    println!(
        "{}, client {}, {} x {} B records, {} partition(s), acks=all, {} ms transactions",
        broker.name, o.client, o.records, o.record_size, o.partitions, o.transaction_ms
    );
    println!("| measure | measured | comparison, same run | ratio (pairs) | target |");
    println!("|---|---|---|---|---|");
    row("produce in transactions / idempotent", &produced, ">= 0.90");
    row(
        "consume read_committed / read_uncommitted",
        &consumed,
        ">= 0.95",
    );
    Ok(())
}
