//! Runs `produce`, `consume` and `e2e` against a broker (spawned or given), with either
//! client, next to the machine limit that applies, and reports.

use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::broker::Broker;
use crate::latency::{Percentiles, Samples};
use crate::limits::{
    children_cpu_seconds, file_write_bytes_per_sec, loopback_bytes_per_sec, process_cpu_seconds,
};
use crate::options::Options;
use crate::progress::Progress;
use crate::report::Report;

/// How a workload went.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    pub(crate) records: u64,
    pub(crate) bytes: u64,
    pub(crate) elapsed: Duration,
    /// Latency the client measured itself (the Java tools), instead of the samples.
    pub(crate) latency: Option<Percentiles>,
}

impl Outcome {
    pub(crate) fn new(records: u64, record_size: usize, elapsed: Duration) -> Self {
        Self {
            records,
            bytes: records * record_size as u64,
            elapsed,
            latency: None,
        }
    }

    fn rates(&self) -> (f64, f64) {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        (self.records as f64 / secs, self.bytes as f64 / secs)
    }
}

/// Writes the send time (µs since the run's start) into the first 8 bytes of `value`.
pub(crate) fn e2e_value(value: &mut [u8], micros: u64) {
    if value.len() >= 8 {
        value[..8].copy_from_slice(&micros.to_be_bytes());
    }
}

/// The send time an `e2e` record carries (`None` for the warm-up record).
pub(crate) fn sent_micros(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.get(..8)?.try_into().ok()?)).filter(|t| *t != WARM_UP)
}

/// The send time of the warm-up record e2e sends first and waits for, so the clients'
/// start-up (connections, assignment, first fetch) is not counted as latency.
pub(crate) const WARM_UP: u64 = u64::MAX;

/// A value of `size` bytes that compresses about as well as text (a fixed pseudo-random
/// run of lowercase letters), so codecs are not measured on a run of one byte.
pub(crate) fn payload(size: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..size)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            b'a' + ((x >> 24) % 16) as u8
        })
        .collect()
}

/// Partitions Apache Kafka's KRaft controller creates in one request: an operation may
/// write at most 10,000 metadata records (one per partition, plus the topic's), and more
/// is refused with POLICY_VIOLATION. A larger topic is created at this size and grown.
const KRAFT_PARTITIONS_PER_REQUEST: i32 = 5000;

/// Creates `topic` with `partitions` partitions. An existing one is used as it is if it
/// has that many: with another count, records the client's partitioner places would go
/// where the bench's consumers do not read.
pub(crate) fn ensure_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(120)));
        match create(&admin, &options, topic, partitions).await? {
            Ok(()) => Ok(()),
            Err(RDKafkaErrorCode::PolicyViolation) if partitions > KRAFT_PARTITIONS_PER_REQUEST => {
                create_in_steps(&admin, &options, topic, partitions).await
            }
            Err(RDKafkaErrorCode::TopicAlreadyExists) => {
                let has = partition_count(&admin, topic)?;
                if has != partitions as usize {
                    anyhow::bail!(
                        "topic {topic} exists with {has} partitions, not --partitions {partitions}: delete it or choose another --topic"
                    );
                }
                Ok(())
            }
            Err(e) => anyhow::bail!("create topic {topic}: {e}"),
        }
    })
}

/// One CreateTopics request: the broker's answer for `topic`.
async fn create(
    admin: &AdminClient<DefaultClientContext>,
    options: &AdminOptions,
    topic: &str,
    partitions: i32,
) -> Result<std::result::Result<(), RDKafkaErrorCode>> {
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let result = admin.create_topics(&[new], options).await?;
    Ok(match result.first() {
        Some(Ok(_)) => Ok(()),
        Some(Err((_, code))) => Err(*code),
        None => anyhow::bail!("no answer for {topic}"),
    })
}

/// Creates `topic` with [`KRAFT_PARTITIONS_PER_REQUEST`] partitions and grows it to
/// `partitions` in steps of that size, waiting out a throttle (Fjord's controller
/// mutation quota, KIP-599) between steps.
async fn create_in_steps(
    admin: &AdminClient<DefaultClientContext>,
    options: &AdminOptions,
    topic: &str,
    partitions: i32,
) -> Result<()> {
    if let Err(e) = create(admin, options, topic, KRAFT_PARTITIONS_PER_REQUEST).await? {
        anyhow::bail!("create topic {topic}: {e}");
    }
    let mut has = KRAFT_PARTITIONS_PER_REQUEST;
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while has < partitions {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "grow topic {topic}: still throttled after 300 s at {has} partitions"
        );
        let next = (has + KRAFT_PARTITIONS_PER_REQUEST).min(partitions);
        let grow = NewPartitions::new(topic, next as usize);
        let result = admin.create_partitions(&[grow], options).await?;
        match result.first() {
            Some(Ok(_)) => has = next,
            Some(Err((_, RDKafkaErrorCode::ThrottlingQuotaExceeded))) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Some(Err((_, e))) => anyhow::bail!("grow topic {topic} to {next} partitions: {e}"),
            None => anyhow::bail!("no answer for {topic}"),
        }
    }
    Ok(())
}

fn partition_count(admin: &AdminClient<DefaultClientContext>, topic: &str) -> Result<usize> {
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(30))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len()))
}

/// Deletes `topic` (sweep points clean up after themselves: 10,000 partitions hold
/// thousands of open files on the broker).
pub(crate) fn delete_topic(bootstrap: &str, topic: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        admin.delete_topics(&[topic], &AdminOptions::new()).await?;
        anyhow::Ok(())
    })
}

/// Runs one workload with the client `o.client` names.
pub(crate) fn run_one(
    bootstrap: &str,
    o: &Options,
    samples: &Samples,
    broker: &Broker,
) -> Result<Report> {
    let me = std::process::id();
    let cpu0 = process_cpu_seconds(me) + children_cpu_seconds(me);
    let broker_cpu0 = broker.cpu_seconds();
    let progress = Progress::start(&o.command, o.records, o.record_size, o.json);
    let value = payload(o.record_size);
    let fjord = o.client == "fjord";
    let java = o.client == "java";
    let outcome = match o.command.as_str() {
        _ if java => crate::java_client::run(bootstrap, o)?,
        "produce" if fjord => {
            crate::fjord_client::produce(bootstrap, o, &value, samples, &progress)?
        }
        "produce" => crate::rdkafka_client::produce(bootstrap, o, &value, samples, &progress)?,
        "consume" if fjord => crate::fjord_client::consume(bootstrap, o, &progress)?,
        "consume" => crate::rdkafka_client::consume(bootstrap, o, &progress)?,
        "e2e" if fjord => crate::fjord_client::e2e(bootstrap, o, samples, &progress)?,
        "e2e" => crate::rdkafka_client::e2e(bootstrap, o, samples, &progress)?,
        other => anyhow::bail!("unknown workload {other}"),
    };
    drop(progress);
    let (rps, bps) = outcome.rates();
    Ok(Report {
        command: o.command.clone(),
        client: o.client.clone(),
        records: outcome.records,
        record_size: o.record_size,
        partitions: o.partitions,
        partitioner: o.partitioner.name(),
        compression: o.compression.clone(),
        records_per_sec: rps,
        bytes_per_sec: bps,
        latency: outcome.latency.or_else(|| samples.percentiles()),
        limit: None,
        client_cpu_s: process_cpu_seconds(me) + children_cpu_seconds(me) - cpu0,
        broker: broker.name,
        broker_cpu_s: broker.cpu_seconds().zip(broker_cpu0).map(|(b, b0)| b - b0),
        broker_peak_rss_bytes: broker.peak_rss_bytes(),
    })
}

/// `produce`, `consume` or `e2e`, start to finish.
pub(crate) fn run(o: &Options) -> Result<()> {
    let broker = Broker::for_options(o)?;
    let bootstrap = broker.bootstrap.clone();
    let mut o = o.clone();
    if o.command == "e2e" {
        // A fresh topic: e2e reads from the beginning and must see only its own records.
        o.topic = format!("{}-e2e-{}", o.topic, std::process::id());
    }
    ensure_topic(&bootstrap, &o.topic, o.partitions)?;
    // The limit that bounds the workload, measured now, on the same machine state.
    let limit = match o.command.as_str() {
        // As many bytes as the workload writes (up to 8 GiB): page-cache writes slow down
        // once dirty pages pile up, for the broker and for the limit alike.
        "produce" => {
            let bytes = (o.records * o.record_size as u64).clamp(64 << 20, 8 << 30);
            Some((
                "buffered file write",
                file_write_bytes_per_sec(bytes, false)?,
            ))
        }
        "consume" => {
            let bytes = (o.records * o.record_size as u64).clamp(256 << 20, 2 << 30);
            Some(("loopback TCP", loopback_bytes_per_sec(bytes)?))
        }
        _ => None,
    };
    if o.command == "consume" && (o.spawn_broker || o.spawn_peer.is_some()) {
        run_one(&bootstrap, &loader(&o), &Samples::default(), &broker)
            .context("loading the topic")?;
    }
    let samples = Samples::default();
    let flood = o
        .flood
        .then(|| crate::flood::Flood::start(&bootstrap))
        .transpose()?;
    let mut report = run_one(&bootstrap, &o, &samples, &broker)?;
    if let Some(flood) = flood {
        let sent = flood.stop()?;
        if !o.json {
            eprintln!(
                "flood: {sent} requests naming {} new topics sent meanwhile",
                sent * 1000
            );
        }
    }
    report.limit = limit;
    if o.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// The run that loads the topic for `consume --spawn-broker`: Fjord's producer with the
/// workload's records, and without the `--property` settings, which are the measured
/// consumer's (`check.crcs`, `fetch.max.bytes`, ...) and which a producer would refuse.
fn loader(o: &Options) -> Options {
    let mut load = o.clone();
    load.command = "produce".into();
    load.client = "fjord".into();
    load.json = true;
    load.properties.clear();
    load
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loader_of_a_consume_run_leaves_the_consumer_settings_out() {
        let o = Options {
            command: "consume".into(),
            client: "rdkafka".into(),
            record_size: 1 << 20,
            properties: vec![("check.crcs".into(), "false".into())],
            ..Options::default()
        };
        let load = loader(&o);
        assert_eq!(load.command, "produce");
        assert_eq!(load.client, "fjord");
        assert!(load.properties.is_empty());
        assert_eq!(load.record_size, 1 << 20);
        assert_eq!(load.records, o.records);
    }
}
