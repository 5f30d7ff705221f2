//! The transactional producer's requests to its coordinators: InitProducerId,
//! AddPartitionsToTxn and AddOffsetsToTxn and EndTxn to the transaction coordinator,
//! TxnOffsetCommit to the group coordinator. Each is retried, as the Java client
//! retries it, while the answer says the coordinator moved, is loading, or is still
//! finishing an earlier transaction, for up to `max.block.ms`. Other answers are
//! fatal or make the transaction abortable (see `transaction`).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_client_common::{ClientError, Connection, ConsumerGroupMetadata, CoordinatorKey};
use fjord_protocol::kafka_protocol::messages::add_offsets_to_txn_request::AddOffsetsToTxnRequest;
use fjord_protocol::kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnTopic,
};
use fjord_protocol::kafka_protocol::messages::end_txn_request::EndTxnRequest;
use fjord_protocol::kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use fjord_protocol::kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequest, TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use fjord_protocol::kafka_protocol::messages::{
    ApiKey, GroupId, ProducerId, TopicName, TransactionalId,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;

use crate::error::ProduceError;
use crate::inner::Inner;
use crate::transaction::{coordinator_answer, CoordinatorAnswer, Transactions};

const OPERATION_NOT_ATTEMPTED: i16 = 55;

/// How soon CONCURRENT_TRANSACTIONS is asked again: the coordinator is writing the
/// previous transaction's markers, which takes milliseconds (Java waits 20 ms too).
const CONCURRENT_BACKOFF: Duration = Duration::from_millis(20);

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A Kafka error answer as the request's error.
fn answer(code: i16, what: &str) -> Result<(), ClientError> {
    if code == 0 {
        Ok(())
    } else {
        Err(ClientError::Broker {
            code,
            message: what.to_string(),
        })
    }
}

/// Which coordinator a request goes to.
#[derive(Clone, Copy)]
enum Target<'a> {
    Transaction,
    Group(&'a str),
}

impl Inner {
    fn txn(&self) -> Result<&Transactions, ProduceError> {
        self.txn.as_ref().ok_or_else(|| {
            ProduceError::TransactionState("the producer has no transactional.id".into())
        })
    }

    /// The coordinator's connection, found with FindCoordinator on first use.
    async fn coordinator(&self, target: Target<'_>) -> Result<Connection, ClientError> {
        let txn = self
            .txn
            .as_ref()
            .ok_or(ClientError::Closed("no transactional.id".into()))?;
        let key = match target {
            Target::Transaction => {
                let slot = txn.coordinator.lock().await;
                if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
                    return Ok(c.clone());
                }
                CoordinatorKey::Transaction(&txn.id)
            }
            Target::Group(group) => {
                let slot = txn.group_coordinator.lock().await;
                if let Some((_, c)) = slot.as_ref().filter(|(g, c)| g == group && !c.is_closed()) {
                    return Ok(c.clone());
                }
                CoordinatorKey::Group(group)
            }
        };
        let any = self.bootstrap_connection().await?;
        let found = fjord_client_common::find_coordinator(&any, key).await?;
        let conn = Connection::connect(&found.addr, self.connection_options.clone()).await?;
        match target {
            Target::Transaction => *txn.coordinator.lock().await = Some(conn.clone()),
            Target::Group(group) => {
                *txn.group_coordinator.lock().await = Some((group.to_string(), conn.clone()));
            }
        }
        Ok(conn)
    }

    async fn forget_coordinator(&self, target: Target<'_>) {
        if let Some(txn) = &self.txn {
            match target {
                Target::Transaction => *txn.coordinator.lock().await = None,
                Target::Group(_) => *txn.group_coordinator.lock().await = None,
            }
        }
    }

    /// Runs `call` against the coordinator until it succeeds, fails for good, or
    /// `max.block.ms` passes (then the last retriable error comes back, and the caller
    /// may call again).
    async fn with_coordinator<T, F, Fut>(
        &self,
        target: Target<'_>,
        what: &str,
        mut call: F,
    ) -> Result<T, ProduceError>
    where
        F: FnMut(Connection) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let deadline = Instant::now() + self.config.max_block;
        loop {
            let result = match self.coordinator(target).await {
                Ok(conn) => call(conn).await,
                Err(e) => Err(e),
            };
            let error = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let backoff = match &error {
                ClientError::Broker { code, .. } => match coordinator_answer(*code) {
                    CoordinatorAnswer::RetrySoon => CONCURRENT_BACKOFF,
                    CoordinatorAnswer::Retry => self.config.retry_backoff,
                    CoordinatorAnswer::Rediscover => {
                        self.forget_coordinator(target).await;
                        self.config.retry_backoff
                    }
                    CoordinatorAnswer::Fatal => {
                        return Err(ProduceError::TransactionFatal {
                            code: *code,
                            reason: format!("{what}: {error}"),
                        })
                    }
                    answer => {
                        if answer == CoordinatorAnswer::AbortableWithBump {
                            if let Some(txn) = &self.txn {
                                txn.state().producer_id_lost(*code);
                            }
                        }
                        return Err(ProduceError::TransactionAbortable {
                            code: *code,
                            reason: format!("{what}: {error}"),
                        });
                    }
                },
                e if e.is_retriable() => {
                    self.forget_coordinator(target).await;
                    self.config.retry_backoff
                }
                ClientError::Unsupported { .. } => {
                    return Err(ProduceError::TransactionFatal {
                        code: 35,
                        reason: format!("{what}: {error}"),
                    })
                }
                _ => return Err(ProduceError::Client(error)),
            };
            if Instant::now() + backoff >= deadline {
                tracing::debug!(what, %error, "coordinator still not answering");
                return Err(ProduceError::Client(ClientError::Timeout(format!(
                    "{what} within max.block.ms (last: {error})"
                ))));
            }
            tokio::time::sleep(backoff.max(Duration::from_millis(1))).await;
        }
    }

    /// InitProducerId for the `transactional.id`: a new epoch, fencing older producers
    /// and aborting what they left open. With `current`, the epoch of this producer is
    /// bumped instead (KIP-360), so its sequences start over.
    pub(crate) async fn init_transactional_id(
        &self,
        current: Option<(i64, i16)>,
    ) -> Result<(i64, i16), ProduceError> {
        let txn = self.txn()?;
        self.with_coordinator(Target::Transaction, "InitProducerId", |conn| async move {
            let version = conn.version(ApiKey::InitProducerId, 0, 5)?;
            let mut req = InitProducerIdRequest::default();
            req.transactional_id = Some(TransactionalId(s(&txn.id)));
            req.transaction_timeout_ms = txn.timeout_ms;
            let (pid, epoch) = current.filter(|_| version >= 3).unwrap_or((-1, -1));
            if version >= 3 {
                req.producer_id = ProducerId(pid);
                req.producer_epoch = epoch;
            }
            let resp = conn.request(&req, version).await?;
            answer(resp.error_code, "InitProducerId")?;
            Ok((resp.producer_id.0, resp.producer_epoch))
        })
        .await
    }

    /// AddPartitionsToTxn (the client versions, 0-3) for `partitions`.
    pub(crate) async fn add_partitions_to_txn(
        &self,
        producer: (i64, i16),
        partitions: &[(Arc<str>, i32)],
    ) -> Result<(), ProduceError> {
        let txn = self.txn()?;
        let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
        for (topic, partition) in partitions {
            match topics
                .iter_mut()
                .find(|t| t.name.0.as_str() == topic.as_ref())
            {
                Some(t) => t.partitions.push(*partition),
                None => {
                    let mut t = AddPartitionsToTxnTopic::default();
                    t.name = TopicName(s(topic));
                    t.partitions = vec![*partition];
                    topics.push(t);
                }
            }
        }
        let topics = &topics;
        self.with_coordinator(
            Target::Transaction,
            "AddPartitionsToTxn",
            |conn| async move {
                let version = conn.version(ApiKey::AddPartitionsToTxn, 0, 3)?;
                let mut req = AddPartitionsToTxnRequest::default();
                req.v3_and_below_transactional_id = TransactionalId(s(&txn.id));
                req.v3_and_below_producer_id = ProducerId(producer.0);
                req.v3_and_below_producer_epoch = producer.1;
                req.v3_and_below_topics = topics.clone();
                let resp = conn.request(&req, version).await?;
                // The real error wins over OPERATION_NOT_ATTEMPTED, which only says another
                // partition of the request failed.
                let codes = resp
                    .results_by_topic_v3_and_below
                    .iter()
                    .flat_map(|t| t.results_by_partition.iter())
                    .map(|p| p.partition_error_code);
                let code = codes
                    .filter(|c| *c != 0)
                    .min_by_key(|c| *c == OPERATION_NOT_ATTEMPTED)
                    .unwrap_or(0);
                answer(code, "AddPartitionsToTxn")
            },
        )
        .await
    }

    /// AddOffsetsToTxn: the transaction will carry `group`'s offsets.
    pub(crate) async fn add_offsets_to_txn(
        &self,
        producer: (i64, i16),
        group: &str,
    ) -> Result<(), ProduceError> {
        let txn = self.txn()?;
        self.with_coordinator(Target::Transaction, "AddOffsetsToTxn", |conn| async move {
            let version = conn.version(ApiKey::AddOffsetsToTxn, 0, 4)?;
            let mut req = AddOffsetsToTxnRequest::default();
            req.transactional_id = TransactionalId(s(&txn.id));
            req.producer_id = ProducerId(producer.0);
            req.producer_epoch = producer.1;
            req.group_id = GroupId(s(group));
            let resp = conn.request(&req, version).await?;
            answer(resp.error_code, "AddOffsetsToTxn")
        })
        .await
    }

    /// TxnOffsetCommit of `offsets` (topic, partition, next offset) for `group`, to the
    /// group's coordinator; v3+ carries the member so a zombie is fenced (KIP-447).
    pub(crate) async fn txn_offset_commit(
        &self,
        producer: (i64, i16),
        offsets: &[(String, i32, i64)],
        group: &ConsumerGroupMetadata,
    ) -> Result<(), ProduceError> {
        let txn = self.txn()?;
        let mut topics: Vec<TxnOffsetCommitRequestTopic> = Vec::new();
        for (topic, partition, offset) in offsets {
            let mut p = TxnOffsetCommitRequestPartition::default();
            p.partition_index = *partition;
            p.committed_offset = *offset;
            p.committed_leader_epoch = -1;
            p.committed_metadata = Some(s(""));
            match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                Some(t) => t.partitions.push(p),
                None => {
                    let mut t = TxnOffsetCommitRequestTopic::default();
                    t.name = TopicName(s(topic));
                    t.partitions = vec![p];
                    topics.push(t);
                }
            }
        }
        let topics = &topics;
        let target = Target::Group(&group.group_id);
        self.with_coordinator(target, "TxnOffsetCommit", |conn| async move {
            let version = conn.version(ApiKey::TxnOffsetCommit, 0, 4)?;
            let mut req = TxnOffsetCommitRequest::default();
            req.transactional_id = TransactionalId(s(&txn.id));
            req.group_id = GroupId(s(&group.group_id));
            req.producer_id = ProducerId(producer.0);
            req.producer_epoch = producer.1;
            if version >= 3 {
                req.generation_id = group.generation_id;
                req.member_id = s(&group.member_id);
                req.group_instance_id = group.group_instance_id.as_deref().map(s);
            }
            req.topics = topics.clone();
            let resp = conn.request(&req, version).await?;
            let code = resp
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter())
                .map(|p| p.error_code)
                .find(|c| *c != 0)
                .unwrap_or(0);
            answer(code, "TxnOffsetCommit")
        })
        .await
    }

    /// EndTxn: commit or abort the transaction.
    pub(crate) async fn end_txn(
        &self,
        producer: (i64, i16),
        commit: bool,
    ) -> Result<(), ProduceError> {
        let txn = self.txn()?;
        self.with_coordinator(Target::Transaction, "EndTxn", |conn| async move {
            let version = conn.version(ApiKey::EndTxn, 0, 4)?;
            let mut req = EndTxnRequest::default();
            req.transactional_id = TransactionalId(s(&txn.id));
            req.producer_id = ProducerId(producer.0);
            req.producer_epoch = producer.1;
            req.committed = commit;
            let resp = conn.request(&req, version).await?;
            answer(resp.error_code, "EndTxn")
        })
        .await
    }
}
