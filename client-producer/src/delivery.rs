//! Delivery reports: one completion per batch, shared by the futures of its records, so a
//! send costs a reference count, not a channel.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::error::ProduceError;
use crate::record::RecordMetadata;

/// What the broker said about a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchAck {
    /// Offset of the batch's first record (-1 if unknown: acks=0).
    pub(crate) base_offset: i64,
    /// The broker's append time for LogAppendTime topics, else -1.
    pub(crate) log_append_time: i64,
}

/// The outcome of one batch, once known. Reading a known outcome takes no lock: a
/// producer that awaits millions of delivery futures polls most of them after the fact.
#[derive(Debug, Default)]
pub(crate) struct Completion {
    result: std::sync::OnceLock<Result<BatchAck, ProduceError>>,
    wakers: Mutex<Vec<Waker>>,
}

impl Completion {
    fn wakers(&self) -> std::sync::MutexGuard<'_, Vec<Waker>> {
        self.wakers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the outcome (the first one wins) and wakes every waiting record.
    pub(crate) fn complete(&self, result: Result<BatchAck, ProduceError>) {
        if self.result.set(result).is_err() {
            return;
        }
        // Under the lock, so a poll that saw no result has registered its waker by now.
        let wakers = std::mem::take(&mut *self.wakers());
        for w in wakers {
            w.wake();
        }
    }

    /// Whether the outcome is known.
    pub(crate) fn is_done(&self) -> bool {
        self.result.get().is_some()
    }

    fn poll_result(&self, cx: &mut Context<'_>) -> Poll<Result<BatchAck, ProduceError>> {
        if let Some(r) = self.result.get() {
            return Poll::Ready(r.clone());
        }
        let mut wakers = self.wakers();
        // Checked again under the lock: `complete` sets the result before taking it.
        if let Some(r) = self.result.get() {
            return Poll::Ready(r.clone());
        }
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Waits for a batch's outcome (used by `flush`).
#[derive(Debug)]
pub(crate) struct CompletionWait(pub(crate) Arc<Completion>);

impl Future for CompletionWait {
    type Output = Result<BatchAck, ProduceError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.poll_result(cx)
    }
}

/// Resolves to where a record landed, or why it did not.
#[derive(Debug)]
#[must_use = "a delivery report says whether the record was written"]
pub struct DeliveryFuture {
    pub(crate) completion: Arc<Completion>,
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) offset_delta: i32,
    pub(crate) timestamp: i64,
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, ProduceError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.completion.poll_result(cx).map(|r| {
            r.map(|ack| RecordMetadata {
                topic: Arc::clone(&this.topic),
                partition: this.partition,
                offset: if ack.base_offset < 0 {
                    -1
                } else {
                    ack.base_offset + i64::from(this.offset_delta)
                },
                timestamp: if ack.log_append_time >= 0 {
                    ack.log_append_time
                } else {
                    this.timestamp
                },
            })
        })
    }
}
