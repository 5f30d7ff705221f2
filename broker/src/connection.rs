//! One client connection, in three stages so work overlaps while answers stay in order:
//! a reader that decodes frames ahead, this task handling them one at a time (as Kafka
//! does per connection, so appends from one producer connection keep their order), and a
//! writer that sends each response while the next request is being handled.
//!
//! Memory stays bounded: the reader holds at most `queued.max.request.bytes` of requests
//! not yet answered (a semaphore of bytes), on top of the one frame it is reading.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fjord_protocol::frame::decode_frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::handler::{self, Part, Response};
use crate::sendfile::send_region;
use crate::state::Broker;

/// Requests decoded ahead of the one being handled.
const READ_AHEAD: usize = 64;

/// A request frame with the share of the byte budget it holds until answered.
type Queued = (Bytes, OwnedSemaphorePermit);

/// Serves `stream` until the client closes it, it sends something we cannot answer, or
/// it stays idle for `connections.max.idle.ms`.
/// On `stop`, it takes no new request but finishes (and answers) the one in hand.
pub(crate) async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    tracing::debug!(%peer, "connection opened");
    let (read, write) = stream.into_split();
    let budget = Arc::new(Semaphore::new(
        broker.config.queued_max_request_bytes.max(1),
    ));
    let (request_tx, mut request_rx) = mpsc::channel::<Queued>(READ_AHEAD);
    let (response_tx, response_rx) = mpsc::channel::<(Response, OwnedSemaphorePermit)>(READ_AHEAD);
    let reader = tokio::spawn(read_requests(
        Arc::clone(&broker),
        read,
        peer,
        budget,
        request_tx,
    ));
    let stall = Duration::from_millis(broker.config.connections_max_idle_ms);
    let writer = tokio::spawn(write_responses(write, peer, response_rx, stall));
    loop {
        let next = tokio::select! {
            next = request_rx.recv() => next,
            _ = stop.changed() => None,
        };
        let Some((frame, permit)) = next else { break };
        match handler::handle(&broker, frame).await {
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
    tracing::debug!(%peer, "connection closed");
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
    let capacity = broker.config.queued_max_request_bytes.max(1);
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
        let bytes = u32::try_from(frame.len().clamp(1, capacity)).unwrap_or(u32::MAX);
        let Ok(permit) = Arc::clone(&budget).acquire_many_owned(bytes).await else {
            return;
        };
        if requests.send((frame, permit)).await.is_err() {
            return;
        }
    }
}

/// Writes responses in order. A client that stops reading for `stall` (the idle
/// timeout) is disconnected instead of holding its slot and queued requests forever.
async fn write_responses(
    mut write: OwnedWriteHalf,
    peer: SocketAddr,
    mut responses: mpsc::Receiver<(Response, OwnedSemaphorePermit)>,
    stall: Duration,
) {
    while let Some((response, permit)) = responses.recv().await {
        match tokio::time::timeout(stall, write_one(&mut write, response)).await {
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

async fn write_one(stream: &mut OwnedWriteHalf, response: Response) -> std::io::Result<()> {
    match response {
        Response::None => Ok(()),
        Response::Frame(bytes) => stream.write_all(&bytes).await,
        Response::Fetch(fetch) => {
            for part in &fetch.parts {
                match part {
                    Part::Bytes(bytes) => stream.write_all(bytes).await?,
                    Part::Region(region) => send_region(stream.as_ref(), region).await?,
                }
            }
            Ok(())
        }
    }
}
