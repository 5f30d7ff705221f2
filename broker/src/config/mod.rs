//! Broker settings under Kafka's names, from defaults, a properties file
//! (`--config FILE`) and `--set key=value` (which wins).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use fjord_client_common::settings::boolean;
use fjord_protocol::record_batch::{RecordValidation, TimestampType};
use fjord_storage::{Durability, LogConfig};

mod listeners;
mod load;
pub mod table;

pub use load::parse_properties;

pub use listeners::Listener;
pub use table::{setting, Setting, SETTINGS};

/// Whether `name` is a broker setting Fjord knows (DescribeConfigs shows only these).
pub fn is_known_setting(name: &str) -> bool {
    setting(name).is_some()
}

/// A setting's built-in default, if Fjord knows it.
pub fn default_value(name: &str) -> Option<&'static str> {
    setting(name).map(|s| s.default)
}

/// Whether a broker setting may change while the broker runs: the defaults of topic
/// configs, as in Kafka's cluster-wide dynamic log configs. The rest (listeners, paths,
/// limits sized at start) need a restart.
pub fn is_dynamic_setting(name: &str) -> bool {
    setting(name).is_some_and(|s| s.dynamic)
}

/// Whether `name` is a topic config Fjord knows.
pub fn is_topic_config(name: &str) -> bool {
    table::for_topic_config(name).is_some()
}

/// Checks `value` for the broker setting or topic config `name` against its kind in the
/// table; unknown names pass (callers refuse them where they must).
pub fn check_value(name: &str, value: &str) -> Result<()> {
    let kind = setting(name).or_else(|| table::for_topic_config(name));
    if let Some(s) = kind {
        s.kind
            .check(name, value)
            .map_err(|e| anyhow::anyhow!("{e} (accepts {})", s.kind.describe()))?;
    }
    Ok(())
}

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
    /// Every listener, each bound at start (`listeners`), with what clients coming in
    /// on it are told (`advertised.listeners`). Never empty.
    pub listeners: Vec<Listener>,
    /// The (first) log directory.
    pub log_dir: PathBuf,
    /// Partitions of auto-created topics and CreateTopics without a count.
    pub num_partitions: i32,
    /// Create unknown topics on Metadata/Produce.
    pub auto_create_topics: bool,
    /// Unknown topics one Metadata or Produce request may queue for auto-creation.
    pub auto_create_max_per_request: usize,
    /// Partitions created or deleted per second, broker-wide (`None`: unlimited).
    pub controller_mutation_rate: Option<u32>,
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
    /// `log.cleaner.*`: the log cleaner of compacted topics.
    pub cleaner: CleanerConfig,
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
    /// Transaction coordinator settings (`transaction.*`, `transactional.id.*`).
    pub transactions: crate::txn::TxnConfig,
    /// `fjord.fsync.on.ack` broker-wide, as set at start: committed offsets wait for the
    /// disk too (see [`BrokerConfig::offsets_fsync`] for the value in force).
    pub fsync_on_ack: bool,
}

/// A durability flag as saved, possibly by an older version that took any text: what
/// does not parse is read as `true`, the durable choice, and logged. New values never
/// get here unchecked ([`BrokerConfig::check_new_settings`] refuses them).
fn saved_flag(key: &str, value: &str) -> bool {
    boolean(key, value).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "saved setting does not parse; taking true (durable)");
        true
    })
}

/// The log cleaner's settings, by Kafka's names.
#[derive(Debug, Clone, Copy)]
pub struct CleanerConfig {
    /// `log.cleaner.enable`.
    pub enable: bool,
    /// `log.cleaner.threads`: passes that run at once, each on its own log (0: none).
    pub threads: usize,
    /// `log.cleaner.backoff.ms`: the pause when no log needs cleaning.
    pub backoff_ms: u64,
    /// `log.cleaner.dedupe.buffer.size`: the key map's memory.
    pub dedupe_buffer_bytes: usize,
    /// `log.cleaner.io.max.bytes.per.second`: the read+write throttle.
    pub io_max_bytes_per_second: f64,
}

impl BrokerConfig {
    /// Host and port clients that came in on listener `index` (into
    /// [`BrokerConfig::listeners`]) are told to use; the first listener's when out of
    /// range. Loading guarantees at least one listener.
    pub fn advertised(&self, index: usize) -> (String, u16) {
        self.listeners
            .get(index)
            .or_else(|| self.listeners.first())
            .map(|l| l.advertised.clone())
            .unwrap_or_default()
    }

    /// A topic config's effective value: the override, else the broker's dynamic
    /// setting, else its static one. Unknown names give `None`.
    pub fn topic_config_value(
        &self,
        name: &str,
        dynamic: &BTreeMap<String, String>,
        overrides: &BTreeMap<String, String>,
    ) -> Option<String> {
        let broker_key = table::for_topic_config(name)?.name;
        overrides
            .get(name)
            .or_else(|| dynamic.get(broker_key))
            .or_else(|| self.values.get(broker_key))
            .cloned()
    }

    /// Whether committed offsets wait for the disk: `fjord.fsync.on.ack` as the broker's
    /// dynamic configs (`dynamic`, in force) or else its static config set it.
    pub fn offsets_fsync(&self, dynamic: &BTreeMap<String, String>) -> bool {
        dynamic
            .get("fjord.fsync.on.ack")
            .map_or(self.fsync_on_ack, |v| saved_flag("fjord.fsync.on.ack", v))
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
        for (topic_key, setting) in table::topic_configs() {
            setting
                .kind
                .check(topic_key, &value(topic_key))
                .map_err(|e| anyhow::anyhow!("{e} (accepts {})", setting.kind.describe()))?;
        }
        let lag = |k: &str| value(k).trim().parse::<i64>().unwrap_or(0);
        if lag("min.compaction.lag.ms") > lag("max.compaction.lag.ms") {
            bail!(
                "conflicting min.compaction.lag.ms ({}) above max.compaction.lag.ms ({})",
                value("min.compaction.lag.ms"),
                value("max.compaction.lag.ms")
            );
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
        let durability = if saved_flag(
            "fjord.fsync.on.ack",
            &pick("fjord.fsync.on.ack", "fjord.fsync.on.ack"),
        ) {
            Durability::FsyncOnAck
        } else if flush_messages < i64::MAX || !flush_ms.is_empty() {
            Durability::Interval {
                messages: opt(flush_messages).filter(|m| *m < i64::MAX as u64),
                ms: flush_ms.parse::<u64>().ok(),
            }
        } else {
            Durability::PageCache
        };
        let policy = pick("cleanup.policy", "log.cleanup.policy");
        let has = |p: &str| policy.split(',').any(|x| x.trim() == p);
        // Compact-only logs keep every key's latest record however old: no retention.
        let deletes = has("delete") || !has("compact");
        let compaction = if has("compact") {
            let ratio: f64 = pick(
                "min.cleanable.dirty.ratio",
                "log.cleaner.min.cleanable.ratio",
            )
            .trim()
            .parse()
            .context("config min.cleanable.dirty.ratio")?;
            Some(fjord_storage::Compaction {
                min_cleanable_ratio_ppm: (ratio.clamp(0.0, 1.0) * 1e6) as u32,
                delete_retention_ms: int("delete.retention.ms", "log.cleaner.delete.retention.ms")?,
                min_compaction_lag_ms: int(
                    "min.compaction.lag.ms",
                    "log.cleaner.min.compaction.lag.ms",
                )?,
                max_compaction_lag_ms: int(
                    "max.compaction.lag.ms",
                    "log.cleaner.max.compaction.lag.ms",
                )?,
            })
        } else {
            None
        };
        let config = LogConfig {
            compaction,
            segment_bytes: int("segment.bytes", "log.segment.bytes")? as u64,
            segment_ms: opt(int("segment.ms", "log.roll.ms")?),
            segment_index_bytes: int("segment.index.bytes", "log.index.size.max.bytes")? as u64,
            index_interval_bytes: int("index.interval.bytes", "log.index.interval.bytes")? as u64,
            retention_ms: opt(int("retention.ms", "log.retention.ms")?).filter(|_| deletes),
            retention_bytes: opt(int("retention.bytes", "log.retention.bytes")?)
                .filter(|_| deletes),
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
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(c.listeners[0].bind, "127.0.0.1:9092".parse().expect("addr"));
        assert_eq!(c.log_dir, PathBuf::from("./data"));
        assert_eq!(c.advertised(0), ("127.0.0.1".to_string(), 9092));
    }

    #[test]
    fn command_line_wins_over_file() {
        let file = "# comment\nlisteners=PLAINTEXT://127.0.0.1:1111\nnum.partitions: 3\nlog.retention.hours=2\n";
        let sets = vec![(
            "listeners".to_string(),
            "PLAINTEXT://127.0.0.1:2222".to_string(),
        )];
        let c = BrokerConfig::from_sources(Some(file), &sets).expect("config");
        assert_eq!(c.listeners[0].bind.port(), 2222);
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
            ("cleanup.policy", "shred"),
            ("message.timestamp.type", "Whenever"),
            ("compression.type", "brotli"),
            ("flush.ms", "soon"),
            ("min.insync.replicas", "0"),
            ("fjord.fsync.on.ack", "yes"),
            ("fjord.fsync.on.ack", "1"),
            ("retention.ms", "-7"),
            ("segment.bytes", "10"),
        ] {
            let bad = BTreeMap::from([(k.to_string(), v.to_string())]);
            let none = BTreeMap::new();
            assert!(c.check_new_settings(&none, &bad).is_err(), "{k}={v}");
            // A topic saved with it by an older version still opens.
            if !matches!(k, "flush.ms" | "retention.ms" | "segment.bytes") {
                assert!(c.log_config(&bad).is_ok(), "{k}={v}");
            }
        }
        for policy in ["compact", "delete,compact", "compact,delete"] {
            let ok = BTreeMap::from([("cleanup.policy".to_string(), policy.to_string())]);
            assert!(
                c.check_new_settings(&BTreeMap::new(), &ok).is_ok(),
                "{policy}"
            );
            let log = c.log_config(&ok).expect("log");
            assert!(log.compaction.is_some(), "{policy}");
            // Compact-only keeps every key's latest record however old.
            assert_eq!(
                log.retention_ms.is_some(),
                policy.contains("delete"),
                "{policy}"
            );
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
        let sets = [("log.cleanup.policy".to_string(), "shred".to_string())];
        assert!(BrokerConfig::from_sources(None, &sets).is_err());
    }

    #[test]
    fn the_cleaner_configs_are_accepted_with_kafkas_bounds() {
        let c = BrokerConfig::from_sources(None, &[]).expect("config");
        let none = BTreeMap::new();
        let fine = BTreeMap::from([
            ("min.cleanable.dirty.ratio".to_string(), "0.01".to_string()),
            ("delete.retention.ms".to_string(), "100".to_string()),
            ("min.compaction.lag.ms".to_string(), "0".to_string()),
            ("max.compaction.lag.ms".to_string(), "60000".to_string()),
        ]);
        assert!(c.check_new_settings(&none, &fine).is_ok());
        for (k, v) in [
            ("min.cleanable.dirty.ratio", "1.5"),
            ("min.cleanable.dirty.ratio", "NaN"),
            ("min.cleanable.dirty.ratio", "half"),
            ("delete.retention.ms", "-1"),
            ("max.compaction.lag.ms", "0"),
        ] {
            let bad = BTreeMap::from([(k.to_string(), v.to_string())]);
            assert!(c.check_new_settings(&none, &bad).is_err(), "{k}={v}");
        }
        let conflict = BTreeMap::from([
            ("min.compaction.lag.ms".to_string(), "10".to_string()),
            ("max.compaction.lag.ms".to_string(), "5".to_string()),
        ]);
        let e = c
            .check_new_settings(&none, &conflict)
            .expect_err("conflict");
        assert!(e.to_string().contains("min.compaction.lag.ms"), "{e}");
        let sets = [(
            "log.cleaner.io.max.bytes.per.second".to_string(),
            "1048576.5".to_string(),
        )];
        let c = BrokerConfig::from_sources(None, &sets).expect("a finite throttle");
        assert_eq!(c.cleaner.io_max_bytes_per_second, 1_048_576.5);
        let sets = [("log.cleaner.threads".to_string(), "2".to_string())];
        let c = BrokerConfig::from_sources(None, &sets).expect("two cleaner threads");
        assert_eq!(c.cleaner.threads, 2);
        let sets = [("log.cleaner.threads".to_string(), "-1".to_string())];
        assert!(BrokerConfig::from_sources(None, &sets).is_err());
        let sets = [(
            "log.cleaner.io.max.bytes.per.second".to_string(),
            "0".to_string(),
        )];
        assert!(BrokerConfig::from_sources(None, &sets).is_err());
    }

    #[test]
    fn a_saved_durability_flag_that_does_not_parse_reads_as_durable() {
        let c = BrokerConfig::from_sources(None, &[]).expect("config");
        for (v, durable) in [("yes", true), ("TRUE", true), ("False", false)] {
            let saved = BTreeMap::from([("fjord.fsync.on.ack".to_string(), v.to_string())]);
            let log = c.log_config(&saved).expect("opens");
            assert_eq!(log.durability == Durability::FsyncOnAck, durable, "{v}");
        }
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
