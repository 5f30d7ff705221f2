//! A consumer in a group that commits by hand: it prints each record, commits the
//! positions after every 100 records (and on the way out), and leaves the group
//! cleanly on Ctrl-C, so its partitions move to the other members at once.
//!
//! ```sh
//! cargo run --release --bin fjord &            # a broker on 127.0.0.1:9092
//! cargo run -p fjord-examples --example produce -- greetings
//! cargo run -p fjord-examples --example consume_group -- greetings printers
//! ```
//!
//! `BOOTSTRAP_SERVERS` picks the broker; `MAX_MESSAGES=N` stops after N records.

use fjord_consumer::Consumer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "greetings".into());
    let group = args.next().unwrap_or_else(|| "printers".into());
    let bootstrap = std::env::var("BOOTSTRAP_SERVERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let max: Option<u64> = std::env::var("MAX_MESSAGES")
        .ok()
        .map(|n| n.parse())
        .transpose()?;
    let mut consumer = Consumer::builder()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        // Commit only what was processed: a crash re-delivers, it never skips.
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .build()?;
    consumer.subscribe(&[topic.as_str()])?;
    let mut seen = 0u64;
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    while max.is_none_or(|m| seen < m) {
        let record = tokio::select! {
            _ = &mut stop => break,
            record = consumer.recv() => record?,
        };
        let value = record.value.as_deref().map(String::from_utf8_lossy);
        println!(
            "{}-{} @ {}: {}",
            record.topic,
            record.partition,
            record.offset,
            value.unwrap_or_default()
        );
        seen += 1;
        if seen.is_multiple_of(100) {
            consumer.commit().await?;
        }
    }
    // The positions of everything printed, then leave the group.
    consumer.commit().await?;
    consumer.close().await?;
    eprintln!("{seen} records, committed");
    Ok(())
}
