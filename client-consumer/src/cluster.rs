//! Connections to brokers by node id, and the leaders of partitions.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use fjord_client_common::connection::ConnectionOptions;
use fjord_client_common::{ClientError, ClusterMetadata, Connection};

/// The cluster as this consumer knows it.
#[derive(Debug)]
pub(crate) struct Cluster {
    bootstrap: Vec<String>,
    options: ConnectionOptions,
    brokers: RwLock<HashMap<i32, String>>,
    connections: tokio::sync::Mutex<HashMap<i32, Connection>>,
    any: tokio::sync::Mutex<Option<Connection>>,
}

impl Cluster {
    pub(crate) fn new(bootstrap: Vec<String>, options: ConnectionOptions) -> Self {
        Self {
            bootstrap,
            options,
            brokers: RwLock::default(),
            connections: tokio::sync::Mutex::default(),
            any: tokio::sync::Mutex::default(),
        }
    }

    /// A live connection to some broker (bootstrap or known).
    pub(crate) async fn any(&self) -> Result<Connection, ClientError> {
        let mut slot = self.any.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let mut candidates: Vec<String> = self
            .brokers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        candidates.extend(self.bootstrap.iter().cloned());
        let c = fjord_client_common::connection::connect_any(candidates, &self.options).await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// A live connection to broker `node`.
    pub(crate) async fn node(&self, node: i32) -> Result<Connection, ClientError> {
        let mut conns = self.connections.lock().await;
        if let Some(c) = conns.get(&node).filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let addr = self
            .brokers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&node)
            .cloned()
            .ok_or_else(|| ClientError::Closed(format!("node {node} not in metadata")))?;
        let c = Connection::connect(&addr, self.options.clone()).await?;
        conns.insert(node, c.clone());
        Ok(c)
    }

    /// A connection to `host:port` (a group coordinator), registered under `node`.
    pub(crate) async fn node_at(&self, node: i32, addr: &str) -> Result<Connection, ClientError> {
        self.brokers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(node, addr.to_string());
        self.node(node).await
    }

    /// Metadata for `topics`, remembering the brokers.
    pub(crate) async fn metadata(&self, topics: &[String]) -> Result<ClusterMetadata, ClientError> {
        let conn = self.any().await?;
        let md = ClusterMetadata::fetch(&conn, Some(topics), false).await?;
        self.brokers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(md.brokers.iter().map(|(k, v)| (*k, v.clone())));
        Ok(md)
    }
}
