//! Configs changed at runtime through the handlers: topic overrides and broker defaults
//! reach the live logs, survive reopening, and bad changes are refused whole; and
//! DescribeLogDirs reports bytes on disk.

use std::sync::Arc;

use bytes::Buf;
use fjord_protocol::compression::Compression;
use fjord_protocol::kafka_protocol::messages::alter_configs_request::{
    AlterConfigsRequest, AlterConfigsResource as LegacyResource, AlterableConfig as LegacyConfig,
};
use fjord_protocol::kafka_protocol::messages::alter_configs_response::AlterConfigsResponse;
use fjord_protocol::kafka_protocol::messages::describe_configs_request::{
    DescribeConfigsRequest, DescribeConfigsResource,
};
use fjord_protocol::kafka_protocol::messages::describe_configs_response::DescribeConfigsResponse;
use fjord_protocol::kafka_protocol::messages::describe_log_dirs_request::{
    DescribableLogDirTopic, DescribeLogDirsRequest,
};
use fjord_protocol::kafka_protocol::messages::describe_log_dirs_response::DescribeLogDirsResponse;
use fjord_protocol::kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig, IncrementalAlterConfigsRequest,
};
use fjord_protocol::kafka_protocol::messages::incremental_alter_configs_response::IncrementalAlterConfigsResponse;
use fjord_protocol::kafka_protocol::messages::{ApiKey, TopicName};
use fjord_protocol::kafka_protocol::protocol::Decodable;
use fjord_protocol::kafka_protocol::ResponseError as E;
use fjord_protocol::record_batch::{BatchBuilder, RecordSpec};

use super::test_support::*;
use super::{configs, log_dirs, s, Ctx, Fatal, Response};
use crate::state::Broker;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

/// (config name, operation code, value).
type Op<'a> = (&'a str, i8, Option<&'a str>);

fn incremental_request(
    resource_type: i8,
    name: &str,
    ops: &[Op<'_>],
    validate_only: bool,
) -> IncrementalAlterConfigsRequest {
    let mut r = AlterConfigsResource::default();
    r.resource_type = resource_type;
    r.resource_name = s(name);
    r.configs = ops
        .iter()
        .map(|(n, op, v)| {
            let mut c = AlterableConfig::default();
            c.name = s(*n);
            c.config_operation = *op;
            c.value = v.map(s);
            c
        })
        .collect();
    let mut req = IncrementalAlterConfigsRequest::default();
    req.resources = vec![r];
    req.validate_only = validate_only;
    req
}

/// IncrementalAlterConfigs v0 on one resource: its error code.
fn incremental(
    broker: &Arc<Broker>,
    resource_type: i8,
    name: &str,
    ops: &[Op<'_>],
    validate_only: bool,
) -> i16 {
    let req = incremental_request(resource_type, name, ops, validate_only);
    let r =
        configs::incremental_alter_configs(broker, ctx(ApiKey::IncrementalAlterConfigs, 0), req)
            .expect("handled");
    let resp = IncrementalAlterConfigsResponse::decode(&mut body(r), 0).expect("decode");
    assert_eq!(resp.responses.len(), 1);
    assert_eq!(resp.responses[0].resource_name.as_str(), name);
    resp.responses[0].error_code
}

/// DescribeConfigs v1 of one resource: (value, source, read only) of `key`.
fn described(
    broker: &Arc<Broker>,
    resource_type: i8,
    name: &str,
    key: &str,
) -> (Option<String>, i8, bool) {
    let mut r = DescribeConfigsResource::default();
    r.resource_type = resource_type;
    r.resource_name = s(name);
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![r];
    let r =
        configs::describe_configs(broker, ctx(ApiKey::DescribeConfigs, 1), req).expect("handled");
    let resp = DescribeConfigsResponse::decode(&mut body(r), 1).expect("decode");
    let c = resp.results[0]
        .configs
        .iter()
        .find(|c| c.name.as_str() == key)
        .unwrap_or_else(|| panic!("{key} not described"));
    (
        c.value.as_ref().map(ToString::to_string),
        c.config_source,
        c.read_only,
    )
}

fn retention_ms(broker: &Broker, topic: &str) -> Option<u64> {
    broker.topic(topic).expect("topic").partitions[0]
        .read()
        .config()
        .retention_ms
}

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;

#[test]
fn topic_overrides_reach_the_live_log_and_survive_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    broker
        .create_topic("t", 2, Default::default(), false)
        .expect("topic");
    let week = Some(604_800_000);
    assert_eq!(retention_ms(&broker, "t"), week);

    let code = incremental(
        &broker,
        TOPIC,
        "t",
        &[("retention.ms", SET, Some("60000"))],
        false,
    );
    assert_eq!(code, 0);
    for p in &broker.topic("t").expect("topic").partitions {
        assert_eq!(p.read().config().retention_ms, Some(60_000));
    }
    assert_eq!(
        described(&broker, TOPIC, "t", "retention.ms"),
        (Some("60000".to_string()), 1, false)
    );

    broker.close();
    drop(broker);
    let broker = open(dir.path());
    assert_eq!(retention_ms(&broker, "t"), Some(60_000));
    let code = incremental(
        &broker,
        TOPIC,
        "t",
        &[("retention.ms", DELETE, None)],
        false,
    );
    assert_eq!(code, 0);
    assert_eq!(retention_ms(&broker, "t"), week);
    assert_eq!(
        described(&broker, TOPIC, "t", "retention.ms"),
        (Some("604800000".to_string()), 5, false)
    );
}

#[test]
fn bad_changes_are_refused_whole_and_validate_only_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    broker
        .create_topic("t", 1, Default::default(), false)
        .expect("topic");
    let cases: &[(&[Op<'_>], i16)] = &[
        (
            &[("no.such.config", SET, Some("1"))],
            E::InvalidConfig.code(),
        ),
        // The good change in the same resource must not land either.
        (
            &[
                ("retention.ms", SET, Some("5")),
                ("segment.bytes", SET, Some("lots")),
            ],
            E::InvalidConfig.code(),
        ),
        (
            &[("retention.ms", APPEND, Some("5"))],
            E::InvalidConfig.code(),
        ),
        (&[("retention.ms", 9, Some("5"))], E::InvalidRequest.code()),
        (
            &[
                ("retention.ms", SET, Some("5")),
                ("retention.ms", DELETE, None),
            ],
            E::InvalidRequest.code(),
        ),
        (
            &[("message.timestamp.type", SET, Some("Sometimes"))],
            E::InvalidConfig.code(),
        ),
    ];
    for (ops, want) in cases {
        assert_eq!(
            incremental(&broker, TOPIC, "t", ops, false),
            *want,
            "{ops:?}"
        );
    }
    assert_eq!(
        incremental(
            &broker,
            TOPIC,
            "nope",
            &[("retention.ms", SET, Some("5"))],
            false
        ),
        E::UnknownTopicOrPartition.code()
    );
    assert_eq!(
        incremental(
            &broker,
            TOPIC,
            "t",
            &[("retention.ms", SET, Some("5"))],
            true
        ),
        0
    );
    assert_eq!(retention_ms(&broker, "t"), Some(604_800_000));
    assert!(broker.topic("t").expect("topic").overrides.is_empty());
}

#[test]
fn broker_defaults_apply_to_topics_without_overrides() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    broker
        .create_topic("plain", 1, Default::default(), false)
        .expect("topic");
    let own = [("retention.ms".to_string(), "1000".to_string())];
    broker
        .create_topic("own", 1, own.into_iter().collect(), false)
        .expect("topic");

    let code = incremental(
        &broker,
        BROKER,
        "1",
        &[("log.retention.ms", SET, Some("3600000"))],
        false,
    );
    assert_eq!(code, 0);
    assert_eq!(retention_ms(&broker, "plain"), Some(3_600_000));
    assert_eq!(retention_ms(&broker, "own"), Some(1000));
    assert_eq!(
        described(&broker, BROKER, "1", "log.retention.ms"),
        (Some("3600000".to_string()), 2, false)
    );
    assert_eq!(
        described(&broker, TOPIC, "plain", "retention.ms"),
        (Some("3600000".to_string()), 2, false)
    );
    // Topics created later get it too, and so does the broker after a restart.
    broker
        .create_topic("later", 1, Default::default(), false)
        .expect("topic");
    assert_eq!(retention_ms(&broker, "later"), Some(3_600_000));
    broker.close();
    drop(broker);
    let broker = open(dir.path());
    assert_eq!(retention_ms(&broker, "plain"), Some(3_600_000));

    // Static settings, other brokers and unknown names are refused.
    let static_setting = &[("log.dirs", SET, Some("/elsewhere"))];
    assert_eq!(
        incremental(&broker, BROKER, "1", static_setting, false),
        E::InvalidRequest.code()
    );
    assert!(described(&broker, BROKER, "1", "log.dirs").2, "read only");
    let retention = &[("log.retention.ms", SET, Some("1"))];
    assert_eq!(
        incremental(&broker, BROKER, "7", retention, false),
        E::InvalidRequest.code()
    );
    assert_eq!(
        incremental(&broker, BROKER, "", &[("no.such", SET, Some("1"))], false),
        E::InvalidConfig.code()
    );
    // The cluster default (empty name) is a scope of its own, under this broker's.
    let five_s = &[("log.retention.ms", SET, Some("5000"))];
    assert_eq!(incremental(&broker, BROKER, "", five_s, false), 0);
    assert_eq!(retention_ms(&broker, "plain"), Some(3_600_000));
    let delete = &[("log.retention.ms", DELETE, None)];
    assert_eq!(incremental(&broker, BROKER, "1", delete, false), 0);
    assert_eq!(retention_ms(&broker, "plain"), Some(5000));
    assert_eq!(
        described(&broker, BROKER, "1", "log.retention.ms"),
        (Some("5000".to_string()), 3, false)
    );
    assert_eq!(incremental(&broker, BROKER, "", delete, false), 0);
    assert_eq!(retention_ms(&broker, "plain"), Some(604_800_000));
}

#[test]
fn legacy_alter_configs_replaces_the_whole_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    let own = [
        ("retention.ms".to_string(), "1000".to_string()),
        ("segment.bytes".to_string(), "1048576".to_string()),
    ];
    broker
        .create_topic("t", 1, own.into_iter().collect(), false)
        .expect("topic");
    let mut c = LegacyConfig::default();
    c.name = s("retention.bytes");
    c.value = Some(s("123456"));
    let mut r = LegacyResource::default();
    r.resource_type = TOPIC;
    r.resource_name = s("t");
    r.configs = vec![c];
    let mut req = AlterConfigsRequest::default();
    req.resources = vec![r];
    let r = configs::alter_configs(&broker, ctx(ApiKey::AlterConfigs, 0), req).expect("handled");
    let resp = AlterConfigsResponse::decode(&mut body(r), 0).expect("decode");
    assert_eq!(resp.responses[0].error_code, 0);
    let topic = broker.topic("t").expect("topic");
    let overrides: Vec<_> = topic.overrides.iter().collect();
    assert_eq!(
        overrides,
        vec![(&"retention.bytes".to_string(), &"123456".to_string())]
    );
    let config = topic.partitions[0].read().config().clone();
    assert_eq!(config.retention_bytes, Some(123_456));
    assert_eq!(config.retention_ms, Some(604_800_000));
}

#[test]
fn log_dirs_report_bytes_on_disk_per_partition() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    broker
        .create_topic("t", 2, Default::default(), false)
        .expect("topic");
    broker
        .create_topic("other", 1, Default::default(), false)
        .expect("topic");
    let mut batch = BatchBuilder::new(Compression::None, 1_000);
    batch.push(RecordSpec::value(&[7u8; 500][..]));
    let records = batch.build().expect("batch");
    broker.topic("t").expect("topic").partitions[1]
        .write()
        .append(&records)
        .expect("append");

    let mut want = DescribableLogDirTopic::default();
    want.topic = TopicName(s("t"));
    want.partitions = vec![0, 1];
    let mut req = DescribeLogDirsRequest::default();
    req.topics = Some(vec![want]);
    let r = log_dirs::describe_log_dirs(&broker, ctx(ApiKey::DescribeLogDirs, 1), req)
        .expect("handled");
    let resp = DescribeLogDirsResponse::decode(&mut body(r), 1).expect("decode");
    assert_eq!(resp.results.len(), 1);
    let topics = &resp.results[0].topics;
    assert_eq!(topics.len(), 1, "only the asked-for topic");
    let sizes: Vec<(i32, i64)> = topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.partition_size))
        .collect();
    assert_eq!(sizes, vec![(0, 0), (1, records.len() as i64)]);

    // Null topics: everything, with the volume's size at v4 (flexible: the header has a
    // tag byte).
    let mut all = DescribeLogDirsRequest::default();
    all.topics = None;
    let r = log_dirs::describe_log_dirs(&broker, ctx(ApiKey::DescribeLogDirs, 4), all)
        .expect("handled");
    let mut b = body(r);
    b.advance(1);
    let resp = DescribeLogDirsResponse::decode(&mut b, 4).expect("decode");
    let result = &resp.results[0];
    assert_eq!(result.topics.len(), 2);
    assert!(
        result.total_bytes > 0 && result.usable_bytes > 0,
        "{result:?}"
    );
    assert!(result.usable_bytes <= result.total_bytes);
}

/// For `every_advertised_version_encodes`: one request of each config / log-dir API.
pub(super) fn exercise(
    broker: &Arc<Broker>,
    key: ApiKey,
    c: Ctx,
) -> Option<Result<Response, Fatal>> {
    Some(match key {
        ApiKey::IncrementalAlterConfigs => configs::incremental_alter_configs(
            broker,
            c,
            incremental_request(TOPIC, "t", &[("retention.ms", SET, Some("x"))], true),
        ),
        ApiKey::AlterConfigs => {
            let mut r = LegacyResource::default();
            r.resource_type = BROKER;
            r.resource_name = s("1");
            let mut req = AlterConfigsRequest::default();
            req.resources = vec![r];
            req.validate_only = true;
            configs::alter_configs(broker, c, req)
        }
        ApiKey::DescribeLogDirs => {
            log_dirs::describe_log_dirs(broker, c, DescribeLogDirsRequest::default())
        }
        _ => return None,
    })
}

#[test]
fn repeated_resources_are_refused_and_null_values_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    let own = [("retention.ms".to_string(), "1000".to_string())];
    broker
        .create_topic("t", 1, own.into_iter().collect(), false)
        .expect("topic");
    let mut req = incremental_request(
        TOPIC,
        "t",
        &[("segment.bytes", SET, Some("1048576"))],
        false,
    );
    req.resources.push(req.resources[0].clone());
    let r =
        configs::incremental_alter_configs(&broker, ctx(ApiKey::IncrementalAlterConfigs, 0), req)
            .expect("handled");
    let resp = IncrementalAlterConfigsResponse::decode(&mut body(r), 0).expect("decode");
    let codes: Vec<i16> = resp.responses.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, vec![E::InvalidRequest.code(); 2]);
    assert!(!broker
        .topic("t")
        .expect("topic")
        .overrides
        .contains_key("segment.bytes"));

    // AlterConfigs: a null value leaves the config out of the new set.
    let mut gone = LegacyConfig::default();
    gone.name = s("retention.ms");
    gone.value = None;
    let mut kept = LegacyConfig::default();
    kept.name = s("segment.bytes");
    kept.value = Some(s("1048576"));
    let mut r = LegacyResource::default();
    r.resource_type = TOPIC;
    r.resource_name = s("t");
    r.configs = vec![gone, kept];
    let mut req = AlterConfigsRequest::default();
    req.resources = vec![r];
    let r = configs::alter_configs(&broker, ctx(ApiKey::AlterConfigs, 0), req).expect("handled");
    let resp = AlterConfigsResponse::decode(&mut body(r), 0).expect("decode");
    assert_eq!(resp.responses[0].error_code, 0);
    let overrides = broker.topic("t").expect("topic").overrides.clone();
    assert_eq!(overrides.keys().collect::<Vec<_>>(), vec!["segment.bytes"]);
}

#[test]
fn topics_saved_with_settings_now_refused_still_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    broker
        .create_topic("streams-changelog", 1, Default::default(), false)
        .expect("topic");
    broker.close();
    drop(broker);
    // As an older version saved it: compaction and an unknown timestamp type.
    let meta = dir.path().join("fjord-topics/streams-changelog");
    let mut text = std::fs::read_to_string(&meta).expect("meta");
    text.push_str("cleanup.policy=compact\nmessage.timestamp.type=Whenever\n");
    std::fs::write(&meta, text).expect("write meta");
    let broker = open(dir.path());
    let topic = broker
        .topic("streams-changelog")
        .expect("topic still served");
    assert_eq!(
        topic.overrides.get("cleanup.policy").map(String::as_str),
        Some("compact")
    );
    // New changes to it are held to the rules, and fixing it is allowed.
    assert_eq!(
        incremental(
            &broker,
            TOPIC,
            "streams-changelog",
            &[("retention.ms", SET, Some("1"))],
            false
        ),
        E::InvalidConfig.code()
    );
    let fix = &[
        ("cleanup.policy", DELETE, None),
        ("message.timestamp.type", DELETE, None),
    ];
    assert_eq!(
        incremental(&broker, TOPIC, "streams-changelog", fix, false),
        0
    );
}

#[test]
fn fsync_on_ack_as_a_broker_default_reaches_committed_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    assert!(broker.groups.offsets.fsync(), "durable by default");
    let set = &[("fjord.fsync.on.ack", SET, Some("false"))];
    assert_eq!(incremental(&broker, BROKER, "", set, false), 0);
    assert!(
        !broker.groups.offsets.fsync(),
        "commits no longer wait for the disk"
    );
    drop(broker);

    // The dynamic setting is read back before the store opens.
    let broker = open(dir.path());
    assert!(!broker.groups.offsets.fsync(), "still after a restart");
    // This broker's own setting wins over the cluster default; case does not matter.
    let on = &[("fjord.fsync.on.ack", SET, Some("TRUE"))];
    assert_eq!(incremental(&broker, BROKER, "1", on, false), 0);
    assert!(broker.groups.offsets.fsync());
    let delete = &[("fjord.fsync.on.ack", DELETE, None)];
    assert_eq!(incremental(&broker, BROKER, "1", delete, false), 0);
    assert!(!broker.groups.offsets.fsync(), "the cluster default again");
    assert_eq!(incremental(&broker, BROKER, "", delete, false), 0);
    assert!(broker.groups.offsets.fsync(), "back to the static setting");
    // A typo is refused over the wire, not read as false.
    let typo = &[("fjord.fsync.on.ack", SET, Some("yes"))];
    assert_eq!(
        incremental(&broker, BROKER, "", typo, false),
        fjord_protocol::kafka_protocol::ResponseError::InvalidConfig.code()
    );
    broker
        .create_topic("typo", 1, Default::default(), false)
        .expect("create");
    assert_eq!(
        incremental(&broker, TOPIC, "typo", typo, false),
        fjord_protocol::kafka_protocol::ResponseError::InvalidConfig.code()
    );
    assert!(broker.groups.offsets.fsync(), "unchanged");
}
