//! DescribeLogDirs: bytes on disk per partition, and the log directory's volume size, for
//! `fjord topics describe` and Kafka's `kafka-log-dirs`.

use std::collections::HashMap;
use std::sync::Arc;

use fjord_protocol::kafka_protocol::messages::describe_log_dirs_request::DescribeLogDirsRequest;
use fjord_protocol::kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResponse, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use fjord_protocol::kafka_protocol::messages::TopicName;

use super::{encode, s, Ctx, Fatal, Response};
use crate::state::Broker;

/// Kafka's "volume size unknown".
const UNKNOWN_BYTES: i64 = -1;

/// The volume's (total, usable) bytes, or unknown when the file system will not say.
fn volume_bytes(dir: &std::path::Path) -> (i64, i64) {
    match rustix::fs::statvfs(dir) {
        Ok(v) => {
            let block = v.f_frsize;
            let bytes =
                |blocks: u64| i64::try_from(blocks.saturating_mul(block)).unwrap_or(i64::MAX);
            (bytes(v.f_blocks), bytes(v.f_bavail))
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "statvfs failed");
            (UNKNOWN_BYTES, UNKNOWN_BYTES)
        }
    }
}

pub(super) fn describe_log_dirs(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: DescribeLogDirsRequest,
) -> Result<Response, Fatal> {
    // None: every partition of every topic. Some: the named ones; unknown are left out,
    // as Kafka does.
    let wanted: Option<HashMap<String, Vec<i32>>> = req.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect()
    });
    let mut dir = DescribeLogDirsResult::default();
    dir.log_dir = s(broker.config.log_dir.display().to_string());
    for topic in broker.all_topics() {
        let partitions: Vec<_> = match &wanted {
            None => topic.partitions.iter().collect(),
            Some(w) => match w.get(&topic.name) {
                None => continue,
                Some(ids) => topic
                    .partitions
                    .iter()
                    .filter(|p| ids.contains(&p.index))
                    .collect(),
            },
        };
        let mut t = DescribeLogDirsTopic::default();
        t.name = TopicName(s(topic.name.clone()));
        for p in partitions {
            let mut out = DescribeLogDirsPartition::default();
            out.partition_index = p.index;
            out.partition_size = i64::try_from(p.read().size_bytes()).unwrap_or(i64::MAX);
            t.partitions.push(out);
        }
        dir.topics.push(t);
    }
    if ctx.version >= 4 {
        (dir.total_bytes, dir.usable_bytes) = volume_bytes(&broker.config.log_dir);
    }
    let mut resp = DescribeLogDirsResponse::default();
    resp.results.push(dir);
    encode(ctx, &resp)
}
