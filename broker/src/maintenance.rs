//! Background upkeep of every log: `flush.ms`, retention (every
//! `log.retention.check.interval.ms`) and closing the files of idle segments (every
//! minute, after `fjord.segment.idle.close.ms`). All of it runs on the blocking pool:
//! it deletes files and may fsync.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::state::Broker;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One pass over every partition.
fn pass(broker: &Broker, retention: bool, idle: Option<Duration>) {
    let now = now_ms();
    for topic in broker.all_topics() {
        for partition in &topic.partitions {
            // Most ticks only flush logs with `flush.ms`: a read lock tells, so the other
            // partitions' appends are not stopped 5 times a second for nothing.
            let timed_flush = matches!(
                partition.read().config().durability,
                fjord_storage::Durability::Interval { ms: Some(_), .. }
            );
            if !timed_flush && !retention && idle.is_none() {
                continue;
            }
            let mut log = partition.write();
            if let Err(e) = log.maybe_flush() {
                tracing::error!(topic = %topic.name, "flush failed");
                partition.mark_offline(&e);
            }
            if retention {
                match log.apply_retention(now) {
                    Ok(outcome) if outcome.segments_deleted > 0 => tracing::info!(
                        topic = %topic.name,
                        partition = partition.index,
                        segments = outcome.segments_deleted,
                        bytes = outcome.bytes_deleted,
                        log_start_offset = outcome.log_start_offset,
                        "retention"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(topic = %topic.name, partition = partition.index, error = %e, "retention failed")
                    }
                }
            }
            if let Some(idle) = idle {
                let expiry = Duration::from_millis(broker.config.producer_id_expiration_ms);
                partition
                    .producers
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .expire(expiry);
                if let Err(e) = log.close_idle(idle) {
                    tracing::warn!(topic = %topic.name, partition = partition.index, error = %e, "closing idle segments failed");
                }
            }
        }
    }
}

/// Runs until `stop` turns true.
pub async fn run(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let retention_every = Duration::from_millis(broker.config.retention_check_interval_ms.max(1));
    let idle = Duration::from_millis(broker.config.segment_idle_close_ms);
    let mut last_retention = Instant::now();
    let mut last_idle = Instant::now();
    let mut last_fd_check = Instant::now();
    let tick = Duration::from_millis(200).min(retention_every);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        if last_fd_check.elapsed() >= FD_CHECK_EVERY {
            last_fd_check = Instant::now();
            relieve_fd_pressure(&broker).await;
        }
        let retention = last_retention.elapsed() >= retention_every;
        let close_idle = last_idle.elapsed() >= Duration::from_secs(60);
        if retention {
            last_retention = Instant::now();
        }
        if close_idle {
            last_idle = Instant::now();
        }
        let b = Arc::clone(&broker);
        let work =
            tokio::task::spawn_blocking(move || pass(&b, retention, close_idle.then_some(idle)));
        if let Err(e) = work.await {
            tracing::error!(error = %e, "maintenance pass failed");
        }
    }
}

/// How often open descriptors are counted.
const FD_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Past 80% of the descriptor limit, closes segment files unused for a second, long
/// before `fjord.segment.idle.close.ms`: better a reopen than EMFILE on the next
/// append, accept or topic creation.
async fn relieve_fd_pressure(broker: &Arc<Broker>) {
    let b = Arc::clone(broker);
    // Listing /proc/self/fd and closing files both block: off the reactor.
    let relieved = tokio::task::spawn_blocking(move || {
        let open = crate::fd_budget::open_count();
        if !crate::fd_budget::under_pressure(open, b.fd_limit) {
            return None;
        }
        Some((open, b.close_idle_files(Duration::from_secs(1))))
    });
    match relieved.await {
        Ok(Some((open, closed))) if closed > 0 => tracing::info!(
            open,
            limit = broker.fd_limit,
            closed,
            "descriptors near the limit: closed idle segment files"
        ),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "closing idle files failed"),
    }
}

/// How often group deadlines (sessions, rebalance and sync timeouts) are checked.
const GROUP_TICK: Duration = Duration::from_millis(100);

/// Runs the group coordinator's deadlines until `stop` turns true. On the blocking pool:
/// expiring offsets writes to the offsets log.
pub async fn run_group_timers(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(GROUP_TICK) => {}
        }
        let b = Arc::clone(&broker);
        if let Err(e) = tokio::task::spawn_blocking(move || b.groups.tick()).await {
            tracing::error!(error = %e, "group timers failed");
        }
    }
}

/// Runs the transaction coordinator's timers until `stop` turns true: aborts
/// transactions past their timeout (fencing their producers) and finishes decisions
/// whose markers failed, every `transaction.abort.timed.out.transaction.cleanup.interval.ms`;
/// forgets idle transactional ids every
/// `transaction.remove.expired.transaction.cleanup.interval.ms`. On the blocking pool:
/// each writes the transaction log and markers.
pub async fn run_transaction_timers(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let config = broker.txn.config().clone();
    let mut last_expiry = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(config.abort_check) => {}
        }
        let expire = last_expiry.elapsed() >= config.expiry_check;
        if expire {
            last_expiry = tokio::time::Instant::now();
        }
        let b = Arc::clone(&broker);
        let done = tokio::task::spawn_blocking(move || {
            let aborted = b.txn.abort_timed_out(now_ms(), b.as_ref());
            let finished = b.txn.finish_prepared(b.as_ref());
            let expired = if expire {
                b.txn.expire_ids(now_ms())
            } else {
                0
            };
            if aborted + finished + expired > 0 {
                tracing::info!(aborted, finished, expired, "transaction timers");
            }
        })
        .await;
        if let Err(e) = done {
            tracing::error!(error = %e, "transaction timers failed");
        }
    }
}
