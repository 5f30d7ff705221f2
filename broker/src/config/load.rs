//! Building [`BrokerConfig`] at start: defaults from the table, then a properties file,
//! then `--set` pairs. Every known value is checked against its kind; a value that does
//! not parse stops the start with the setting's name and what it accepts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use fjord_client_common::settings::{boolean, int_in};

use super::table::{is_security_setting, SETTINGS};
use super::{check_value, is_known_setting, listeners, BrokerConfig, FetchMode};

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

/// Kafka's older names, each turned into the setting it stands for.
fn apply_aliases(values: &mut BTreeMap<String, String>) -> Result<()> {
    if let Some(id) = values.remove("broker.id") {
        int_in("broker.id", &id, 0, i64::from(i32::MAX))?;
        values.insert("node.id".into(), id);
    }
    // Kafka's precedence: ms over minutes over hours (the first one set wins).
    for (alias, factor) in [
        ("log.retention.minutes", 60_000),
        ("log.retention.hours", 3_600_000),
    ] {
        if let Some(v) = values.remove(alias) {
            let n = int_in(alias, &v, -1, i64::MAX / factor)?;
            let ms = if n < 0 { -1 } else { n * factor };
            values
                .entry("log.retention.ms".into())
                .or_insert(ms.to_string());
        }
    }
    Ok(())
}

/// The settings given, over the defaults: refuses security Fjord lacks and values that
/// do not parse; unknown names are kept with a warning (Kafka's server.properties holds
/// many a single node ignores).
fn merged(file: Option<&str>, sets: &[(String, String)]) -> Result<BTreeMap<String, String>> {
    let given: Vec<(String, String)> = file
        .map(parse_properties)
        .transpose()?
        .unwrap_or_default()
        .into_iter()
        .chain(sets.iter().cloned())
        .collect();
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in given {
        // An empty value asks for nothing (Kafka's own default of authorizer.class.name).
        if is_security_setting(&k) && !v.trim().is_empty() {
            bail!(
                "{k} is a security setting, and Fjord has no TLS, SASL or ACLs yet: \
                 refusing to start rather than run unprotected"
            );
        }
        values.insert(k, v);
    }
    apply_aliases(&mut values)?;
    for (k, v) in &values {
        if is_known_setting(k) {
            check_value(k, v)?;
        } else {
            tracing::warn!(key = %k, "unknown config key (kept, unused)");
        }
    }
    if let Some(p) = values.get("security.inter.broker.protocol") {
        if !p.eq_ignore_ascii_case("PLAINTEXT") {
            bail!("security.inter.broker.protocol={p}: Fjord supports only PLAINTEXT yet");
        }
    }
    for s in SETTINGS {
        values
            .entry(s.name.to_string())
            .or_insert_with(|| s.default.to_string());
    }
    Ok(values)
}

/// Reads checked values: each is known to parse, so failures here are bugs of the table.
struct Values<'a>(&'a BTreeMap<String, String>);

impl Values<'_> {
    fn text(&self, k: &str) -> &str {
        self.0.get(k).map_or("", String::as_str)
    }

    fn int(&self, k: &str) -> Result<i64> {
        Ok(int_in(k, self.text(k), i64::MIN, i64::MAX)?)
    }

    fn count(&self, k: &str) -> Result<usize> {
        usize::try_from(self.int(k)?).with_context(|| format!("{k} must not be negative"))
    }

    fn millis(&self, k: &str) -> Result<Duration> {
        Ok(Duration::from_millis(
            u64::try_from(self.int(k)?).with_context(|| format!("{k} must not be negative"))?,
        ))
    }

    fn flag(&self, k: &str) -> Result<bool> {
        Ok(boolean(k, self.text(k))?)
    }
}

fn fetch_mode(v: &Values<'_>) -> Result<FetchMode> {
    Ok(
        match (v.text("fjord.fetch.mode"), v.flag("fjord.fetch.sendfile")?) {
            // The older switch: false meant copying through a buffer.
            ("auto", false) => FetchMode::Copy,
            ("auto", true) => FetchMode::Auto,
            ("sendfile", _) => FetchMode::Sendfile,
            ("copy", _) => FetchMode::Copy,
            ("mmap", _) => FetchMode::Mmap,
            (other, _) => {
                bail!("fjord.fetch.mode must be auto, sendfile, copy or mmap, not {other}")
            }
        },
    )
}

fn coordinator(v: &Values<'_>) -> Result<crate::groups::CoordinatorConfig> {
    Ok(crate::groups::CoordinatorConfig {
        limits: crate::groups::GroupLimits {
            min_session: v.millis("group.min.session.timeout.ms")?,
            max_session: v.millis("group.max.session.timeout.ms")?,
            initial_delay: v.millis("group.initial.rebalance.delay.ms")?,
            max_size: v.count("group.max.size")?,
        },
        offsets_retention: v.millis("offsets.retention.minutes")? * 60_000,
        offsets_retention_check: v.millis("offsets.retention.check.interval.ms")?,
        offset_metadata_max_bytes: v.count("offset.metadata.max.bytes")?,
        consumer: consumer_groups(v)?,
    })
}

/// `group.consumer.*`, checked as Kafka does: the session timeout and heartbeat
/// interval within their min and max, the interval below the session timeout, only
/// assignors Fjord has.
fn consumer_groups(v: &Values<'_>) -> Result<crate::groups::consumer::ConsumerGroupConfig> {
    let within = |k: &str, min: &str, max: &str| -> Result<i64> {
        let (value, lo, hi) = (v.int(k)?, v.int(min)?, v.int(max)?);
        if value < lo || value > hi {
            bail!("{k}={value} must be within {min}={lo} and {max}={hi}");
        }
        Ok(value)
    };
    let session = within(
        "group.consumer.session.timeout.ms",
        "group.consumer.min.session.timeout.ms",
        "group.consumer.max.session.timeout.ms",
    )?;
    let heartbeat = within(
        "group.consumer.heartbeat.interval.ms",
        "group.consumer.min.heartbeat.interval.ms",
        "group.consumer.max.heartbeat.interval.ms",
    )?;
    if heartbeat >= session {
        bail!(
            "group.consumer.heartbeat.interval.ms must be below group.consumer.session.timeout.ms"
        );
    }
    let assignors: Vec<String> = v
        .text("group.consumer.assignors")
        .split(',')
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    if let Some(bad) = assignors
        .iter()
        .find(|a| !crate::groups::consumer::assignor::ASSIGNORS.contains(&a.as_str()))
    {
        bail!("group.consumer.assignors: unknown assignor {bad} (Fjord has uniform and range)");
    }
    if assignors.is_empty() {
        bail!("group.consumer.assignors must name at least one assignor");
    }
    Ok(crate::groups::consumer::ConsumerGroupConfig {
        session_timeout_ms: u64::try_from(session).context("session timeout")?,
        heartbeat_interval_ms: i32::try_from(heartbeat).context("heartbeat interval")?,
        assignors,
        max_size: v.count("group.consumer.max.size")?,
        migration: crate::groups::routing::MigrationPolicy::parse(
            v.text("group.consumer.migration.policy"),
        ),
    })
}

impl BrokerConfig {
    /// Builds the config from a file's contents and `--set` pairs (later pairs win).
    pub fn from_sources(file: Option<&str>, sets: &[(String, String)]) -> Result<Self> {
        let values = merged(file, sets)?;
        let v = Values(&values);
        let listeners = listeners::parse(
            v.text("listeners"),
            v.text("advertised.listeners"),
            v.text("listener.security.protocol.map"),
        )?;
        let dirs = v.text("log.dirs");
        let log_dir = PathBuf::from(dirs.split(',').next().unwrap_or("./data").trim());
        let config = Self {
            node_id: i32::try_from(v.int("node.id")?).context("node.id")?,
            listeners,
            log_dir,
            num_partitions: i32::try_from(v.int("num.partitions")?).context("num.partitions")?,
            auto_create_topics: v.flag("auto.create.topics.enable")?,
            auto_create_max_per_request: v.count("fjord.auto.create.max.per.request")?,
            controller_mutation_rate: match v.text("fjord.controller.mutation.rate").trim() {
                "" => None,
                _ => Some(
                    u32::try_from(v.int("fjord.controller.mutation.rate")?)
                        .context("fjord.controller.mutation.rate")?,
                ),
            },
            coordinator: coordinator(&v)?,
            transactions: crate::txn::TxnConfig {
                max_timeout_ms: i32::try_from(v.int("transaction.max.timeout.ms")?)
                    .context("transaction.max.timeout.ms")?,
                id_expiration: v.millis("transactional.id.expiration.ms")?,
                abort_check: v
                    .millis("transaction.abort.timed.out.transaction.cleanup.interval.ms")?,
                expiry_check: v
                    .millis("transaction.remove.expired.transaction.cleanup.interval.ms")?,
            },
            fsync_on_ack: v.flag("fjord.fsync.on.ack")?,
            max_partitions: v.count("fjord.max.partitions")?,
            fetch_mode: fetch_mode(&v)?,
            socket_request_max_bytes: v.count("socket.request.max.bytes")?,
            max_connections: v.count("max.connections")?,
            connections_max_idle_ms: v.millis("connections.max.idle.ms")?.as_millis() as u64,
            retention_check_interval_ms: v.millis("log.retention.check.interval.ms")?.as_millis()
                as u64,
            cleaner: super::CleanerConfig {
                enable: v.flag("log.cleaner.enable")?,
                threads: v.count("log.cleaner.threads")?,
                backoff_ms: v.millis("log.cleaner.backoff.ms")?.as_millis() as u64,
                dedupe_buffer_bytes: v.count("log.cleaner.dedupe.buffer.size")?,
                io_max_bytes_per_second: v
                    .text("log.cleaner.io.max.bytes.per.second")
                    .trim()
                    .parse()
                    .context("log.cleaner.io.max.bytes.per.second")?,
            },
            producer_id_expiration_ms: v.millis("producer.id.expiration.ms")?.as_millis() as u64,
            segment_idle_close_ms: v.millis("fjord.segment.idle.close.ms")?.as_millis() as u64,
            fetch_max_bytes: v.count("fetch.max.bytes")?,
            // Kafka's -1 means "no limit"; a connection still needs a bound: 100 MiB.
            queued_max_request_bytes: usize::try_from(v.int("queued.max.request.bytes")?)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn booleans_take_any_case_and_typos_stop_the_start() {
        for v in ["TRUE", "True", "true"] {
            let c = BrokerConfig::from_sources(None, &sets(&[("fjord.fsync.on.ack", v)])).expect(v);
            assert!(c.fsync_on_ack, "{v}");
        }
        let c = BrokerConfig::from_sources(None, &sets(&[("auto.create.topics.enable", "FALSE")]))
            .expect("FALSE");
        assert!(!c.auto_create_topics);
        for v in ["1", "yes", "on", ""] {
            let e =
                BrokerConfig::from_sources(None, &sets(&[("fjord.fsync.on.ack", v)])).expect_err(v);
            let text = format!("{e:#}");
            assert!(
                text.contains("fjord.fsync.on.ack") && text.contains("true or false"),
                "{text}"
            );
        }
    }

    #[test]
    fn numbers_out_of_range_name_the_setting_and_its_range() {
        for (k, v) in [
            ("num.partitions", "0"),
            ("num.partitions", "many"),
            ("log.segment.bytes", "3000000000"),
            ("log.retention.ms", "-2"),
            ("fjord.fetch.mode", "splice"),
            ("log.message.timestamp.type", "createtime"),
            ("broker.id", "-5"),
            ("log.retention.hours", "x"),
        ] {
            let e = BrokerConfig::from_sources(None, &sets(&[(k, v)])).expect_err(k);
            assert!(format!("{e:#}").contains(k), "{k}={v}: {e:#}");
        }
        let e = BrokerConfig::from_sources(None, &sets(&[("num.partitions", "0")])).expect_err("0");
        assert_eq!(
            format!("{e:#}"),
            "num.partitions=0: must be between 1 and 2147483647 (accepts a number >= 1 (32-bit))"
        );
    }

    #[test]
    fn security_settings_stop_the_start() {
        for (k, v) in [
            ("sasl.enabled.mechanisms", "PLAIN"),
            ("ssl.keystore.location", "/etc/k.pem"),
            (
                "authorizer.class.name",
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            ),
            ("super.users", "User:admin"),
            ("security.inter.broker.protocol", "SASL_SSL"),
            (
                "listeners",
                "SASL_PLAINTEXT://127.0.0.1:1,SASL_SSL://127.0.0.1:2,SSL://127.0.0.1:3",
            ),
        ] {
            let e = BrokerConfig::from_sources(None, &sets(&[(k, v)])).expect_err(k);
            assert!(format!("{e:#}").contains("Fjord"), "{k}: {e:#}");
        }
        let file = "listeners=PLAINTEXT://127.0.0.1:0\nssl.truststore.location=/x\n";
        assert!(BrokerConfig::from_sources(Some(file), &[]).is_err());
        // Empty values ask for no security: Kafka's defaults, as a copied file holds them.
        let empty = sets(&[("authorizer.class.name", ""), ("super.users", " ")]);
        assert!(BrokerConfig::from_sources(None, &empty).is_ok());
    }

    #[test]
    fn aliases_become_the_settings_they_stand_for() {
        let c = BrokerConfig::from_sources(
            None,
            &sets(&[("broker.id", "7"), ("log.retention.minutes", "3")]),
        )
        .expect("aliases");
        assert_eq!(c.node_id, 7);
        assert_eq!(c.values["log.retention.ms"], "180000");
        let c = BrokerConfig::from_sources(
            None,
            &sets(&[("log.retention.hours", "2"), ("log.retention.ms", "5")]),
        )
        .expect("ms wins");
        assert_eq!(c.values["log.retention.ms"], "5");
        let c = BrokerConfig::from_sources(
            None,
            &sets(&[("log.retention.hours", "2"), ("log.retention.minutes", "3")]),
        )
        .expect("minutes win over hours");
        assert_eq!(c.values["log.retention.ms"], "180000");
    }
}
