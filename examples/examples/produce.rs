//! Sends lines from stdin (or a few greetings) to a topic and prints where each landed.
//!
//! ```sh
//! cargo run --release --bin fjord &            # a broker on 127.0.0.1:9092
//! cargo run -p fjord-examples --example produce -- greetings
//! ```

use std::io::BufRead;

use fjord_producer::{Producer, ProducerRecord};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let topic = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "greetings".into());
    let bootstrap = std::env::var("BOOTSTRAP_SERVERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let producer = Producer::builder()
        .set("bootstrap.servers", &bootstrap)
        .set("compression.type", "lz4")
        .build()?;
    let lines: Vec<String> = if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        vec!["hello".into(), "hej".into(), "hallo".into()]
    } else {
        std::io::stdin().lock().lines().collect::<Result<_, _>>()?
    };
    // Queue everything first (sends pipeline), then wait for the delivery reports.
    let mut deliveries = Vec::new();
    for (i, line) in lines.into_iter().enumerate() {
        let record = ProducerRecord::new(topic.as_str(), line).key(format!("line-{i}"));
        deliveries.push(producer.send(record).await?);
    }
    for delivery in deliveries {
        let written = delivery.await?;
        println!(
            "{}-{} @ offset {}",
            written.topic, written.partition, written.offset
        );
    }
    producer.close().await;
    Ok(())
}
