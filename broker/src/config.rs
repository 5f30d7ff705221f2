//! Broker settings under Kafka's names, from defaults, a properties file
//! (`--config FILE`) and `--set key=value` (which wins).

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use fjord_protocol::record_batch::{RecordValidation, TimestampType};
use fjord_storage::{Durability, LogConfig};

/// Every setting with its default; what DescribeConfigs reports.
const DEFAULTS: &[(&str, &str)] = &[
    ("node.id", "1"),
    ("listeners", "PLAINTEXT://127.0.0.1:9092"),
    ("advertised.listeners", ""),
    ("log.dirs", "./data"),
    ("num.partitions", "1"),
    ("default.replication.factor", "1"),
    ("auto.create.topics.enable", "true"),
    ("message.max.bytes", "1048588"),
    ("socket.request.max.bytes", "104857600"),
    ("max.connections", "10000"),
    ("connections.max.idle.ms", "600000"),
    ("queued.max.request.bytes", "104857600"),
    ("fetch.max.bytes", "57671680"),
    ("log.retention.check.interval.ms", "300000"),
    ("fjord.segment.idle.close.ms", "600000"),
    ("fjord.fetch.mode", "auto"),
    ("fjord.fetch.sendfile", "true"),
    ("fjord.max.partitions", "200000"),
    ("metrics.listener", ""),
    ("group.min.session.timeout.ms", "6000"),
    ("group.max.session.timeout.ms", "1800000"),
    ("group.initial.rebalance.delay.ms", "3000"),
    ("group.max.size", "2147483647"),
    ("offsets.retention.minutes", "10080"),
    ("offsets.retention.check.interval.ms", "600000"),
    ("offset.metadata.max.bytes", "4096"),
    ("producer.id.expiration.ms", "86400000"),
    ("log.segment.bytes", "1073741824"),
    ("log.roll.ms", "604800000"),
    ("log.retention.ms", "604800000"),
    ("log.retention.bytes", "-1"),
    ("log.index.size.max.bytes", "10485760"),
    ("log.index.interval.bytes", "4096"),
    ("log.flush.interval.messages", "9223372036854775807"),
    ("log.flush.interval.ms", ""),
    ("log.message.timestamp.type", "CreateTime"),
    ("fjord.fsync.on.ack", "false"),
    ("fjord.produce.validation", "lengths"),
    ("log.cleanup.policy", "delete"),
    ("compression.type", "producer"),
    ("min.insync.replicas", "1"),
];

/// Whether `name` is a broker setting Fjord knows (DescribeConfigs shows only these).
pub fn is_known_setting(name: &str) -> bool {
    DEFAULTS.iter().any(|(k, _)| *k == name)
}

/// A setting's built-in default, if Fjord knows it.
pub fn default_value(name: &str) -> Option<&'static str> {
    DEFAULTS.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
}

/// Whether a broker setting may change while the broker runs: the defaults of topic
/// configs, as in Kafka's cluster-wide dynamic log configs. The rest (listeners, paths,
/// limits sized at start) need a restart.
pub fn is_dynamic_setting(name: &str) -> bool {
    TOPIC_CONFIGS.iter().any(|(_, broker)| *broker == name)
}

/// Topic-level configs and the broker setting each defaults to (Kafka's pairs).
pub const TOPIC_CONFIGS: &[(&str, &str)] = &[
    ("cleanup.policy", "log.cleanup.policy"),
    ("compression.type", "compression.type"),
    ("segment.bytes", "log.segment.bytes"),
    ("segment.ms", "log.roll.ms"),
    ("segment.index.bytes", "log.index.size.max.bytes"),
    ("index.interval.bytes", "log.index.interval.bytes"),
    ("retention.ms", "log.retention.ms"),
    ("retention.bytes", "log.retention.bytes"),
    ("max.message.bytes", "message.max.bytes"),
    ("message.timestamp.type", "log.message.timestamp.type"),
    ("flush.messages", "log.flush.interval.messages"),
    ("flush.ms", "log.flush.interval.ms"),
    ("min.insync.replicas", "min.insync.replicas"),
    ("fjord.fsync.on.ack", "fjord.fsync.on.ack"),
    ("fjord.produce.validation", "fjord.produce.validation"),
];

/// How fetch responses send record bytes from segment files (`fjord.fetch.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchMode {
    /// `sendfile` to remote peers (zero copy to the NIC); [`FetchMode::Copy`] to loopback
    /// peers, where no NIC gains from zero copy and copying measured faster than
    /// `sendfile` (see `fjord-bench limits`). Not [`FetchMode::Mmap`], though faster
    /// still: a disk error under a map kills the process (SIGBUS) where a read fails one
    /// response.
    Auto,
    /// Always `sendfile`.
    Sendfile,
    /// `pread` into a buffer, then write.
    Copy,
    /// Write straight from a read-only memory map of the segment (one copy, no buffer);
    /// small regions are copied instead. Each 1 MiB whose first or last byte is not in
    /// the page cache is read into it on the blocking pool before it is mapped, and the
    /// map is populated with error reporting (`MADV_POPULATE_READ`), so a disk error
    /// fails the response. A page evicted after that and unreadable when the copy faults
    /// it in again raises SIGBUS and stops the broker: for page-cache-resident workloads
    /// that want the speed.
    Mmap,
}

/// The broker's settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// All settings by Kafka name, defaults filled in.
    pub values: BTreeMap<String, String>,
    /// This broker's id.
    pub node_id: i32,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Host and port clients are told to connect to.
    pub advertised: (String, u16),
    /// The (first) log directory.
    pub log_dir: PathBuf,
    /// Partitions of auto-created topics and CreateTopics without a count.
    pub num_partitions: i32,
    /// Create unknown topics on Metadata/Produce.
    pub auto_create_topics: bool,
    /// Largest request frame accepted.
    pub socket_request_max_bytes: usize,
    /// Connections accepted at once.
    pub max_connections: usize,
    /// Close connections idle this long.
    pub connections_max_idle_ms: u64,
    /// Bytes of requests buffered per connection before reading pauses.
    pub queued_max_request_bytes: usize,
    /// Most bytes one fetch response carries, whatever the client asks (Kafka's broker
    /// `fetch.max.bytes`).
    pub fetch_max_bytes: usize,
    /// How often retention runs.
    pub retention_check_interval_ms: u64,
    /// Segments unused this long have their files closed.
    pub segment_idle_close_ms: u64,
    /// Idempotent producers unseen this long are forgotten.
    pub producer_id_expiration_ms: u64,
    /// How fetch record bytes go from segment files to sockets (`fjord.fetch.mode`).
    pub fetch_mode: FetchMode,
    /// Most partitions this broker holds across all topics; creations past it fail with
    /// INVALID_PARTITIONS instead of exhausting descriptors and memory.
    pub max_partitions: usize,
    /// Consumer group coordinator settings (`group.*`, `offsets.*`).
    pub coordinator: crate::groups::CoordinatorConfig,
    /// `fjord.fsync.on.ack` broker-wide, as set at start: committed offsets wait for the
    /// disk too (see [`BrokerConfig::offsets_fsync`] for the value in force).
    pub fsync_on_ack: bool,
}

fn listener_address(value: &str) -> Result<(String, u16)> {
    let first = value.split(',').next().unwrap_or_default().trim();
    let hostport = first.split_once("://").map_or(first, |(_, rest)| rest);
    let (host, port) = hostport
        .rsplit_once(':')
        .context("listener needs HOST:PORT")?;
    let port: u16 = port.parse().context("listener port")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((
        if host.is_empty() {
            "0.0.0.0".to_string()
        } else {
            host.to_string()
        },
        port,
    ))
}

/// Parses Java-properties text: `key=value` or `key: value`, `#`/`!` comments.
pub fn parse_properties(text: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some((k, v)) = line.split_once(['=', ':']) else {
            bail!("line {}: expected key=value", n + 1);
        };
        out.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(out)
}

impl BrokerConfig {
    /// Builds the config from a file's contents and `--set` pairs (later pairs win).
    pub fn from_sources(file: Option<&str>, sets: &[(String, String)]) -> Result<Self> {
        let mut values: BTreeMap<String, String> = DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let from_file = file.map(parse_properties).transpose()?.unwrap_or_default();
        for (k, v) in from_file.into_iter().chain(sets.iter().cloned()) {
            if !values.contains_key(&k) {
                tracing::warn!(key = %k, "unknown config key (kept, unused)");
            }
            values.insert(k, v);
        }
        if let Some(id) = values.get("broker.id").cloned() {
            values.insert("node.id".into(), id);
        }
        if let Some(hours) = values.get("log.retention.hours").cloned() {
            let ms = hours.parse::<i64>().context("log.retention.hours")? * 3_600_000;
            values.insert("log.retention.ms".into(), ms.to_string());
        }
        let get = |k: &str| values.get(k).cloned().unwrap_or_default();
        let num = |k: &str| -> Result<i64> {
            get(k).parse::<i64>().with_context(|| format!("config {k}"))
        };
        let (host, port) = listener_address(&get("listeners"))?;
        let listen = (host.as_str(), port)
            .to_socket_addrs()
            .context("resolve listeners")?
            .next()
            .context("listeners resolves to no address")?;
        let advertised = match get("advertised.listeners").as_str() {
            "" => {
                let h = if host == "0.0.0.0" {
                    "127.0.0.1".to_string()
                } else {
                    host.clone()
                };
                (h, port)
            }
            other => listener_address(other)?,
        };
        let dirs = get("log.dirs");
        let log_dir = PathBuf::from(dirs.split(',').next().unwrap_or("./data").trim());
        let config = Self {
            node_id: num("node.id")? as i32,
            listen,
            advertised,
            log_dir,
            num_partitions: num("num.partitions")? as i32,
            auto_create_topics: get("auto.create.topics.enable") == "true",
            coordinator: {
                let ms = |k: &str| -> Result<std::time::Duration> {
                    Ok(std::time::Duration::from_millis(
                        u64::try_from(num(k)?)
                            .with_context(|| format!("{k} must not be negative"))?,
                    ))
                };
                crate::groups::CoordinatorConfig {
                    limits: crate::groups::GroupLimits {
                        min_session: ms("group.min.session.timeout.ms")?,
                        max_session: ms("group.max.session.timeout.ms")?,
                        initial_delay: ms("group.initial.rebalance.delay.ms")?,
                        max_size: usize::try_from(num("group.max.size")?)
                            .ok()
                            .filter(|n| *n > 0)
                            .context("group.max.size must be positive")?,
                    },
                    offsets_retention: ms("offsets.retention.minutes")? * 60_000,
                    offsets_retention_check: ms("offsets.retention.check.interval.ms")?,
                    offset_metadata_max_bytes: usize::try_from(num("offset.metadata.max.bytes")?)
                        .context(
                        "offset.metadata.max.bytes must not be negative",
                    )?,
                }
            },
            fsync_on_ack: get("fjord.fsync.on.ack") == "true",
            max_partitions: usize::try_from(num("fjord.max.partitions")?)
                .context("fjord.max.partitions must not be negative")?,
            fetch_mode: match (
                get("fjord.fetch.mode").as_str(),
                get("fjord.fetch.sendfile").as_str(),
            ) {
                (_, other) if other != "true" && other != "false" => {
                    anyhow::bail!("fjord.fetch.sendfile must be true or false, not {other}")
                }
                // The older switch: false meant copying through a buffer.
                ("auto", "false") => FetchMode::Copy,
                ("auto", _) => FetchMode::Auto,
                ("sendfile", _) => FetchMode::Sendfile,
                ("copy", _) => FetchMode::Copy,
                ("mmap", _) => FetchMode::Mmap,
                (other, _) => anyhow::bail!(
                    "fjord.fetch.mode must be auto, sendfile, copy or mmap, not {other}"
                ),
            },
            socket_request_max_bytes: usize::try_from(num("socket.request.max.bytes")?)
                .ok()
                .filter(|n| *n > 0)
                .context("socket.request.max.bytes must be positive")?,
            max_connections: usize::try_from(num("max.connections")?)
                .ok()
                .filter(|n| *n > 0)
                .context("max.connections must be positive")?,
            connections_max_idle_ms: num("connections.max.idle.ms")? as u64,
            retention_check_interval_ms: u64::try_from(num("log.retention.check.interval.ms")?)
                .context("log.retention.check.interval.ms must not be negative")?,
            producer_id_expiration_ms: u64::try_from(num("producer.id.expiration.ms")?)
                .context("producer.id.expiration.ms must not be negative")?,
            segment_idle_close_ms: u64::try_from(num("fjord.segment.idle.close.ms")?)
                .context("fjord.segment.idle.close.ms must not be negative")?,
            fetch_max_bytes: usize::try_from(num("fetch.max.bytes")?)
                .ok()
                .filter(|n| *n > 0)
                .context("fetch.max.bytes must be positive")?,
            // Kafka's -1 means "no limit"; a connection still needs a bound: 100 MiB.
            queued_max_request_bytes: usize::try_from(num("queued.max.request.bytes")?)
                .ok()
                .filter(|n| *n > 0)
                .unwrap_or(100 << 20),
            values,
        };
        config
            .check_new_settings(&BTreeMap::new(), &BTreeMap::new())
            .context("topic defaults")?;
        Ok(config)
    }

    /// A topic config's effective value: the override, else the broker's dynamic
    /// setting, else its static one. Unknown names give `None`.
    pub fn topic_config_value(
        &self,
        name: &str,
        dynamic: &BTreeMap<String, String>,
        overrides: &BTreeMap<String, String>,
    ) -> Option<String> {
        let (_, broker_key) = TOPIC_CONFIGS.iter().find(|(t, _)| *t == name)?;
        overrides
            .get(name)
            .or_else(|| dynamic.get(*broker_key))
            .or_else(|| self.values.get(*broker_key))
            .cloned()
    }

    /// Whether committed offsets wait for the disk: `fjord.fsync.on.ack` as the broker's
    /// dynamic configs (`dynamic`, in force) or else its static config set it.
    pub fn offsets_fsync(&self, dynamic: &BTreeMap<String, String>) -> bool {
        dynamic
            .get("fjord.fsync.on.ack")
            .map_or(self.fsync_on_ack, |v| v == "true")
    }

    /// Checks settings about to be made (a topic created or altered, broker defaults
    /// changed, the static config at start): the log settings must parse, and values
    /// Fjord cannot honour are refused rather than silently ignored. Topics saved by
    /// older versions are not held to this at open.
    pub fn check_new_settings(
        &self,
        dynamic: &BTreeMap<String, String>,
        overrides: &BTreeMap<String, String>,
    ) -> Result<()> {
        let value = |topic_key: &str| {
            self.topic_config_value(topic_key, dynamic, overrides)
                .unwrap_or_default()
        };
        // Compaction is not implemented: a compacted topic deleted by time instead would
        // silently lose the latest value of old keys.
        for policy in value("cleanup.policy").split(',') {
            match policy.trim() {
                "delete" => {}
                "compact" => anyhow::bail!(
                    "cleanup.policy=compact is not supported yet: Fjord does not compact logs"
                ),
                other => anyhow::bail!("cleanup.policy must be delete, not '{other}'"),
            }
        }
        let timestamp_type = value("message.timestamp.type");
        if !matches!(timestamp_type.as_str(), "CreateTime" | "LogAppendTime") {
            anyhow::bail!(
                "message.timestamp.type must be CreateTime or LogAppendTime, not '{timestamp_type}'"
            );
        }
        let compression = value("compression.type");
        if !matches!(
            compression.as_str(),
            "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd"
        ) {
            anyhow::bail!(
                "compression.type must be producer, uncompressed, gzip, snappy, lz4 or zstd, not '{compression}'"
            );
        }
        let flush_ms = value("flush.ms");
        if !flush_ms.is_empty() && flush_ms.parse::<u64>().is_err() {
            anyhow::bail!("flush.ms must be a number of milliseconds, not '{flush_ms}'");
        }
        let min_isr = value("min.insync.replicas");
        if !min_isr.parse::<i32>().is_ok_and(|n| n >= 1) {
            anyhow::bail!("min.insync.replicas must be at least 1, not '{min_isr}'");
        }
        self.log_config_with(dynamic, overrides)?;
        Ok(())
    }

    /// The log settings of a topic with no runtime changes: static settings with
    /// `overrides` (topic-level names such as `segment.bytes`, `retention.ms`) applied.
    pub fn log_config(&self, overrides: &BTreeMap<String, String>) -> Result<LogConfig> {
        self.log_config_with(&BTreeMap::new(), overrides)
    }

    /// The log settings of a topic: `overrides` first, then the broker settings changed
    /// at runtime (`dynamic`, by broker name), then the static ones.
    pub fn log_config_with(
        &self,
        dynamic: &BTreeMap<String, String>,
        overrides: &BTreeMap<String, String>,
    ) -> Result<LogConfig> {
        let broker = |k: &str| {
            dynamic
                .get(k)
                .or_else(|| self.values.get(k))
                .cloned()
                .unwrap_or_default()
        };
        let pick = |topic_key: &str, broker_key: &str| {
            overrides
                .get(topic_key)
                .cloned()
                .unwrap_or_else(|| broker(broker_key))
        };
        let int = |topic_key: &str, broker_key: &str| -> Result<i64> {
            pick(topic_key, broker_key)
                .parse::<i64>()
                .with_context(|| format!("config {topic_key}"))
        };
        let opt = |v: i64| (v >= 0).then_some(v as u64);
        let flush_ms = pick("flush.ms", "log.flush.interval.ms");
        let flush_messages = int("flush.messages", "log.flush.interval.messages")?;
        let durability = if pick("fjord.fsync.on.ack", "fjord.fsync.on.ack") == "true" {
            Durability::FsyncOnAck
        } else if flush_messages < i64::MAX || !flush_ms.is_empty() {
            Durability::Interval {
                messages: opt(flush_messages).filter(|m| *m < i64::MAX as u64),
                ms: flush_ms.parse::<u64>().ok(),
            }
        } else {
            Durability::PageCache
        };
        let config = LogConfig {
            segment_bytes: int("segment.bytes", "log.segment.bytes")? as u64,
            segment_ms: opt(int("segment.ms", "log.roll.ms")?),
            segment_index_bytes: int("segment.index.bytes", "log.index.size.max.bytes")? as u64,
            index_interval_bytes: int("index.interval.bytes", "log.index.interval.bytes")? as u64,
            retention_ms: opt(int("retention.ms", "log.retention.ms")?),
            retention_bytes: opt(int("retention.bytes", "log.retention.bytes")?),
            max_batch_bytes: int("max.message.bytes", "message.max.bytes")? as usize,
            timestamp_type: match pick("message.timestamp.type", "log.message.timestamp.type")
                .as_str()
            {
                "LogAppendTime" => TimestampType::LogAppendTime,
                // Anything else was accepted before new values were checked (see
                // `check_new_settings`); topics saved with one keep working.
                _ => TimestampType::CreateTime,
            },
            durability,
            record_validation: match pick("fjord.produce.validation", "fjord.produce.validation")
                .as_str()
            {
                "crc" => RecordValidation::Header,
                "lengths" => RecordValidation::Lengths,
                "full" => RecordValidation::Full,
                other => {
                    anyhow::bail!(
                        "fjord.produce.validation must be crc, lengths or full, not '{other}'"
                    )
                }
            },
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_listen_on_9092_with_data_under_dot_data() {
        let c = BrokerConfig::from_sources(None, &[]).expect("config");
        assert_eq!(c.listen, "127.0.0.1:9092".parse().expect("addr"));
        assert_eq!(c.log_dir, PathBuf::from("./data"));
        assert_eq!(c.advertised, ("127.0.0.1".to_string(), 9092));
    }

    #[test]
    fn command_line_wins_over_file() {
        let file = "# comment\nlisteners=PLAINTEXT://127.0.0.1:1111\nnum.partitions: 3\nlog.retention.hours=2\n";
        let sets = vec![(
            "listeners".to_string(),
            "PLAINTEXT://127.0.0.1:2222".to_string(),
        )];
        let c = BrokerConfig::from_sources(Some(file), &sets).expect("config");
        assert_eq!(c.listen.port(), 2222);
        assert_eq!(c.num_partitions, 3);
        let log = c.log_config(&BTreeMap::new()).expect("log config");
        assert_eq!(log.retention_ms, Some(7_200_000));
    }

    #[test]
    fn topic_overrides_apply() {
        let c = BrokerConfig::from_sources(None, &[]).expect("config");
        let overrides = BTreeMap::from([("segment.bytes".to_string(), "1000000".to_string())]);
        assert_eq!(
            c.log_config(&overrides).expect("log").segment_bytes,
            1_000_000
        );
        let bad = BTreeMap::from([("segment.bytes".to_string(), "x".to_string())]);
        assert!(c.log_config(&bad).is_err());
    }

    #[test]
    fn settings_fjord_cannot_honour_are_refused() {
        let c = BrokerConfig::from_sources(None, &[]).expect("config");
        for (k, v) in [
            ("cleanup.policy", "compact"),
            ("cleanup.policy", "delete,compact"),
            ("cleanup.policy", "shred"),
            ("message.timestamp.type", "Whenever"),
            ("compression.type", "brotli"),
            ("flush.ms", "soon"),
            ("min.insync.replicas", "0"),
        ] {
            let bad = BTreeMap::from([(k.to_string(), v.to_string())]);
            let none = BTreeMap::new();
            assert!(c.check_new_settings(&none, &bad).is_err(), "{k}={v}");
            // A topic saved with it by an older version still opens.
            if k != "flush.ms" {
                assert!(c.log_config(&bad).is_ok(), "{k}={v}");
            }
        }
        let fine = BTreeMap::from([
            ("cleanup.policy".to_string(), "delete".to_string()),
            (
                "message.timestamp.type".to_string(),
                "LogAppendTime".to_string(),
            ),
            ("compression.type".to_string(), "zstd".to_string()),
        ]);
        assert!(c.check_new_settings(&BTreeMap::new(), &fine).is_ok());
        // The static config is held to it at start.
        let sets = [("log.cleanup.policy".to_string(), "compact".to_string())];
        assert!(BrokerConfig::from_sources(None, &sets).is_err());
    }
}

#[cfg(test)]
mod validation_tests {
    use super::*;
    use fjord_protocol::record_batch::RecordValidation;

    #[test]
    fn produce_validation_levels_parse() {
        let c = BrokerConfig::from_sources(None, &[]).expect("config");
        assert_eq!(
            c.log_config(&BTreeMap::new())
                .expect("log")
                .record_validation,
            RecordValidation::Lengths
        );
        let full = BTreeMap::from([("fjord.produce.validation".to_string(), "full".to_string())]);
        assert_eq!(
            c.log_config(&full).expect("log").record_validation,
            RecordValidation::Full
        );
        let bad = BTreeMap::from([(
            "fjord.produce.validation".to_string(),
            "paranoid".to_string(),
        )]);
        assert!(c.log_config(&bad).is_err());
    }
}
