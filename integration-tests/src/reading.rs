//! Reading a whole partition back with librdkafka, for tests that check what a broker
//! kept (compaction, recovery).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// A record as read: (offset, key, value).
pub type Read = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// A librdkafka consumer assigned `topic`/`partition` from its log start, checking
/// every batch's CRC; `eof` makes it report the partition's end as an error.
/// librdkafka's default isolation, read_committed.
pub fn reader_from_start(bootstrap: &str, topic: &str, partition: i32, eof: bool) -> BaseConsumer {
    reader_with_isolation(bootstrap, topic, partition, eof, "read_committed")
}

/// As [`reader_from_start`], at `isolation` (`read_committed` or `read_uncommitted`).
pub fn reader_with_isolation(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    eof: bool,
    isolation: &str,
) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("isolation.level", isolation)
        .set("group.id", "fjord-test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", eof.to_string())
        .set("check.crcs", "true")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    c
}

/// Every record of `topic`/`partition` from its log start to its end (librdkafka's
/// partition EOF, so offsets removed at the end do not stall it).
pub fn read_partition(bootstrap: &str, topic: &str, partition: i32) -> Vec<Read> {
    read_partition_at(bootstrap, topic, partition, "read_committed")
}

/// As [`read_partition`], at `isolation`: `read_uncommitted` shows what the log holds,
/// records of aborted and open transactions included.
pub fn read_partition_at(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    isolation: &str,
) -> Vec<Read> {
    let c = reader_with_isolation(bootstrap, topic, partition, true, isolation);
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "read {} records", out.len());
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push((
                m.offset(),
                m.key().map(<[u8]>::to_vec),
                m.payload().map(<[u8]>::to_vec),
            )),
            Some(Err(KafkaError::PartitionEOF(_))) => return out,
            Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::PartitionEOF))) => {
                return out
            }
            _ => {}
        }
    }
}

/// A Fjord consumer in `group` that reads read_committed from the earliest offset and
/// commits nothing (the caller assigns its partitions): how the transaction tests check
/// what was committed.
pub fn read_committed_consumer(bootstrap: &str, group: &str) -> fjord_consumer::Consumer {
    fjord_consumer::Consumer::builder()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.max.wait.ms", "100")
        .build()
        .expect("read_committed consumer")
}
