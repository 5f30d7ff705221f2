//! `fjord-bench`: throughput of a Kafka-protocol broker next to this machine's limits.
//!
//! ```text
//! fjord-bench limits
//! fjord-bench produce --spawn-broker --records 5000000 --record-size 100
//! fjord-bench consume --spawn-broker --records 5000000 --record-size 100
//! ```
//! `--spawn-broker` starts `target/release/fjord` (or `$FJORD_BIN`) in a temp dir on a
//! free port and stops it at the end; otherwise `--bootstrap HOST:PORT`. `consume` with
//! `--spawn-broker` first loads the topic with the producer. The client is librdkafka
//! (the `rdkafka` crate) until Fjord's own clients exist.

mod broker;
mod fjord_client;
mod latency;
mod limits;
mod options;
mod sendfile_limit;
mod workload;

use anyhow::Result;

fn main() -> Result<()> {
    let opts = options::Options::parse(std::env::args().skip(1).collect())?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("fjord-bench {} ({cores} cores)", opts.command);
    match opts.command.as_str() {
        "limits" => limits::print_all(),
        "produce" | "consume" => workload::run(&opts),
        other => anyhow::bail!("unknown command '{other}' (limits, produce, consume)"),
    }
}
