//! Command-line options.

use anyhow::{bail, Context, Result};

/// The usage text (`fjord-bench --help`).
pub(crate) const USAGE: &str = "\
fjord-bench COMMAND [FLAGS]

Commands:
  limits    what this machine can do: loopback TCP, buffered file writes (with and
            without fdatasync), sendfile from a cached file to a socket
  produce   produce records and report records/s, MB/s, delivery latency
  consume   read records already on the broker (loads them first with --spawn-broker)
  e2e       end-to-end latency: produce at --rate, consume, time from send to receipt
  sweep     produce over record sizes, partition counts and codecs; writes a CSV and
            SVG charts (--out DIR, default bench-results)
  rebalance a group of --members librdkafka members over --partitions partitions [100],
            then one more joins: time until every partition is owned again, and the
            longest pause of a partition a member keeps, for classic eager, classic
            cooperative and the KIP-848 consumer protocol
  storage   the storage engine alone, no broker: append next to a raw write, random
            read lookups next to a raw pread, crash recovery, opening 10,000 logs
            (about 25 GiB of writes; --quick for 16x less)
  transactions
            produce with the idempotent producer next to the same produce in
            transactions committed every --transaction-ms, then consume the
            transactional topic read_uncommitted next to read_committed; 5 alternating
            pairs each, medians of the pairs' ratios (--client fjord or java)
  clean-produce
            with --spawn-broker: produce (the workload flags) while the broker's
            cleaner compacts a 1 GiB topic, next to the same produce with the cleaner
            idle; 3 alternating pairs, medians (--quick: a 128 MiB topic)

Flags (defaults in brackets):
  --bootstrap HOST:PORT   broker to use, or --spawn-broker to start a fresh one
  --spawn-broker          start target/release/fjord (or $FJORD_BIN) in a temp dir
  --spawn-peer kafka      start Apache Kafka's broker instead (bench/peers/kafka.sh, from
                          Maven Central; Kafka's defaults, 1 GiB heap), stopped at the end
  --broker-pid PID        with --bootstrap: the broker's process, to report its CPU and RSS
  --client fjord|rdkafka|java
                          Fjord's own clients, librdkafka, or Apache Kafka's Java client
                          (kafka-tools' ProducerPerformance and ConsumerPerformance, and
                          bench/peers/java/E2eLatency.java for e2e) [fjord]
  --topic NAME            [fjord-bench]
  --records N             [2000000]
  --record-size BYTES     [100]
  --partitions N          partitions of the topic [1; rebalance: 100]
  --members N             rebalance: members before the one that joins [10]
  --partitioner P         default: records carry no key or partition and the client's
                          own partitioner places them (sticky in both clients), as
                          kafka-producer-perf-test sends them; round-robin: record n goes
                          to partition n % N, every partition's batch filled in turn
                          (the worst case for batching) [default]
  --acks 0|1|all          [1; all with --transactional and for transactions]
  --transactional         produce: in transactions (a transactional.id), committed
                          every --transaction-ms (Fjord's producer, or the Java
                          client's ProducerPerformance --transaction-duration-ms)
  --transaction-ms MS     how long each transaction runs before its commit [100]
  --compression CODEC     none, gzip, snappy, lz4, zstd [none]
  --linger-ms MS          [5; 0 for e2e]
  --batch-size BYTES      [1000000]
  --rate N                target records/s, 0 for as fast as possible [0]
  --json                  one JSON object on stdout, no progress line
  --property K=V          setting of the measured client, applied last (repeatable;
                          e2e: both clients; consume: not the producer that loads)
  --broker-set K=V        setting for --spawn-broker or --spawn-peer, by Kafka's name
                          (repeatable)
  --out DIR               where sweep writes [bench-results]
  --quick                 storage: every size 16x smaller; clean-produce: 8x
  --flood                 produce, e2e: another client floods the broker meanwhile with
                          Produce and Metadata requests naming 1,000 new topics each
                          (compare the latency with and without it)
  --only NAME             storage: append, lookup, recovery or partitions (repeatable)
  --dir DIR               storage: where its files go [fjord-bench-data]
";

/// Who picks each record's partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Partitioner {
    /// The client's own partitioner (records have no key and no partition).
    Default,
    /// Record n to partition n % partitions.
    RoundRobin,
}

impl Partitioner {
    /// Its flag value.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::RoundRobin => "round-robin",
        }
    }
}

/// What to run and how.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) command: String,
    pub(crate) bootstrap: Option<String>,
    pub(crate) spawn_broker: bool,
    /// `--spawn-peer kafka`: Apache Kafka's broker instead of Fjord's.
    pub(crate) spawn_peer: Option<String>,
    /// `--broker-pid`: the `--bootstrap` broker's process, to measure.
    pub(crate) broker_pid: Option<u32>,
    pub(crate) topic: String,
    pub(crate) records: u64,
    pub(crate) record_size: usize,
    pub(crate) partitions: i32,
    /// Who picks each record's partition.
    pub(crate) partitioner: Partitioner,
    pub(crate) compression: String,
    pub(crate) acks: String,
    pub(crate) linger_ms: u64,
    pub(crate) batch_size: usize,
    /// `fjord` (Fjord's own clients), `rdkafka` (librdkafka) or `java` (Kafka's).
    pub(crate) client: String,
    /// Target records/s (`--rate`, 0: as fast as possible).
    pub(crate) rate: u64,
    /// One JSON object on stdout instead of the table.
    pub(crate) json: bool,
    /// Extra client settings (`--property key=value`), applied last.
    pub(crate) properties: Vec<(String, String)>,
    /// Extra broker settings for `--spawn-broker` (`--broker-set key=value`).
    pub(crate) broker_settings: Vec<String>,
    /// Output directory of `sweep`.
    pub(crate) out: String,
    /// `storage`: sizes 16x smaller.
    pub(crate) quick: bool,
    /// `produce`/`e2e`: a hostile client floods topic names beside the workload.
    pub(crate) flood: bool,
    /// `storage`: which parts to run (all when empty).
    pub(crate) only: Vec<String>,
    /// `storage`: where the data goes.
    pub(crate) dir: String,
    /// `rebalance`: members before the one that joins.
    pub(crate) members: usize,
    /// `produce`: in transactions.
    pub(crate) transactional: bool,
    /// How long each transaction runs before its commit.
    pub(crate) transaction_ms: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            command: "limits".into(),
            bootstrap: None,
            spawn_broker: false,
            spawn_peer: None,
            broker_pid: None,
            topic: "fjord-bench".into(),
            records: 2_000_000,
            record_size: 100,
            partitions: 1,
            partitioner: Partitioner::Default,
            compression: "none".into(),
            acks: "1".into(),
            linger_ms: 5,
            batch_size: 1_000_000,
            client: "fjord".into(),
            rate: 0,
            json: false,
            properties: Vec::new(),
            broker_settings: Vec::new(),
            out: "bench-results".into(),
            quick: false,
            flood: false,
            only: Vec::new(),
            dir: "fjord-bench-data".into(),
            members: 10,
            transactional: false,
            transaction_ms: 100,
        }
    }
}

impl Options {
    /// The partition record `n` is sent to, or `None` for the client to choose.
    pub(crate) fn partition_of(&self, n: u64) -> Option<i32> {
        match self.partitioner {
            Partitioner::Default => None,
            Partitioner::RoundRobin => Some((n % self.partitions as u64) as i32),
        }
    }

    pub(crate) fn parse(args: Vec<String>) -> Result<Self> {
        let mut o = Self::default();
        let mut linger_given = false;
        let mut partitions_given = false;
        let mut acks_given = false;
        let mut it = args.into_iter();
        match it.next() {
            Some(c) if c == "--help" || c == "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            Some(c) => o.command = c,
            None => {}
        }
        while let Some(flag) = it.next() {
            match flag.as_str() {
                "--spawn-broker" => {
                    o.spawn_broker = true;
                    continue;
                }
                "--json" => {
                    o.json = true;
                    continue;
                }
                "--quick" => {
                    o.quick = true;
                    continue;
                }
                "--flood" => {
                    o.flood = true;
                    continue;
                }
                "--transactional" => {
                    o.transactional = true;
                    continue;
                }
                "--help" | "-h" => {
                    print!("{USAGE}");
                    std::process::exit(0);
                }
                _ => {}
            }
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--bootstrap" => o.bootstrap = Some(value),
                "--spawn-peer" => {
                    if value != "kafka" {
                        bail!("--spawn-peer is kafka");
                    }
                    o.spawn_peer = Some(value);
                }
                "--broker-pid" => o.broker_pid = Some(value.parse()?),
                "--topic" => o.topic = value,
                "--records" => o.records = value.parse()?,
                "--record-size" => o.record_size = value.parse()?,
                "--partitions" => {
                    o.partitions = value.parse()?;
                    partitions_given = true;
                }
                "--members" => o.members = value.parse()?,
                "--partitioner" => {
                    o.partitioner = match value.as_str() {
                        "default" => Partitioner::Default,
                        "round-robin" => Partitioner::RoundRobin,
                        _ => bail!("--partitioner is default or round-robin"),
                    }
                }
                "--compression" => o.compression = value,
                "--acks" => {
                    o.acks = value;
                    acks_given = true;
                }
                "--transaction-ms" => o.transaction_ms = value.parse()?,
                "--linger-ms" => {
                    o.linger_ms = value.parse()?;
                    linger_given = true;
                }
                "--batch-size" => o.batch_size = value.parse()?,
                "--rate" => o.rate = value.parse()?,
                "--out" => o.out = value,
                "--only" => o.only.push(value),
                "--dir" => o.dir = value,
                "--client" => {
                    if !matches!(value.as_str(), "fjord" | "rdkafka" | "java") {
                        bail!("--client is fjord, rdkafka or java");
                    }
                    o.client = value;
                }
                "--property" => {
                    let (k, v) = value
                        .split_once('=')
                        .with_context(|| format!("--property {value}: expected key=value"))?;
                    o.properties.push((k.to_string(), v.to_string()));
                }
                "--broker-set" => o.broker_settings.push(value),
                other => bail!("unknown flag {other} (see --help)"),
            }
        }
        if o.command == "e2e" && !linger_given {
            // Latency, not batching, is what e2e measures (as Kafka's EndToEndLatency).
            o.linger_ms = 0;
        }
        if o.command == "rebalance" && !partitions_given {
            o.partitions = 100;
        }
        if o.transactional || o.command == "transactions" {
            // Transactions need the idempotent producer, which needs acks=all.
            if acks_given && o.acks != "all" {
                bail!("transactions need --acks all");
            }
            o.acks = "all".into();
            if o.transaction_ms == 0 {
                bail!("--transaction-ms must be at least 1");
            }
            if o.client == "rdkafka" {
                bail!("transactions run with --client fjord or java");
            }
        }
        if o.members < 1 {
            bail!("--members must be at least 1");
        }
        if o.partitions < 1 {
            bail!("--partitions must be at least 1");
        }
        let needs_broker = matches!(
            o.command.as_str(),
            "produce" | "consume" | "e2e" | "sweep" | "transactions"
        );
        if needs_broker && o.bootstrap.is_none() && !o.spawn_broker && o.spawn_peer.is_none() {
            bail!("give --bootstrap HOST:PORT, --spawn-broker or --spawn-peer kafka");
        }
        if o.spawn_broker && o.spawn_peer.is_some() {
            bail!(
                "--spawn-broker and --spawn-peer exclude each other: run them one after the other"
            );
        }
        Ok(o)
    }
}
