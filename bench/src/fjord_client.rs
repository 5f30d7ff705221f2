//! The produce workload with Fjord's own producer (`--client fjord`).

use std::collections::VecDeque;
use std::time::Instant;

use anyhow::{Context, Result};
use bytes::Bytes;
use fjord_producer::{Producer, ProducerRecord};

use crate::latency::{Pacer, Samples, SAMPLE_EVERY};
use crate::options::Options;

/// Delivery futures kept before awaiting the oldest: bounds the bench's own memory.
const WINDOW: usize = 200_000;

/// Produces `o.records` records of `o.record_size` bytes to partition 0; returns
/// (records/s, bytes/s).
pub(crate) fn produce(bootstrap: &str, o: &Options, samples: &Samples) -> Result<(f64, f64)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut builder = Producer::builder()
            .set("bootstrap.servers", bootstrap)
            .set("acks", &o.acks)
            .set("compression.type", &o.compression)
            .set("linger.ms", o.linger_ms.to_string())
            .set("batch.size", o.batch_size.to_string())
            .set("buffer.memory", (256usize << 20).to_string())
            .set(
                "enable.idempotence",
                if o.acks == "all" { "true" } else { "false" },
            );
        for (k, v) in &o.properties {
            builder = builder.set(k, v);
        }
        let producer = builder.build().context("fjord producer")?;
        let value = Bytes::from(vec![b'x'; o.record_size]);
        let topic: std::sync::Arc<str> = o.topic.as_str().into();
        let mut pending = VecDeque::with_capacity(WINDOW);
        let start = Instant::now();
        let pacer = Pacer::new(o.rate);
        for n in 0..o.records {
            if let Some(wait) = pacer.delay(n) {
                tokio::time::sleep(wait).await;
            }
            let record = ProducerRecord {
                topic: std::sync::Arc::clone(&topic),
                partition: Some(0),
                key: None,
                value: Some(value.clone()),
                headers: Vec::new(),
                timestamp: None,
            };
            let sampled = n.is_multiple_of(SAMPLE_EVERY);
            // Only sampled records are timed: reading the clock is not free.
            let sent = sampled.then(Instant::now);
            let delivery = producer.send(record).await.context("send")?;
            if let Some(sent) = sent {
                let samples = samples.clone();
                tokio::spawn(async move {
                    if delivery.await.is_ok() {
                        samples.push(sent.elapsed().as_micros() as u64);
                    }
                });
                continue;
            }
            pending.push_back(delivery);
            if pending.len() >= WINDOW {
                if let Some(d) = pending.pop_front() {
                    d.await.context("delivery")?;
                }
            }
        }
        for d in pending {
            d.await.context("delivery")?;
        }
        let secs = start.elapsed().as_secs_f64();
        producer.close().await;
        Ok((
            o.records as f64 / secs,
            (o.records * o.record_size as u64) as f64 / secs,
        ))
    })
}

/// Reads `o.records` records of partition 0 from the start with Fjord's consumer;
/// returns (records/s, bytes/s).
pub(crate) fn consume(bootstrap: &str, o: &Options) -> Result<(f64, f64)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut builder = fjord_consumer::Consumer::builder()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "fjord-bench")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.max.bytes", "52428800")
            .set("max.partition.fetch.bytes", "10485760");
        for (k, v) in &o.properties {
            builder = builder.set(k, v);
        }
        let mut consumer = builder.build().context("fjord consumer")?;
        consumer
            .assign(&[fjord_consumer::TopicPartition::new(o.topic.as_str(), 0)])
            .await
            .context("assign")?;
        let start = Instant::now();
        let (mut n, mut bytes) = (0u64, 0u64);
        while n < o.records {
            let record = tokio::time::timeout(std::time::Duration::from_secs(30), consumer.recv())
                .await
                .context("no record for 30 s")?
                .context("recv")?;
            n += 1;
            bytes += record.value.as_ref().map_or(0, |v| v.len() as u64);
        }
        let secs = start.elapsed().as_secs_f64();
        consumer.close().await.ok();
        Ok((n as f64 / secs, bytes as f64 / secs))
    })
}
