//! One assigned partition's state, shared by the application side (positions it returns
//! records from) and the fetcher (positions it fetches from).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::record::TopicPartition;

/// No position yet: look up the committed offset or apply `auto.offset.reset`.
pub(crate) const UNKNOWN: i64 = -1;

/// An assigned partition.
#[derive(Debug)]
pub(crate) struct PartitionState {
    pub(crate) tp: TopicPartition,
    /// Next offset handed to the application.
    pub(crate) position: AtomicI64,
    /// Next offset to fetch.
    pub(crate) fetch_position: AtomicI64,
    /// Bumped by seek, pause and revocation: fetched data of an older epoch is dropped.
    pub(crate) epoch: AtomicU64,
    pub(crate) paused: AtomicBool,
    /// A corrupt batch or an out-of-range position with `auto.offset.reset=none`: no
    /// fetching until the application seeks.
    pub(crate) failed: AtomicBool,
    pub(crate) leader: AtomicI32,
    pub(crate) high_watermark: AtomicI64,
    /// Still assigned (false once revoked: the fetcher and the reader forget it).
    pub(crate) assigned: AtomicBool,
    /// The topic's ID as the last metadata gave it (all zero: unknown), for Fetch v13+.
    pub(crate) topic_id: std::sync::Mutex<[u8; 16]>,
}

impl PartitionState {
    /// The topic's ID (all zero while unknown).
    pub(crate) fn topic_id(&self) -> [u8; 16] {
        *self
            .topic_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn new(tp: TopicPartition, leader: i32) -> Self {
        Self {
            tp,
            position: AtomicI64::new(UNKNOWN),
            fetch_position: AtomicI64::new(UNKNOWN),
            epoch: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            leader: AtomicI32::new(leader),
            high_watermark: AtomicI64::new(-1),
            assigned: AtomicBool::new(true),
            topic_id: std::sync::Mutex::new([0; 16]),
        }
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Moves both positions to `offset`, dropping whatever was fetched before.
    pub(crate) fn seek(&self, offset: i64) {
        self.position.store(offset, Ordering::Release);
        self.fetch_position.store(offset, Ordering::Release);
        self.failed.store(false, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether the fetcher should ask for this partition.
    pub(crate) fn fetchable(&self) -> bool {
        self.assigned.load(Ordering::Acquire)
            && !self.paused.load(Ordering::Acquire)
            && !self.failed.load(Ordering::Acquire)
            && self.fetch_position.load(Ordering::Acquire) >= 0
    }
}

/// The current assignment.
#[derive(Debug, Default)]
pub(crate) struct Assignment {
    map: RwLock<HashMap<TopicPartition, Arc<PartitionState>>>,
}

impl Assignment {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, HashMap<TopicPartition, Arc<PartitionState>>> {
        self.map.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write(
        &self,
    ) -> RwLockWriteGuard<'_, HashMap<TopicPartition, Arc<PartitionState>>> {
        self.map.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, tp: &TopicPartition) -> Option<Arc<PartitionState>> {
        self.read().get(tp).cloned()
    }

    pub(crate) fn all(&self) -> Vec<Arc<PartitionState>> {
        let mut all: Vec<_> = self.read().values().cloned().collect();
        all.sort_by(|a, b| a.tp.cmp(&b.tp));
        all
    }

    /// Adds partitions (unknown positions); existing ones are kept as they are.
    pub(crate) fn add(&self, tps: &[TopicPartition]) -> Vec<Arc<PartitionState>> {
        let mut map = self.write();
        tps.iter()
            .map(|tp| {
                Arc::clone(
                    map.entry(tp.clone())
                        .or_insert_with(|| Arc::new(PartitionState::new(tp.clone(), -1))),
                )
            })
            .collect()
    }

    /// Removes partitions; their fetched data becomes stale.
    pub(crate) fn remove(&self, tps: &[TopicPartition]) {
        let mut map = self.write();
        for tp in tps {
            if let Some(p) = map.remove(tp) {
                p.assigned.store(false, Ordering::Release);
                p.epoch.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}
