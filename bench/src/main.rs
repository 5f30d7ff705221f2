//! `fjord-bench`: throughput and latency of a Kafka-protocol broker and its clients, next
//! to this machine's limits measured in the same run. `fjord-bench --help` lists the
//! commands and flags.
//!
//! ```text
//! fjord-bench limits
//! fjord-bench produce --spawn-broker --records 3000000 --record-size 100 --client fjord
//! fjord-bench consume --spawn-broker --records 10000000 --record-size 100 --client rdkafka
//! fjord-bench e2e --spawn-broker --records 500000 --rate 50000
//! fjord-bench sweep --spawn-broker --out bench-results
//! fjord-bench storage --quick
//! fjord-bench storage --quick --only clean
//! fjord-bench clean-produce --spawn-broker --records 3000000
//! fjord-bench rebalance --spawn-broker --partitions 100 --members 10
//! fjord-bench transactions --spawn-broker --records 2000000 --transaction-ms 100
//! ```
//! `--spawn-broker` starts `target/release/fjord` (or `$FJORD_BIN`) in a temp dir on a
//! free port and stops it at the end; otherwise `--bootstrap HOST:PORT`. `consume` with
//! `--spawn-broker` first loads the topic with Fjord's producer.

mod broker;
mod clean_produce;
mod cleaner_bench;
mod fjord_client;
mod flood;
mod java_client;
mod latency;
mod limits;
mod options;
mod progress;
mod rdkafka_client;
mod rebalance;
mod report;
mod sendfile_limit;
mod storage;
mod sweep;
mod txn_bench;
mod workload;

use anyhow::Result;

fn main() -> Result<()> {
    let opts = options::Options::parse(std::env::args().skip(1).collect())?;
    if !opts.json {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!("fjord-bench {} ({cores} cores)", opts.command);
    }
    match opts.command.as_str() {
        "limits" => limits::print_all(opts.json),
        "produce" | "consume" | "e2e" => workload::run(&opts),
        "sweep" => sweep::run(&opts),
        "storage" => storage::run(opts.quick, std::path::Path::new(&opts.dir), &opts.only),
        "rebalance" => rebalance::run(&opts),
        "clean-produce" => clean_produce::run(&opts),
        "transactions" => txn_bench::run(&opts),
        other => anyhow::bail!(
            "unknown command '{other}' (limits, produce, consume, e2e, sweep, storage, rebalance, clean-produce, transactions; see --help)"
        ),
    }
}
