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

#[derive(Debug, Default)]
struct State {
    result: Option<Result<BatchAck, ProduceError>>,
    wakers: Vec<Waker>,
}

/// The outcome of one batch, once known.
#[derive(Debug, Default)]
pub(crate) struct Completion {
    state: Mutex<State>,
}

impl Completion {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the outcome (the first one wins) and wakes every waiting record.
    pub(crate) fn complete(&self, result: Result<BatchAck, ProduceError>) {
        let wakers = {
            let mut s = self.lock();
            if s.result.is_some() {
                return;
            }
            s.result = Some(result);
            std::mem::take(&mut s.wakers)
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Whether the outcome is known.
    pub(crate) fn is_done(&self) -> bool {
        self.lock().result.is_some()
    }

    fn poll_result(&self, cx: &mut Context<'_>) -> Poll<Result<BatchAck, ProduceError>> {
        let mut s = self.lock();
        if let Some(r) = &s.result {
            return Poll::Ready(r.clone());
        }
        if !s.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            s.wakers.push(cx.waker().clone());
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
                topic: this.topic.to_string(),
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
