//! The consumer as a `futures::Stream` of records, the shape rust-rdkafka's
//! `StreamConsumer` users know: stream combinators filter, map and batch the records,
//! and the stream stops on Ctrl-C. Offsets are committed automatically (every 5 s and
//! on close), the Kafka default.
//!
//! ```sh
//! cargo run --release --bin fjord &            # a broker on 127.0.0.1:9092
//! cargo run -p fjord-examples --example produce -- greetings
//! cargo run -p fjord-examples --example consume_stream -- greetings
//! ```
//!
//! `BOOTSTRAP_SERVERS` picks the broker; `MAX_MESSAGES=N` stops after N records.

use fjord_consumer::Consumer;
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let topic = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "greetings".into());
    let bootstrap = std::env::var("BOOTSTRAP_SERVERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let max: usize = match std::env::var("MAX_MESSAGES") {
        Ok(n) => n.parse()?,
        Err(_) => usize::MAX,
    };
    let mut consumer = Consumer::builder()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "stream-example")
        .set("auto.offset.reset", "earliest")
        .build()?;
    consumer.subscribe(&[topic.as_str()])?;
    {
        let stop = Box::pin(tokio::signal::ctrl_c());
        // Each item is a Result: a corrupt batch or a lost broker is an error to see.
        let mut lines = (&mut consumer)
            .take_until(stop)
            .take(max)
            .map(|record| {
                record.map(|r| {
                    let value = r.value.as_deref().map(String::from_utf8_lossy);
                    format!(
                        "{}-{} @ {}: {}",
                        r.topic,
                        r.partition,
                        r.offset,
                        value.unwrap_or_default()
                    )
                })
            })
            .ready_chunks(64);
        while let Some(batch) = lines.next().await {
            for line in batch {
                println!("{}", line?);
            }
        }
    }
    consumer.close().await?;
    Ok(())
}
