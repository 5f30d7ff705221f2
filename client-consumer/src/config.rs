//! Consumer settings under Kafka's names, with Kafka's defaults.

use std::collections::HashMap;
use std::time::Duration;

use fjord_client_common::settings::{boolean, millis, number, servers, BadSetting};

use crate::error::ConsumeError;

/// Where to start when a partition has no committed offset (or it is out of range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// The log start.
    Earliest,
    /// The log end: only new records.
    Latest,
    /// Fail (`auto.offset.reset=none`).
    None,
}

/// Everything the consumer can be told.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `bootstrap.servers`.
    pub bootstrap_servers: Vec<String>,
    /// `client.id`.
    pub client_id: String,
    /// `group.id` (needed for `subscribe` and for commits).
    pub group_id: Option<String>,
    /// `group.instance.id`: a static member (KIP-345).
    pub group_instance_id: Option<String>,
    /// `enable.auto.commit` (default true).
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms` (default 5000).
    pub auto_commit_interval: Duration,
    /// `auto.offset.reset` (default latest).
    pub auto_offset_reset: OffsetReset,
    /// `session.timeout.ms` (default 45000).
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms` (default 3000).
    pub heartbeat_interval: Duration,
    /// `max.poll.interval.ms` (default 300000): also the rebalance timeout.
    pub max_poll_interval: Duration,
    /// `partition.assignment.strategy`: assignors in order of preference.
    pub assignment_strategy: Vec<String>,
    /// `fetch.min.bytes` (default 1).
    pub fetch_min_bytes: i32,
    /// `fetch.max.wait.ms` (default 500).
    pub fetch_max_wait: Duration,
    /// `fetch.max.bytes` (default 52428800).
    pub fetch_max_bytes: i32,
    /// `max.partition.fetch.bytes` (default 1048576).
    pub max_partition_fetch_bytes: i32,
    /// `isolation.level`: false = read_uncommitted (default), true = read_committed.
    pub read_committed: bool,
    /// `check.crcs` (default true).
    pub check_crcs: bool,
    /// `request.timeout.ms` (default 30000).
    pub request_timeout: Duration,
    /// `retry.backoff.ms` (default 100).
    pub retry_backoff: Duration,
    /// `metadata.max.age.ms` (default 300000).
    pub metadata_max_age: Duration,
    /// `group.protocol`: classic (the default) or consumer (KIP-848).
    pub group_protocol: GroupProtocol,
    /// `group.remote.assignor`: the broker-side assignor asked for on the consumer
    /// protocol (none: the broker's default).
    pub group_remote_assignor: Option<String>,
    /// Classic-only settings that were set, refused on the consumer protocol.
    classic_only: Vec<&'static str>,
}

/// `group.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupProtocol {
    /// JoinGroup/SyncGroup, a member assigns.
    Classic,
    /// ConsumerGroupHeartbeat (KIP-848), the broker assigns.
    Consumer,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: vec!["127.0.0.1:9092".into()],
            client_id: "fjord-consumer".into(),
            group_id: None,
            group_instance_id: None,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_millis(5000),
            auto_offset_reset: OffsetReset::Latest,
            session_timeout: Duration::from_millis(45_000),
            heartbeat_interval: Duration::from_millis(3000),
            max_poll_interval: Duration::from_millis(300_000),
            assignment_strategy: vec!["range".into(), "roundrobin".into()],
            fetch_min_bytes: 1,
            fetch_max_wait: Duration::from_millis(500),
            fetch_max_bytes: 52_428_800,
            max_partition_fetch_bytes: 1_048_576,
            read_committed: false,
            check_crcs: true,
            request_timeout: Duration::from_millis(30_000),
            retry_backoff: Duration::from_millis(100),
            metadata_max_age: Duration::from_millis(300_000),
            group_protocol: GroupProtocol::Classic,
            group_remote_assignor: None,
            classic_only: Vec::new(),
        }
    }
}

fn bad(key: &str, value: &str, why: &str) -> ConsumeError {
    BadSetting::new(key, value, why).into()
}

impl ConsumerConfig {
    /// Sets one setting by its Kafka name; unknown names are an error.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConsumeError> {
        match key {
            "bootstrap.servers" => {
                self.bootstrap_servers = servers(key, value)?;
            }
            "client.id" => self.client_id = value.to_string(),
            "group.id" => self.group_id = Some(value.to_string()).filter(|g| !g.is_empty()),
            "group.instance.id" => {
                self.group_instance_id = Some(value.to_string()).filter(|g| !g.is_empty());
            }
            "enable.auto.commit" => self.enable_auto_commit = boolean(key, value)?,
            "auto.commit.interval.ms" => self.auto_commit_interval = millis(key, value)?,
            "auto.offset.reset" => {
                self.auto_offset_reset = match value.trim() {
                    "earliest" | "smallest" | "beginning" => OffsetReset::Earliest,
                    "latest" | "largest" | "end" => OffsetReset::Latest,
                    "none" | "error" => OffsetReset::None,
                    _ => return Err(bad(key, value, "expected earliest, latest or none")),
                }
            }
            "session.timeout.ms" => {
                self.session_timeout = millis(key, value)?;
                self.classic_only.push("session.timeout.ms");
            }
            "heartbeat.interval.ms" => {
                self.heartbeat_interval = millis(key, value)?;
                self.classic_only.push("heartbeat.interval.ms");
            }
            "group.protocol" => {
                self.group_protocol = match value.trim().to_ascii_lowercase().as_str() {
                    "classic" => GroupProtocol::Classic,
                    "consumer" => GroupProtocol::Consumer,
                    _ => return Err(bad(key, value, "expected classic or consumer")),
                }
            }
            "group.remote.assignor" => {
                self.group_remote_assignor =
                    Some(value.trim().to_string()).filter(|a| !a.is_empty());
            }
            "max.poll.interval.ms" => self.max_poll_interval = millis(key, value)?,
            "partition.assignment.strategy" => {
                let names: Vec<String> = value
                    .split(',')
                    .map(|s| {
                        let s = s.trim();
                        // Java class names map to the assignor they name.
                        match s.rsplit('.').next().unwrap_or(s) {
                            "RangeAssignor" => "range".to_string(),
                            "RoundRobinAssignor" => "roundrobin".to_string(),
                            "CooperativeStickyAssignor" => "cooperative-sticky".to_string(),
                            other => other.to_string(),
                        }
                    })
                    .filter(|s| !s.is_empty())
                    .collect();
                if let Some(unknown) = names
                    .iter()
                    .find(|n| !matches!(n.as_str(), "range" | "roundrobin" | "cooperative-sticky"))
                {
                    return Err(bad(
                        key,
                        unknown,
                        "known assignors: range, roundrobin, cooperative-sticky",
                    ));
                }
                if names.is_empty() {
                    return Err(bad(key, value, "needs at least one assignor"));
                }
                let cooperative = names.iter().filter(|n| *n == "cooperative-sticky").count();
                if cooperative > 0 && cooperative < names.len() {
                    return Err(bad(
                        key,
                        value,
                        "cooperative-sticky cannot be mixed with eager assignors in one consumer",
                    ));
                }
                self.assignment_strategy = names;
                self.classic_only.push("partition.assignment.strategy");
            }
            "fetch.min.bytes" => self.fetch_min_bytes = number(key, value)?,
            "fetch.max.wait.ms" | "fetch.wait.max.ms" => self.fetch_max_wait = millis(key, value)?,
            "fetch.max.bytes" => self.fetch_max_bytes = number(key, value)?,
            "max.partition.fetch.bytes" => self.max_partition_fetch_bytes = number(key, value)?,
            "isolation.level" => {
                self.read_committed = match value.trim() {
                    "read_uncommitted" => false,
                    "read_committed" => true,
                    _ => {
                        return Err(bad(
                            key,
                            value,
                            "expected read_uncommitted or read_committed",
                        ))
                    }
                }
            }
            "check.crcs" => self.check_crcs = boolean(key, value)?,
            "request.timeout.ms" => self.request_timeout = millis(key, value)?,
            "retry.backoff.ms" => self.retry_backoff = millis(key, value)?,
            "metadata.max.age.ms" => self.metadata_max_age = millis(key, value)?,
            _ => {
                return Err(ConsumeError::Config(format!(
                    "unknown consumer setting {key}"
                )))
            }
        }
        Ok(())
    }

    /// A config from Kafka-named settings over the defaults.
    pub fn from_map(settings: &HashMap<String, String>) -> Result<Self, ConsumeError> {
        let mut config = Self::default();
        let mut keys: Vec<&String> = settings.keys().collect();
        keys.sort();
        for key in keys {
            config.set(key, &settings[key])?;
        }
        Ok(config)
    }

    /// Whether the group is on the consumer protocol (KIP-848).
    pub fn consumer_protocol(&self) -> bool {
        self.group_protocol == GroupProtocol::Consumer
    }

    /// Refuses settings the chosen group protocol does not have, as the Java client
    /// does: on the consumer protocol the broker owns the session timeout, the
    /// heartbeat interval and the assignment.
    pub fn check(&self) -> Result<(), ConsumeError> {
        if let Some(key) = self
            .classic_only
            .first()
            .filter(|_| self.consumer_protocol())
        {
            return Err(ConsumeError::Config(format!(
                "{key} is not supported when group.protocol=consumer (the broker sets it)"
            )));
        }
        if self.group_remote_assignor.is_some() && !self.consumer_protocol() {
            return Err(ConsumeError::Config(
                "group.remote.assignor is only supported when group.protocol=consumer".into(),
            ));
        }
        Ok(())
    }

    /// Whether the assignors are cooperative (incremental rebalances).
    pub fn cooperative(&self) -> bool {
        self.assignment_strategy
            .first()
            .is_some_and(|s| s == "cooperative-sticky")
    }
}
