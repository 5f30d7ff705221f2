//! Produce: append each partition's batches as sent; answer after the append (acks=1),
//! after the fsync when the log is fsync-on-ack (acks=all, the default), or not at all
//! (acks=0).

use std::sync::Arc;

use bytes::Bytes;
use fjord_protocol::kafka_protocol::messages::produce_request::ProduceRequest;
use fjord_protocol::kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use fjord_protocol::kafka_protocol::messages::TopicName;
use fjord_protocol::kafka_protocol::ResponseError as E;
use fjord_protocol::record_batch::BatchHeader;
use fjord_storage::FlushTicket;

use crate::producer_state::Check;

use super::{encode, storage_error_code, Ctx, Fatal, Response};
use crate::state::{Broker, Partition, Topic};

/// One partition's part of the request and, after the append, its outcome.
struct Slot {
    /// The topic (for the transaction check), when the partition is known.
    topic: Option<Arc<Topic>>,
    partition: Option<Arc<Partition>>,
    records: Option<Bytes>,
    error_code: i16,
    base_offset: i64,
    log_append_time: i64,
    log_start_offset: i64,
    durable: Option<FlushTicket>,
    /// Written to the log by this request (not a duplicate, not refused).
    appended: bool,
}

/// The checks of a batch's transaction attributes, made under the partition's lock:
/// clients never write control batches (Kafka's `LogValidator`), and a transactional
/// batch comes in a request that names its transactional id (Kafka answers
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED otherwise, authorizer or not) and needs an
/// ongoing transaction that holds the partition (KIP-890 part 1).
fn check_transaction(
    broker: &Broker,
    slot: &Slot,
    header: &BatchHeader,
    names_transactional_id: bool,
) -> Result<(), i16> {
    if header.is_control() {
        return Err(E::InvalidRecord.code());
    }
    if !header.is_transactional() {
        return Ok(());
    }
    if !names_transactional_id {
        return Err(E::TransactionalIdAuthorizationFailed.code());
    }
    let (Some(topic), Some(partition)) = (&slot.topic, &slot.partition) else {
        return Ok(());
    };
    broker
        .txn
        .check_produce(
            header.producer_id,
            header.producer_epoch,
            &topic.name,
            partition.index,
        )
        .map_err(|e| {
            tracing::info!(topic = %topic.name, partition = partition.index, producer_id = header.producer_id, error = ?e, "transactional produce refused");
            e.code()
        })
}

fn append_all(broker: &Broker, slots: &mut [Slot], names_transactional_id: bool) {
    for slot in slots.iter_mut() {
        let (Some(partition), Some(records)) = (&slot.partition, &slot.records) else {
            continue;
        };
        let mut log = partition.write();
        if partition.is_offline() {
            slot.error_code = E::KafkaStorageError.code();
            continue;
        }
        let mut producers = partition
            .producers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Produce v3+ carries one batch per partition (Kafka rejects more); its header
        // decides idempotence. A bad header fails in append.
        let header = BatchHeader::parse(records).ok();
        if header.is_some_and(|h| h.total_len() < records.len()) {
            slot.error_code = E::InvalidRecord.code();
            continue;
        }
        if let Some(Err(code)) =
            header.map(|h| check_transaction(broker, slot, &h, names_transactional_id))
        {
            slot.error_code = code;
            continue;
        }
        match header.map_or(Check::Append, |h| producers.check(&h)) {
            Check::Append => {}
            Check::Duplicate { first_offset } => {
                slot.base_offset = first_offset as i64;
                slot.log_start_offset = log.log_start_offset() as i64;
                continue;
            }
            Check::OutOfOrder => {
                slot.error_code = E::OutOfOrderSequenceNumber.code();
                continue;
            }
            Check::StaleEpoch => {
                slot.error_code = E::InvalidProducerEpoch.code();
                continue;
            }
        }
        match log.append(records) {
            Ok(info) => {
                if let Some(h) = &header {
                    producers.record(h, info.first_offset);
                }
                slot.base_offset = info.first_offset as i64;
                slot.log_append_time = info.log_append_time.unwrap_or(-1);
                slot.log_start_offset = info.log_start_offset as i64;
                slot.durable = info.durable;
                slot.appended = true;
            }
            Err(e) => {
                tracing::info!(partition = partition.index, error = %e, "produce rejected");
                slot.error_code = storage_error_code(&e);
            }
        }
    }
}

/// Waits for an append's sync; on failure the partition goes offline (a retry of the
/// batch must not be acknowledged as a duplicate of bytes that may never reach the disk)
/// and the error code to answer is returned.
async fn await_durable(
    broker: &Broker,
    partition: Option<&Arc<Partition>>,
    ticket: FlushTicket,
) -> Result<(), i16> {
    let started = std::time::Instant::now();
    let waiting = &broker.metrics.produce_waiting;
    waiting.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let synced = ticket.await;
    waiting.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    broker.metrics.fsync(started.elapsed());
    synced.map_err(|e| {
        if let Some(partition) = partition {
            partition.mark_offline(&e);
        }
        E::KafkaStorageError.code()
    })
}

/// One topic of the request: as it was named (by name before v13, by ID from v13), its
/// name if known (for /metrics), and how many partitions it named.
struct TopicShape {
    named: TopicName,
    id: uuid::Uuid,
    name: Option<String>,
    partitions: usize,
}

/// The request's topics, in order.
type Shape = Vec<TopicShape>;

/// One slot per partition named, with the checks that need no log: acks, topic and
/// partition known, records present. A Produce never creates a topic, as in Kafka:
/// unknown topics are answered UNKNOWN_TOPIC_OR_PARTITION (retriable) at once;
/// Metadata is what auto-creates.
///
/// From v13 topics are named by ID: an unknown one is UNKNOWN_TOPIC_ID, as in Kafka.
fn slots(broker: &Broker, version: i16, req: ProduceRequest) -> (Shape, Vec<i32>, Vec<Slot>) {
    let bad_acks = !matches!(req.acks, -1..=1);
    let by_id = version >= 13;
    let mut shape = Vec::with_capacity(req.topic_data.len());
    let (mut indexes, mut slots) = (Vec::new(), Vec::new());
    for topic in req.topic_data {
        let found: Option<Arc<Topic>> = match (bad_acks, by_id) {
            (true, _) => None,
            (false, true) => broker.topic_by_id(&topic.topic_id),
            (false, false) => broker.topic(topic.name.0.as_str()),
        };
        let unknown = if by_id && found.is_none() {
            E::UnknownTopicId
        } else {
            E::UnknownTopicOrPartition
        };
        shape.push(TopicShape {
            named: topic.name.clone(),
            id: topic.topic_id,
            name: found.as_ref().map(|t| t.name.clone()),
            partitions: topic.partition_data.len(),
        });
        for data in topic.partition_data {
            let partition = found
                .as_ref()
                .and_then(|t| t.partition(data.index).cloned());
            let error_code = if bad_acks {
                E::InvalidRequiredAcks.code()
            } else if partition.is_none() {
                unknown.code()
            } else if data.records.is_none() {
                E::CorruptMessage.code()
            } else {
                0
            };
            indexes.push(data.index);
            slots.push(Slot {
                topic: found.clone(),
                partition: if error_code == 0 { partition } else { None },
                records: data.records,
                error_code,
                base_offset: -1,
                log_append_time: -1,
                log_start_offset: -1,
                durable: None,
                appended: false,
            });
        }
    }
    (shape, indexes, slots)
}

/// Waits for the syncs acks=all needs; acks=0 and acks=1 are page-cache
/// acknowledgements, as in Kafka: their syncs finish behind the answer, and a failure
/// still takes the partition offline, so no later retry is acknowledged over lost bytes.
async fn durability(broker: &Arc<Broker>, acks: i16, work: &mut [Slot]) {
    for slot in work {
        let Some(ticket) = slot.durable.take() else {
            continue;
        };
        if acks == -1 {
            if let Err(code) = await_durable(broker, slot.partition.as_ref(), ticket).await {
                slot.error_code = code;
            }
        } else {
            let broker = Arc::clone(broker);
            let partition = slot.partition.clone();
            tokio::spawn(async move {
                let _ = await_durable(&broker, partition.as_ref(), ticket).await;
            });
        }
    }
}

/// Per-topic counters for /metrics: what was appended (duplicates excluded).
fn count_produced(broker: &Broker, shape: &Shape, work: &[Slot]) {
    let mut slots = work.iter();
    for topic in shape {
        let (mut records, mut bytes) = (0u64, 0u64);
        for slot in slots.by_ref().take(topic.partitions) {
            if let (true, 0, Some(r)) = (slot.appended, slot.error_code, &slot.records) {
                bytes += r.len() as u64;
                records += BatchHeader::parse(r)
                    .map_or(0, |h| u64::try_from(h.records_count).unwrap_or(0));
            }
        }
        if let (true, Some(name)) = (bytes > 0, &topic.name) {
            broker.metrics.produced(name, records, bytes);
        }
    }
}

/// The response, in the request's order.
fn response(shape: Shape, indexes: Vec<i32>, work: Vec<Slot>) -> ProduceResponse {
    let mut outcomes = indexes.into_iter().zip(work);
    let mut resp = ProduceResponse::default();
    for shape in shape {
        let mut topic = TopicProduceResponse::default();
        // Named back as the request named it.
        (topic.name, topic.topic_id) = (shape.named, shape.id);
        for (index, slot) in outcomes.by_ref().take(shape.partitions) {
            let mut p = PartitionProduceResponse::default();
            p.index = index;
            p.error_code = slot.error_code;
            p.base_offset = slot.base_offset;
            p.log_append_time_ms = slot.log_append_time;
            p.log_start_offset = slot.log_start_offset;
            topic.partition_responses.push(p);
        }
        resp.responses.push(topic);
    }
    resp
}

pub(super) async fn handle(
    broker: &Arc<Broker>,
    ctx: Ctx,
    req: ProduceRequest,
) -> Result<Response, Fatal> {
    let acks = req.acks;
    let names_transactional_id = req.transactional_id.is_some();
    let (shape, indexes, mut work) = slots(broker, ctx.version, req);
    // Page-cache writes can stall (dirty throttling): keep them off the reactor.
    let appender = Arc::clone(broker);
    work = tokio::task::spawn_blocking(move || {
        append_all(&appender, &mut work, names_transactional_id);
        work
    })
    .await
    .map_err(|e| Fatal::Internal(format!("append task failed: {e}")))?;
    broker.notify_appended();
    durability(broker, acks, &mut work).await;
    count_produced(broker, &shape, &work);
    // acks=0 is counted like any other produce, and answered with nothing.
    if acks == 0 {
        return Ok(Response::None);
    }
    encode(ctx, &response(shape, indexes, work))
}

#[cfg(test)]
mod tests {
    use bytes::Buf;
    use fjord_protocol::compression::Compression;
    use fjord_protocol::kafka_protocol::messages::produce_request::{
        PartitionProduceData, TopicProduceData,
    };
    use fjord_protocol::kafka_protocol::messages::ApiKey;
    use fjord_protocol::kafka_protocol::protocol::Decodable;
    use fjord_protocol::record_batch::{BatchBuilder, RecordSpec};

    use super::super::test_support::{body, ctx, open};
    use super::*;

    fn topic_by_id(id: uuid::Uuid) -> TopicProduceData {
        let mut b = BatchBuilder::new(Compression::None, 1_000);
        b.push(RecordSpec::value("v"));
        let mut p = PartitionProduceData::default();
        p.records = Some(Bytes::from(b.build().expect("batch")));
        let mut t = TopicProduceData::default();
        t.topic_id = id;
        t.partition_data = vec![p];
        t
    }

    #[tokio::test]
    async fn produce_v13_names_topics_by_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = open(dir.path());
        broker
            .create_topic("t", 1, Default::default(), false)
            .expect("topic");
        let id = broker.topic("t").expect("t").id;
        let stale = uuid::Uuid::new_v4();
        let mut req = ProduceRequest::default();
        req.acks = 1;
        req.topic_data = vec![topic_by_id(id), topic_by_id(stale)];
        let r = handle(&broker, ctx(ApiKey::Produce, 13), req)
            .await
            .expect("answer");
        let mut bytes = body(r);
        bytes.advance(1); // the flexible header's tagged fields
        let resp = ProduceResponse::decode(&mut bytes, 13).expect("decode");
        let got: Vec<(uuid::Uuid, i16, i64)> = resp
            .responses
            .iter()
            .map(|t| {
                let p = &t.partition_responses[0];
                (t.topic_id, p.error_code, p.base_offset)
            })
            .collect();
        assert_eq!(got, vec![(id, 0, 0), (stale, E::UnknownTopicId.code(), -1)]);
        assert_eq!(
            broker.topic("t").expect("t").partitions[0]
                .read()
                .log_end_offset(),
            1
        );
    }
}
