//! A keyed producer that awaits every delivery report with a bound on records in
//! flight, and shuts down cleanly on Ctrl-C: it stops taking input, waits for what is
//! in flight, and closes (which flushes). Records with the same key go to the same
//! partition, in order.
//!
//! ```sh
//! cargo run --release --bin fjord &            # a broker on 127.0.0.1:9092
//! printf 'alice 1\nbob 2\nalice 3\n' | cargo run -p fjord-examples --example keyed_produce -- scores
//! ```
//!
//! Each input line is `KEY VALUE`. `BOOTSTRAP_SERVERS` picks the broker.

use std::sync::Arc;

use fjord_producer::{Producer, ProducerRecord};
use tokio::io::AsyncBufReadExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Records sent but not yet acknowledged, at most: past it, reading input waits.
const IN_FLIGHT: usize = 1000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let topic = std::env::args().nth(1).unwrap_or_else(|| "scores".into());
    let bootstrap = std::env::var("BOOTSTRAP_SERVERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let producer = Producer::builder()
        .set("bootstrap.servers", &bootstrap)
        // The defaults, spelled out: idempotent, acknowledged once on disk.
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .build()?;
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut reports = JoinSet::new();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        let line = tokio::select! {
            _ = &mut stop => break,
            line = lines.next_line() => match line? { Some(l) => l, None => break },
        };
        let Some((key, value)) = line.split_once(' ') else {
            eprintln!("skipping '{line}': expected KEY VALUE");
            continue;
        };
        let slot = Arc::clone(&slots).acquire_owned().await?;
        let record = ProducerRecord::new(topic.as_str(), value.to_string()).key(key.to_string());
        let delivery = producer.send(record).await?;
        let key = key.to_string();
        reports.spawn(async move {
            let outcome = delivery.await;
            drop(slot);
            (key, outcome)
        });
        while let Some(done) = reports.try_join_next() {
            report(done?);
        }
    }
    while let Some(done) = reports.join_next().await {
        report(done?);
    }
    producer.close().await;
    Ok(())
}

fn report<E: std::fmt::Display>(
    (key, outcome): (String, Result<fjord_producer::RecordMetadata, E>),
) {
    match outcome {
        Ok(m) => println!("{key} -> {}-{} @ {}", m.topic, m.partition, m.offset),
        Err(e) => eprintln!("{key}: not delivered: {e}"),
    }
}
