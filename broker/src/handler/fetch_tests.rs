//! Where a fetch finds its regions: right on the reactor when every read is of the open
//! active segment under a free lock, on the blocking pool otherwise, with the same
//! answer either way.

use std::collections::BTreeMap;
use std::sync::Arc;

use fjord_protocol::compression::Compression;
use fjord_protocol::kafka_protocol::messages::fetch_request::{
    FetchPartition, FetchRequest, FetchTopic,
};
use fjord_protocol::kafka_protocol::messages::TopicName;
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::record_batch::{BatchBuilder, RecordSpec};

use super::fetch::{collect, Access};
use super::test_support::open;
use crate::state::Broker;

fn request(offset: i64) -> FetchRequest {
    let mut p = FetchPartition::default();
    p.fetch_offset = offset;
    p.partition_max_bytes = 1 << 20;
    let mut t = FetchTopic::default();
    t.topic = TopicName(StrBytes::from_static_str("t"));
    t.partitions = vec![p];
    let mut req = FetchRequest::default();
    req.max_bytes = 1 << 20;
    req.topics = vec![t];
    req
}

/// (position, length) of every region of the one partition's answer.
fn regions(broker: &Broker, offset: i64, access: Access) -> Option<Vec<(u64, u64)>> {
    let mut answer = answer(broker, &request(offset), access)?;
    Some(answer.swap_remove(0).4)
}

/// A topic "t" of `partitions` partitions of small segments, each filled until some
/// are sealed; returns the end offset (the same in every partition).
fn filled_partitions(broker: &Arc<Broker>, partitions: i32) -> i64 {
    let small = BTreeMap::from([("segment.bytes".to_string(), "2000".to_string())]);
    broker
        .create_topic("t", partitions, small, false)
        .expect("topic");
    let topic = broker.topic("t").expect("t");
    let mut end = 0;
    for partition in &topic.partitions {
        let mut log = partition.log.write().expect("lock");
        for i in 0..20 {
            let mut b = BatchBuilder::new(Compression::None, i);
            for _ in 0..4 {
                b.push(RecordSpec::value(vec![b'v'; 100]));
            }
            log.append(&b.build().expect("batch")).expect("append");
        }
        assert!(log.segment_count() > 2, "the test needs sealed segments");
        end = log.log_end_offset() as i64;
    }
    end
}

fn filled(broker: &Arc<Broker>) -> i64 {
    filled_partitions(broker, 1)
}

/// Everything a partition's answer says, regions as (position, length).
type Answer = Vec<(i32, i16, i64, i64, Vec<(u64, u64)>)>;

fn answer(broker: &Broker, req: &FetchRequest, access: Access) -> Option<Answer> {
    answer_at(broker, req, 12, access)
}

fn answer_at(broker: &Broker, req: &FetchRequest, version: i16, access: Access) -> Option<Answer> {
    let data = collect(broker, req, version, access)?;
    Some(
        data.iter()
            .flat_map(|t| &t.partitions)
            .map(|p| {
                let spans = p.regions.iter().map(|r| (r.position, r.len)).collect();
                (
                    p.index,
                    p.error_code,
                    p.high_watermark,
                    p.log_start_offset,
                    spans,
                )
            })
            .collect(),
    )
}

#[test]
fn tail_reads_are_collected_without_waiting_and_old_ones_are_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    let end = filled(&broker);

    let tail = regions(&broker, end - 1, Access::HotOnly).expect("a hot read");
    assert_eq!(tail.len(), 1);
    assert!(tail[0].1 > 0);
    assert_eq!(regions(&broker, end - 1, Access::Wait), Some(tail));
    // At the end there is nothing to read, and nothing to wait for.
    assert_eq!(regions(&broker, end, Access::HotOnly), Some(Vec::new()));

    // The first batch is in a sealed segment: that goes to the blocking pool.
    assert_eq!(regions(&broker, 0, Access::HotOnly), None);
    let old = regions(&broker, 0, Access::Wait).expect("a waiting read");
    assert_eq!(old.first().map(|r| r.0), Some(0));
}

#[test]
fn both_ways_give_the_same_answer_within_the_request_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    let end = filled_partitions(&broker, 3);
    // Three tail reads of two batches (of 4 records) each, a budget for three batches:
    // the first partition gets both, the second one (whole batches only), the third none.
    let mut req = request(end - 8);
    let template = req.topics[0].partitions[0].clone();
    req.topics[0].partitions = (0..3)
        .map(|i| {
            let mut p = template.clone();
            p.partition = i;
            p
        })
        .collect();
    let batch = regions(&broker, end - 1, Access::Wait).expect("read")[0].1;
    req.max_bytes = i32::try_from(batch * 3).expect("small");
    let hot = answer(&broker, &req, Access::HotOnly).expect("all hot");
    assert_eq!(Some(hot.clone()), answer(&broker, &req, Access::Wait));
    let sizes: Vec<u64> = hot.iter().map(|p| p.4.iter().map(|r| r.1).sum()).collect();
    assert_eq!(sizes, vec![batch * 2, batch, 0]);
    assert!(hot.iter().all(|p| p.1 == 0 && p.2 == end));

    // Out of range and unknown partitions answer the same both ways too.
    req.topics[0].partitions[1].fetch_offset = end + 5;
    req.topics[0].partitions[2].partition = 9;
    let hot = answer(&broker, &req, Access::HotOnly).expect("all hot");
    assert_eq!(Some(hot.clone()), answer(&broker, &req, Access::Wait));
    assert_eq!((hot[1].1, hot[2].1), (1, 3));
}

#[test]
fn closed_segment_files_send_the_fetch_to_the_pool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    let end = filled(&broker);
    let topic = broker.topic("t").expect("t");
    let closed = topic.partitions[0]
        .read()
        .close_idle(std::time::Duration::ZERO)
        .expect("close");
    assert!(closed > 0);
    assert_eq!(regions(&broker, end - 1, Access::HotOnly), None);
    assert!(regions(&broker, end - 1, Access::Wait).is_some());
    assert!(
        regions(&broker, end - 1, Access::HotOnly).is_some(),
        "open again"
    );
}

#[test]
fn a_held_write_lock_sends_the_fetch_to_the_pool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    let end = filled(&broker);
    let topic = broker.topic("t").expect("t");
    let writer = topic.partitions[0].log.write().expect("lock");
    assert_eq!(regions(&broker, end - 1, Access::HotOnly), None);
    drop(writer);
    assert!(regions(&broker, end - 1, Access::HotOnly).is_some());
}

/// A v13+ fetch of topic "t" by `id` from offset 0: (error code, bytes read).
fn by_id(broker: &Broker, id: uuid::Uuid) -> (i16, u64) {
    let mut req = request(0);
    req.topics[0].topic = TopicName::default();
    req.topics[0].topic_id = id;
    let answer = answer_at(broker, &req, 13, Access::Wait).expect("answer");
    (answer[0].1, answer[0].4.iter().map(|r| r.1).sum())
}

#[test]
fn fetches_by_topic_id_find_the_topic_only_under_its_current_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    filled(&broker);
    let id = broker.topic("t").expect("t").id;
    let (error, bytes) = by_id(&broker, id);
    assert_eq!(error, 0);
    assert!(bytes > 0);
    // Stable across a restart.
    broker.close();
    drop(broker);
    let broker = open(dir.path());
    assert_eq!(broker.topic("t").expect("t").id, id);
    assert_eq!(by_id(&broker, id).0, 0);
    // Unknown, and after the topic is re-created: the old ID is UNKNOWN_TOPIC_ID.
    assert_eq!(by_id(&broker, uuid::Uuid::new_v4()), (100, 0));
    broker.delete_topic("t").expect("deleted");
    assert_eq!(by_id(&broker, id), (100, 0));
    broker
        .create_topic("t", 1, BTreeMap::new(), false)
        .expect("re-created");
    let new_id = broker.topic("t").expect("t").id;
    assert_ne!(new_id, id);
    assert_eq!(by_id(&broker, id), (100, 0));
    assert_eq!(by_id(&broker, new_id), (0, 0));
}

#[test]
fn a_fetch_with_another_leader_epoch_is_refused_and_told_the_current_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    filled(&broker);
    broker.close();
    drop(broker);
    let broker = open(dir.path());
    let epoch = broker.topic("t").expect("t").partitions[0].leader_epoch;
    assert_eq!(epoch, 1, "a restart after writes leads in a new epoch");
    let mut req = request(0);
    for (current, error) in [(-1, 0), (epoch, 0), (epoch - 1, 74), (epoch + 1, 75)] {
        req.topics[0].partitions[0].current_leader_epoch = current;
        let data = collect(&broker, &req, 12, Access::Wait).expect("answer");
        let p = &data[0].partitions[0];
        assert_eq!(p.error_code, error, "current epoch {current}");
        assert_eq!(p.leader_epoch, (error != 0).then_some(epoch));
        assert_eq!(p.regions.is_empty(), error != 0);
    }
}
