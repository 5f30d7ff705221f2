//! `fjord produce` and `fjord consume`: the console producer and consumer, on Fjord's own
//! clients.

use std::io::{BufRead, Write};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use fjord_client_common::{ClusterMetadata, Connection};
use fjord_consumer::{Consumer, ConsumerRecord, TopicPartition};
use fjord_producer::{Producer, ProducerRecord};

use super::{key_value, ConsumeArgs, ProduceArgs};

pub(crate) async fn produce(args: ProduceArgs) -> Result<()> {
    let mut builder = Producer::builder().set("bootstrap.servers", &args.connect.bootstrap_server);
    for p in &args.properties {
        let (k, v) = key_value(p)?;
        builder = builder.set(&k, v);
    }
    if let Some(codec) = &args.compression {
        builder = builder.set("compression.type", codec);
    }
    let producer = builder.build()?;
    let headers: Vec<(String, Option<Bytes>)> = args
        .headers
        .iter()
        .map(|h| key_value(h).map(|(k, v)| (k, Some(Bytes::from(v)))))
        .collect::<Result<_>>()?;
    let input: Box<dyn BufRead> = match &args.file {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    let topic: std::sync::Arc<str> = args.topic.as_str().into();
    let mut deliveries = Vec::new();
    for line in input.lines() {
        let line = line.context("read input")?;
        let (key, value) = match &args.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(Bytes::from(k.to_string())), v.to_string()),
                None => (None, line),
            },
            None => (None, line),
        };
        let mut record = ProducerRecord::new(std::sync::Arc::clone(&topic), value);
        record.key = key;
        record.headers.clone_from(&headers);
        deliveries.push(producer.send(record).await?);
    }
    let mut failed = 0;
    for d in deliveries {
        if let Err(e) = d.await {
            eprintln!("not delivered: {e}");
            failed += 1;
        }
    }
    producer.close().await;
    anyhow::ensure!(failed == 0, "{failed} records were not delivered");
    Ok(())
}

fn text(b: Option<&Bytes>) -> String {
    b.map_or_else(
        || "null".to_string(),
        |b| String::from_utf8_lossy(b).into_owned(),
    )
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One record as `format` asks.
fn render(r: &ConsumerRecord, format: &str) -> String {
    let headers = r
        .headers
        .iter()
        .map(|(k, v)| format!("{k}={}", text(v.as_ref())))
        .collect::<Vec<_>>()
        .join(",");
    match format {
        "value" => text(r.value.as_ref()),
        "kv" => format!("{}\t{}", text(r.key.as_ref()), text(r.value.as_ref())),
        "json" => {
            let key = r.key.as_ref().map_or("null".to_string(), |k| {
                json_string(&String::from_utf8_lossy(k))
            });
            let value = r.value.as_ref().map_or("null".to_string(), |v| {
                json_string(&String::from_utf8_lossy(v))
            });
            let hs = r
                .headers
                .iter()
                .map(|(k, v)| {
                    let v = v.as_ref().map_or("null".to_string(), |v| {
                        json_string(&String::from_utf8_lossy(v))
                    });
                    format!("{}:{v}", json_string(k))
                })
                .collect::<Vec<_>>()
                .join(",");
            format!(
                "{{\"topic\":{},\"partition\":{},\"offset\":{},\"timestamp\":{},\"key\":{key},\"value\":{value},\"headers\":{{{hs}}}}}",
                json_string(&r.topic),
                r.partition,
                r.offset,
                r.timestamp
            )
        }
        custom => custom
            .replace("\\n", "\n")
            .replace("\\t", "\t")
            .replace("%t", &r.topic)
            .replace("%p", &r.partition.to_string())
            .replace("%o", &r.offset.to_string())
            .replace("%T", &r.timestamp.to_string())
            .replace("%k", &text(r.key.as_ref()))
            .replace("%h", &headers)
            .replace("%s", &text(r.value.as_ref())),
    }
}

/// The first offset at or after `timestamp` in each partition (the log end where none is).
async fn offsets_for_time(
    conn: &Connection,
    topic: &str,
    partitions: &[TopicPartition],
    timestamp: i64,
) -> Result<Vec<(TopicPartition, i64)>> {
    let tps: Vec<(String, i32)> = partitions
        .iter()
        .map(|tp| (topic.to_string(), tp.partition))
        .collect();
    let at = super::offsets_at(conn, &tps, timestamp).await?;
    let ends = super::offsets_at(conn, &tps, -1).await?;
    Ok(tps
        .iter()
        .filter_map(|tp| {
            let offset = at
                .get(tp)
                .copied()
                .filter(|o| *o >= 0)
                .or_else(|| ends.get(tp).copied())?;
            Some((TopicPartition::new(topic, tp.1), offset))
        })
        .collect())
}

pub(crate) async fn consume(args: ConsumeArgs) -> Result<()> {
    let reset = if args.from_beginning {
        "earliest"
    } else {
        "latest"
    };
    let mut builder = Consumer::builder()
        .set("bootstrap.servers", &args.connect.bootstrap_server)
        .set("auto.offset.reset", reset)
        .set("fetch.max.wait.ms", "100");
    if let Some(g) = &args.group {
        builder = builder.set("group.id", g).set("enable.auto.commit", "true");
    }
    for p in &args.properties {
        let (k, v) = key_value(p)?;
        builder = builder.set(&k, v);
    }
    let mut consumer = builder.build()?;
    if args.group.is_some() {
        consumer.subscribe(&[args.topic.as_str()])?;
    } else {
        let conn = super::connect(&args.connect.bootstrap_server).await?;
        let md =
            ClusterMetadata::fetch(&conn, Some(std::slice::from_ref(&args.topic)), false).await?;
        let t = md
            .topics
            .get(&args.topic)
            .filter(|t| t.error == 0)
            .with_context(|| format!("no topic {}", args.topic))?;
        let partitions: Vec<TopicPartition> = t
            .partitions
            .iter()
            .map(|p| TopicPartition::new(args.topic.as_str(), p.partition))
            .collect();
        consumer.assign(&partitions).await?;
        if let Some(offset) = args.offset {
            for tp in &partitions {
                consumer.seek(tp, offset)?;
            }
        }
        if let Some(ts) = args.timestamp {
            for (tp, offset) in offsets_for_time(&conn, &args.topic, &partitions, ts).await? {
                consumer.seek(&tp, offset)?;
            }
        }
    }
    let idle = args.timeout_ms.map(Duration::from_millis);
    let mut out = std::io::stdout().lock();
    let mut n = 0u64;
    while args.max_messages.is_none_or(|max| n < max) {
        let next = match idle {
            Some(t) => match tokio::time::timeout(t, consumer.recv()).await {
                Ok(r) => r,
                Err(_) => break,
            },
            None => consumer.recv().await,
        };
        let record = next?;
        match args.format.as_str() {
            // Named formats are one line per record; custom ones say where lines end.
            "value" | "kv" | "json" => writeln!(out, "{}", render(&record, &args.format))?,
            _ => write!(out, "{}", render(&record, &args.format))?,
        }
        n += 1;
    }
    out.flush()?;
    drop(out);
    consumer.close().await?;
    Ok(())
}
