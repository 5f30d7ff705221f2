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
