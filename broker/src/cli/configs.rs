//! `fjord configs`: read and change topic and broker configs at runtime, over the Kafka
//! protocol (DescribeConfigs, IncrementalAlterConfigs), as Kafka's `kafka-configs` does.

use anyhow::{bail, Context, Result};
use fjord_client_common::Connection;
use fjord_protocol::kafka_protocol::messages::describe_configs_request::{
    DescribeConfigsRequest, DescribeConfigsResource,
};
use fjord_protocol::kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig, IncrementalAlterConfigsRequest,
};
use fjord_protocol::kafka_protocol::messages::ApiKey;

use super::{connect, ensure_ok, key_value, s, ConfigsCommand, ConfigsTarget};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

/// IncrementalAlterConfigs operation codes.
pub(super) const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// (resource type, resource name, what to call it in messages).
fn resource(target: &ConfigsTarget) -> Result<(i8, String, String)> {
    match (&target.topic, &target.broker, target.broker_defaults) {
        (Some(t), None, false) => Ok((TOPIC, t.clone(), format!("topic {t}"))),
        (None, Some(id), false) => Ok((BROKER, id.to_string(), format!("broker {id}"))),
        (None, None, true) => Ok((BROKER, String::new(), "the broker defaults".to_string())),
        _ => bail!("name one of --topic, --broker or --broker-defaults"),
    }
}

/// DescribeConfigs' source codes, named.
fn source_name(source: i8) -> &'static str {
    match source {
        1 => "topic",
        2 => "dynamic-broker",
        3 => "dynamic-default-broker",
        4 => "static-broker",
        5 => "default",
        6 => "broker-logger",
        _ => "unknown",
    }
}

/// Splits Kafka's `k1=v1,k2=[a,b]` into pairs; brackets hold a list value, whose commas
/// do not split.
fn config_pairs(arg: &str) -> Result<Vec<(String, String)>> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in arg.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&arg[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&arg[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (k, v) = key_value(p)?;
            let v = v
                .strip_prefix('[')
                .and_then(|v| v.strip_suffix(']'))
                .map_or(v.clone(), str::to_string);
            Ok((k, v))
        })
        .collect()
}

async fn describe(conn: &Connection, target: &ConfigsTarget, all: bool) -> Result<()> {
    let (kind, name, label) = resource(target)?;
    let version = conn.version(ApiKey::DescribeConfigs, 1, 4)?;
    let mut r = DescribeConfigsResource::default();
    r.resource_type = kind;
    r.resource_name = s(&name);
    r.configuration_keys = None;
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![r];
    let resp = conn.request(&req, version).await?;
    let result = resp
        .results
        .first()
        .context("empty DescribeConfigs answer")?;
    let what = format!("cannot describe {label}");
    ensure_ok(result.error_code, result.error_message.as_deref(), what)?;
    let mut rows: Vec<_> = result
        .configs
        .iter()
        // Without --all: what was set on this resource at runtime, as kafka-configs
        // shows (a topic's overrides; one broker's settings; the cluster defaults).
        .filter(|c| {
            all || match (kind, name.is_empty()) {
                (TOPIC, _) => c.config_source == 1,
                (_, false) => c.config_source == 2,
                (_, true) => c.config_source == 3,
            }
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    if rows.is_empty() {
        println!("no changed configs for {label} (--all shows every config)");
        return Ok(());
    }
    let width = rows.iter().map(|c| c.name.len()).max().unwrap_or(0).max(6);
    println!(
        "{:width$}  {:<22}  {:<9}  VALUE",
        "CONFIG", "SOURCE", "READ-ONLY"
    );
    for c in rows {
        let value = if c.is_sensitive {
            "(sensitive)"
        } else {
            c.value.as_deref().unwrap_or("(null)")
        };
        println!(
            "{:width$}  {:<22}  {:<9}  {value}",
            c.name.as_str(),
            source_name(c.config_source),
            c.read_only
        );
    }
    Ok(())
}

/// The requested changes, as (name, operation, value).
fn changes(
    add: &[String],
    delete: &[String],
    append: &[String],
    subtract: &[String],
) -> Result<Vec<(String, i8, Option<String>)>> {
    let mut out = Vec::new();
    for (args, op) in [(add, SET), (append, APPEND), (subtract, SUBTRACT)] {
        for arg in args {
            for (k, v) in config_pairs(arg)? {
                out.push((k, op, Some(v)));
            }
        }
    }
    for arg in delete {
        for k in arg.split(',').map(str::trim).filter(|k| !k.is_empty()) {
            out.push((k.to_string(), DELETE, None));
        }
    }
    if out.is_empty() {
        bail!("nothing to change: give --add-config, --delete-config, --append-config or --subtract-config");
    }
    Ok(out)
}

/// Sends `ops` for `target` and prints what changed.
pub(super) async fn alter(
    conn: &Connection,
    target: &ConfigsTarget,
    ops: Vec<(String, i8, Option<String>)>,
    validate_only: bool,
) -> Result<()> {
    let (kind, name, label) = resource(target)?;
    let version = conn
        .version(ApiKey::IncrementalAlterConfigs, 0, 1)
        .context("the broker does not support IncrementalAlterConfigs (Kafka 2.3+)")?;
    let mut r = AlterConfigsResource::default();
    r.resource_type = kind;
    r.resource_name = s(&name);
    r.configs = ops
        .iter()
        .map(|(k, op, v)| {
            let mut c = AlterableConfig::default();
            c.name = s(k);
            c.config_operation = *op;
            c.value = v.as_deref().map(s);
            c
        })
        .collect();
    let mut req = IncrementalAlterConfigsRequest::default();
    req.resources = vec![r];
    req.validate_only = validate_only;
    let resp = conn.request(&req, version).await?;
    let result = resp
        .responses
        .first()
        .context("empty IncrementalAlterConfigs answer")?;
    let what = format!("cannot change {label}");
    ensure_ok(result.error_code, result.error_message.as_deref(), what)?;
    let verb = if validate_only {
        "would change (validated only)"
    } else {
        "changed"
    };
    for (k, op, v) in &ops {
        let what = match *op {
            DELETE => "deleted".to_string(),
            APPEND => format!("+= {}", v.as_deref().unwrap_or("")),
            SUBTRACT => format!("-= {}", v.as_deref().unwrap_or("")),
            _ => format!("= {}", v.as_deref().unwrap_or("")),
        };
        println!("{verb} {label}: {k} {what}");
    }
    Ok(())
}

/// `fjord configs list-known`: the settings table, as aligned text or Markdown.
fn list_known(markdown: bool, out: &mut impl std::io::Write) -> std::io::Result<()> {
    use fjord_broker::config::SETTINGS;
    if markdown {
        return out.write_all(fjord_broker::config::table::markdown().as_bytes());
    }
    let width = SETTINGS.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for s in SETTINGS {
        let scope = match s.topic {
            Some(t) => format!("dynamic, topic config {t}"),
            None if s.dynamic => "dynamic".to_string(),
            None => "restart".to_string(),
        };
        writeln!(
            out,
            "{:width$}  default {:?}  ({}; {scope})\n{:width$}  {}",
            s.name,
            s.default,
            s.kind.describe(),
            "",
            s.doc
        )?;
    }
    Ok(())
}

pub(crate) async fn run(cmd: ConfigsCommand) -> Result<()> {
    match cmd {
        ConfigsCommand::ListKnown { markdown } => {
            match list_known(markdown, &mut std::io::stdout().lock()) {
                // `| head` closing the pipe is not an error.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(()),
            }
        }
        ConfigsCommand::Describe {
            connect: c,
            target,
            all,
        } => {
            let conn = connect(&c.bootstrap_server).await?;
            describe(&conn, &target, all).await
        }
        ConfigsCommand::Alter {
            connect: c,
            target,
            add_config,
            delete_config,
            append_config,
            subtract_config,
            validate_only,
        } => {
            let ops = changes(
                &add_config,
                &delete_config,
                &append_config,
                &subtract_config,
            )?;
            let conn = connect(&c.bootstrap_server).await?;
            alter(&conn, &target, ops, validate_only).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_pairs_split_at_top_level_commas_only() {
        let pairs = config_pairs("retention.ms=1000,cleanup.policy=[compact,delete], a = b ")
            .expect("pairs");
        let want = [
            ("retention.ms", "1000"),
            ("cleanup.policy", "compact,delete"),
            ("a", "b"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(pairs, want);
        assert!(config_pairs("no-equals-sign").is_err());
    }
}
