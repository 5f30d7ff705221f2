//! One client connection: read frames, answer each request in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use fjord_protocol::frame::decode_frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::handler::Part;
use crate::handler::{self, Response};
use crate::sendfile::send_region;
use crate::state::Broker;

/// Serves `stream` until the client closes it, it sends something we cannot answer, or
/// it stays idle for `connections.max.idle.ms`.
pub(crate) async fn serve(broker: Arc<Broker>, mut stream: TcpStream, peer: SocketAddr) {
    let max = broker.config.socket_request_max_bytes;
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    tracing::debug!(%peer, "connection opened");
    let reason = loop {
        let frame = match decode_frame(&mut buf, max) {
            Ok(Some(frame)) => frame,
            Ok(None) => match tokio::time::timeout(idle, stream.read_buf(&mut buf)).await {
                Err(_) => break "idle".to_string(),
                Ok(Ok(0)) => break "closed by client".to_string(),
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => break format!("read error: {e}"),
            },
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection: bad frame");
                break format!("bad frame: {e}");
            }
        };
        match handler::handle(&broker, frame).await {
            Ok(response) => {
                if let Err(e) = write(&mut stream, response).await {
                    break format!("write error: {e}");
                }
            }
            Err(fatal) => {
                tracing::warn!(%peer, error = %fatal, "closing connection");
                break fatal.to_string();
            }
        }
    };
    tracing::debug!(%peer, %reason, "connection closed");
}

async fn write(stream: &mut TcpStream, response: Response) -> std::io::Result<()> {
    match response {
        Response::None => Ok(()),
        Response::Frame(bytes) => stream.write_all(&bytes).await,
        Response::Fetch(fetch) => {
            for part in &fetch.parts {
                match part {
                    Part::Bytes(bytes) => stream.write_all(bytes).await?,
                    Part::Region(region) => send_region(stream, region).await?,
                }
            }
            Ok(())
        }
    }
}
