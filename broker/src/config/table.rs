//! Every broker setting Fjord knows: name, kind of value (with its range), default,
//! whether it changes at runtime, the topic config it is the default of, and a doc line.
//!
//! This one table feeds parsing at start, validation over the wire (AlterConfigs),
//! DescribeConfigs, `fjord configs list-known` and the README's settings list, so they
//! cannot drift apart.

use fjord_client_common::settings::Kind;

/// One broker setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Kafka's broker name (or `fjord.*` for Fjord's own).
    pub name: &'static str,
    /// What values it takes.
    pub kind: Kind,
    /// The built-in default, as text ("" for "not set").
    pub default: &'static str,
    /// Whether it may change while the broker runs (IncrementalAlterConfigs on the
    /// broker resource); the others need a restart.
    pub dynamic: bool,
    /// The topic-level config this is the broker-wide default of, if any.
    pub topic: Option<&'static str>,
    /// What it does, in one line.
    pub doc: &'static str,
}

const fn int(min: i64, max: i64) -> Kind {
    Kind::Int { min, max }
}

const I32: i64 = i32::MAX as i64;
const I64: i64 = i64::MAX;

/// Compression codecs a topic may force (`producer` keeps the producer's).
pub const COMPRESSION_TYPES: &[&str] =
    &["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"];
/// Cleanup policies Kafka defines.
pub const CLEANUP_POLICIES: &[&str] = &["delete", "compact"];

/// A broker setting that needs a restart.
const fn broker(
    name: &'static str,
    kind: Kind,
    default: &'static str,
    doc: &'static str,
) -> Setting {
    Setting {
        name,
        kind,
        default,
        dynamic: false,
        topic: None,
        doc,
    }
}

/// A broker setting that is the default of topic config `topic` (dynamic, as Kafka's
/// cluster-wide log configs are).
const fn topic_default(
    name: &'static str,
    topic: &'static str,
    kind: Kind,
    default: &'static str,
    doc: &'static str,
) -> Setting {
    Setting {
        dynamic: true,
        topic: Some(topic),
        ..broker(name, kind, default, doc)
    }
}

/// Every setting, in the order `list-known` and the README show them.
pub const SETTINGS: &[Setting] = &[
    broker("node.id", int(0, I32), "1", "This broker's id (`broker.id` is taken as an alias)."),
    broker("listeners", Kind::Text, "PLAINTEXT://127.0.0.1:9092", "Comma-separated NAME://HOST:PORT to bind, every one of them; only PLAINTEXT listeners until security lands."),
    broker("advertised.listeners", Kind::Text, "", "NAME://HOST:PORT clients are told to connect to, per listener; empty: the listener's own address."),
    broker("listener.security.protocol.map", Kind::Text, "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL", "NAME:PROTOCOL pairs giving each listener name its security protocol."),
    broker("log.dirs", Kind::Text, "./data", "Where topics, committed offsets and dynamic configs live (the first directory)."),
    broker("num.partitions", Kind::POSITIVE_INT, "1", "Partitions of auto-created topics and of CreateTopics without a count."),
    broker("default.replication.factor", int(1, 1), "1", "Replication factor of topics created without one: a single node holds one replica, so only 1 (more is refused, not ignored)."),
    broker("auto.create.topics.enable", Kind::Bool, "true", "Create unknown topics named by Metadata requests (Produce never creates one: it answers UNKNOWN_TOPIC_OR_PARTITION, as Kafka does)."),
    broker("fjord.auto.create.max.per.request", int(0, 10_000), "100", "Unknown topics one Metadata request may queue for auto-creation; the rest are answered as unknown."),
    broker("fjord.controller.mutation.rate", Kind::OptionalInt { min: 1, max: I32 }, "1000", "Partitions each client id may create or delete per second (the default controller_mutation_rate quota of KIP-599), and auto-created per second broker-wide; past it CreateTopics v6+ answers THROTTLING_QUOTA_EXCEEDED. Empty: unlimited."),
    broker("socket.request.max.bytes", Kind::POSITIVE_INT, "104857600", "Largest request frame accepted; a larger size prefix closes the connection."),
    broker("max.connections", Kind::POSITIVE_INT, "10000", "Client connections open at once; more wait to be accepted."),
    broker("connections.max.idle.ms", int(1, I64), "600000", "Close connections idle this long."),
    broker("queued.max.request.bytes", int(-1, 1 << 40), "104857600", "Bytes of requests read but not yet answered, over all connections (-1: 100 MiB)."),
    broker("fetch.max.bytes", Kind::POSITIVE_INT, "57671680", "Most bytes one fetch response carries, whatever the client asks."),
    broker("log.retention.check.interval.ms", int(1, I64), "300000", "How often retention deletes old segments."),
    broker("metrics.listener", Kind::Text, "", "HOST:PORT serving Prometheus /metrics and /health; empty: off."),
    broker("group.min.session.timeout.ms", int(0, I32), "6000", "Shortest session timeout a group member may ask for."),
    broker("group.max.session.timeout.ms", int(0, I32), "1800000", "Longest session timeout a group member may ask for."),
    broker("group.initial.rebalance.delay.ms", int(0, I32), "3000", "A new group waits this long for more members before its first assignment."),
    broker("group.max.size", Kind::POSITIVE_INT, "2147483647", "Most members one consumer group may have."),
    broker("group.consumer.session.timeout.ms", int(1, I32), "45000", "KIP-848 consumer groups: a member that does not heartbeat for this long is removed."),
    broker("group.consumer.min.session.timeout.ms", int(1, I32), "45000", "Lower bound of group.consumer.session.timeout.ms."),
    broker("group.consumer.max.session.timeout.ms", int(1, I32), "60000", "Upper bound of group.consumer.session.timeout.ms."),
    broker("group.consumer.heartbeat.interval.ms", int(1, I32), "5000", "KIP-848 consumer groups: how often members heartbeat (told in every answer)."),
    broker("group.consumer.min.heartbeat.interval.ms", int(1, I32), "5000", "Lower bound of group.consumer.heartbeat.interval.ms."),
    broker("group.consumer.max.heartbeat.interval.ms", int(1, I32), "15000", "Upper bound of group.consumer.heartbeat.interval.ms."),
    broker("group.consumer.assignors", Kind::Text, "uniform,range", "Server-side assignors members may ask for (group.remote.assignor), the default first: uniform, range."),
    broker("group.consumer.max.size", Kind::POSITIVE_INT, "2147483647", "Most members one KIP-848 consumer group may have."),
    broker("group.consumer.migration.policy", Kind::Choice(&["bidirectional", "upgrade", "downgrade", "disabled"]), "bidirectional", "Online migration of groups with members: classic to consumer (upgrade) and back (downgrade); empty groups change kind whatever the policy."),
    broker("offsets.retention.minutes", Kind::POSITIVE_INT, "10080", "Committed offsets of groups without members expire after this."),
    broker("offsets.retention.check.interval.ms", int(1, I64), "600000", "How often expired committed offsets are removed."),
    broker("offset.metadata.max.bytes", int(0, I32), "4096", "Largest metadata string an offset commit may carry."),
    broker("transaction.max.timeout.ms", Kind::POSITIVE_INT, "900000", "Longest transaction.timeout.ms a transactional producer may ask for (INVALID_TRANSACTION_TIMEOUT above)."),
    broker("transactional.id.expiration.ms", Kind::POSITIVE_INT, "604800000", "A transactional id with no transaction under way and no request for this long is forgotten."),
    broker("transaction.abort.timed.out.transaction.cleanup.interval.ms", Kind::POSITIVE_INT, "10000", "How often transactions past their timeout are aborted (their producer fenced)."),
    broker("transaction.remove.expired.transaction.cleanup.interval.ms", Kind::POSITIVE_INT, "3600000", "How often expired transactional ids are removed."),
    broker("producer.id.expiration.ms", Kind::POSITIVE_INT, "86400000", "Idempotent producers unseen this long are forgotten."),
    topic_default("log.cleanup.policy", "cleanup.policy", Kind::ChoiceList(CLEANUP_POLICIES), "delete", "What happens to old segments: delete (by retention.ms and retention.bytes), compact (the log cleaner keeps the latest record per key), or both."),
    topic_default("log.cleaner.min.cleanable.ratio", "min.cleanable.dirty.ratio", Kind::Ratio, "0.5", "Compaction: a log is cleaned once this share of it is dirty (not cleaned yet); the dirtiest goes first."),
    topic_default("log.cleaner.delete.retention.ms", "delete.retention.ms", int(0, I64), "86400000", "Compaction: how long a tombstone stays once cleaned (KIP-534 horizon)."),
    topic_default("log.cleaner.min.compaction.lag.ms", "min.compaction.lag.ms", int(0, I64), "0", "Compaction: records younger than this are never cleaned."),
    topic_default("log.cleaner.max.compaction.lag.ms", "max.compaction.lag.ms", int(1, I64), "9223372036854775807", "Compaction: a record older than this forces a pass whatever the dirty ratio."),
    broker("log.cleaner.enable", Kind::Bool, "true", "Run the log cleaner (compacted topics only)."),
    broker("log.cleaner.threads", int(0, 64), "1", "Cleaner threads: passes that run at once, each on another log (0: no cleaning, as Kafka)."),
    broker("log.cleaner.dedupe.buffer.size", int(1 << 20, I64), "134217728", "Memory for the cleaners' key maps, split evenly between the threads (24 bytes a key)."),
    broker("log.cleaner.io.max.bytes.per.second", Kind::PositiveDouble, "1.7976931348623157E308", "The cleaners' read+write throttle, for all threads together (each paces itself to its share)."),
    broker("log.cleaner.backoff.ms", int(0, I64), "15000", "How long a cleaner sleeps when no log needs cleaning."),
    topic_default("compression.type", "compression.type", Kind::Choice(COMPRESSION_TYPES), "producer", "Codec batches are stored with; producer keeps the producer's."),
    topic_default("log.segment.bytes", "segment.bytes", int(14, I32), "1073741824", "Roll to a new segment when the active one would exceed this."),
    topic_default("log.roll.ms", "segment.ms", int(1, I64), "604800000", "Roll to a new segment when the active one's first batch is this old."),
    topic_default("log.index.size.max.bytes", "segment.index.bytes", int(12, I32), "10485760", "Size each offset and time index is preallocated to."),
    topic_default("log.index.interval.bytes", "index.interval.bytes", int(0, I32), "4096", "Bytes of log between two index entries."),
    topic_default("log.retention.ms", "retention.ms", int(-1, I64), "604800000", "Delete segments whose newest record is older than this; -1: keep forever (`log.retention.hours` is taken too)."),
    topic_default("log.retention.bytes", "retention.bytes", int(-1, I64), "-1", "Delete the oldest segments while a partition is larger than this; -1: no limit."),
    topic_default("message.max.bytes", "max.message.bytes", int(61, I32), "1048588", "Largest record batch accepted."),
    topic_default("log.message.timestamp.type", "message.timestamp.type", Kind::Choice(&["CreateTime", "LogAppendTime"]), "CreateTime", "Keep the producer's timestamps, or stamp batches with the append time."),
    topic_default("log.flush.interval.messages", "flush.messages", int(1, I64), "9223372036854775807", "fsync once this many messages are unflushed."),
    topic_default("log.flush.interval.ms", "flush.ms", Kind::OptionalInt { min: 0, max: I64 }, "", "fsync once the oldest unflushed append is this old; empty: not set."),
    topic_default("min.insync.replicas", "min.insync.replicas", int(1, 1), "1", "Replicas an acks=all produce needs: a single node has one, so only 1 (more is refused, not ignored)."),
    topic_default("fjord.fsync.on.ack", "fjord.fsync.on.ack", Kind::Bool, "true", "Acknowledge acks=all produces (and committed offsets) only once on disk; one fdatasync covers every waiting append. acks=1 stays a page-cache acknowledgement."),
    topic_default("fjord.produce.validation", "fjord.produce.validation", Kind::Choice(&["crc", "lengths", "full"]), "lengths", "What a produce is checked for: crc (header and CRC), lengths (also record lengths), full (decode every record)."),
    broker("fjord.segment.idle.close.ms", int(0, I64), "600000", "Close the files of segments unused this long."),
    broker("fjord.fetch.mode", Kind::Choice(&["auto", "sendfile", "copy", "mmap"]), "auto", "How fetched records go from segment files to sockets: auto (sendfile remote, copy loopback), sendfile, copy or mmap."),
    broker("fjord.fetch.sendfile", Kind::Bool, "true", "The older switch: false with fetch.mode auto means copy."),
    broker("fjord.max.partitions", int(0, I32), "200000", "Most partitions this broker holds; creations past it fail with INVALID_PARTITIONS."),
];

/// The setting named `name`, if Fjord knows it.
pub fn setting(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// The broker setting that holds the default of topic config `topic_name`.
pub fn for_topic_config(topic_name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.topic == Some(topic_name))
}

/// Every topic config, as (topic name, broker setting).
pub fn topic_configs() -> impl Iterator<Item = (&'static str, &'static Setting)> {
    SETTINGS
        .iter()
        .filter_map(|s| s.topic.map(|topic| (topic, s)))
}

/// Kafka's security settings, which Fjord cannot honour yet: a broker asked for them
/// must not start and serve plaintext in their place.
pub fn is_security_setting(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "authorizer.class.name",
        "super.users",
        "principal.builder.class",
        "allow.everyone.if.no.acl.found",
        "connections.max.reauth.ms",
    ];
    let per_listener = name
        .strip_prefix("listener.name.")
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(_, key)| {
            key.starts_with("ssl.") || key.starts_with("sasl.") || key.contains(".sasl.")
        });
    name.starts_with("ssl.") || name.starts_with("sasl.") || EXACT.contains(&name) || per_listener
}

/// The table as a Markdown list, one line a setting: what the README's settings section
/// holds (a test keeps the two equal) and `fjord configs list-known --markdown` prints.
pub fn markdown() -> String {
    let mut out = String::new();
    for s in SETTINGS {
        let default = if s.default.is_empty() {
            "(not set)".to_string()
        } else {
            format!("`{}`", s.default)
        };
        let scope = match (s.topic, s.dynamic) {
            (Some(t), _) => format!("dynamic; topic config `{t}`"),
            (None, true) => "dynamic".to_string(),
            (None, false) => "restart".to_string(),
        };
        out.push_str(&format!(
            "- `{}` ({}; default {default}; {scope}): {}\n",
            s.name,
            s.kind.describe(),
            s.doc
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_is_a_value_its_kind_accepts() {
        for s in SETTINGS {
            if !matches!(s.kind, Kind::Text) {
                assert!(
                    s.kind.check(s.name, s.default).is_ok(),
                    "{}={}",
                    s.name,
                    s.default
                );
            }
        }
    }

    #[test]
    fn names_are_unique_and_topic_configs_are_dynamic() {
        let mut names: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SETTINGS.len());
        for (topic, s) in topic_configs() {
            assert!(s.dynamic, "{topic}");
            assert_eq!(for_topic_config(topic).map(|s| s.name), Some(s.name));
        }
    }

    #[test]
    fn security_settings_are_recognised() {
        for name in [
            "ssl.keystore.location",
            "sasl.enabled.mechanisms",
            "authorizer.class.name",
            "super.users",
            "listener.name.internal.ssl.keystore.location",
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config",
            "listener.name.x.sasl.enabled.mechanisms",
        ] {
            assert!(is_security_setting(name), "{name}");
        }
        for name in [
            "listeners",
            "log.dirs",
            "listener.security.protocol.map",
            "sslx",
        ] {
            assert!(!is_security_setting(name), "{name}");
        }
    }

    /// The README lists every setting from this table; regenerate it with
    /// `fjord configs list-known --markdown` when the table changes.
    #[test]
    fn readme_settings_section_is_the_table() {
        let readme = include_str!("../../../README.md");
        let begin = "<!-- settings:begin (fjord configs list-known --markdown) -->\n";
        let end = "<!-- settings:end -->";
        let start = readme.find(begin).expect("README has the settings markers") + begin.len();
        let stop = readme[start..]
            .find(end)
            .expect("README has the end marker")
            + start;
        assert_eq!(
            &readme[start..stop],
            markdown(),
            "README's settings section is out of date: paste `fjord configs list-known --markdown` between its markers"
        );
    }
}
