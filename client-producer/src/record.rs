//! What goes in and what comes back.

use std::sync::Arc;

use bytes::Bytes;

/// A record to send.
#[derive(Debug, Clone)]
pub struct ProducerRecord {
    /// Topic (shared: cloning a record or sending many to one topic copies no string).
    pub topic: Arc<str>,
    /// Partition; `None` lets the partitioner choose.
    pub partition: Option<i32>,
    /// Key (`None` for a null key).
    pub key: Option<Bytes>,
    /// Value (`None` for a tombstone).
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Timestamp in ms since the epoch; `None` stamps it at send time.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record with a value, for `topic`.
    pub fn new(topic: impl Into<Arc<str>>, value: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            partition: None,
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the timestamp.
    pub fn timestamp(mut self, ms: i64) -> Self {
        self.timestamp = Some(ms);
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((key.into(), Some(value.into())));
        self
    }
}

/// Where a record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset (-1 with acks=0).
    pub offset: i64,
    /// The record's timestamp: the broker's append time for LogAppendTime topics, else
    /// the create time it was sent with.
    pub timestamp: i64,
}
