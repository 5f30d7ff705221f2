//! Produce and consume runs with librdkafka as the client.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::broker::SpawnedBroker;
use crate::latency::{Pacer, Samples, SAMPLE_EVERY};
use crate::limits::{file_to_socket_limits, loopback_bytes_per_sec, process_cpu_seconds};
use crate::options::Options;

/// Times sampled records from send to delivery report (opaque: send time in µs + 1).
struct LatencyContext {
    start: Instant,
    samples: Samples,
}

impl ClientContext for LatencyContext {}

impl ProducerContext for LatencyContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_plus_one: usize) {
        if sent_plus_one > 0 && result.is_ok() {
            let now = self.start.elapsed().as_micros() as u64;
            self.samples
                .push(now.saturating_sub(sent_plus_one as u64 - 1));
        }
    }
}

/// Applies `--property` settings after the workload's own, so they win.
fn with_properties<'a>(config: &'a mut ClientConfig, o: &Options) -> &'a mut ClientConfig {
    for (k, v) in &o.properties {
        config.set(k, v);
    }
    config
}

fn produce(bootstrap: &str, o: &Options, samples: &Samples) -> Result<(f64, f64)> {
    let start = Instant::now();
    let context = LatencyContext {
        start,
        samples: samples.clone(),
    };
    let p: BaseProducer<LatencyContext> = with_properties(
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("acks", &o.acks)
            .set("compression.type", &o.compression)
            .set("linger.ms", o.linger_ms.to_string())
            .set("batch.size", o.batch_size.to_string())
            .set("queue.buffering.max.messages", "2000000")
            .set("queue.buffering.max.kbytes", "2097151"),
        o,
    )
    .create_with_context(context)?;
    let value = vec![b'x'; o.record_size];
    let pacer = Pacer::new(o.rate);
    for n in 0..o.records {
        if let Some(wait) = pacer.delay(n) {
            std::thread::sleep(wait);
        }
        if n.is_multiple_of(1024) {
            p.poll(Duration::ZERO);
        }
        let opaque = if n.is_multiple_of(SAMPLE_EVERY) {
            start.elapsed().as_micros() as usize + 1
        } else {
            0
        };
        loop {
            match p.send(
                BaseRecord::<(), [u8], usize>::with_opaque_to(&o.topic, opaque)
                    .partition(0)
                    .payload(&value),
            ) {
                Ok(()) => break,
                Err((e, _))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    p.poll(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e).context("produce"),
            }
        }
    }
    p.flush(Duration::from_secs(120)).context("flush")?;
    let secs = start.elapsed().as_secs_f64();
    Ok((
        o.records as f64 / secs,
        (o.records * o.record_size as u64) as f64 / secs,
    ))
}

fn consume(bootstrap: &str, o: &Options) -> Result<(f64, f64)> {
    let c: BaseConsumer = with_properties(
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "fjord-bench")
            .set("enable.auto.commit", "false")
            .set("fetch.max.bytes", "52428800")
            .set("max.partition.fetch.bytes", "10485760")
            .set("queued.max.messages.kbytes", "1048576")
            // librdkafka pauses fetching for fetch.queue.backoff.ms (1 s) once its queue
            // holds queued.min.messages: with 100-byte records that idles the consumer.
            .set("queued.min.messages", "5000000")
            .set("fetch.queue.backoff.ms", "1"),
        o,
    )
    .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&o.topic, 0, Offset::Beginning)?;
    c.assign(&tpl)?;
    let start = Instant::now();
    let (mut n, mut bytes) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(300);
    while n < o.records && Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.context("consume")?;
            n += 1;
            bytes += m.payload().map_or(0, <[u8]>::len) as u64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((n as f64 / secs, bytes as f64 / secs))
}

pub(crate) fn run(o: &Options) -> Result<()> {
    let spawned = if o.spawn_broker {
        Some(SpawnedBroker::start(&o.broker_settings)?)
    } else {
        None
    };
    let bootstrap = spawned
        .as_ref()
        .map(|b| b.bootstrap.clone())
        .or_else(|| o.bootstrap.clone())
        .context("bootstrap")?;
    let loopback = loopback_bytes_per_sec(2 << 30)?;
    let broker_cpu0 = spawned.as_ref().map_or(0.0, SpawnedBroker::cpu_seconds);
    let me = std::process::id();
    let (rps, bps, what) = if o.command == "produce" {
        let cpu0 = process_cpu_seconds(me);
        let samples = Samples::default();
        let (rps, bps) = if o.client == "fjord" {
            crate::fjord_client::produce(&bootstrap, o, &samples)?
        } else {
            produce(&bootstrap, o, &samples)?
        };
        println!("{}", samples.summary());
        println!("client CPU: {:.1} s", process_cpu_seconds(me) - cpu0);
        (rps, bps, "produce")
    } else {
        if o.spawn_broker {
            produce(&bootstrap, o, &Samples::default())?;
        }
        let cpu0 = process_cpu_seconds(me);
        let (rps, bps) = if o.client == "fjord" {
            crate::fjord_client::consume(&bootstrap, o)?
        } else {
            consume(&bootstrap, o)?
        };
        println!("client CPU: {:.1} s", process_cpu_seconds(me) - cpu0);
        (rps, bps, "consume")
    };
    if let Some(b) = &spawned {
        println!("broker CPU: {:.1} s", b.cpu_seconds() - broker_cpu0);
    }
    if what == "consume" {
        let (sendfile, copy) = file_to_socket_limits()?;
        println!(
            "file to loopback socket: sendfile {:.0} MB/s (ratio {:.3}), pread+write {:.0} MB/s (ratio {:.3})",
            sendfile / 1e6,
            bps / sendfile,
            copy / 1e6,
            bps / copy
        );
    }
    println!(
        "{what} ({}): {} records of {} B, acks={}, compression={}: {:.0} records/s, {:.1} MB/s; loopback TCP {:.0} MB/s; ratio to loopback {:.3}",
        o.client,
        o.records,
        o.record_size,
        o.acks,
        o.compression,
        rps,
        bps / 1e6,
        loopback / 1e6,
        bps / loopback
    );
    Ok(())
}
