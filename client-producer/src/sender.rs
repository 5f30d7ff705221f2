//! One sender per broker: collects the batches whose leader it is (full ones, ones past
//! `linger.ms`, retries past their backoff), seals them (sequence numbers, compression,
//! CRC) and keeps up to `max.in.flight.requests.per.connection` Produce requests on the
//! wire. Responses complete batches or put them back, in sequence order, for a retry.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use fjord_client_common::{ClientError, Connection};
use fjord_protocol::kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse,
};
use fjord_protocol::kafka_protocol::messages::ApiKey;
use tokio::sync::Semaphore;

use crate::accumulator::{ClosedBatch, PartitionState, TopicState};
use crate::config::Acks;
use crate::delivery::BatchAck;
use crate::error::ProduceError;
use crate::inner::{Inner, SenderHandle};
use fjord_protocol::produce_request::{self, PartitionBatch};

/// Kafka error codes the sender treats specially.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
const UNKNOWN_PRODUCER_ID: i16 = 59;

/// A batch on its way, with where it goes.
struct InFlight {
    topic: Arc<TopicState>,
    partition: Arc<PartitionState>,
    batch: ClosedBatch,
}

/// How long an idle sender sleeps before looking again (leaders move, `close` waits).
const IDLE_RECHECK: Duration = Duration::from_millis(100);

pub(crate) async fn run(inner: Arc<Inner>, node: i32, handle: Arc<SenderHandle>) {
    let in_flight = Arc::new(Semaphore::new(inner.config.max_in_flight));
    let mut conn: Option<Connection> = None;
    let mut backoff_until: Option<Instant> = None;
    loop {
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            return;
        };
        if let Some(until) = backoff_until.take() {
            tokio::time::sleep_until(until.into()).await;
        }
        let now = Instant::now();
        let (batches, next_due) = collect(&inner, node, now);
        if batches.is_empty() {
            drop(permit);
            let closing = inner.closing.load(Ordering::Acquire);
            if closing && in_flight.available_permits() == inner.config.max_in_flight {
                return;
            }
            let wake = next_due
                .unwrap_or(now + IDLE_RECHECK)
                .min(now + IDLE_RECHECK);
            handle
                .wake_at_us
                .store(inner.micros(wake).max(1), Ordering::Release);
            tokio::select! {
                _ = handle.notify.notified() => {}
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            handle.wake_at_us.store(0, Ordering::Release);
            continue;
        }
        let connection = match connect(&inner, node, &mut conn).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(node, error = %e, "cannot reach the leader");
                inner.metadata_wanted.notify_one();
                for f in batches {
                    retry_or_fail(&inner, f, ProduceError::Client(e.clone()));
                }
                backoff_until = Some(Instant::now() + inner.config.retry_backoff);
                continue;
            }
        };
        let batches = match add_to_transaction(&inner, batches).await {
            Ok(b) => b,
            Err((batches, e)) => {
                for f in batches {
                    finish(&inner, f, Err(e.clone()));
                }
                continue;
            }
        };
        let sealed = match seal(&inner, &connection, batches).await {
            Ok(s) => s,
            Err((batches, e)) => {
                for f in batches {
                    retry_or_fail(&inner, f, ProduceError::Client(e.clone()));
                }
                backoff_until = Some(Instant::now() + inner.config.retry_backoff);
                continue;
            }
        };
        send(&inner, &connection, sealed, permit, &handle).await;
    }
}

/// A live connection to `node`.
async fn connect(
    inner: &Arc<Inner>,
    node: i32,
    slot: &mut Option<Connection>,
) -> Result<Connection, ClientError> {
    if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
        return Ok(c.clone());
    }
    let addr = inner
        .brokers
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&node)
        .cloned()
        .ok_or_else(|| ClientError::Closed(format!("node {node} not in metadata")))?;
    let c = Connection::connect(&addr, inner.connection_options.clone()).await?;
    *slot = Some(c.clone());
    Ok(c)
}

/// Takes at most one batch per partition led by `node`: the first queued batch if its
/// backoff is over, else the open batch if `linger.ms` passed (or a flush or close asks).
/// Also returns when the next one will be due.
fn collect(inner: &Arc<Inner>, node: i32, now: Instant) -> (Vec<InFlight>, Option<Instant>) {
    let topics = inner.topic_states();
    let hurry = inner.flushing.load(Ordering::Acquire) > 0 || inner.closing.load(Ordering::Acquire);
    let budget = inner.config.max_request_size;
    let mut used = 0usize;
    let mut out = Vec::new();
    let mut next_due: Option<Instant> = None;
    let mut due = |at: Instant| next_due = Some(next_due.map_or(at, |d| d.min(at)));
    'topics: for topic in &topics {
        for partition in &topic.partitions {
            if partition.leader() != node {
                continue;
            }
            let mut q = partition.lock();
            let mut take = None;
            if let Some(front) = q.ready.front() {
                match front.retry_at {
                    Some(at) if at > now => due(at),
                    _ => take = q.ready.pop_front(),
                }
            } else if let Some(open) = &q.open {
                let at = open.created + inner.config.linger;
                if at <= now || hurry {
                    take = q.close_open();
                } else {
                    due(at);
                }
            }
            let Some(batch) = take else { continue };
            if !out.is_empty() && used + batch.size() > budget {
                q.ready.push_front(batch);
                due(now);
                break 'topics;
            }
            used += batch.size();
            q.in_flight.push(Arc::clone(&batch.completion));
            drop(q);
            out.push(InFlight {
                topic: Arc::clone(topic),
                partition: Arc::clone(partition),
                batch,
            });
        }
    }
    (out, next_due)
}

/// For a transactional producer: has the coordinator record the batches' partitions
/// that the transaction does not have yet (AddPartitionsToTxn) before they are written.
/// Batches of a transaction that can no longer commit are not sent.
async fn add_to_transaction(
    inner: &Arc<Inner>,
    batches: Vec<InFlight>,
) -> Result<Vec<InFlight>, (Vec<InFlight>, ProduceError)> {
    let Some(txn) = &inner.txn else {
        return Ok(batches);
    };
    match txn.state().partitions_to_add(partitions_of(&batches)) {
        Ok(missing) if missing.is_empty() => return Ok(batches),
        Ok(_) => {}
        Err(e) => return Err((batches, e)),
    }
    let producer = match *inner.producer_id.lock().await {
        Some(p) => p,
        None => {
            let e = ProduceError::TransactionState("init_transactions has not completed".into());
            return Err((batches, e));
        }
    };
    let _one_at_a_time = txn.adding.lock().await;
    // Another sender may have added some meanwhile, or the transaction failed.
    let missing = match txn.state().partitions_to_add(partitions_of(&batches)) {
        Ok(missing) if missing.is_empty() => return Ok(batches),
        Ok(missing) => missing,
        Err(e) => return Err((batches, e)),
    };
    match inner.add_partitions_to_txn(producer, &missing).await {
        Ok(()) => {
            txn.state().added.extend(missing);
            Ok(batches)
        }
        Err(e) => {
            if !e.is_retriable() {
                txn.state().fail(e.clone());
            }
            Err((batches, e))
        }
    }
}

fn partitions_of(batches: &[InFlight]) -> impl Iterator<Item = (Arc<str>, i32)> + '_ {
    batches
        .iter()
        .map(|f| (Arc::clone(&f.topic.name), f.partition.index))
}

/// Gives each batch its producer id, epoch and sequence (unless it keeps the ones it was
/// first sent with) and its wire bytes.
async fn seal(
    inner: &Arc<Inner>,
    conn: &Connection,
    mut batches: Vec<InFlight>,
) -> Result<Vec<InFlight>, (Vec<InFlight>, ClientError)> {
    let producer = if inner.config.idempotence {
        match inner.producer_id(conn).await {
            Ok(id) => Some(id),
            Err(e) => return Err((batches, e)),
        }
    } else {
        None
    };
    for f in &mut batches {
        let b = &mut f.batch;
        let (pid, epoch, seq) = match producer {
            None => (-1, -1, -1),
            Some((pid, epoch)) => match b.sequence {
                Some((p, e, s)) if (p, e) == (pid, epoch) => (p, e, s),
                _ => {
                    let mut q = f.partition.lock();
                    if q.seq_producer != (pid, epoch) {
                        q.seq_producer = (pid, epoch);
                        q.next_sequence = 0;
                    }
                    let s = q.next_sequence;
                    q.next_sequence = s.checked_add(b.records).unwrap_or(0);
                    b.sequence = Some((pid, epoch, s));
                    (pid, epoch, s)
                }
            },
        };
        if let Some(writer) = b.writer.take() {
            let transactional = inner.txn.is_some();
            match writer.finish(inner.config.compression, pid, epoch, seq, transactional) {
                Ok(bytes) => b.bytes = Some(bytes),
                Err(e) => {
                    // Cannot happen for valid codecs; fail the batch rather than loop.
                    b.last_error = Some(e.to_string());
                }
            }
        } else if let Some(bytes) = &b.bytes {
            b.bytes = Some(reseal(bytes, pid, epoch, seq));
        }
    }
    Ok(batches)
}

/// The same batch under a new producer id, epoch or sequence (after a reset).
fn reseal(bytes: &Bytes, pid: i64, epoch: i16, seq: i32) -> Bytes {
    if bytes.len() < 61 {
        return bytes.clone();
    }
    let current = (
        i64::from_be_bytes(bytes[43..51].try_into().unwrap_or_default()),
        i16::from_be_bytes(bytes[51..53].try_into().unwrap_or_default()),
        i32::from_be_bytes(bytes[53..57].try_into().unwrap_or_default()),
    );
    if current == (pid, epoch, seq) {
        return bytes.clone();
    }
    let mut b = BytesMut::from(&bytes[..]);
    let mut fields = &mut b[43..57];
    fields.put_i64(pid);
    fields.put_i16(epoch);
    fields.put_i32(seq);
    let crc = fjord_protocol::crc::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

/// Puts the batches in one Produce request, queues it on the connection (so requests
/// leave in the order they were built) and handles the answer in its own task.
async fn send(
    inner: &Arc<Inner>,
    conn: &Connection,
    batches: Vec<InFlight>,
    permit: tokio::sync::OwnedSemaphorePermit,
    handle: &Arc<SenderHandle>,
) {
    let (ok, failed): (Vec<InFlight>, Vec<InFlight>) =
        batches.into_iter().partition(|f| f.batch.bytes.is_some());
    for f in failed {
        let why = f.batch.last_error.clone().unwrap_or_default();
        finish(inner, f, Err(ProduceError::Config(why)));
    }
    if ok.is_empty() {
        return;
    }
    let (min, max) = (
        *produce_request::VERSIONS.start(),
        *produce_request::VERSIONS.end(),
    );
    let version = match conn.version(ApiKey::Produce, min, max) {
        Ok(v) => v,
        Err(e) => {
            for f in ok {
                finish(inner, f, Err(ProduceError::Client(e.clone())));
            }
            return;
        }
    };
    let timeout_ms = i32::try_from(inner.config.request_timeout.as_millis()).unwrap_or(i32::MAX);
    let mut topics: Vec<(&str, Vec<PartitionBatch>)> = Vec::new();
    for f in &ok {
        let name = f.topic.name.as_ref();
        let batch = PartitionBatch {
            partition: f.partition.index,
            records: f.batch.bytes.clone().unwrap_or_default(),
        };
        match topics.iter_mut().find(|(t, _)| *t == name) {
            Some((_, ps)) => ps.push(batch),
            None => topics.push((name, vec![batch])),
        }
    }
    let request = produce_request::encode(
        version,
        &inner.config.client_id,
        inner.txn.as_ref().map(|t| t.id.as_str()),
        inner.config.acks.wire(),
        timeout_ms,
        &topics,
    );
    drop(topics);
    if inner.config.acks == Acks::None {
        let sent = conn.send_parts_only(request.head, request.tail).await;
        for f in ok {
            let result = match &sent {
                Ok(()) => Ok(BatchAck {
                    base_offset: -1,
                    log_append_time: -1,
                }),
                Err(e) => Err(ProduceError::Client(e.clone())),
            };
            finish(inner, f, result);
        }
        drop(permit);
        return;
    }
    let response_header = if version >= 9 { 1 } else { 0 };
    let pending = match conn
        .submit_parts::<ProduceResponse>(request.head, request.tail, response_header, version)
        .await
    {
        Ok(p) => p,
        Err(e) => {
            for f in ok {
                retry_or_fail(inner, f, ProduceError::Client(e.clone()));
            }
            return;
        }
    };
    let inner = Arc::clone(inner);
    let handle = Arc::clone(handle);
    tokio::spawn(async move {
        let result = pending.wait().await;
        handle_response(&inner, ok, result).await;
        drop(permit);
        handle.notify.notify_one();
    });
}

async fn handle_response(
    inner: &Arc<Inner>,
    batches: Vec<InFlight>,
    result: Result<ProduceResponse, ClientError>,
) {
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            inner.metadata_wanted.notify_one();
            for f in batches {
                retry_or_fail(inner, f, ProduceError::Client(e.clone()));
            }
            return;
        }
    };
    // Brokers answer partitions in request order: match by position, and search only if
    // that fails (a request can carry thousands of partitions).
    let answers: Vec<(&str, &PartitionProduceResponse)> = resp
        .responses
        .iter()
        .flat_map(|t| {
            t.partition_responses
                .iter()
                .map(move |p| (t.name.0.as_str(), p))
        })
        .collect();
    for (i, f) in batches.into_iter().enumerate() {
        let matches = |(name, p): &&(&str, &PartitionProduceResponse)| {
            *name == f.topic.name.as_ref() && p.index == f.partition.index
        };
        let answer = answers
            .get(i)
            .filter(|a| matches(a))
            .or_else(|| answers.iter().find(|a| matches(a)))
            .map(|(_, p)| *p);
        let Some(p) = answer else {
            let missing = ClientError::Closed("no answer for the partition".into());
            retry_or_fail(inner, f, ProduceError::Client(missing));
            continue;
        };
        match p.error_code {
            0 | DUPLICATE_SEQUENCE_NUMBER => {
                let ack = BatchAck {
                    base_offset: p.base_offset,
                    log_append_time: p.log_append_time_ms,
                };
                finish(inner, f, Ok(ack));
            }
            OUT_OF_ORDER_SEQUENCE_NUMBER | UNKNOWN_PRODUCER_ID => {
                // Explained by an earlier batch of this partition being retried: wait for
                // it. Otherwise the broker lost our sequence: start over under a new id.
                let earlier_pending = {
                    let q = f.partition.lock();
                    let own = &f.batch.completion;
                    q.in_flight
                        .iter()
                        .any(|c| !Arc::ptr_eq(c, own) && !c.is_done())
                        || !q.ready.is_empty()
                };
                if !earlier_pending {
                    if let Some(txn) = &inner.txn {
                        // A transactional id keeps its producer id: the transaction
                        // must abort, and the abort bumps the epoch (KIP-360).
                        txn.state().epoch_bump_needed = true;
                        finish(inner, f, Err(ProduceError::broker(p.error_code)));
                        continue;
                    }
                    if let Some((pid, epoch, _)) = f.batch.sequence {
                        inner.reset_producer_id((pid, epoch)).await;
                    }
                }
                // Retriable here whatever the code's own flag says: the batch goes out again
                // in order, or under the new id.
                let why = ClientError::Closed(format!("sequence error {}", p.error_code));
                retry_or_fail(inner, f, ProduceError::Client(why));
            }
            code => {
                let retriable = fjord_protocol::kafka_protocol::ResponseError::try_from_code(code)
                    .is_some_and(|e| e.is_retriable());
                if matches!(code, NOT_LEADER_OR_FOLLOWER | UNKNOWN_TOPIC_OR_PARTITION) {
                    inner.metadata_wanted.notify_one();
                }
                if retriable {
                    retry_or_fail(inner, f, ProduceError::broker(code));
                } else {
                    finish(inner, f, Err(ProduceError::broker(code)));
                }
            }
        }
    }
}

/// Completes a batch and gives its memory back. A failed batch of a transaction makes
/// the transaction abortable (or the producer fatal), and its records fail with that.
fn finish(inner: &Arc<Inner>, f: InFlight, result: Result<BatchAck, ProduceError>) {
    let result = match (result, &inner.txn) {
        (Err(e), Some(txn)) => {
            let had_sequence = f.batch.sequence.is_some();
            Err(txn.state().batch_failed(&e, had_sequence))
        }
        (result, _) => result,
    };
    {
        let mut q = f.partition.lock();
        q.in_flight.retain(|c| !Arc::ptr_eq(c, &f.batch.completion));
    }
    f.batch.completion.complete(result);
    inner.memory.release(f.batch.reserved);
}

/// Puts a batch back for another attempt, unless the error is not retriable or the batch
/// is out of time or attempts: then it fails (with the delivery timeout carrying the last
/// retriable error).
fn retry_or_fail(inner: &Arc<Inner>, mut f: InFlight, error: ProduceError) {
    f.batch.attempts += 1;
    if !error.is_retriable() {
        finish(inner, f, Err(error));
        return;
    }
    let expired = f.batch.created.elapsed() >= inner.config.delivery_timeout;
    if expired || f.batch.attempts > inner.config.retries {
        let last = error.to_string();
        finish(inner, f, Err(ProduceError::DeliveryTimeout { last }));
        return;
    }
    tracing::debug!(partition = f.partition.index, attempt = f.batch.attempts, %error, "retrying batch");
    f.batch.retry_at = Some(Instant::now() + inner.config.retry_backoff);
    f.batch.last_error = Some(error.to_string());
    let mut q = f.partition.lock();
    q.in_flight.retain(|c| !Arc::ptr_eq(c, &f.batch.completion));
    q.requeue(f.batch);
}
