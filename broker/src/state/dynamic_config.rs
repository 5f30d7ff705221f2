//! Configs changed while the broker runs: topic overrides and broker-wide defaults of
//! topic configs (IncrementalAlterConfigs, AlterConfigs). A change is checked against
//! every log it touches, written to its file (renamed into place: what a restart
//! loads), applied to the live logs, then made durable, so a restart sees the same
//! settings; a failed last sync is reported as [`AlterError::AppliedNotDurable`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, PoisonError};

use anyhow::{Context, Result};
use fjord_storage::LogConfig;

use super::{Broker, Topic};
use crate::config::{is_dynamic_setting, is_known_setting, is_topic_config, parse_properties};

/// This broker's own settings changed at runtime, as properties, in the log directory.
const NODE_FILE: &str = "fjord-dynamic-config";
/// The cluster-wide defaults changed at runtime (resource name ""), likewise.
const DEFAULT_FILE: &str = "fjord-dynamic-default-config";

/// Broker settings changed at runtime, in Kafka's two scopes: the cluster-wide defaults
/// (DYNAMIC_DEFAULT_BROKER_CONFIG) and this broker's own (DYNAMIC_BROKER_CONFIG), which
/// win.
#[derive(Debug, Clone, Default)]
pub struct DynamicConfigs {
    /// Set for every broker (resource name "").
    pub default: BTreeMap<String, String>,
    /// Set for this broker (resource name = its node id).
    pub node: BTreeMap<String, String>,
}

impl DynamicConfigs {
    /// What applies: this broker's settings over the cluster defaults.
    pub fn effective(&self) -> BTreeMap<String, String> {
        let mut all = self.default.clone();
        all.extend(self.node.iter().map(|(k, v)| (k.clone(), v.clone())));
        all
    }
}

/// Configs whose value is a comma-separated list, the only ones APPEND and SUBTRACT take.
const LIST_CONFIGS: &[&str] = &["cleanup.policy", "log.cleanup.policy"];

/// What to do to one config (IncrementalAlterConfigs' operations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigOp {
    /// Set the value.
    Set,
    /// Remove the setting, so the default applies again.
    Delete,
    /// Add items to a list config.
    Append,
    /// Remove items from a list config.
    Subtract,
}

impl ConfigOp {
    /// The operation for Kafka's code (0 set, 1 delete, 2 append, 3 subtract).
    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            0 => Some(Self::Set),
            1 => Some(Self::Delete),
            2 => Some(Self::Append),
            3 => Some(Self::Subtract),
            _ => None,
        }
    }
}

/// One requested change.
#[derive(Debug, Clone)]
pub struct ConfigChange {
    /// Config name (topic-level for topics, broker-level for the broker).
    pub name: String,
    /// What to do.
    pub op: ConfigOp,
    /// The value (for set, append and subtract).
    pub value: Option<String>,
}

/// Why a change was refused (nothing was changed), or, for
/// [`AlterError::AppliedNotDurable`], why it may not last.
#[derive(Debug)]
pub enum AlterError {
    /// No such topic.
    UnknownTopic,
    /// Unknown config, bad value, or an operation the config does not take.
    InvalidConfig(String),
    /// A broker setting only a restart changes, or a resource this broker is not.
    InvalidRequest(String),
    /// Writing the change to disk failed.
    Io(String),
    /// The change is saved and applied, but the save may not survive a crash: the sync
    /// of its directory failed.
    AppliedNotDurable(String),
}

/// The broker settings changed at runtime, as saved.
pub(super) fn load(log_dir: &Path) -> Result<DynamicConfigs> {
    Ok(DynamicConfigs {
        default: load_file(log_dir, DEFAULT_FILE)?,
        node: load_file(log_dir, NODE_FILE)?,
    })
}

/// One scope's saved settings; unknown names are dropped with a warning.
fn load_file(log_dir: &Path, name: &str) -> Result<BTreeMap<String, String>> {
    let path = log_dir.join(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    let mut out = BTreeMap::new();
    for (k, v) in parse_properties(&text).with_context(|| format!("parse {}", path.display()))? {
        if is_dynamic_setting(&k) {
            out.insert(k, v);
        } else {
            tracing::warn!(setting = %k, file = %path.display(), "ignoring a saved setting that is not dynamic");
        }
    }
    Ok(out)
}

/// `current` with `changes` applied. With `replace` (AlterConfigs) the request is the
/// whole new set. `effective` gives a list config's value when `current` has none, which
/// APPEND and SUBTRACT start from (Kafka's rule).
fn changed(
    current: &BTreeMap<String, String>,
    changes: &[ConfigChange],
    replace: bool,
    effective: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, AlterError> {
    let mut next = if replace {
        BTreeMap::new()
    } else {
        current.clone()
    };
    for c in changes {
        let value = match (&c.value, c.op) {
            (_, ConfigOp::Delete) => String::new(),
            (Some(v), _) if v.contains(['\n', '\r']) => {
                return Err(AlterError::InvalidConfig(format!(
                    "{}: values cannot hold line breaks",
                    c.name
                )))
            }
            (Some(v), _) => v.clone(),
            (None, _) => {
                return Err(AlterError::InvalidConfig(format!(
                    "{} needs a value",
                    c.name
                )))
            }
        };
        match c.op {
            ConfigOp::Set => {
                next.insert(c.name.clone(), value);
            }
            ConfigOp::Delete => {
                next.remove(&c.name);
            }
            ConfigOp::Append | ConfigOp::Subtract => {
                if !LIST_CONFIGS.contains(&c.name.as_str()) {
                    return Err(AlterError::InvalidConfig(format!(
                        "{} is not a list config: APPEND and SUBTRACT do not apply",
                        c.name
                    )));
                }
                let old = next
                    .get(&c.name)
                    .cloned()
                    .or_else(|| effective(&c.name))
                    .unwrap_or_default();
                let mut items: Vec<String> = list(&old);
                let given = list(&value);
                if c.op == ConfigOp::Append {
                    for item in given {
                        if !items.contains(&item) {
                            items.push(item);
                        }
                    }
                } else {
                    items.retain(|item| !given.contains(item));
                }
                next.insert(c.name.clone(), items.join(","));
            }
        }
    }
    Ok(next)
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn invalid(e: anyhow::Error) -> AlterError {
    AlterError::InvalidConfig(format!("{e:#}"))
}

impl Broker {
    /// Broker settings changed at runtime that apply here (this broker's over the
    /// cluster defaults), by Kafka broker name.
    pub fn dynamic_configs(&self) -> BTreeMap<String, String> {
        self.dynamic_scopes().effective()
    }

    /// Broker settings changed at runtime, by scope (for DescribeConfigs' sources).
    pub fn dynamic_scopes(&self) -> DynamicConfigs {
        self.dynamic
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The log settings of a topic with `overrides`, over the broker's current settings.
    pub fn log_config(&self, overrides: &BTreeMap<String, String>) -> Result<LogConfig> {
        self.config
            .log_config_with(&self.dynamic_configs(), overrides)
    }

    /// Changes a topic's config overrides and applies them to its live partitions. With
    /// `replace`, overrides not in `changes` are removed (AlterConfigs).
    pub fn alter_topic_configs(
        &self,
        name: &str,
        changes: &[ConfigChange],
        replace: bool,
        validate_only: bool,
    ) -> Result<(), AlterError> {
        let _admin = self.admin_lock();
        let topic = self.topic(name).ok_or(AlterError::UnknownTopic)?;
        if let Some(c) = changes.iter().find(|c| !is_topic_config(&c.name)) {
            return Err(AlterError::InvalidConfig(format!(
                "unknown topic config {}",
                c.name
            )));
        }
        let dynamic = self.dynamic_configs();
        let overrides = changed(&topic.overrides, changes, replace, |n| {
            self.config
                .topic_config_value(n, &dynamic, &BTreeMap::new())
        })?;
        self.config
            .check_new_settings(&dynamic, &overrides)
            .map_err(invalid)?;
        let log_config = self
            .config
            .log_config_with(&dynamic, &overrides)
            .map_err(invalid)?;
        if validate_only {
            return Ok(());
        }
        self.replace_topic_meta(name, topic.id, topic.partitions.len(), &overrides)
            .map_err(|e| AlterError::Io(format!("{e:#}")))?;
        for p in &topic.partitions {
            if let Err(e) = p.write().set_config(log_config.clone()) {
                tracing::error!(topic = name, partition = p.index, error = %e, "applying configs failed");
            }
        }
        tracing::info!(topic = name, ?overrides, "topic configs changed");
        let altered = Topic {
            name: topic.name.clone(),
            id: topic.id,
            overrides,
            partitions: topic.partitions.clone(),
        };
        self.topics_mut()
            .insert(name.to_string(), Arc::new(altered));
        self.sync_topic_meta()
            .map_err(|e| AlterError::AppliedNotDurable(format!("{e:#}")))
    }

    /// Changes broker settings at runtime (`resource` is this broker's id for its own
    /// settings, or empty for the cluster-wide defaults, which this broker's own win over)
    /// and applies them to every topic that does not override them. Only the defaults of
    /// topic configs change at runtime; others answer INVALID_REQUEST, as Kafka does for
    /// static settings. With `replace`, only the named scope is replaced.
    pub fn alter_broker_configs(
        &self,
        resource: &str,
        changes: &[ConfigChange],
        replace: bool,
        validate_only: bool,
    ) -> Result<(), AlterError> {
        if !resource.is_empty() && resource != self.config.node_id.to_string() {
            return Err(AlterError::InvalidRequest(format!(
                "this is broker {}, not '{resource}'",
                self.config.node_id
            )));
        }
        for c in changes {
            if !is_known_setting(&c.name) {
                return Err(AlterError::InvalidConfig(format!(
                    "unknown broker config {}",
                    c.name
                )));
            }
            if !is_dynamic_setting(&c.name) {
                return Err(AlterError::InvalidRequest(format!(
                    "{} cannot change while the broker runs; set it in the config file",
                    c.name
                )));
            }
            if let (ConfigOp::Set, Some(value)) = (c.op, c.value.as_deref()) {
                crate::config::check_value(&c.name, value).map_err(invalid)?;
            }
        }
        let _admin = self.admin_lock();
        let scopes = self.dynamic_scopes();
        let cluster_default = resource.is_empty();
        let current = if cluster_default {
            &scopes.default
        } else {
            &scopes.node
        };
        let before = scopes.effective();
        let changed_scope = changed(current, changes, replace, |n| {
            before.get(n).or_else(|| self.config.values.get(n)).cloned()
        })?;
        let mut after = scopes.clone();
        if cluster_default {
            after.default = changed_scope.clone();
        } else {
            after.node = changed_scope.clone();
        }
        let next = after.effective();
        self.config
            .check_new_settings(&next, &BTreeMap::new())
            .map_err(invalid)?;
        let topics = self.all_topics();
        let mut configs = Vec::with_capacity(topics.len());
        for t in &topics {
            let c = self
                .config
                .log_config_with(&next, &t.overrides)
                .map_err(|e| invalid(e.context(format!("topic {}", t.name))))?;
            configs.push(c);
        }
        if validate_only {
            return Ok(());
        }
        let text: String = changed_scope
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        let file = if cluster_default {
            DEFAULT_FILE
        } else {
            NODE_FILE
        };
        self.flusher
            .io()
            .replace_file(&self.config.log_dir, file, text.as_bytes())
            .map_err(|e| AlterError::Io(e.to_string()))?;
        // Renamed into place, the file is what a restart loads: apply it now whether or
        // not the directory sync succeeds, and report a failed sync afterwards.
        let synced = self.flusher.io().sync_dir_at(&self.config.log_dir);
        *self.dynamic.write().unwrap_or_else(PoisonError::into_inner) = after;
        for (t, config) in topics.iter().zip(configs) {
            for p in &t.partitions {
                if let Err(e) = p.write().set_config(config.clone()) {
                    tracing::error!(topic = %t.name, partition = p.index, error = %e, "applying configs failed");
                }
            }
        }
        if let Err(e) = self
            .groups
            .offsets
            .set_fsync(self.config.offsets_fsync(&next))
        {
            tracing::error!(error = %e, "applying fjord.fsync.on.ack to committed offsets failed");
        }
        if let Err(e) = self.txn.set_fsync(self.config.offsets_fsync(&next)) {
            tracing::error!(error = %e, "applying fjord.fsync.on.ack to the transaction log failed");
        }
        tracing::info!(scope = if cluster_default { "cluster default" } else { "this broker" }, settings = ?changed_scope, "broker configs changed");
        synced.map_err(|e| AlterError::AppliedNotDurable(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(name: &str, op: ConfigOp, value: Option<&str>) -> ConfigChange {
        ConfigChange {
            name: name.to_string(),
            op,
            value: value.map(str::to_string),
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn set_and_delete_keep_other_overrides() {
        let current = map(&[("retention.ms", "1000"), ("segment.bytes", "4096")]);
        let next = changed(
            &current,
            &[
                change("retention.ms", ConfigOp::Set, Some("2000")),
                change("segment.bytes", ConfigOp::Delete, None),
            ],
            false,
            |_| None,
        )
        .expect("changes");
        assert_eq!(next, map(&[("retention.ms", "2000")]));
    }

    #[test]
    fn replace_drops_what_the_request_omits() {
        let current = map(&[("retention.ms", "1000"), ("segment.bytes", "4096")]);
        let next = changed(
            &current,
            &[change("retention.ms", ConfigOp::Set, Some("5"))],
            true,
            |_| None,
        )
        .expect("changes");
        assert_eq!(next, map(&[("retention.ms", "5")]));
    }

    #[test]
    fn append_and_subtract_start_from_the_effective_list() {
        let next = changed(
            &BTreeMap::new(),
            &[change("cleanup.policy", ConfigOp::Append, Some("compact"))],
            false,
            |_| Some("delete".to_string()),
        )
        .expect("append");
        assert_eq!(next, map(&[("cleanup.policy", "delete,compact")]));
        let next = changed(
            &next,
            &[change("cleanup.policy", ConfigOp::Subtract, Some("delete"))],
            false,
            |_| None,
        )
        .expect("subtract");
        assert_eq!(next, map(&[("cleanup.policy", "compact")]));
    }

    #[test]
    fn append_to_a_scalar_and_missing_values_are_refused() {
        let r = changed(
            &BTreeMap::new(),
            &[change("retention.ms", ConfigOp::Append, Some("1"))],
            false,
            |_| None,
        );
        assert!(matches!(r, Err(AlterError::InvalidConfig(_))), "{r:?}");
        let r = changed(
            &BTreeMap::new(),
            &[change("retention.ms", ConfigOp::Set, None)],
            false,
            |_| None,
        );
        assert!(matches!(r, Err(AlterError::InvalidConfig(_))), "{r:?}");
        let r = changed(
            &BTreeMap::new(),
            &[change("retention.ms", ConfigOp::Set, Some("1\nx=y"))],
            false,
            |_| None,
        );
        assert!(matches!(r, Err(AlterError::InvalidConfig(_))), "{r:?}");
    }
}
