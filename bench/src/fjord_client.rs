//! The workloads with Fjord's own clients (`--client fjord`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use fjord_consumer::{Consumer, TopicPartition};
use fjord_producer::{Producer, ProducerRecord};

use crate::latency::{Pacer, Samples, SAMPLE_EVERY};
use crate::options::Options;
use crate::progress::Progress;
use crate::workload::{e2e_value, sent_micros, Outcome, WARM_UP};

/// Delivery futures kept before awaiting the oldest: bounds the bench's own memory.
pub(crate) const WINDOW: usize = 200_000;

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

pub(crate) fn producer(bootstrap: &str, o: &Options) -> Result<Producer> {
    let mut builder = Producer::builder()
        .set("bootstrap.servers", bootstrap)
        .set("acks", &o.acks)
        .set("compression.type", &o.compression)
        .set("linger.ms", o.linger_ms.to_string())
        .set("batch.size", o.batch_size.to_string())
        .set(
            "buffer.memory",
            (256usize << 20).max(o.record_size * 4).to_string(),
        )
        .set(
            "max.request.size",
            (o.record_size + 4096).max(1 << 20).to_string(),
        )
        .set(
            "enable.idempotence",
            if o.acks == "all" { "true" } else { "false" },
        );
    for (k, v) in &o.properties {
        builder = builder.set(k, v);
    }
    builder.build().context("fjord producer")
}

fn record(topic: &Arc<str>, partition: Option<i32>, value: Bytes) -> ProducerRecord {
    ProducerRecord {
        topic: Arc::clone(topic),
        partition,
        key: None,
        value: Some(value),
        headers: Vec::new(),
        timestamp: None,
    }
}

pub(crate) fn produce(
    bootstrap: &str,
    o: &Options,
    value: &[u8],
    samples: &Samples,
    progress: &Progress,
) -> Result<Outcome> {
    if o.transactional {
        return produce_transactional(bootstrap, o, value, progress);
    }
    runtime()?.block_on(async {
        let producer = producer(bootstrap, o)?;
        let value = Bytes::copy_from_slice(value);
        let topic: Arc<str> = o.topic.as_str().into();
        let mut pending = VecDeque::with_capacity(WINDOW);
        let start = Instant::now();
        let pacer = Pacer::new(o.rate);
        for n in 0..o.records {
            if let Some(wait) = pacer.delay(n) {
                tokio::time::sleep(wait).await;
            }
            if n.is_multiple_of(1024) && n > 0 {
                progress.add(1024);
            }
            let partition = o.partition_of(n);
            let sampled = n.is_multiple_of(SAMPLE_EVERY);
            // Only sampled records are timed: reading the clock is not free.
            let sent = sampled.then(Instant::now);
            let delivery = producer
                .send(record(&topic, partition, value.clone()))
                .await
                .context("send")?;
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
        let elapsed = start.elapsed();
        producer.close().await;
        Ok(Outcome::new(o.records, value.len(), elapsed))
    })
}

/// `produce --transactional`: the records in transactions of `--transaction-ms` each
/// (the last one shorter). The commit reports a failed record, so no delivery is
/// awaited on its own; the time includes the last commit. Latency is not sampled: a
/// record's delivery waits for nothing the transaction adds.
fn produce_transactional(
    bootstrap: &str,
    o: &Options,
    value: &[u8],
    progress: &Progress,
) -> Result<Outcome> {
    runtime()?.block_on(async {
        let mut settings = o.clone();
        let id = format!("fjord-bench-{}-{}", std::process::id(), o.topic);
        settings
            .properties
            .insert(0, ("transactional.id".into(), id));
        let producer = producer(bootstrap, &settings)?;
        producer
            .init_transactions()
            .await
            .context("init_transactions")?;
        let value = Bytes::copy_from_slice(value);
        let topic: Arc<str> = o.topic.as_str().into();
        let every = Duration::from_millis(o.transaction_ms);
        let pacer = Pacer::new(o.rate);
        let start = Instant::now();
        let mut began = Instant::now();
        let (mut commits, mut committing) = (0u32, Duration::ZERO);
        producer.begin_transaction().context("begin")?;
        for n in 0..o.records {
            if let Some(wait) = pacer.delay(n) {
                tokio::time::sleep(wait).await;
            }
            if n.is_multiple_of(1024) && n > 0 {
                progress.add(1024);
                if began.elapsed() >= every {
                    let at = Instant::now();
                    producer.commit_transaction().await.context("commit")?;
                    (commits, committing) = (commits + 1, committing + at.elapsed());
                    began = Instant::now();
                    producer.begin_transaction().context("begin")?;
                }
            }
            let record = record(&topic, o.partition_of(n), value.clone());
            let _reported_by_commit = producer.send(record).await.context("send")?;
        }
        producer.commit_transaction().await.context("last commit")?;
        let elapsed = start.elapsed();
        if commits > 0 {
            eprintln!(
                "{commits} commits, {:.1} ms each on average: {:.0}% of the run",
                committing.as_secs_f64() * 1e3 / f64::from(commits),
                committing.as_secs_f64() * 100.0 / elapsed.as_secs_f64()
            );
        }
        producer.close().await;
        Ok(Outcome::new(o.records, value.len(), elapsed))
    })
}

async fn consumer(bootstrap: &str, o: &Options) -> Result<Consumer> {
    let mut builder = Consumer::builder()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "fjord-bench")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .set("fetch.max.wait.ms", "10");
    for (k, v) in &o.properties {
        builder = builder.set(k, v);
    }
    let mut consumer = builder.build().context("fjord consumer")?;
    let partitions: Vec<TopicPartition> = (0..o.partitions)
        .map(|p| TopicPartition::new(o.topic.as_str(), p))
        .collect();
    consumer.assign(&partitions).await.context("assign")?;
    Ok(consumer)
}

pub(crate) fn consume(bootstrap: &str, o: &Options, progress: &Progress) -> Result<Outcome> {
    runtime()?.block_on(async {
        let mut consumer = consumer(bootstrap, o).await?;
        let start = Instant::now();
        let (mut n, mut bytes) = (0u64, 0u64);
        while n < o.records {
            let record = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
                .await
                .context("no record for 30 s")?
                .context("recv")?;
            n += 1;
            bytes += record.value.as_ref().map_or(0, |v| v.len() as u64);
            if n.is_multiple_of(1024) {
                progress.add(1024);
            }
        }
        let mut out = Outcome::new(n, 0, start.elapsed());
        out.bytes = bytes;
        consumer.close().await.ok();
        Ok(out)
    })
}

/// Produce at `--rate` while a consumer task reads; each record carries its send time.
pub(crate) fn e2e(
    bootstrap: &str,
    o: &Options,
    samples: &Samples,
    progress: &Progress,
) -> Result<Outcome> {
    runtime()?.block_on(async {
        let start = Instant::now();
        let mut consumer = consumer(bootstrap, o).await?;
        let records = o.records + 1; // and the warm-up record
        let reader_samples = samples.clone();
        let warmed = Arc::new(tokio::sync::Notify::new());
        let warmed_reader = Arc::clone(&warmed);
        let reader = tokio::spawn(async move {
            let mut n = 0u64;
            while n < records {
                if n == 1 {
                    warmed_reader.notify_one();
                }
                let r = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
                    .await
                    .context("no record for 30 s")?
                    .context("recv")?;
                if let Some(sent) = r.value.as_deref().and_then(sent_micros) {
                    let now = start.elapsed().as_micros() as u64;
                    reader_samples.push(now.saturating_sub(sent));
                }
                n += 1;
            }
            consumer.close().await.ok();
            anyhow::Ok(())
        });
        let producer = producer(bootstrap, o)?;
        let topic: Arc<str> = o.topic.as_str().into();
        let mut value = vec![b'x'; o.record_size.max(8)];
        e2e_value(&mut value, WARM_UP);
        producer
            .send(record(&topic, Some(0), Bytes::copy_from_slice(&value)))
            .await
            .context("send")?
            .await
            .context("warm-up delivery")?;
        tokio::time::timeout(Duration::from_secs(60), warmed.notified())
            .await
            .context("the warm-up record never arrived")?;
        let pacer = Pacer::new(o.rate);
        let mut pending = VecDeque::new();
        for n in 0..o.records {
            if let Some(wait) = pacer.delay(n) {
                tokio::time::sleep(wait).await;
            }
            if n.is_multiple_of(256) && n > 0 {
                progress.add(256);
            }
            e2e_value(&mut value, start.elapsed().as_micros() as u64);
            let partition = o.partition_of(n);
            let d = producer
                .send(record(&topic, partition, Bytes::copy_from_slice(&value)))
                .await
                .context("send")?;
            pending.push_back(d);
            if pending.len() >= WINDOW {
                if let Some(d) = pending.pop_front() {
                    d.await.context("delivery")?;
                }
            }
        }
        for d in pending {
            d.await.context("delivery")?;
        }
        reader.await.context("consumer task")??;
        let elapsed = start.elapsed();
        producer.close().await;
        Ok(Outcome::new(o.records, value.len(), elapsed))
    })
}
