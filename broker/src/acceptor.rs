//! The acceptor: every configured listener, a task per connection, one cap on
//! connections over all listeners, and a clean stop on shutdown.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::config::BrokerConfig;
use crate::connection;
use crate::state::Broker;

/// Binds every configured listener, in order, or fails: a broker never serves only
/// some of the listeners its operator asked for. With port 0 the OS picks one; the
/// advertised port follows it unless `advertised.listeners` names one.
pub async fn bind(config: &mut BrokerConfig) -> Result<Vec<TcpListener>> {
    let mut bound = Vec::with_capacity(config.listeners.len());
    for l in &mut config.listeners {
        let listener = TcpListener::bind(l.bind)
            .await
            .with_context(|| format!("listen on {} (listener {})", l.bind, l.name))?;
        if l.advertised.1 == 0 {
            l.advertised.1 = listener.local_addr()?.port();
        }
        bound.push(listener);
    }
    Ok(bound)
}

/// Accepts connections on every listener until `stop` turns true, then waits (up to
/// 10 s) for open connections to finish and answer the request each has in hand.
/// `listeners[i]` is the bound socket of `broker.config.listeners[i]`.
pub async fn run(
    broker: Arc<Broker>,
    listeners: Vec<TcpListener>,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let limit = Arc::new(Semaphore::new(broker.config.max_connections));
    let mut accepters = JoinSet::new();
    for (index, listener) in listeners.into_iter().enumerate() {
        accepters.spawn(accept(
            Arc::clone(&broker),
            listener,
            index,
            Arc::clone(&limit),
            stop.clone(),
        ));
    }
    while let Some(done) = accepters.join_next().await {
        done.context("acceptor task")??;
    }
    Ok(())
}

/// One listener's accept loop; connections remember `index`, the listener they came in
/// on, so Metadata tells them that listener's advertised address.
async fn accept(
    broker: Arc<Broker>,
    listener: TcpListener,
    index: usize,
    limit: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let mut connections = JoinSet::new();
    loop {
        // Accept first, then wait for a slot: a listener waiting idle must not hold one
        // of the slots the listeners share (and starve the others).
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let permit = tokio::select! {
            _ = stop.changed() => break,
            permit = Arc::clone(&limit).acquire_owned() => permit.context("connection limiter closed")?,
        };
        let _ = stream.set_nodelay(true);
        let broker = Arc::clone(&broker);
        let stop = stop.clone();
        connections.spawn(async move {
            connection::serve(broker, stream, peer, index, stop).await;
            drop(permit);
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    // Connections that ended since the last accept are done, not open.
    while connections.try_join_next().is_some() {}
    tracing::info!(
        open = connections.len(),
        "stopped accepting; waiting for connections"
    );
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}
