//! Consumer lag: how far each partition's committed offset is behind its log end, the
//! figure operators watch. Read by admin tools and metrics; the same numbers a client
//! gets from OffsetFetch and ListOffsets.

use super::offset_store::TopicPartition;
use crate::state::Broker;

/// One partition's lag for a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// Topic and partition.
    pub partition: TopicPartition,
    /// The group's committed offset.
    pub committed: i64,
    /// The partition's log end offset (its high watermark on a single node).
    pub log_end: i64,
    /// Records not yet committed: `log_end - committed`, never negative.
    pub lag: i64,
}

/// The lag of every partition `group` has committed, sorted by topic and partition.
/// Partitions of deleted topics are left out.
pub fn group_lag(broker: &Broker, group: &str) -> Vec<PartitionLag> {
    broker
        .groups
        .offsets
        .group(group)
        .into_iter()
        .filter_map(|((topic, index), committed)| {
            let t = broker.topic(&topic)?;
            let p = t.partition(index)?;
            let log_end = p.read().log_end_offset() as i64;
            Some(PartitionLag {
                partition: (topic, index),
                committed: committed.offset,
                log_end,
                lag: (log_end - committed.offset).max(0),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use fjord_protocol::compression::Compression;
    use fjord_protocol::record_batch::{BatchBuilder, RecordSpec};

    use super::*;
    use crate::config::BrokerConfig;
    use crate::groups::offset_records::Committed;

    #[test]
    fn lag_is_log_end_minus_committed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sets = vec![("log.dirs".to_string(), dir.path().display().to_string())];
        let broker =
            Broker::open(BrokerConfig::from_sources(None, &sets).expect("config")).expect("broker");
        let topic = broker
            .create_topic("t", 2, Default::default(), false)
            .expect("topic");
        let mut batch = BatchBuilder::new(Compression::None, 1);
        for i in 0..10 {
            batch.push(RecordSpec::value(format!("v{i}")));
        }
        let bytes = batch.build().expect("batch");
        topic.partitions[0].write().append(&bytes).expect("append");
        let commit = |p: i32, offset: i64| {
            let c = Committed {
                offset,
                leader_epoch: -1,
                metadata: None,
                commit_ms: 1,
            };
            broker
                .groups
                .offsets
                .write("g", &[(("t".to_string(), p), Some(c))])
                .expect("commit");
        };
        commit(0, 4);
        commit(1, 0);
        let lag = group_lag(&broker, "g");
        let summary: Vec<(i32, i64, i64, i64)> = lag
            .iter()
            .map(|l| (l.partition.1, l.committed, l.log_end, l.lag))
            .collect();
        assert_eq!(summary, vec![(0, 4, 10, 6), (1, 0, 0, 0)]);
    }
}
