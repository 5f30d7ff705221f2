//! Producer settings under Kafka's names, with Kafka 4.0's defaults.

use std::collections::HashMap;
use std::time::Duration;

use fjord_protocol::compression::Compression;

use fjord_client_common::settings::{boolean, millis, number, servers, BadSetting};

use crate::error::ProduceError;

/// Which acknowledgement a produce waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// No answer (`acks=0`): delivery reports carry offset -1.
    None,
    /// The leader wrote it (`acks=1`).
    Leader,
    /// All in-sync replicas (`acks=all` / `-1`); on Fjord, durable per the broker's policy.
    All,
}

impl Acks {
    /// The wire value.
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// Everything the producer can be told.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `bootstrap.servers`: "host:port" entries.
    pub bootstrap_servers: Vec<String>,
    /// `client.id`.
    pub client_id: String,
    /// `acks` (default all).
    pub acks: Acks,
    /// `linger.ms` (default 5).
    pub linger: Duration,
    /// `batch.size` in bytes (default 16384).
    pub batch_size: usize,
    /// `compression.type` (default none).
    pub compression: Compression,
    /// `enable.idempotence` (default true; needs acks=all).
    pub idempotence: bool,
    /// `max.in.flight.requests.per.connection` (default 5; at most 5 with idempotence).
    pub max_in_flight: usize,
    /// `retries` (default effectively unlimited, bounded by the delivery timeout).
    pub retries: u32,
    /// `retry.backoff.ms` (default 100).
    pub retry_backoff: Duration,
    /// `delivery.timeout.ms` (default 120000).
    pub delivery_timeout: Duration,
    /// `request.timeout.ms` (default 30000).
    pub request_timeout: Duration,
    /// `buffer.memory` in bytes (default 32 MiB).
    pub buffer_memory: usize,
    /// `max.block.ms` (default 60000): how long `send` waits for buffer space or
    /// metadata.
    pub max_block: Duration,
    /// `max.request.size` in bytes (default 1048576): the largest record (and request).
    pub max_request_size: usize,
    /// `metadata.max.age.ms` (default 300000).
    pub metadata_max_age: Duration,
    /// `partitioner`: "default" (murmur2 for keys, sticky otherwise), "murmur2",
    /// "sticky" or "round_robin"; custom ones are set in code.
    pub partitioner: String,
    /// `allow.auto.create.topics` (default true).
    pub allow_auto_create_topics: bool,
    /// `transactional.id` (default none): makes the producer transactional, fencing
    /// any older producer with the same id.
    pub transactional_id: Option<String>,
    /// `transaction.timeout.ms` (default 60000): how long the coordinator lets a
    /// transaction stay open before aborting it.
    pub transaction_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: vec!["127.0.0.1:9092".into()],
            client_id: "fjord-producer".into(),
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 16_384,
            compression: Compression::None,
            idempotence: true,
            max_in_flight: 5,
            retries: i32::MAX as u32,
            retry_backoff: Duration::from_millis(100),
            delivery_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
            buffer_memory: 32 << 20,
            max_block: Duration::from_secs(60),
            max_request_size: 1 << 20,
            metadata_max_age: Duration::from_secs(300),
            partitioner: "default".into(),
            allow_auto_create_topics: true,
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
        }
    }
}

fn bad(key: &str, value: &str, why: &str) -> ProduceError {
    BadSetting::new(key, value, why).into()
}

impl ProducerConfig {
    /// Sets one setting by its Kafka name. Unknown names are an error: a typo should not
    /// silently fall back to a default.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ProduceError> {
        match key {
            "bootstrap.servers" => {
                self.bootstrap_servers = servers(key, value)?;
            }
            "client.id" => self.client_id = value.to_string(),
            "acks" => {
                self.acks = match value.trim() {
                    "0" => Acks::None,
                    "1" => Acks::Leader,
                    "all" | "-1" => Acks::All,
                    _ => return Err(bad(key, value, "expected 0, 1, all or -1")),
                }
            }
            "linger.ms" => self.linger = millis(key, value)?,
            "batch.size" => self.batch_size = number(key, value)?,
            "compression.type" | "compression.codec" => {
                self.compression = match value.trim() {
                    "none" => Compression::None,
                    "gzip" => Compression::Gzip,
                    "snappy" => Compression::Snappy,
                    "lz4" => Compression::Lz4,
                    "zstd" => Compression::Zstd,
                    _ => return Err(bad(key, value, "expected none, gzip, snappy, lz4 or zstd")),
                }
            }
            "enable.idempotence" => {
                self.idempotence = boolean(key, value)?;
            }
            "max.in.flight.requests.per.connection" => {
                self.max_in_flight = number(key, value)?;
                if self.max_in_flight == 0 {
                    return Err(bad(key, value, "must be at least 1"));
                }
            }
            "retries" => self.retries = number(key, value)?,
            "retry.backoff.ms" => self.retry_backoff = millis(key, value)?,
            "delivery.timeout.ms" => self.delivery_timeout = millis(key, value)?,
            "request.timeout.ms" => self.request_timeout = millis(key, value)?,
            "buffer.memory" => self.buffer_memory = number(key, value)?,
            "max.block.ms" => self.max_block = millis(key, value)?,
            "max.request.size" => self.max_request_size = number(key, value)?,
            "metadata.max.age.ms" => self.metadata_max_age = millis(key, value)?,
            "partitioner" | "partitioner.class" => self.partitioner = value.trim().to_string(),
            "allow.auto.create.topics" => {
                self.allow_auto_create_topics = boolean(key, value)?;
            }
            "transactional.id" => {
                let id = value.trim();
                self.transactional_id = (!id.is_empty()).then(|| id.to_string());
            }
            "transaction.timeout.ms" => {
                self.transaction_timeout = millis(key, value)?;
                if self.transaction_timeout.as_millis() > i32::MAX as u128 {
                    return Err(bad(key, value, "at most 2147483647"));
                }
            }
            _ => {
                return Err(ProduceError::Config(format!(
                    "unknown producer setting {key}"
                )))
            }
        }
        Ok(())
    }

    /// A config from Kafka-named settings over the defaults.
    pub fn from_map(settings: &HashMap<String, String>) -> Result<Self, ProduceError> {
        let mut config = Self::default();
        // Sorted, so errors do not depend on hash order.
        let mut keys: Vec<&String> = settings.keys().collect();
        keys.sort();
        for key in keys {
            config.set(key, &settings[key])?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks combinations Kafka refuses.
    pub fn validate(&self) -> Result<(), ProduceError> {
        if self.idempotence && self.acks != Acks::All {
            return Err(ProduceError::Config(
                "enable.idempotence=true needs acks=all (set enable.idempotence=false for acks=0 or 1)"
                    .into(),
            ));
        }
        if self.idempotence && self.max_in_flight > 5 {
            return Err(ProduceError::Config(
                "enable.idempotence=true allows at most 5 max.in.flight.requests.per.connection"
                    .into(),
            ));
        }
        if self.transactional_id.is_some() && !self.idempotence {
            return Err(ProduceError::Config(
                "transactional.id needs enable.idempotence=true".into(),
            ));
        }
        if self.batch_size == 0 || self.buffer_memory < self.batch_size {
            return Err(ProduceError::Config(
                "batch.size must be positive and at most buffer.memory".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_take_any_case_and_refuse_the_rest() {
        let mut c = ProducerConfig::default();
        c.set("allow.auto.create.topics", "FALSE").expect("FALSE");
        assert!(!c.allow_auto_create_topics);
        c.set("allow.auto.create.topics", "True").expect("True");
        assert!(c.allow_auto_create_topics);
        // A typo used to read as false, silently.
        assert!(c.set("allow.auto.create.topics", "yes").is_err());
        assert!(c.allow_auto_create_topics);
        c.set("enable.idempotence", "FALSE").expect("FALSE");
        assert!(!c.idempotence);
        assert!(c.set("enable.idempotence", "1").is_err());
    }
}
