//! The state the consumer's public face and its background tasks (fetchers, the group
//! task, commits) share, with the operations they perform on it. The public API in
//! `consumer.rs` and the tasks both go through these methods and fields; neither
//! reaches into the other's file.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::{mpsc, Notify};

use crate::chunk::Chunk;
use crate::cluster::Cluster;
use crate::config::{ConsumerConfig, OffsetReset};
use crate::consumer::RebalanceListener;
use crate::error::ConsumeError;
use crate::group::{self, Membership};
use crate::offsets;
use crate::partition::{Assignment, PartitionState, UNKNOWN};
use crate::record::TopicPartition;

/// What the fetchers hand to the application side.
#[derive(Debug)]
pub(crate) enum Item {
    Chunk(Chunk),
    Error(ConsumeError),
}

/// State shared by the consumer and its tasks.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: ConsumerConfig,
    pub(crate) cluster: Cluster,
    pub(crate) assignment: Assignment,
    pub(crate) items: mpsc::UnboundedSender<Item>,
    /// Bytes of fetched record sets not yet read by the application.
    pub(crate) buffered: AtomicUsize,
    pub(crate) drained: Notify,
    /// Assignment, pause or seek changed: fetchers look again.
    pub(crate) changed: Notify,
    pub(crate) closing: AtomicBool,
    pub(crate) fetchers: Mutex<HashMap<i32, tokio::task::JoinHandle<()>>>,
    pub(crate) listener: Option<Arc<dyn RebalanceListener>>,
    pub(crate) membership: tokio::sync::Mutex<Membership>,
    /// Milliseconds since `started` of the application's last `recv`.
    pub(crate) last_poll_ms: AtomicU64,
    pub(crate) started: Instant,
    pub(crate) runtime: tokio::runtime::Handle,
}

impl Inner {
    /// Positions for newly assigned partitions, leaders, and fetchers for them.
    pub(crate) async fn start(
        self: &Arc<Self>,
        added: &[Arc<PartitionState>],
    ) -> Result<(), ConsumeError> {
        self.refresh_leaders().await;
        self.initialize_positions(added).await?;
        self.ensure_fetchers();
        self.changed.notify_waiters();
        Ok(())
    }

    /// Committed offsets where there are any (with a group), `auto.offset.reset` for the
    /// rest.
    pub(crate) async fn initialize_positions(
        self: &Arc<Self>,
        parts: &[Arc<PartitionState>],
    ) -> Result<(), ConsumeError> {
        let unknown: Vec<Arc<PartitionState>> = parts
            .iter()
            .filter(|p| p.position.load(Ordering::Acquire) == UNKNOWN)
            .cloned()
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let mut committed = HashMap::new();
        if let Some(group) = &self.config.group_id {
            let tps: Vec<TopicPartition> = unknown.iter().map(|p| p.tp.clone()).collect();
            committed = group::committed_offsets(self, group, &tps).await?;
        }
        let mut to_reset = Vec::new();
        for p in &unknown {
            match committed.get(&p.tp).copied().flatten() {
                Some(offset) => p.seek(offset),
                None => to_reset.push(Arc::clone(p)),
            }
        }
        let timestamp = match self.config.auto_offset_reset {
            OffsetReset::Earliest => -2,
            OffsetReset::Latest => -1,
            OffsetReset::None if to_reset.is_empty() => return Ok(()),
            OffsetReset::None => {
                let p = &to_reset[0];
                return Err(ConsumeError::OffsetOutOfRange {
                    topic: p.tp.topic.to_string(),
                    partition: p.tp.partition,
                    offset: UNKNOWN,
                });
            }
        };
        self.reset_positions(&to_reset, timestamp).await
    }

    /// Moves `parts` to the offset at `timestamp` (-2 earliest, -1 latest).
    pub(crate) async fn reset_positions(
        self: &Arc<Self>,
        parts: &[Arc<PartitionState>],
        timestamp: i64,
    ) -> Result<(), ConsumeError> {
        let mut by_leader: HashMap<i32, Vec<Arc<PartitionState>>> = HashMap::new();
        for p in parts {
            by_leader
                .entry(p.leader.load(Ordering::Acquire))
                .or_default()
                .push(Arc::clone(p));
        }
        for (leader, parts) in by_leader {
            let conn = if leader >= 0 {
                self.cluster.node(leader).await?
            } else {
                self.cluster.any().await?
            };
            let tps: Vec<TopicPartition> = parts.iter().map(|p| p.tp.clone()).collect();
            let found =
                offsets::list_offsets(&conn, &tps, timestamp, self.config.read_committed).await?;
            for p in parts {
                if let Some(offset) = found.get(&p.tp) {
                    p.seek(*offset);
                }
            }
        }
        self.changed.notify_waiters();
        Ok(())
    }

    /// Looks up the leaders of every assigned partition.
    pub(crate) async fn refresh_leaders(self: &Arc<Self>) {
        let parts = self.assignment.all();
        let mut topics: Vec<String> = parts.iter().map(|p| p.tp.topic.to_string()).collect();
        topics.sort();
        topics.dedup();
        if topics.is_empty() {
            return;
        }
        match self.cluster.metadata(&topics).await {
            Ok(md) => {
                for p in &parts {
                    let topic = md.topics.get(&*p.tp.topic);
                    let leader = topic
                        .and_then(|t| t.partitions.iter().find(|x| x.partition == p.tp.partition))
                        .map_or(-1, |x| x.leader);
                    p.leader.store(leader, Ordering::Release);
                    if let Some(t) = topic {
                        *p.topic_id
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = t.id;
                    }
                }
                self.ensure_fetchers();
            }
            Err(e) => tracing::debug!(error = %e, "metadata refresh failed"),
        }
    }

    /// A fetcher for every leader of an assigned partition.
    pub(crate) fn ensure_fetchers(self: &Arc<Self>) {
        let leaders: HashSet<i32> = self
            .assignment
            .all()
            .iter()
            .map(|p| p.leader.load(Ordering::Acquire))
            .filter(|l| *l >= 0)
            .collect();
        let mut fetchers = self.fetchers.lock().unwrap_or_else(PoisonError::into_inner);
        for leader in leaders {
            fetchers.entry(leader).or_insert_with(|| {
                self.runtime
                    .spawn(crate::fetcher::run(Arc::clone(self), leader))
            });
        }
    }

    pub(crate) fn stop_fetchers(&self) {
        let fetchers =
            std::mem::take(&mut *self.fetchers.lock().unwrap_or_else(PoisonError::into_inner));
        for (_, task) in fetchers {
            task.abort();
        }
    }

    /// Commits the positions of `parts` (those with a position).
    pub(crate) async fn commit_positions(
        self: &Arc<Self>,
        parts: &[Arc<PartitionState>],
    ) -> Result<(), ConsumeError> {
        let offsets: Vec<(TopicPartition, i64)> = parts
            .iter()
            .filter_map(|p| {
                let pos = p.position.load(Ordering::Acquire);
                (pos >= 0).then(|| (p.tp.clone(), pos))
            })
            .collect();
        self.commit(&offsets).await
    }

    /// The member's generation and id now (-1 and "" outside a generation).
    pub(crate) async fn membership_identity(&self) -> (i32, String) {
        let m = self.membership.lock().await;
        (m.generation, m.member_id.clone())
    }

    /// Commits `offsets` with the group's current generation (or as a group without
    /// members in manual-assignment mode).
    pub(crate) async fn commit(
        self: &Arc<Self>,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<(), ConsumeError> {
        let group = self.config.group_id.clone().ok_or(ConsumeError::NoGroup)?;
        let (generation, member) = self.membership_identity().await;
        let conn = group::coordinator(self, &group).await?;
        offsets::commit(
            &conn,
            &group,
            generation,
            &member,
            self.config.group_instance_id.as_deref(),
            offsets,
        )
        .await
    }
}
