//! The acceptor: one listener, a task per connection, a cap on connections, and a clean
//! stop on shutdown.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::config::BrokerConfig;
use crate::connection;
use crate::state::Broker;

/// Binds the configured listener. With port 0 the OS picks one; the advertised port
/// follows it unless `advertised.listeners` names one.
pub async fn bind(config: &mut BrokerConfig) -> Result<TcpListener> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen on {}", config.listen))?;
    if config.advertised.1 == 0 {
        config.advertised.1 = listener.local_addr()?.port();
    }
    Ok(listener)
}

/// Accepts connections until `stop` turns true, then waits (up to 10 s) for open
/// connections to finish and answer the request each has in hand.
pub async fn run(
    broker: Arc<Broker>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let limit = Arc::new(Semaphore::new(broker.config.max_connections));
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = stop.changed() => break,
            permit = Arc::clone(&limit).acquire_owned() => permit.context("connection limiter closed")?,
        };
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
        let _ = stream.set_nodelay(true);
        let broker = Arc::clone(&broker);
        let stop = stop.clone();
        connections.spawn(async move {
            connection::serve(broker, stream, peer, stop).await;
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
