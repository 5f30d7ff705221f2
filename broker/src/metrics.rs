//! Prometheus metrics and health, served over HTTP on `metrics.listener` (off when unset):
//! request counts and latency per API, bytes and records per topic, fetch and produce
//! purgatory sizes, connections, partitions, segments, log sizes, fsync latency for
//! acks, consumer group lag, the cleaner's work (`cleaner_metrics`) and transactions
//! (`txn::metrics`).
//!
//! Counters are atomics updated on the request path; everything that can be read off
//! the broker's state (sizes, partitions, lag) is computed when scraped.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::state::Broker;

/// Latency histogram bucket bounds, in seconds (Prometheus `le`).
const BUCKETS: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0,
];
/// API keys we keep per-API statistics for (0..100 covers every Kafka 4.x API).
const APIS: usize = 100;
/// Versions counted per API (0..32 covers every version Kafka 4.x defines).
const VERSIONS: usize = 32;

/// A cumulative histogram of durations.
#[derive(Debug)]
pub(crate) struct Histogram {
    /// Upper bounds of the buckets, in seconds, ascending.
    bounds: &'static [f64],
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// An empty histogram with buckets up to each of `bounds` (seconds, ascending).
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Counts one duration.
    pub(crate) fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, bound) in self.bounds.iter().enumerate() {
            if secs <= *bound {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Durations counted so far.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Appends the series of metric `name` with `labels` (`k="v",...`, or empty).
    pub(crate) fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bound) in self.bounds.iter().enumerate() {
            let n = self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {n}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Bytes and records of one topic.
#[derive(Debug, Default)]
struct TopicCounters {
    bytes_in: AtomicU64,
    records_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// The broker's counters.
#[derive(Debug)]
pub struct Metrics {
    requests: Vec<Histogram>,
    /// Requests per API and version: which code path each client took.
    versions: Vec<[AtomicU64; VERSIONS]>,
    topics: Mutex<HashMap<String, Arc<TopicCounters>>>,
    /// Open client connections.
    pub connections: AtomicI64,
    /// Fetches waiting for data (the fetch purgatory).
    pub fetch_waiting: AtomicI64,
    /// Produces waiting for their fsync (acks=all with `fjord.fsync.on.ack`).
    pub produce_waiting: AtomicI64,
    fsync: Histogram,
    /// The log cleaner's.
    pub cleaner: crate::cleaner_metrics::CleanerMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: (0..APIS).map(|_| Histogram::new(&BUCKETS)).collect(),
            versions: (0..APIS).map(|_| Default::default()).collect(),
            topics: Mutex::default(),
            connections: AtomicI64::new(0),
            fetch_waiting: AtomicI64::new(0),
            produce_waiting: AtomicI64::new(0),
            fsync: Histogram::new(&BUCKETS),
            cleaner: Default::default(),
        }
    }
}

fn api_name(key: i16) -> String {
    fjord_protocol::kafka_protocol::messages::ApiKey::try_from(key)
        .map_or_else(|()| format!("Api{key}"), |k| format!("{k:?}"))
}

impl Metrics {
    /// Counts a request of API `key` at `version` that took `took` to answer.
    pub fn request(&self, key: i16, version: i16, took: Duration) {
        let Some(k) = usize::try_from(key).ok().filter(|k| *k < APIS) else {
            return;
        };
        self.requests[k].observe(took);
        if let Some(n) = usize::try_from(version)
            .ok()
            .and_then(|v| self.versions[k].get(v))
        {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn topic(&self, name: &str) -> Arc<TopicCounters> {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = topics.get(name) {
            return Arc::clone(t);
        }
        Arc::clone(topics.entry(name.to_string()).or_default())
    }

    /// Records appended to `topic`.
    pub fn produced(&self, topic: &str, records: u64, bytes: u64) {
        let t = self.topic(topic);
        t.records_in.fetch_add(records, Ordering::Relaxed);
        t.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Record bytes sent to consumers of `topic`.
    pub fn fetched(&self, topic: &str, bytes: u64) {
        if bytes > 0 {
            self.topic(topic)
                .bytes_out
                .fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// An fsync an acknowledgement waited for.
    pub fn fsync(&self, took: Duration) {
        self.fsync.observe(took);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, broker: &Broker) -> String {
        let mut out = String::with_capacity(8192);
        out.push_str("# HELP fjord_request_duration_seconds Time to answer a request, by API.\n");
        out.push_str("# TYPE fjord_request_duration_seconds histogram\n");
        for (key, h) in self.requests.iter().enumerate() {
            if h.count() > 0 {
                let labels = format!("api=\"{}\"", api_name(key as i16));
                h.render(&mut out, "fjord_request_duration_seconds", &labels);
            }
        }
        out.push_str("# HELP fjord_requests_total Requests answered, by API and version.\n");
        out.push_str("# TYPE fjord_requests_total counter\n");
        for (key, versions) in self.versions.iter().enumerate() {
            for (version, n) in versions.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let api = api_name(key as i16);
                    let _ = writeln!(
                        out,
                        "fjord_requests_total{{api=\"{api}\",version=\"{version}\"}} {n}"
                    );
                }
            }
        }
        let topics: Vec<(String, Arc<TopicCounters>)> = self
            .topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        for (metric, help, pick) in [
            ("fjord_topic_bytes_in_total", "Record bytes appended.", 0),
            ("fjord_topic_records_in_total", "Records appended.", 1),
            (
                "fjord_topic_bytes_out_total",
                "Record bytes sent to consumers.",
                2,
            ),
        ] {
            let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} counter");
            for (name, t) in &topics {
                let v = match pick {
                    0 => t.bytes_in.load(Ordering::Relaxed),
                    1 => t.records_in.load(Ordering::Relaxed),
                    _ => t.bytes_out.load(Ordering::Relaxed),
                };
                let _ = writeln!(out, "{metric}{{topic=\"{name}\"}} {v}");
            }
        }
        let gauges = [
            (
                "fjord_connections",
                "Open client connections.",
                self.connections.load(Ordering::Relaxed),
            ),
            (
                "fjord_fetch_purgatory",
                "Fetches waiting for data.",
                self.fetch_waiting.load(Ordering::Relaxed),
            ),
            (
                "fjord_produce_purgatory",
                "Produces waiting for their fsync.",
                self.produce_waiting.load(Ordering::Relaxed),
            ),
        ];
        for (metric, help, v) in gauges {
            let _ = writeln!(
                out,
                "# HELP {metric} {help}\n# TYPE {metric} gauge\n{metric} {v}"
            );
        }
        out.push_str("# HELP fjord_fsync_duration_seconds fsyncs acknowledgements waited for.\n");
        out.push_str("# TYPE fjord_fsync_duration_seconds histogram\n");
        self.fsync
            .render(&mut out, "fjord_fsync_duration_seconds", "");
        // Read off the state at scrape time.
        let mut partitions = 0usize;
        out.push_str("# HELP fjord_log_size_bytes Bytes of a topic's logs.\n# TYPE fjord_log_size_bytes gauge\n");
        let mut segments = 0usize;
        for t in broker.all_topics() {
            partitions += t.partitions.len();
            let mut size = 0u64;
            for p in &t.partitions {
                let log = p.read();
                size += log.size_bytes();
                segments += log.segment_count();
            }
            let _ = writeln!(out, "fjord_log_size_bytes{{topic=\"{}\"}} {size}", t.name);
        }
        let _ = writeln!(
            out,
            "# HELP fjord_partitions Partitions on this broker.\n# TYPE fjord_partitions gauge\nfjord_partitions {partitions}"
        );
        let _ = writeln!(
            out,
            "# HELP fjord_segments Log segments on this broker.\n# TYPE fjord_segments gauge\nfjord_segments {segments}"
        );
        self.cleaner.render(&mut out, broker);
        crate::txn::metrics::render(&mut out, broker);
        out.push_str("# HELP fjord_consumer_group_lag Records not yet committed by a group.\n# TYPE fjord_consumer_group_lag gauge\n");
        for group in broker.groups.offsets.groups() {
            for l in crate::groups::lag::group_lag(broker, &group) {
                let _ = writeln!(
                    out,
                    "fjord_consumer_group_lag{{group=\"{group}\",topic=\"{}\",partition=\"{}\"}} {}",
                    l.partition.0, l.partition.1, l.lag
                );
            }
        }
        out
    }
}

/// Serves `/metrics` and `/health` until `stop` turns true. One request per connection.
pub async fn serve(broker: Arc<Broker>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    loop {
        let (mut stream, _) = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let broker = Arc::clone(&broker);
        tokio::spawn(async move {
            // A request line and headers, bounded; the body (if any) is ignored.
            let mut buf = vec![0u8; 8192];
            let mut len = 0;
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while len < buf.len() && !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => len += n,
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..len]);
            let path = head.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = match path {
                "/metrics" => {
                    let b = Arc::clone(&broker);
                    match tokio::task::spawn_blocking(move || b.metrics.render(&b)).await {
                        Ok(text) => ("200 OK", text),
                        Err(_) => ("500 Internal Server Error", String::new()),
                    }
                }
                "/health" => ("200 OK", "ok\n".to_string()),
                _ => ("404 Not Found", "not found\n".to_string()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
