//! The `fjord` command line: the broker (`serve`, the default) and client tools that talk
//! to any Kafka-compatible broker over the protocol: `topics`, `groups`, `configs`,
//! `produce`, `consume`.

mod cleaner_status;
pub(crate) mod configs;
pub(crate) mod console;
mod delete_records;
pub(crate) mod groups;
mod groups_describe;
pub(crate) mod topics;
pub(crate) mod transactions;
pub(crate) mod transactions_abort;
pub(crate) mod transactions_hanging;

use clap::{Args, Parser, Subcommand};

/// Fjord: a Kafka-compatible streaming log broker, and tools to use one.
#[derive(Debug, Parser)]
#[command(name = "fjord", version, args_conflicts_with_subcommands = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    /// Broker flags when no subcommand is given (`fjord --set ...` = `fjord serve --set ...`).
    #[command(flatten)]
    pub(crate) serve: ServeArgs,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the broker (the default). With no flags: 127.0.0.1:9092, data under ./data.
    Serve(ServeArgs),
    /// Create, list, describe, grow and delete topics.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// List, describe (with lag), reset and delete consumer groups.
    #[command(subcommand)]
    Groups(GroupsCommand),
    /// List, describe and abort transactions (as kafka-transactions.sh).
    #[command(subcommand)]
    Transactions(transactions::TransactionsCommand),
    /// Read and change topic and broker configs while the broker runs.
    #[command(subcommand)]
    Configs(ConfigsCommand),
    /// Send lines from stdin as records (one per line).
    Produce(ProduceArgs),
    /// Print records of a topic, one value per line by default.
    Consume(ConsumeArgs),
}

/// Broker settings.
#[derive(Debug, Args, Default)]
pub(crate) struct ServeArgs {
    /// Broker settings in Java properties format (Kafka's names).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<std::path::PathBuf>,
    /// One setting, `key=value` (repeatable; wins over the file). `fjord configs
    /// list-known` lists every setting. acks=all produces are acknowledged once on disk
    /// unless `fjord.fsync.on.ack=false`; acks=1 ones once in the page cache.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub(crate) sets: Vec<String>,
    /// Log lines as text, or as one JSON object per line for log collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
}

/// How the broker writes its log (to stderr; `RUST_LOG` picks the levels).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target and fields.
    Json,
}

/// Where the broker is.
#[derive(Debug, Args, Clone)]
pub(crate) struct Connect {
    /// The broker to talk to.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9092")]
    pub(crate) bootstrap_server: String,
}

/// Topic administration.
#[derive(Debug, Subcommand)]
pub(crate) enum TopicsCommand {
    /// Create a topic.
    Create {
        #[command(flatten)]
        connect: Connect,
        /// Its name.
        #[arg(long)]
        topic: String,
        /// Its partition count (broker default when not given).
        #[arg(long)]
        partitions: Option<i32>,
        /// A topic config, `key=value` (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics.
    List {
        #[command(flatten)]
        connect: Connect,
    },
    /// Partitions (leader, log start and end offsets) and configs of topics.
    Describe {
        #[command(flatten)]
        connect: Connect,
        /// One topic (all when not given).
        #[arg(long)]
        topic: Option<String>,
    },
    /// Grow a topic to more partitions, and/or set topic configs.
    Alter {
        #[command(flatten)]
        connect: Connect,
        /// The topic.
        #[arg(long)]
        topic: String,
        /// The new partition count.
        #[arg(long, required_unless_present = "configs")]
        partitions: Option<i32>,
        /// Set a topic config, `key=value` (repeatable; `fjord configs` does more).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// Delete a topic.
    Delete {
        #[command(flatten)]
        connect: Connect,
        /// The topic.
        #[arg(long)]
        topic: String,
    },
    /// Delete the records below an offset (Kafka's DeleteRecords): the log start moves
    /// to it and whole segments below are removed.
    DeleteRecords {
        #[command(flatten)]
        connect: Connect,
        /// The topic.
        #[arg(long, required_unless_present = "offset_json_file")]
        topic: Option<String>,
        /// One partition (every partition when not given).
        #[arg(long, requires = "topic")]
        partition: Option<i32>,
        /// The new log start offset; -1: up to the high watermark (everything).
        #[arg(
            long,
            allow_negative_numbers = true,
            required_unless_present = "offset_json_file"
        )]
        offset: Option<i64>,
        /// kafka-delete-records' JSON file instead:
        /// {"partitions": [{"topic": T, "partition": P, "offset": O}], "version": 1}.
        #[arg(long, conflicts_with_all = ["topic", "offset"])]
        offset_json_file: Option<std::path::PathBuf>,
    },
}

/// Consumer group administration.
#[derive(Debug, Subcommand)]
pub(crate) enum GroupsCommand {
    /// List groups and their states.
    List {
        #[command(flatten)]
        connect: Connect,
    },
    /// A group's state, members, and per partition its committed offset, log end offset,
    /// LAG and owner.
    Describe {
        #[command(flatten)]
        connect: Connect,
        /// The group.
        #[arg(long)]
        group: String,
    },
    /// Move a group's committed offsets for a topic (the group must have no members):
    /// to the earliest or latest offset, or to a given one.
    ResetOffsets {
        #[command(flatten)]
        connect: Connect,
        /// The group.
        #[arg(long)]
        group: String,
        /// The topic whose partitions move.
        #[arg(long)]
        topic: String,
        /// To each partition's log start.
        #[arg(long, group = "target")]
        to_earliest: bool,
        /// To each partition's log end.
        #[arg(long, group = "target")]
        to_latest: bool,
        /// To this offset on every partition.
        #[arg(long, group = "target")]
        to_offset: Option<i64>,
        /// Commit the new offsets (without it, only print them).
        #[arg(long)]
        execute: bool,
    },
    /// Delete a group without members (and its committed offsets).
    Delete {
        #[command(flatten)]
        connect: Connect,
        /// The group.
        #[arg(long)]
        group: String,
    },
}

/// Whose configs.
#[derive(Debug, Args, Clone)]
#[group(required = true, multiple = false)]
pub(crate) struct ConfigsTarget {
    /// A topic's configs.
    #[arg(long)]
    pub(crate) topic: Option<String>,
    /// One broker's settings, by node id.
    #[arg(long, value_name = "ID")]
    pub(crate) broker: Option<i32>,
    /// The cluster-wide broker defaults (Kafka's `--entity-default`).
    #[arg(long)]
    pub(crate) broker_defaults: bool,
}

/// Config administration (Kafka's `kafka-configs`).
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigsCommand {
    /// Configs set on the topic or broker at runtime (with --all: every config, with its
    /// source).
    Describe {
        #[command(flatten)]
        connect: Connect,
        #[command(flatten)]
        target: ConfigsTarget,
        /// Every config, defaults included.
        #[arg(long)]
        all: bool,
    },
    /// Change configs at runtime. Topics take any topic config; brokers take the defaults
    /// of topic configs (log.retention.ms, log.segment.bytes, ...); the rest need a
    /// restart.
    Alter {
        #[command(flatten)]
        connect: Connect,
        #[command(flatten)]
        target: ConfigsTarget,
        /// Set `k1=v1,k2=[a,b]` (repeatable; brackets hold a list value).
        #[arg(long, value_name = "K=V,...")]
        add_config: Vec<String>,
        /// Remove `k1,k2`, so the default applies again (repeatable).
        #[arg(long, value_name = "K,...")]
        delete_config: Vec<String>,
        /// Add items to list configs, `k=a` or `k=[a,b]` (repeatable).
        #[arg(long, value_name = "K=V,...")]
        append_config: Vec<String>,
        /// Remove items from list configs, `k=a` (repeatable).
        #[arg(long, value_name = "K=V,...")]
        subtract_config: Vec<String>,
        /// Have the broker check the change without making it.
        #[arg(long)]
        validate_only: bool,
    },
    /// Every broker setting this `fjord` knows, with its values, default, whether it
    /// changes at runtime and the topic config it is the default of (no broker needed).
    ListKnown {
        /// As the Markdown list the README holds.
        #[arg(long)]
        markdown: bool,
    },
}

/// The console producer.
#[derive(Debug, Args)]
pub(crate) struct ProduceArgs {
    #[command(flatten)]
    pub(crate) connect: Connect,
    /// The topic.
    #[arg(long)]
    pub(crate) topic: String,
    /// Split each line at the first SEP into key and value.
    #[arg(long, value_name = "SEP")]
    pub(crate) key_separator: Option<String>,
    /// A header `key=value` added to every record (repeatable).
    #[arg(long = "header", value_name = "KEY=VALUE")]
    pub(crate) headers: Vec<String>,
    /// A producer setting, `key=value` (repeatable), e.g. linger.ms=50.
    #[arg(long = "property", value_name = "KEY=VALUE")]
    pub(crate) properties: Vec<String>,
    /// Compress batches: none, gzip, snappy, lz4 or zstd.
    #[arg(long, alias = "compression-codec", value_name = "CODEC")]
    pub(crate) compression: Option<String>,
    /// Read lines from FILE instead of stdin.
    #[arg(long, value_name = "FILE")]
    pub(crate) file: Option<std::path::PathBuf>,
}

/// The console consumer.
#[derive(Debug, Args)]
pub(crate) struct ConsumeArgs {
    #[command(flatten)]
    pub(crate) connect: Connect,
    /// The topic.
    #[arg(long)]
    pub(crate) topic: String,
    /// Start at the beginning (default: only new records).
    #[arg(long)]
    pub(crate) from_beginning: bool,
    /// Start at this offset (all partitions).
    #[arg(long, conflicts_with = "from_beginning")]
    pub(crate) offset: Option<i64>,
    /// Start at the first record at or after this time (ms since the epoch).
    #[arg(long, conflicts_with_all = ["from_beginning", "offset"])]
    pub(crate) timestamp: Option<i64>,
    /// Consume as a member of this group (committing as it goes).
    #[arg(long)]
    pub(crate) group: Option<String>,
    /// Stop after this many records.
    #[arg(long)]
    pub(crate) max_messages: Option<u64>,
    /// Output: `value` (default), `kv` (key TAB value), `json` (one object per line), or a
    /// kcat-style format with %t %p %o %T %k %s %h (topic, partition, offset, timestamp,
    /// key, value, headers) and \n \t.
    #[arg(long, default_value = "value")]
    pub(crate) format: String,
    /// Stop after this many milliseconds without a record.
    #[arg(long, value_name = "MS")]
    pub(crate) timeout_ms: Option<u64>,
    /// A consumer setting, `key=value` (repeatable).
    #[arg(long = "property", value_name = "KEY=VALUE")]
    pub(crate) properties: Vec<String>,
}

/// Splits `key=value`.
pub(crate) fn key_value(s: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("expected key=value, got {s:?}"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

/// A protocol string.
pub(crate) fn s(v: &str) -> fjord_protocol::kafka_protocol::protocol::StrBytes {
    fjord_protocol::kafka_protocol::protocol::StrBytes::from_string(v.to_string())
}

/// A Kafka error code's name, for error messages.
pub(crate) fn error_name(code: i16) -> String {
    fjord_client_common::kafka_error_name(code)
}

/// Fails with `what`, the error's name and the broker's message unless `code` is 0.
pub(crate) fn ensure_ok(
    code: i16,
    message: Option<&str>,
    what: impl std::fmt::Display,
) -> anyhow::Result<()> {
    if code != 0 {
        anyhow::bail!("{what}: {} {}", error_name(code), message.unwrap_or(""));
    }
    Ok(())
}

/// A connection to the broker the tools were pointed at.
pub(crate) async fn connect(bootstrap: &str) -> anyhow::Result<fjord_client_common::Connection> {
    use anyhow::Context as _;
    let options = fjord_client_common::connection::ConnectionOptions {
        client_id: "fjord-cli".into(),
        ..Default::default()
    };
    fjord_client_common::Connection::connect(bootstrap, options)
        .await
        .with_context(|| format!("connect to {bootstrap}"))
}

/// Offsets of `partitions` at `timestamp` (-2 earliest, -1 latest).
pub(crate) async fn offsets_at(
    conn: &fjord_client_common::Connection,
    partitions: &[(String, i32)],
    timestamp: i64,
) -> anyhow::Result<std::collections::BTreeMap<(String, i32), i64>> {
    use fjord_protocol::kafka_protocol::messages::list_offsets_request::{
        ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
    };
    use fjord_protocol::kafka_protocol::messages::{ApiKey, BrokerId, TopicName};
    let version = conn.version(ApiKey::ListOffsets, 1, 7)?;
    let mut req = ListOffsetsRequest::default();
    req.replica_id = BrokerId(-1);
    for (topic, p) in partitions {
        let mut lp = ListOffsetsPartition::default();
        lp.partition_index = *p;
        lp.timestamp = timestamp;
        match req.topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partitions.push(lp),
            None => {
                let mut t = ListOffsetsTopic::default();
                t.name = TopicName(s(topic));
                t.partitions.push(lp);
                req.topics.push(t);
            }
        }
    }
    let resp = conn.request(&req, version).await?;
    let mut out = std::collections::BTreeMap::new();
    for t in &resp.topics {
        for p in &t.partitions {
            if p.error_code == 0 {
                out.insert((t.name.0.to_string(), p.partition_index), p.offset);
            }
        }
    }
    Ok(out)
}
