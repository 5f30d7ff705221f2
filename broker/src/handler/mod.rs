//! Request dispatch: a frame in, a response out. Each API lives in its own file as a
//! plain async function from the decoded request and the broker state to the response,
//! testable without sockets.

mod admin;
mod api_versions;
mod configs;
#[cfg(test)]
mod configs_tests;
mod consumer_groups;
#[cfg(test)]
mod consumer_groups_tests;
mod create_topics;
mod delete_records;
mod describe_producers;
mod describe_topic_partitions;
mod fetch;
#[cfg(test)]
mod fetch_tests;
#[cfg(test)]
mod group_encode_tests;
mod groups;
mod init_producer_id;
mod list_offsets;
mod log_dirs;
mod metadata;
mod mixed_groups;
#[cfg(test)]
mod offline_tests;
mod offset_for_leader_epoch;
mod offsets;
#[cfg(test)]
mod offsets_tests;
mod produce;
#[cfg(test)]
mod test_support;
mod transactions;
mod transactions_admin;
#[cfg(test)]
mod transactions_tests;
mod txn_offset_commit;
mod write_txn_markers;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use fjord_protocol::kafka_protocol::messages::ApiKey;
use fjord_protocol::kafka_protocol::protocol::{Decodable, Encodable};
use fjord_protocol::request_header::{peek_header_fixed, RequestHeader};

pub use api_versions::SUPPORTED;
pub use fetch::{FetchResponse, Part};
pub(crate) use transactions::OFFSETS_TOPIC;

use fjord_protocol::kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, AlterConfigsRequest,
    ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest, CreatePartitionsRequest,
    CreateTopicsRequest, DeleteGroupsRequest, DeleteRecordsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, DescribeConfigsRequest, DescribeGroupsRequest, DescribeLogDirsRequest,
    DescribeProducersRequest, DescribeTopicPartitionsRequest, DescribeTransactionsRequest,
    EndTxnRequest, FetchRequest, FindCoordinatorRequest, HeartbeatRequest,
    IncrementalAlterConfigsRequest, InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest,
    ListGroupsRequest, ListOffsetsRequest, ListTransactionsRequest, MetadataRequest,
    OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest, OffsetForLeaderEpochRequest,
    ProduceRequest, SyncGroupRequest, TxnOffsetCommitRequest, WriteTxnMarkersRequest,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;

use crate::state::Broker;

/// What to send back for one request.
#[derive(Debug)]
pub enum Response {
    /// Nothing (Produce with acks=0).
    None,
    /// A whole response frame, size prefix included.
    Frame(BytesMut),
    /// A fetch response: in-memory parts and file regions to splice.
    Fetch(FetchResponse),
}

/// Why the connection must be closed instead of answered.
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    /// The request cannot be parsed far enough to answer it.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A handler task died (a bug, logged).
    #[error("internal error: {0}")]
    Internal(String),
    /// Our response could not be encoded at the request's version (a bug, logged).
    #[error("response encoding failed: {0}")]
    Encode(String),
    /// An API key we do not know, or a version we do not speak (Kafka closes too).
    #[error("unsupported api {api_key} v{api_version}")]
    Unsupported {
        /// The key.
        api_key: i16,
        /// The version.
        api_version: i16,
    },
}

/// The request being answered: what every handler needs from the header.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// Correlation id to echo.
    pub correlation_id: i32,
    /// The API version of the request (and response).
    pub version: i16,
    /// Response header version (0, or 1 for flexible versions).
    pub response_header_version: i16,
    /// The listener the request came in on (index into the config's listeners): its
    /// advertised address is the one Metadata and FindCoordinator answer with.
    pub listener: usize,
}

/// Where a request came from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin {
    /// The client's address, shown by DescribeGroups.
    pub peer: Option<std::net::SocketAddr>,
    /// The listener it came in on.
    pub listener: usize,
}

/// A protocol string from a Rust one.
pub(crate) fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// Decodes a request body with `kafka-protocol`, turning its errors (and, as a last line
/// of defence, any panic inside it) into [`Fatal::Malformed`].
pub(crate) fn decode<T: Decodable>(mut body: Bytes, version: i16) -> Result<T, Fatal> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| T::decode(&mut body, version))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Fatal::Malformed(format!("{e:#}"))),
        Err(_) => Err(Fatal::Malformed("decoder panicked".to_string())),
    }
}

/// Encodes a response frame: size, correlation id, header tagged fields if flexible, body.
/// A response that cannot be encoded at the request's version is our bug: the
/// connection is closed (never left waiting) and the error logged.
pub(crate) fn encode<T: Encodable + std::fmt::Debug>(
    ctx: Ctx,
    body: &T,
) -> Result<Response, Fatal> {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    buf.put_i32(ctx.correlation_id);
    if ctx.response_header_version >= 1 {
        buf.put_u8(0);
    }
    if let Err(e) = body.encode(&mut buf, ctx.version) {
        tracing::error!(error = %e, version = ctx.version, response = ?body, "response encoding failed");
        return Err(Fatal::Encode(format!("{e:#}")));
    }
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(Response::Frame(buf))
}

/// A decoded request, ready for its handler.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Request {
    /// ApiVersions at a version we speak.
    ApiVersions,
    /// ApiVersions at a version we do not know (KIP-511 fallback answer).
    ApiVersionsFallback,
    /// Metadata.
    /// Metadata, and the client id whose quota auto-creation is charged to.
    Metadata(MetadataRequest, String),
    /// CreateTopics.
    /// CreateTopics, and the client id whose quota it is charged to.
    CreateTopics(CreateTopicsRequest, String),
    /// Produce.
    Produce(ProduceRequest),
    /// ListOffsets.
    ListOffsets(ListOffsetsRequest),
    /// DeleteRecords.
    DeleteRecords(DeleteRecordsRequest),
    /// DescribeProducers.
    DescribeProducers(DescribeProducersRequest),
    /// WriteTxnMarkers (from an administrator).
    WriteTxnMarkers(WriteTxnMarkersRequest),
    /// OffsetForLeaderEpoch.
    OffsetForLeaderEpoch(OffsetForLeaderEpochRequest),
    /// ConsumerGroupHeartbeat, and the client id.
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest, Option<Bytes>),
    /// ConsumerGroupDescribe.
    ConsumerGroupDescribe(ConsumerGroupDescribeRequest),
    /// DescribeTopicPartitions.
    DescribeTopicPartitions(DescribeTopicPartitionsRequest),
    /// Fetch.
    Fetch(FetchRequest),
    /// InitProducerId.
    InitProducerId(InitProducerIdRequest),
    /// AddPartitionsToTxn.
    AddPartitionsToTxn(AddPartitionsToTxnRequest),
    /// AddOffsetsToTxn.
    AddOffsetsToTxn(AddOffsetsToTxnRequest),
    /// EndTxn.
    EndTxn(EndTxnRequest),
    /// TxnOffsetCommit.
    TxnOffsetCommit(TxnOffsetCommitRequest),
    /// DescribeTransactions.
    DescribeTransactions(DescribeTransactionsRequest),
    /// ListTransactions.
    ListTransactions(ListTransactionsRequest),
    /// DeleteTopics.
    /// DeleteTopics, and the client id whose quota it is charged to.
    DeleteTopics(DeleteTopicsRequest, String),
    /// CreatePartitions.
    /// CreatePartitions, and the client id whose quota it is charged to.
    CreatePartitions(CreatePartitionsRequest, String),
    /// DescribeConfigs.
    DescribeConfigs(DescribeConfigsRequest),
    /// AlterConfigs.
    AlterConfigs(AlterConfigsRequest),
    /// IncrementalAlterConfigs.
    IncrementalAlterConfigs(IncrementalAlterConfigsRequest),
    /// DescribeLogDirs.
    DescribeLogDirs(DescribeLogDirsRequest),
    /// DescribeCluster.
    DescribeCluster(DescribeClusterRequest),
    /// FindCoordinator.
    FindCoordinator(FindCoordinatorRequest),
    /// JoinGroup, with the sender's client id.
    JoinGroup(JoinGroupRequest, Option<Bytes>),
    /// SyncGroup.
    SyncGroup(SyncGroupRequest),
    /// Heartbeat.
    Heartbeat(HeartbeatRequest),
    /// LeaveGroup.
    LeaveGroup(LeaveGroupRequest),
    /// OffsetCommit.
    OffsetCommit(OffsetCommitRequest),
    /// OffsetFetch.
    OffsetFetch(OffsetFetchRequest),
    /// ListGroups.
    ListGroups(ListGroupsRequest),
    /// DescribeGroups.
    DescribeGroups(DescribeGroupsRequest),
    /// DeleteGroups.
    DeleteGroups(DeleteGroupsRequest),
    /// OffsetDelete.
    OffsetDelete(OffsetDeleteRequest),
}

/// Parses a request frame: header, version check, body. Touches no state, so it is also
/// the fuzz target's entry point.
pub fn decode_request(frame: Bytes) -> Result<(Ctx, Request), Fatal> {
    let (api_key, api_version, correlation_id) =
        peek_header_fixed(&frame).map_err(|e| Fatal::Malformed(e.to_string()))?;
    let unsupported = Fatal::Unsupported {
        api_key,
        api_version,
    };
    let key = ApiKey::try_from(api_key).map_err(|_| Fatal::Unsupported {
        api_key,
        api_version,
    })?;
    let in_range = SUPPORTED
        .iter()
        .any(|(k, min, max)| *k == key && (*min..=*max).contains(&api_version));
    if key == ApiKey::ApiVersions && !in_range {
        let ctx = Ctx {
            correlation_id,
            version: 0,
            response_header_version: 0,
            listener: 0,
        };
        return Ok((ctx, Request::ApiVersionsFallback));
    }
    if !in_range {
        return Err(unsupported);
    }
    let (header, body) = RequestHeader::parse(frame, key.request_header_version(api_version))
        .map_err(|e| Fatal::Malformed(e.to_string()))?;
    let ctx = Ctx {
        correlation_id: header.correlation_id,
        version: api_version,
        // ApiVersions responses always use header v0 so any client can read them.
        response_header_version: if key == ApiKey::ApiVersions {
            0
        } else {
            key.response_header_version(api_version)
        },
        listener: 0,
    };
    let v = api_version;
    // The client id, as the controller mutation quota keys it.
    let client = || {
        header
            .client_id
            .as_deref()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .unwrap_or_default()
    };
    let request = match key {
        ApiKey::ApiVersions => Request::ApiVersions,
        ApiKey::Metadata => Request::Metadata(decode(body, v)?, client()),
        ApiKey::CreateTopics => Request::CreateTopics(decode(body, v)?, client()),
        ApiKey::Produce => Request::Produce(decode(body, v)?),
        ApiKey::ListOffsets => Request::ListOffsets(decode(body, v)?),
        ApiKey::DeleteRecords => Request::DeleteRecords(decode(body, v)?),
        ApiKey::DescribeProducers => Request::DescribeProducers(decode(body, v)?),
        ApiKey::WriteTxnMarkers => Request::WriteTxnMarkers(decode(body, v)?),
        ApiKey::OffsetForLeaderEpoch => Request::OffsetForLeaderEpoch(decode(body, v)?),
        ApiKey::ConsumerGroupHeartbeat => {
            Request::ConsumerGroupHeartbeat(decode(body, v)?, header.client_id.clone())
        }
        ApiKey::ConsumerGroupDescribe => Request::ConsumerGroupDescribe(decode(body, v)?),
        ApiKey::DescribeTopicPartitions => Request::DescribeTopicPartitions(decode(body, v)?),
        ApiKey::Fetch => Request::Fetch(decode(body, v)?),
        ApiKey::InitProducerId => Request::InitProducerId(decode(body, v)?),
        ApiKey::AddPartitionsToTxn => Request::AddPartitionsToTxn(decode(body, v)?),
        ApiKey::AddOffsetsToTxn => Request::AddOffsetsToTxn(decode(body, v)?),
        ApiKey::EndTxn => Request::EndTxn(decode(body, v)?),
        ApiKey::TxnOffsetCommit => Request::TxnOffsetCommit(decode(body, v)?),
        ApiKey::DescribeTransactions => Request::DescribeTransactions(decode(body, v)?),
        ApiKey::ListTransactions => Request::ListTransactions(decode(body, v)?),
        ApiKey::DeleteTopics => Request::DeleteTopics(decode(body, v)?, client()),
        ApiKey::CreatePartitions => Request::CreatePartitions(decode(body, v)?, client()),
        ApiKey::DescribeConfigs => Request::DescribeConfigs(decode(body, v)?),
        ApiKey::AlterConfigs => Request::AlterConfigs(decode(body, v)?),
        ApiKey::IncrementalAlterConfigs => Request::IncrementalAlterConfigs(decode(body, v)?),
        ApiKey::DescribeLogDirs => Request::DescribeLogDirs(decode(body, v)?),
        ApiKey::DescribeCluster => Request::DescribeCluster(decode(body, v)?),
        ApiKey::FindCoordinator => Request::FindCoordinator(decode(body, v)?),
        ApiKey::JoinGroup => Request::JoinGroup(decode(body, v)?, header.client_id.clone()),
        ApiKey::SyncGroup => Request::SyncGroup(decode(body, v)?),
        ApiKey::Heartbeat => Request::Heartbeat(decode(body, v)?),
        ApiKey::LeaveGroup => Request::LeaveGroup(decode(body, v)?),
        ApiKey::OffsetCommit => Request::OffsetCommit(decode(body, v)?),
        ApiKey::OffsetFetch => Request::OffsetFetch(decode(body, v)?),
        ApiKey::ListGroups => Request::ListGroups(decode(body, v)?),
        ApiKey::DescribeGroups => Request::DescribeGroups(decode(body, v)?),
        ApiKey::DeleteGroups => Request::DeleteGroups(decode(body, v)?),
        ApiKey::OffsetDelete => Request::OffsetDelete(decode(body, v)?),
        _ => return Err(unsupported),
    };
    Ok((ctx, request))
}

/// Runs a handler that may block on the blocking thread pool.
async fn off_reactor(
    broker: &Arc<Broker>,
    handler: impl FnOnce(&Arc<Broker>) -> Result<Response, Fatal> + Send + 'static,
) -> Result<Response, Fatal> {
    let broker = Arc::clone(broker);
    tokio::task::spawn_blocking(move || handler(&broker))
        .await
        .map_err(|e| Fatal::Internal(format!("handler task failed: {e}")))?
}

/// Handles one request frame that came from `origin`.
pub async fn handle(broker: &Arc<Broker>, frame: Bytes, origin: Origin) -> Result<Response, Fatal> {
    let (mut ctx, request) = decode_request(frame)?;
    ctx.listener = origin.listener;
    let peer = origin.peer;
    match request {
        Request::ApiVersions => api_versions::handle(ctx),
        Request::ApiVersionsFallback => Ok(api_versions::unsupported_version(ctx.correlation_id)),
        // These touch files (auto-create, topic admin, id blocks, segments opened for a
        // timestamp lookup) and may fsync: run them on the blocking pool, not a worker.
        Request::Metadata(req, client) => metadata::handle(broker, ctx, req, &client).await,
        Request::CreateTopics(req, client) => {
            off_reactor(broker, move |b| create_topics::handle(b, ctx, req, &client)).await
        }
        Request::Produce(req) => produce::handle(broker, ctx, req).await,
        Request::ListOffsets(req) => {
            off_reactor(broker, move |b| list_offsets::handle(b, ctx, req)).await
        }
        Request::Fetch(req) => fetch::handle(broker, ctx, req).await,
        // Writes the log start file (fsync) and deletes segments.
        Request::DeleteRecords(req) => {
            off_reactor(broker, move |b| delete_records::handle(b, ctx, req)).await
        }
        // Takes each partition's producer-state lock, which appends hold briefly.
        Request::DescribeProducers(req) => describe_producers::handle(broker, ctx, req),
        // Appends markers and waits for the disk.
        Request::WriteTxnMarkers(req) => {
            off_reactor(broker, move |b| write_txn_markers::handle(b, ctx, req)).await
        }
        // Reads the epoch cache under each log's read lock; no files.
        Request::OffsetForLeaderEpoch(req) => offset_for_leader_epoch::handle(broker, ctx, req),
        Request::DescribeTopicPartitions(req) => {
            describe_topic_partitions::handle(broker, ctx, req)
        }
        Request::InitProducerId(req) => {
            off_reactor(broker, move |b| init_producer_id::handle(b, ctx, req)).await
        }
        // The coordinator's writes wait for the disk; EndTxn writes markers.
        Request::AddPartitionsToTxn(req) => {
            off_reactor(broker, move |b| {
                transactions::add_partitions_to_txn(b, ctx, req)
            })
            .await
        }
        Request::AddOffsetsToTxn(req) => {
            off_reactor(broker, move |b| {
                transactions::add_offsets_to_txn(b, ctx, req)
            })
            .await
        }
        Request::EndTxn(req) => {
            off_reactor(broker, move |b| transactions::end_txn(b, ctx, req)).await
        }
        // Appends to the offsets log (and may wait for its fsync).
        Request::TxnOffsetCommit(req) => {
            off_reactor(broker, move |b| txn_offset_commit::handle(b, ctx, req)).await
        }
        // Read the coordinator, whose lock a transaction log write may hold.
        Request::DescribeTransactions(req) => {
            off_reactor(broker, move |b| {
                transactions_admin::describe_transactions(b, ctx, req)
            })
            .await
        }
        Request::ListTransactions(req) => {
            off_reactor(broker, move |b| {
                transactions_admin::list_transactions(b, ctx, req)
            })
            .await
        }
        Request::DeleteTopics(req, client) => {
            off_reactor(broker, move |b| admin::delete_topics(b, ctx, req, &client)).await
        }
        Request::CreatePartitions(req, client) => {
            off_reactor(broker, move |b| {
                admin::create_partitions(b, ctx, req, &client)
            })
            .await
        }
        Request::DescribeConfigs(req) => configs::describe_configs(broker, ctx, req),
        // Changes write files, fsync and touch every partition they apply to.
        Request::AlterConfigs(req) => {
            off_reactor(broker, move |b| configs::alter_configs(b, ctx, req)).await
        }
        Request::IncrementalAlterConfigs(req) => {
            off_reactor(broker, move |b| {
                configs::incremental_alter_configs(b, ctx, req)
            })
            .await
        }
        // Takes every partition's log lock in turn.
        Request::DescribeLogDirs(req) => {
            off_reactor(broker, move |b| log_dirs::describe_log_dirs(b, ctx, req)).await
        }
        Request::DescribeCluster(req) => admin::describe_cluster(broker, ctx, req),
        Request::FindCoordinator(req) => groups::find_coordinator(broker, ctx, req),
        // Writes the group's records to the offsets store (it may fsync).
        Request::ConsumerGroupHeartbeat(req, client_id) => {
            let client_id = client_id
                .map(|c| String::from_utf8_lossy(&c).into_owned())
                .unwrap_or_default();
            let host = peer.map(|p| format!("/{}", p.ip())).unwrap_or_default();
            off_reactor(broker, move |b| {
                consumer_groups::heartbeat(b, ctx, req, client_id, host)
            })
            .await
        }
        // A consumer group's lock can be held across a write's fsync.
        Request::ConsumerGroupDescribe(req) => {
            off_reactor(broker, move |b| {
                consumer_groups::describe_groups(b, ctx, req)
            })
            .await
        }
        Request::JoinGroup(req, client_id) => {
            let client = groups::Client {
                client_id: client_id
                    .map(|c| String::from_utf8_lossy(&c).into_owned())
                    .unwrap_or_default(),
                host: peer.map(|p| format!("/{}", p.ip())).unwrap_or_default(),
            };
            groups::join_group(broker, ctx, req, client).await
        }
        Request::SyncGroup(req) => groups::sync_group(broker, ctx, req).await,
        // A consumer group's lock can be held across a write's fsync.
        Request::Heartbeat(req) => {
            off_reactor(broker, move |b| groups::heartbeat(b, ctx, req)).await
        }
        // A consumer group's leave writes its records (and may wait for their fsync).
        Request::LeaveGroup(req) => {
            off_reactor(broker, move |b| groups::leave_group(b, ctx, req)).await
        }
        // Commits append to the offsets log (and may wait for its fsync).
        Request::OffsetCommit(req) => {
            off_reactor(broker, move |b| offsets::offset_commit(b, ctx, req)).await
        }
        // These read the offsets store, whose lock a snapshot may hold.
        Request::OffsetFetch(req) => {
            off_reactor(broker, move |b| offsets::offset_fetch(b, ctx, req)).await
        }
        Request::ListGroups(req) => {
            off_reactor(broker, move |b| groups::list_groups(b, ctx, req)).await
        }
        Request::DescribeGroups(req) => {
            off_reactor(broker, move |b| groups::describe_groups(b, ctx, req)).await
        }
        Request::DeleteGroups(req) => {
            off_reactor(broker, move |b| groups::delete_groups(b, ctx, req)).await
        }
        Request::OffsetDelete(req) => {
            off_reactor(broker, move |b| offsets::offset_delete(b, ctx, req)).await
        }
    }
}

/// The Kafka error code for a storage error: the one place that mapping lives.
pub(crate) fn storage_error_code(e: &fjord_storage::StorageError) -> i16 {
    use fjord_protocol::kafka_protocol::ResponseError as E;
    use fjord_storage::StorageError as S;
    match e {
        S::InvalidBatch {
            source: fjord_protocol::Error::MissingKey { .. },
            ..
        } => E::InvalidRecord.code(),
        S::InvalidBatch { .. } | S::EmptyAppend | S::Corrupt { .. } => E::CorruptMessage.code(),
        S::BatchTooLarge { .. } => E::MessageTooLarge.code(),
        S::OffsetOutOfRange { .. } => E::OffsetOutOfRange.code(),
        S::InvalidConfig(_) => E::InvalidConfig.code(),
        _ => E::KafkaStorageError.code(),
    }
}

#[cfg(test)]
mod tests {
    //! Every advertised version of every API must encode the responses we build: a field
    //! set where a version lacks it (and Kafka's schema does not mark it ignorable) makes
    //! the encoder refuse, which a client sees as a closed connection.

    use super::*;
    use fjord_protocol::compression::Compression;
    use fjord_protocol::kafka_protocol::messages::create_partitions_request::{
        CreatePartitionsRequest, CreatePartitionsTopic,
    };
    use fjord_protocol::kafka_protocol::messages::create_topics_request::{
        CreatableTopic, CreateTopicsRequest,
    };
    use fjord_protocol::kafka_protocol::messages::delete_topics_request::DeleteTopicsRequest;
    use fjord_protocol::kafka_protocol::messages::describe_cluster_request::DescribeClusterRequest;
    use fjord_protocol::kafka_protocol::messages::describe_configs_request::{
        DescribeConfigsRequest, DescribeConfigsResource,
    };
    use fjord_protocol::kafka_protocol::messages::fetch_request::{
        FetchPartition, FetchRequest, FetchTopic,
    };
    use fjord_protocol::kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
    use fjord_protocol::kafka_protocol::messages::list_offsets_request::{
        ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
    };
    use fjord_protocol::kafka_protocol::messages::metadata_request::{
        MetadataRequest, MetadataRequestTopic,
    };
    use fjord_protocol::kafka_protocol::messages::produce_request::{
        PartitionProduceData, ProduceRequest, TopicProduceData,
    };
    use fjord_protocol::kafka_protocol::messages::TopicName;
    use fjord_protocol::kafka_protocol::protocol::StrBytes;
    use fjord_protocol::record_batch::{BatchBuilder, RecordSpec};

    use crate::config::BrokerConfig;
    use test_support::ctx;

    fn name(n: &str) -> TopicName {
        TopicName(StrBytes::from_string(n.to_string()))
    }

    fn assert_frame(r: Result<Response, Fatal>, key: ApiKey, version: i16) {
        match r {
            Ok(Response::Frame(_)) | Ok(Response::Fetch(_)) => {}
            other => panic!("{key:?} v{version}: {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_advertised_version_encodes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sets = vec![
            ("log.dirs".to_string(), dir.path().display().to_string()),
            (
                "group.initial.rebalance.delay.ms".to_string(),
                "0".to_string(),
            ),
        ];
        let broker = Arc::new(
            Broker::open(BrokerConfig::from_sources(None, &sets).expect("config")).expect("broker"),
        );
        broker
            .create_topic("t", 1, Default::default(), false)
            .expect("topic");
        let mut batch = BatchBuilder::new(Compression::None, 1_000);
        batch.push(RecordSpec::value("v"));
        let records = Bytes::from(batch.build().expect("batch"));
        for &(key, min, max) in SUPPORTED {
            for v in min..=max {
                let c = ctx(key, v);
                let r = match key {
                    ApiKey::ApiVersions => api_versions::handle(c),
                    ApiKey::Metadata => {
                        let mut req = MetadataRequest::default();
                        let mut t = MetadataRequestTopic::default();
                        t.name = Some(name("t"));
                        let mut missing = MetadataRequestTopic::default();
                        missing.name = Some(name("missing.topic"));
                        req.topics = Some(vec![t, missing]);
                        metadata::handle(&broker, c, req, "test").await
                    }
                    ApiKey::Produce => {
                        let mut p = PartitionProduceData::default();
                        p.records = Some(records.clone());
                        let mut t = TopicProduceData::default();
                        if v >= 13 {
                            t.topic_id = broker.topic("t").expect("t").id;
                        } else {
                            t.name = name("t");
                        }
                        t.partition_data = vec![p];
                        let mut req = ProduceRequest::default();
                        req.acks = 1;
                        req.topic_data = vec![t];
                        produce::handle(&broker, c, req).await
                    }
                    ApiKey::ListOffsets => {
                        let mut p = ListOffsetsPartition::default();
                        p.timestamp = if v >= 7 { -3 } else { -1 };
                        let mut t = ListOffsetsTopic::default();
                        t.name = name("t");
                        t.partitions = vec![p];
                        let mut req = ListOffsetsRequest::default();
                        req.topics = vec![t];
                        list_offsets::handle(&broker, c, req)
                    }
                    ApiKey::Fetch => {
                        let mut p = FetchPartition::default();
                        p.partition_max_bytes = 1 << 20;
                        let mut t = FetchTopic::default();
                        if v >= 13 {
                            t.topic_id = broker.topic("t").expect("t").id;
                        } else {
                            t.topic = name("t");
                        }
                        t.partitions = vec![p];
                        let mut req = FetchRequest::default();
                        req.max_bytes = 1 << 20;
                        req.topics = vec![t];
                        fetch::handle(&broker, c, req).await
                    }
                    ApiKey::CreateTopics => {
                        let mut t = CreatableTopic::default();
                        t.name = name(&format!("created-{v}"));
                        t.num_partitions = 1;
                        t.replication_factor = 1;
                        let mut dup = CreatableTopic::default();
                        dup.name = name("t");
                        dup.num_partitions = 1;
                        dup.replication_factor = 1;
                        let mut req = CreateTopicsRequest::default();
                        req.topics = vec![t, dup];
                        create_topics::handle(&broker, c, req, "test")
                    }
                    ApiKey::InitProducerId => {
                        init_producer_id::handle(&broker, c, InitProducerIdRequest::default())
                    }
                    ApiKey::DeleteTopics => {
                        let mut req = DeleteTopicsRequest::default();
                        if v < 6 {
                            req.topic_names =
                                vec![name(&format!("created-{}", min)), name("never")];
                        }
                        admin::delete_topics(&broker, c, req, "test")
                    }
                    ApiKey::CreatePartitions => {
                        let mut t = CreatePartitionsTopic::default();
                        t.name = name("t");
                        t.count = 1; // not a growth: an error result must encode too
                        let mut req = CreatePartitionsRequest::default();
                        req.topics = vec![t];
                        admin::create_partitions(&broker, c, req, "test")
                    }
                    ApiKey::DescribeConfigs => {
                        let mut topic = DescribeConfigsResource::default();
                        topic.resource_type = 2;
                        topic.resource_name = StrBytes::from_string("t".into());
                        let mut node = DescribeConfigsResource::default();
                        node.resource_type = 4;
                        node.resource_name = StrBytes::from_string("1".into());
                        let mut req = DescribeConfigsRequest::default();
                        req.resources = vec![topic, node];
                        configs::describe_configs(&broker, c, req)
                    }
                    ApiKey::DescribeCluster => {
                        admin::describe_cluster(&broker, c, DescribeClusterRequest::default())
                    }
                    ApiKey::DeleteRecords => {
                        use fjord_protocol::kafka_protocol::messages::delete_records_request::{
                            DeleteRecordsPartition, DeleteRecordsTopic,
                        };
                        let mut p = DeleteRecordsPartition::default();
                        p.offset = 5; // past the end: an error result must encode too
                        let mut t = DeleteRecordsTopic::default();
                        t.name = name("t");
                        t.partitions = vec![p, DeleteRecordsPartition::default()];
                        let mut req = DeleteRecordsRequest::default();
                        req.topics = vec![t];
                        delete_records::handle(&broker, c, req)
                    }
                    ApiKey::DescribeProducers => {
                        use fjord_protocol::kafka_protocol::messages::describe_producers_request::TopicRequest;
                        let mut t = TopicRequest::default();
                        t.name = name("t");
                        t.partition_indexes = vec![0, 9];
                        let mut req = DescribeProducersRequest::default();
                        req.topics = vec![t];
                        describe_producers::handle(&broker, c, req)
                    }
                    ApiKey::WriteTxnMarkers => {
                        use fjord_protocol::kafka_protocol::messages::write_txn_markers_request::{
                            WritableTxnMarker, WritableTxnMarkerTopic,
                        };
                        let mut t = WritableTxnMarkerTopic::default();
                        t.name = name("t");
                        t.partition_indexes = vec![0, 9];
                        let mut m = WritableTxnMarker::default();
                        m.producer_id = fjord_protocol::kafka_protocol::messages::ProducerId(7);
                        m.topics = vec![t];
                        let mut req = WriteTxnMarkersRequest::default();
                        req.markers = vec![m];
                        tokio::task::block_in_place(|| write_txn_markers::handle(&broker, c, req))
                    }
                    ApiKey::ConsumerGroupHeartbeat => {
                        let mut req = ConsumerGroupHeartbeatRequest::default();
                        req.group_id = fjord_protocol::kafka_protocol::messages::GroupId(
                            StrBytes::from_string(format!("cg-{v}")),
                        );
                        req.member_id = StrBytes::from_string(format!("member-{v}"));
                        req.rebalance_timeout_ms = 30_000;
                        req.subscribed_topic_names = Some(vec![name("t")]);
                        req.topic_partitions = Some(Vec::new());
                        // As in production (off the reactor): its records' write
                        // waits for the disk.
                        let joined = tokio::task::block_in_place(|| {
                            consumer_groups::heartbeat(
                                &broker,
                                c,
                                req.clone(),
                                String::new(),
                                String::new(),
                            )
                        });
                        assert_frame(joined, key, v);
                        // A refused one must encode too.
                        req.member_epoch = 99;
                        tokio::task::block_in_place(|| {
                            consumer_groups::heartbeat(
                                &broker,
                                c,
                                req,
                                String::new(),
                                String::new(),
                            )
                        })
                    }
                    ApiKey::ConsumerGroupDescribe => {
                        let mut req = ConsumerGroupDescribeRequest::default();
                        req.group_ids = vec![
                            fjord_protocol::kafka_protocol::messages::GroupId(
                                StrBytes::from_string(format!("cg-{v}")),
                            ),
                            fjord_protocol::kafka_protocol::messages::GroupId(
                                StrBytes::from_static_str("none"),
                            ),
                        ];
                        consumer_groups::describe_groups(&broker, c, req)
                    }
                    ApiKey::OffsetForLeaderEpoch => {
                        use fjord_protocol::kafka_protocol::messages::offset_for_leader_epoch_request::{
                            OffsetForLeaderPartition, OffsetForLeaderTopic,
                        };
                        let mut p = OffsetForLeaderPartition::default();
                        p.current_leader_epoch = -1;
                        let mut fenced = OffsetForLeaderPartition::default();
                        fenced.current_leader_epoch = 99; // an error result must encode too
                        let mut t = OffsetForLeaderTopic::default();
                        t.topic = name("t");
                        t.partitions = vec![p, fenced];
                        let mut req = OffsetForLeaderEpochRequest::default();
                        req.topics = vec![t];
                        offset_for_leader_epoch::handle(&broker, c, req)
                    }
                    ApiKey::DescribeTopicPartitions => {
                        let mut req = DescribeTopicPartitionsRequest::default();
                        req.response_partition_limit = 1; // a page with a next cursor
                        describe_topic_partitions::handle(&broker, c, req)
                    }
                    other => match configs_tests::exercise(&broker, other, c)
                        .or_else(|| transactions_tests::exercise(&broker, other, c))
                    {
                        Some(r) => r,
                        None => group_encode_tests::exercise(&broker, other, v)
                            .await
                            .unwrap_or_else(|| panic!("advertised but untested: {other:?}")),
                    },
                };
                assert_frame(r, key, v);
            }
        }
    }
}

#[cfg(test)]
mod robustness {
    //! Random request bodies for every advertised API and version: the handler answers
    //! or asks to close the connection (Malformed, Unsupported), and never panics, fails
    //! inside (Internal), fails to encode its answer, or allocates what the frame cannot
    //! hold. (A stand-in for a cargo-fuzz target, which needs a nightly toolchain
    //! this project's machines do not have.)

    use super::*;
    use crate::config::BrokerConfig;
    use proptest::prelude::*;

    fn frame(key: i16, version: i16, body: &[u8]) -> Bytes {
        let mut f = Vec::with_capacity(10 + body.len());
        f.extend_from_slice(&key.to_be_bytes());
        f.extend_from_slice(&version.to_be_bytes());
        f.extend_from_slice(&7i32.to_be_bytes());
        f.extend_from_slice(&(-1i16).to_be_bytes());
        f.extend_from_slice(body);
        Bytes::from(f)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]
        #[test]
        fn random_bodies_never_panic(api in 0..SUPPORTED.len(), version_pick in any::<u16>(), body in proptest::collection::vec(any::<u8>(), 0..200), big in any::<bool>()) {
            let (key, min, max) = SUPPORTED[api];
            let version = min + (version_pick % (max - min + 1) as u16) as i16;
            let mut body = body;
            if big && body.len() >= 4 {
                // Array and string lengths at the front claiming far more than is there.
                body[..4].copy_from_slice(&0x7fff_fff0i32.to_be_bytes());
            }
            let dir = tempfile::tempdir().expect("tempdir");
            let sets = vec![
                ("log.dirs".to_string(), dir.path().display().to_string()),
                ("auto.create.topics.enable".to_string(), "false".to_string()),
            ];
            let broker = Arc::new(Broker::open(BrokerConfig::from_sources(None, &sets).expect("config")).expect("broker"));
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            // A well-formed Fetch may long-poll; waiting is not what is tested here.
            let request = handle(
                &broker,
                frame(key as i16, version, &body),
                Origin::default(),
            );
            let outcome = rt.block_on(async { tokio::time::timeout(std::time::Duration::from_secs(1), request).await });
            // A panic on this thread fails the case by itself; one in a handler task on
            // the blocking pool comes back as Internal, and a response we cannot encode
            // as Encode: both are bugs, never an answer to bad input.
            if let Ok(Err(bug @ (Fatal::Internal(_) | Fatal::Encode(_)))) = &outcome {
                prop_assert!(false, "{:?} v{}: {}", key, version, bug);
            }
        }
    }
}
