//! Configs: DescribeConfigs, and changing them at runtime with IncrementalAlterConfigs
//! (per-config set, delete, append, subtract) or the older AlterConfigs (the request is
//! the whole new set of overrides).

use std::sync::Arc;

use fjord_protocol::kafka_protocol::messages::alter_configs_request::AlterConfigsRequest;
use fjord_protocol::kafka_protocol::messages::alter_configs_response::{
    AlterConfigsResourceResponse as LegacyResult, AlterConfigsResponse,
};
use fjord_protocol::kafka_protocol::messages::describe_configs_request::DescribeConfigsRequest;
use fjord_protocol::kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
};
use fjord_protocol::kafka_protocol::messages::incremental_alter_configs_request::IncrementalAlterConfigsRequest;
use fjord_protocol::kafka_protocol::messages::incremental_alter_configs_response::{
    AlterConfigsResourceResponse, IncrementalAlterConfigsResponse,
};
use fjord_protocol::kafka_protocol::ResponseError as E;

use super::{encode, s, Ctx, Fatal, Response};
use crate::config::{default_value, table, Setting, SETTINGS};
use crate::state::{AlterError, Broker, ConfigChange, ConfigOp, DynamicConfigs};
use fjord_client_common::settings::Kind;

/// Config resource types.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// Config sources, as DescribeConfigs reports them.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const DYNAMIC_BROKER_CONFIG: i8 = 2;
const DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;

/// Kafka's config types, as DescribeConfigs v3+ reports them.
fn config_type(kind: Kind) -> i8 {
    const BOOLEAN: i8 = 1;
    const STRING: i8 = 2;
    const INT: i8 = 3;
    const LONG: i8 = 5;
    const DOUBLE: i8 = 6;
    const LIST: i8 = 7;
    match kind {
        Kind::Ratio | Kind::PositiveDouble => DOUBLE,
        Kind::Bool => BOOLEAN,
        Kind::Int { max, .. } | Kind::OptionalInt { max, .. } if max <= i64::from(i32::MAX) => INT,
        Kind::Int { .. } | Kind::OptionalInt { .. } => LONG,
        Kind::ChoiceList(_) => LIST,
        Kind::Choice(_) | Kind::Text => STRING,
    }
}

/// One DescribeConfigs entry; the type (v3+) and doc line (when asked) from the table.
fn entry(
    ctx: &Ctx,
    include_documentation: bool,
    name: &str,
    setting: &Setting,
    value: Option<String>,
    source: i8,
) -> DescribeConfigsResourceResult {
    let mut c = DescribeConfigsResourceResult::default();
    c.name = s(name);
    c.value = value.map(s);
    c.config_source = source;
    // Topic configs change at runtime, like the broker settings marked dynamic.
    c.read_only = setting.topic != Some(name) && !setting.dynamic;
    if ctx.version >= 3 {
        c.config_type = config_type(setting.kind);
        if include_documentation {
            c.documentation = Some(s(setting.doc));
        }
    }
    c
}

/// Where a broker setting's value comes from: changed at runtime for this broker or for
/// all, set at start, or the built-in default.
fn broker_source(broker: &Broker, scopes: &DynamicConfigs, name: &str) -> i8 {
    if scopes.node.contains_key(name) {
        DYNAMIC_BROKER_CONFIG
    } else if scopes.default.contains_key(name) {
        DYNAMIC_DEFAULT_BROKER_CONFIG
    } else if broker.config.values.get(name).map(String::as_str) != default_value(name) {
        STATIC_BROKER_CONFIG
    } else {
        DEFAULT_CONFIG
    }
}

pub(super) fn describe_configs(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: DescribeConfigsRequest,
) -> Result<Response, Fatal> {
    let mut resp = DescribeConfigsResponse::default();
    let scopes = broker.dynamic_scopes();
    let dynamic = scopes.effective();
    for resource in req.resources {
        let mut r = DescribeConfigsResult::default();
        r.resource_type = resource.resource_type;
        r.resource_name = resource.resource_name.clone();
        // Null or empty: every config (clients send either for "all").
        let wanted = |name: &str| {
            resource
                .configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.is_empty() || keys.iter().any(|k| k.as_str() == name))
        };
        let docs = req.include_documentation;
        match resource.resource_type {
            TOPIC => match broker.topic(resource.resource_name.as_str()) {
                None => r.error_code = E::UnknownTopicOrPartition.code(),
                Some(topic) => {
                    for (name, setting) in table::topic_configs().filter(|(n, _)| wanted(n)) {
                        let source = if topic.overrides.contains_key(name) {
                            DYNAMIC_TOPIC_CONFIG
                        } else {
                            broker_source(broker, &scopes, setting.name)
                        };
                        let value =
                            broker
                                .config
                                .topic_config_value(name, &dynamic, &topic.overrides);
                        r.configs
                            .push(entry(&ctx, docs, name, setting, value, source));
                    }
                }
            },
            BROKER => {
                let own = resource.resource_name.is_empty()
                    || resource.resource_name.as_str() == broker.config.node_id.to_string();
                if !own {
                    r.error_code = E::InvalidRequest.code();
                } else {
                    // The cluster-default entity shows its own settings where it has them;
                    // this broker, what applies to it.
                    let default_entity = resource.resource_name.is_empty();
                    for setting in SETTINGS.iter().filter(|st| wanted(st.name)) {
                        let name = setting.name;
                        let static_value = broker.config.values.get(name).cloned();
                        let (value, source) = match scopes.default.get(name) {
                            Some(v) if default_entity => {
                                (Some(v.clone()), DYNAMIC_DEFAULT_BROKER_CONFIG)
                            }
                            _ => (
                                dynamic.get(name).cloned().or(static_value),
                                broker_source(broker, &scopes, name),
                            ),
                        };
                        r.configs
                            .push(entry(&ctx, docs, name, setting, value, source));
                    }
                }
            }
            _ => {
                r.error_code = E::InvalidRequest.code();
                r.error_message = Some(s("only TOPIC and BROKER resources are supported"));
            }
        }
        resp.results.push(r);
    }
    encode(ctx, &resp)
}

/// Resources named more than once in one request (Kafka refuses each of them).
fn repeated_resources<'a>(
    resources: impl Iterator<Item = (i8, &'a fjord_protocol::kafka_protocol::protocol::StrBytes)>,
) -> std::collections::HashSet<(i8, String)> {
    let mut seen = std::collections::HashSet::new();
    let mut repeated = std::collections::HashSet::new();
    for (kind, name) in resources {
        let key = (kind, name.to_string());
        if !seen.insert(key.clone()) {
            repeated.insert(key);
        }
    }
    repeated
}

/// Applies one resource's changes; the error code and message when refused.
/// `repeated`: the request names this resource more than once (Kafka refuses it).
fn alter(
    broker: &Broker,
    resource_type: i8,
    resource_name: &str,
    repeated: bool,
    changes: Result<Vec<ConfigChange>, AlterError>,
    replace: bool,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    let changes = if repeated {
        Err(AlterError::InvalidRequest(
            "the resource appears more than once".into(),
        ))
    } else {
        changes
    };
    let outcome = changes.and_then(|changes| {
        let mut names: Vec<&str> = changes.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(AlterError::InvalidRequest(format!(
                "{} appears more than once",
                w[0]
            )));
        }
        match resource_type {
            TOPIC => broker.alter_topic_configs(resource_name, &changes, replace, validate_only),
            BROKER => broker.alter_broker_configs(resource_name, &changes, replace, validate_only),
            other => Err(AlterError::InvalidRequest(format!(
                "resource type {other}: only TOPIC (2) and BROKER (4) configs change here"
            ))),
        }
    });
    outcome.map_err(|e| {
        let (code, message) = match e {
            AlterError::UnknownTopic => (
                E::UnknownTopicOrPartition.code(),
                format!("no topic '{resource_name}'"),
            ),
            AlterError::InvalidConfig(m) => (E::InvalidConfig.code(), m),
            AlterError::InvalidRequest(m) => (E::InvalidRequest.code(), m),
            AlterError::Io(m) => (E::KafkaStorageError.code(), m),
            AlterError::AppliedNotDurable(m) => {
                let message = format!("the change is applied but may not survive a crash: {m}");
                tracing::warn!(resource = resource_name, error = %message, "config change not durable");
                return (E::KafkaStorageError.code(), message);
            }
        };
        tracing::info!(resource = resource_name, error = %message, "config change refused");
        (code, message)
    })
}

pub(super) fn incremental_alter_configs(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: IncrementalAlterConfigsRequest,
) -> Result<Response, Fatal> {
    let mut resp = IncrementalAlterConfigsResponse::default();
    let repeated = repeated_resources(
        req.resources
            .iter()
            .map(|r| (r.resource_type, &r.resource_name)),
    );
    for resource in req.resources {
        let changes = resource
            .configs
            .iter()
            .map(|c| {
                let op = ConfigOp::from_code(c.config_operation).ok_or_else(|| {
                    AlterError::InvalidRequest(format!(
                        "unknown config operation {}",
                        c.config_operation
                    ))
                })?;
                Ok(ConfigChange {
                    name: c.name.to_string(),
                    op,
                    value: c.value.as_ref().map(ToString::to_string),
                })
            })
            .collect();
        let key = (resource.resource_type, resource.resource_name.to_string());
        let mut r = AlterConfigsResourceResponse::default();
        r.resource_type = resource.resource_type;
        r.resource_name = resource.resource_name;
        if let Err((code, message)) = alter(
            broker,
            r.resource_type,
            r.resource_name.as_str(),
            repeated.contains(&key),
            changes,
            false,
            req.validate_only,
        ) {
            r.error_code = code;
            r.error_message = Some(s(message));
        }
        resp.responses.push(r);
    }
    encode(ctx, &resp)
}

pub(super) fn alter_configs(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: AlterConfigsRequest,
) -> Result<Response, Fatal> {
    let mut resp = AlterConfigsResponse::default();
    let repeated = repeated_resources(
        req.resources
            .iter()
            .map(|r| (r.resource_type, &r.resource_name)),
    );
    for resource in req.resources {
        // A null value leaves the config out of the new set, which removes it (Kafka).
        let changes = Ok(resource
            .configs
            .iter()
            .filter_map(|c| {
                c.value.as_ref().map(|v| ConfigChange {
                    name: c.name.to_string(),
                    op: ConfigOp::Set,
                    value: Some(v.to_string()),
                })
            })
            .collect());
        let key = (resource.resource_type, resource.resource_name.to_string());
        let mut r = LegacyResult::default();
        r.resource_type = resource.resource_type;
        r.resource_name = resource.resource_name;
        if let Err((code, message)) = alter(
            broker,
            r.resource_type,
            r.resource_name.as_str(),
            repeated.contains(&key),
            changes,
            true,
            req.validate_only,
        ) {
            r.error_code = code;
            r.error_message = Some(s(message));
        }
        resp.responses.push(r);
    }
    encode(ctx, &resp)
}
