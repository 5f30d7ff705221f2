//! `--flood`: a hostile client beside the measured workload. On its own connection it
//! sends, back to back, Produce requests naming 1,000 topics that do not exist and
//! Metadata requests asking to auto-create 1,000 more, until the workload ends. Compare
//! a run's latency with and without it: a broker that creates topics on the request
//! path, or lets one client's creations hold others up, shows it here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Result;
use bytes::Bytes;
use fjord_client_common::connection::ConnectionOptions;
use fjord_client_common::Connection;
use fjord_protocol::compression::Compression;
use fjord_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use fjord_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use fjord_protocol::kafka_protocol::messages::{MetadataRequest, ProduceRequest, TopicName};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::record_batch::{BatchBuilder, RecordSpec};

/// Names per request.
const NAMES: usize = 1000;

/// A running flood.
#[derive(Debug)]
pub(crate) struct Flood {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<u64>>,
}

fn names(round: u64, kind: &str) -> Vec<TopicName> {
    (0..NAMES)
        .map(|i| {
            TopicName(StrBytes::from_string(format!(
                "flood-{}-{kind}-{round}-{i}",
                std::process::id()
            )))
        })
        .collect()
}

fn produce_request(round: u64, records: &Bytes) -> ProduceRequest {
    let mut req = ProduceRequest::default();
    req.acks = 1;
    req.timeout_ms = 5000;
    req.topic_data = names(round, "p")
        .into_iter()
        .map(|name| {
            let mut p = PartitionProduceData::default();
            p.records = Some(records.clone());
            let mut t = TopicProduceData::default();
            t.name = name;
            t.partition_data = vec![p];
            t
        })
        .collect();
    req
}

fn metadata_request(round: u64) -> MetadataRequest {
    let mut req = MetadataRequest::default();
    req.allow_auto_topic_creation = true;
    req.topics = Some(
        names(round, "m")
            .into_iter()
            .map(|name| {
                let mut t = MetadataRequestTopic::default();
                t.name = Some(name);
                t
            })
            .collect(),
    );
    req
}

impl Flood {
    /// Starts flooding `bootstrap`, on a connection (and a runtime) of its own.
    pub(crate) fn start(bootstrap: &str) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let options = ConnectionOptions {
            client_id: "fjord-bench-flood".into(),
            ..ConnectionOptions::default()
        };
        let conn = runtime.block_on(Connection::connect(bootstrap, options))?;
        let mut batch = BatchBuilder::new(Compression::None, 1_000);
        batch.push(RecordSpec::value("flood"));
        let records = Bytes::from(batch.build()?);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let mut round = 0u64;
                while !stopping.load(Ordering::Relaxed) {
                    conn.request(&produce_request(round, &records), 7).await?;
                    conn.request(&metadata_request(round), 8).await?;
                    round += 1;
                }
                Ok(round * 2)
            })
        });
        Ok(Self { stop, thread })
    }

    /// Stops the flood; the requests it sent.
    pub(crate) fn stop(self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("flood thread panicked"))?
    }
}
