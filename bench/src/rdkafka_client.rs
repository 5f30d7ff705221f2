//! The workloads with librdkafka (the rdkafka crate) as the client.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::latency::{Pacer, Samples, SAMPLE_EVERY};
use crate::options::Options;
use crate::progress::Progress;
use crate::workload::{e2e_value, sent_micros, Outcome, WARM_UP};

/// Applies `--property` settings after the workload's own, so they win.
fn with_properties<'a>(config: &'a mut ClientConfig, o: &Options) -> &'a mut ClientConfig {
    for (k, v) in &o.properties {
        config.set(k, v);
    }
    config
}

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

fn producer(
    bootstrap: &str,
    o: &Options,
    samples: &Samples,
    start: Instant,
) -> Result<BaseProducer<LatencyContext>> {
    let context = LatencyContext {
        start,
        samples: samples.clone(),
    };
    Ok(with_properties(
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("acks", &o.acks)
            .set("compression.type", &o.compression)
            .set("linger.ms", o.linger_ms.to_string())
            .set("batch.size", o.batch_size.to_string())
            .set("queue.buffering.max.messages", "2000000")
            .set("queue.buffering.max.kbytes", "2097151")
            .set(
                "message.max.bytes",
                (o.record_size + (64 << 10)).max(1_000_000).to_string(),
            ),
        o,
    )
    .create_with_context(context)?)
}

/// Sends one record, waiting out a full queue.
fn send(
    p: &BaseProducer<LatencyContext>,
    topic: &str,
    partition: Option<i32>,
    value: &[u8],
    opaque: usize,
) -> Result<()> {
    loop {
        let mut record =
            BaseRecord::<(), [u8], usize>::with_opaque_to(topic, opaque).payload(value);
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        match p.send(record) {
            Ok(()) => return Ok(()),
            Err((e, _))
                if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
            {
                p.poll(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e).context("produce"),
        }
    }
}

pub(crate) fn produce(
    bootstrap: &str,
    o: &Options,
    value: &[u8],
    samples: &Samples,
    progress: &Progress,
) -> Result<Outcome> {
    let start = Instant::now();
    let p = producer(bootstrap, o, samples, start)?;
    let pacer = Pacer::new(o.rate);
    for n in 0..o.records {
        if let Some(wait) = pacer.delay(n) {
            std::thread::sleep(wait);
        }
        if n.is_multiple_of(1024) {
            p.poll(Duration::ZERO);
            progress.add(if n == 0 { 0 } else { 1024 });
        }
        let opaque = if n.is_multiple_of(SAMPLE_EVERY) {
            start.elapsed().as_micros() as usize + 1
        } else {
            0
        };
        send(&p, &o.topic, o.partition_of(n), value, opaque)?;
    }
    p.flush(Duration::from_secs(300)).context("flush")?;
    Ok(Outcome::new(o.records, value.len(), start.elapsed()))
}

fn consumer(bootstrap: &str, o: &Options) -> Result<BaseConsumer> {
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
            .set("fetch.queue.backoff.ms", "1")
            .set("fetch.wait.max.ms", "10"),
        o,
    )
    .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..o.partitions {
        tpl.add_partition_offset(&o.topic, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    Ok(c)
}

pub(crate) fn consume(bootstrap: &str, o: &Options, progress: &Progress) -> Result<Outcome> {
    let c = consumer(bootstrap, o)?;
    let start = Instant::now();
    let (mut n, mut bytes) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(600);
    while n < o.records {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {n} of {} records",
            o.records
        );
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.context("consume")?;
            n += 1;
            bytes += m.payload().map_or(0, <[u8]>::len) as u64;
            if n.is_multiple_of(1024) {
                progress.add(1024);
            }
        }
    }
    let mut out = Outcome::new(n, 0, start.elapsed());
    out.bytes = bytes;
    Ok(out)
}

/// Produce at `--rate` in one thread, consume in another, time each record from its
/// send to its receipt.
pub(crate) fn e2e(
    bootstrap: &str,
    o: &Options,
    samples: &Samples,
    progress: &Progress,
) -> Result<Outcome> {
    let start = Instant::now();
    let c = consumer(bootstrap, o)?;
    let warmed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (samples, records) = (samples.clone(), o.records + 1);
        let warmed = std::sync::Arc::clone(&warmed);
        std::thread::spawn(move || -> Result<()> {
            let mut n = 0u64;
            let deadline = Instant::now() + Duration::from_secs(600);
            while n < records {
                if n == 1 {
                    warmed.store(true, std::sync::atomic::Ordering::Release);
                }
                anyhow::ensure!(Instant::now() < deadline, "only {n} of {records} records");
                if let Some(m) = c.poll(Duration::from_millis(100)) {
                    let m = m.context("consume")?;
                    if let Some(sent) = m.payload().and_then(sent_micros) {
                        let now = start.elapsed().as_micros() as u64;
                        samples.push(now.saturating_sub(sent));
                    }
                    n += 1;
                }
            }
            Ok(())
        })
    };
    let p = producer(bootstrap, o, &Samples::default(), start)?;
    let mut value = vec![b'x'; o.record_size.max(8)];
    e2e_value(&mut value, WARM_UP);
    send(&p, &o.topic, Some(0), &value, 0)?;
    let ready = Instant::now() + Duration::from_secs(60);
    while !warmed.load(std::sync::atomic::Ordering::Acquire) {
        anyhow::ensure!(Instant::now() < ready, "the warm-up record never arrived");
        p.poll(Duration::from_millis(1));
    }
    let pacer = Pacer::new(o.rate);
    for n in 0..o.records {
        if let Some(wait) = pacer.delay(n) {
            std::thread::sleep(wait);
        }
        if n.is_multiple_of(256) {
            p.poll(Duration::ZERO);
            progress.add(if n == 0 { 0 } else { 256 });
        }
        e2e_value(&mut value, start.elapsed().as_micros() as u64);
        send(&p, &o.topic, o.partition_of(n), &value, 0)?;
    }
    p.flush(Duration::from_secs(300)).context("flush")?;
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("consumer thread panicked"))??;
    Ok(Outcome::new(o.records, value.len(), start.elapsed()))
}
