//! One client connection, in three stages so work overlaps while answers stay in order:
//! a reader that decodes frames ahead, this task handling them one at a time (as Kafka
//! does per connection, so appends from one producer connection keep their order), and a
//! writer that sends each response while the next request is being handled.
//!
//! Memory stays bounded: all connections together hold at most
//! `queued.max.request.bytes` of requests read but not yet answered (a broker-wide
//! semaphore of bytes), on top of the one frame each is reading.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fjord_protocol::frame::decode_frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::config::FetchMode;
use crate::handler::{self, Part, Response};
use crate::sendfile::{copy_region, send_region, write_mapped_region};
use crate::state::Broker;

/// Requests decoded ahead of the one being handled.
const READ_AHEAD: usize = 64;

/// The shares of the connection's and the broker's byte budgets a request holds until
/// its response is written.
#[derive(Debug)]
struct Held {
    _connection: OwnedSemaphorePermit,
    _broker: OwnedSemaphorePermit,
}

/// A request frame with the budget it holds.
type Queued = (Bytes, Held);

/// Serves `stream` until the client closes it, it sends something we cannot answer, or
/// it stays idle for `connections.max.idle.ms`.
/// On `stop`, it takes no new request but finishes (and answers) the one in hand.
pub(crate) async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    listener: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    tracing::info!(%peer, "connection opened");
    broker
        .metrics
        .connections
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (read, write) = stream.into_split();
    let budget = Arc::new(Semaphore::new(
        broker.config.socket_request_max_bytes.max(1),
    ));
    let (request_tx, mut request_rx) = mpsc::channel::<Queued>(READ_AHEAD);
    let (response_tx, response_rx) = mpsc::channel::<(Response, Held)>(READ_AHEAD);
    let reader = tokio::spawn(read_requests(
        Arc::clone(&broker),
        read,
        peer,
        budget,
        request_tx,
    ));
    let stall = Duration::from_millis(broker.config.connections_max_idle_ms);
    let loopback = match peer.ip() {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
    };
    let mode = match broker.config.fetch_mode {
        FetchMode::Auto if loopback => FetchMode::Copy,
        FetchMode::Auto => FetchMode::Sendfile,
        other => other,
    };
    let writer = tokio::spawn(write_responses(write, peer, response_rx, stall, mode));
    loop {
        let next = tokio::select! {
            next = request_rx.recv() => next,
            _ = stop.changed() => None,
        };
        let Some((frame, permit)) = next else { break };
        let api_key = frame
            .get(..2)
            .map_or(-1, |b| i16::from_be_bytes([b[0], b[1]]));
        let api_version = frame
            .get(2..4)
            .map_or(-1, |b| i16::from_be_bytes([b[0], b[1]]));
        let started = std::time::Instant::now();
        let origin = handler::Origin {
            peer: Some(peer),
            listener,
        };
        let handled = handler::handle(&broker, frame, origin).await;
        broker
            .metrics
            .request(api_key, api_version, started.elapsed());
        match handled {
            Ok(response) => {
                if response_tx.send((response, permit)).await.is_err() {
                    break; // the writer stopped: the socket is gone
                }
            }
            Err(fatal) => {
                tracing::warn!(%peer, error = %fatal, "closing connection");
                break;
            }
        }
    }
    reader.abort();
    drop(response_tx);
    // Let the writer finish answering what was handled before closing.
    let _ = writer.await;
    broker
        .metrics
        .connections
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(%peer, "connection closed");
}

async fn read_requests(
    broker: Arc<Broker>,
    mut read: OwnedReadHalf,
    peer: SocketAddr,
    budget: Arc<Semaphore>,
    requests: mpsc::Sender<Queued>,
) {
    let max = broker.config.socket_request_max_bytes;
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
    let connection_cap = broker.config.socket_request_max_bytes.max(1);
    let broker_cap = broker.config.queued_max_request_bytes.max(1);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let frame = match decode_frame(&mut buf, max) {
            Ok(Some(frame)) => frame,
            Ok(None) => match tokio::time::timeout(idle, read.read_buf(&mut buf)).await {
                Err(_) => {
                    tracing::debug!(%peer, "closing idle connection");
                    return;
                }
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(_)) => continue,
            },
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection: bad frame");
                return;
            }
        };
        let share = |cap: usize| u32::try_from(frame.len().clamp(1, cap)).unwrap_or(u32::MAX);
        let Ok(connection) = Arc::clone(&budget)
            .acquire_many_owned(share(connection_cap))
            .await
        else {
            return;
        };
        let Ok(shared) = Arc::clone(&broker.request_budget)
            .acquire_many_owned(share(broker_cap))
            .await
        else {
            return;
        };
        let held = Held {
            _connection: connection,
            _broker: shared,
        };
        if requests.send((frame, held)).await.is_err() {
            return;
        }
    }
}

/// Writes responses in order. A client that stops reading for `stall` (the idle
/// timeout) is disconnected instead of holding its slot and queued requests forever.
async fn write_responses(
    mut write: OwnedWriteHalf,
    peer: SocketAddr,
    mut responses: mpsc::Receiver<(Response, Held)>,
    stall: Duration,
    mode: FetchMode,
) {
    let mut copy_buf = Vec::new();
    while let Some((response, permit)) = responses.recv().await {
        let written = write_one(&mut write, response, mode, &mut copy_buf);
        match tokio::time::timeout(stall, written).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "write failed");
                return;
            }
            Err(_) => {
                tracing::warn!(%peer, "client stopped reading; closing connection");
                return;
            }
        }
        drop(permit);
    }
    let _ = write.shutdown().await;
}

/// Writes one response; fetch record bytes go as `mode` says (never `Auto` here), through
/// `copy_buf` when copied.
async fn write_one(
    stream: &mut OwnedWriteHalf,
    response: Response,
    mode: FetchMode,
    copy_buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    match response {
        Response::None => Ok(()),
        Response::Frame(bytes) => stream.write_all(&bytes).await,
        Response::Fetch(fetch) => {
            for part in &fetch.parts {
                match part {
                    Part::Bytes(bytes) => stream.write_all(bytes).await?,
                    Part::Region(region) => match mode {
                        FetchMode::Sendfile | FetchMode::Auto => {
                            send_region(stream.as_ref(), region, copy_buf).await?;
                        }
                        FetchMode::Mmap => write_mapped_region(stream, region, copy_buf).await?,
                        FetchMode::Copy => copy_region(stream, region, copy_buf).await?,
                    },
                }
            }
            Ok(())
        }
    }
}
