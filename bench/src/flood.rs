//! `--flood`: a hostile client beside the measured workload. On its own connection it
//! sends, back to back, Produce requests naming 1,000 topics that do not exist and
//! Metadata requests asking to auto-create 1,000 more, until the workload ends. Compare
//! a run's latency with and without it: a broker that creates topics on the request
//! path, or lets one client's creations hold others up, shows it here.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use fjord_protocol::compression::Compression;
use fjord_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use fjord_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use fjord_protocol::kafka_protocol::messages::{
    MetadataRequest, ProduceRequest, RequestHeader, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::{Encodable, StrBytes};
use fjord_protocol::record_batch::{BatchBuilder, RecordSpec};

/// Names per request.
const NAMES: usize = 1000;

/// A running flood.
#[derive(Debug)]
pub(crate) struct Flood {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<u64>>,
}

fn frame(api_key: i16, version: i16, correlation: i32, body: &BytesMut) -> Result<Vec<u8>> {
    let mut header = RequestHeader::default();
    header.request_api_key = api_key;
    header.request_api_version = version;
    header.correlation_id = correlation;
    let mut head = BytesMut::new();
    header.encode(&mut head, 1)?;
    let mut out = BytesMut::new();
    out.put_i32(i32::try_from(head.len() + body.len())?);
    out.extend_from_slice(&head);
    out.extend_from_slice(body);
    Ok(out.to_vec())
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

fn produce_frame(round: u64, records: &Bytes) -> Result<Vec<u8>> {
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
    let mut body = BytesMut::new();
    req.encode(&mut body, 7)?;
    frame(0, 7, round as i32, &body)
}

fn metadata_frame(round: u64) -> Result<Vec<u8>> {
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
    let mut body = BytesMut::new();
    req.encode(&mut body, 8)?;
    frame(3, 8, round as i32, &body)
}

fn round_trip(s: &mut TcpStream, frame: &[u8]) -> Result<()> {
    s.write_all(frame)?;
    let mut size = [0u8; 4];
    s.read_exact(&mut size)?;
    let mut body = vec![0u8; usize::try_from(i32::from_be_bytes(size))?];
    s.read_exact(&mut body)?;
    Ok(())
}

impl Flood {
    /// Starts flooding `bootstrap`.
    pub(crate) fn start(bootstrap: &str) -> Result<Self> {
        let mut s = TcpStream::connect(bootstrap).context("flood connection")?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut batch = BatchBuilder::new(Compression::None, 1_000);
        batch.push(RecordSpec::value("flood"));
        let records = Bytes::from(batch.build()?);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut round = 0u64;
            while !stopping.load(Ordering::Relaxed) {
                round_trip(&mut s, &produce_frame(round, &records)?)?;
                round_trip(&mut s, &metadata_frame(round)?)?;
                round += 1;
            }
            Ok(round * 2)
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
