//! One TCP connection to one broker, shared by any number of tasks: requests are written in
//! the order they are submitted and answered in that order (Kafka's per-connection rule),
//! so many can be in flight at once. Two tasks own the socket halves; callers hold a
//! cheap handle and await their own answer.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use fjord_protocol::frame::decode_frame;
use fjord_protocol::kafka_protocol::messages::api_versions_request::ApiVersionsRequest;
use fjord_protocol::kafka_protocol::messages::{ApiKey, RequestHeader};
use fjord_protocol::kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Request, StrBytes,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::error::ClientError;

type Reply = oneshot::Sender<Result<Bytes, ClientError>>;

/// A request on its way to the writer task.
struct Outgoing {
    /// Size-prefixed frame; the correlation id (bytes 8..12) is set by the writer.
    frame: BytesMut,
    /// More of the frame, written after `frame` without copying (record batches).
    tail: Vec<Bytes>,
    /// Response header version (0, or 1 with tagged fields).
    response_header_version: i16,
    /// Where the answer goes; `None` for requests the broker does not answer (acks=0).
    reply: Option<Reply>,
}

/// Answers awaited, in the order their requests were written.
type Pending = Arc<Mutex<VecDeque<(i32, i16, Reply)>>>;

/// Settings of a connection.
#[derive(Debug, Clone)]
pub struct ConnectionOptions {
    /// `client.id`, sent in every request header.
    pub client_id: String,
    /// How long to wait for the TCP connect and for each answer.
    pub request_timeout: Duration,
    /// Largest response frame accepted (bounded before allocating).
    pub max_response_bytes: usize,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        Self {
            client_id: "fjord".into(),
            request_timeout: Duration::from_secs(30),
            max_response_bytes: 256 << 20,
        }
    }
}

/// Aborts the socket tasks when the last handle goes away.
#[derive(Debug)]
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// A connection to one broker. Cheap to clone; every clone shares the socket.
#[derive(Debug, Clone)]
pub struct Connection {
    addr: Arc<str>,
    tx: mpsc::Sender<Outgoing>,
    versions: Arc<HashMap<i16, (i16, i16)>>,
    closed: Arc<AtomicBool>,
    options: Arc<ConnectionOptions>,
    _tasks: Arc<Tasks>,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing")
            .field("len", &self.frame.len())
            .finish()
    }
}

fn io_error(addr: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Io {
        addr: addr.to_string(),
        message: e.to_string(),
    }
}

/// Encodes header and body of `req` at `version` into a size-prefixed frame.
fn encode_frame<R: Request>(
    req: &R,
    version: i16,
    client_id: &str,
) -> Result<BytesMut, ClientError> {
    let mut header = RequestHeader::default();
    header.request_api_key = R::KEY;
    header.request_api_version = version;
    header.client_id = Some(StrBytes::from_string(client_id.to_string()));
    let header_version = R::header_version(version);
    let mut frame = BytesMut::with_capacity(64);
    frame.put_i32(0);
    header
        .encode(&mut frame, header_version)
        .map_err(|e| ClientError::Protocol(format!("encode header: {e}")))?;
    req.encode(&mut frame, version)
        .map_err(|e| ClientError::Protocol(format!("encode request {}: {e}", R::KEY)))?;
    let size = i32::try_from(frame.len() - 4)
        .map_err(|_| ClientError::Protocol("request larger than 2 GiB".into()))?;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    Ok(frame)
}

impl Connection {
    /// Connects to `addr` and negotiates API versions.
    pub async fn connect(addr: &str, options: ConnectionOptions) -> Result<Self, ClientError> {
        let stream = tokio::time::timeout(options.request_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout(addr.to_string()))?
            .map_err(|e| io_error(addr, e))?;
        stream.set_nodelay(true).map_err(|e| io_error(addr, e))?;
        let (read, write) = stream.into_split();
        let (tx, rx) = mpsc::channel(256);
        let pending: Pending = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let addr: Arc<str> = Arc::from(addr);
        let writer = tokio::spawn(write_loop(
            Arc::clone(&addr),
            write,
            rx,
            Arc::clone(&pending),
            Arc::clone(&closed),
        ));
        let reader = tokio::spawn(read_loop(
            Arc::clone(&addr),
            read,
            pending,
            Arc::clone(&closed),
            options.max_response_bytes,
        ));
        let mut conn = Self {
            addr,
            tx,
            versions: Arc::new(HashMap::new()),
            closed,
            options: Arc::new(options),
            _tasks: Arc::new(Tasks(vec![writer, reader])),
        };
        conn.versions = Arc::new(conn.negotiate().await?);
        Ok(conn)
    }

    /// The broker's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the socket failed or was closed: make a new connection.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.tx.is_closed()
    }

    /// ApiVersions: v3 first; a broker that does not know it answers (KIP-511) with the
    /// v0 layout and its own range, and we ask again at v0.
    async fn negotiate(&self) -> Result<HashMap<i16, (i16, i16)>, ClientError> {
        let mut req = ApiVersionsRequest::default();
        req.client_software_name = StrBytes::from_static_str("fjord");
        req.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
        let resp = match self.request(&req, 3).await {
            Ok(r) if r.error_code == 0 => r,
            _ => self.request(&ApiVersionsRequest::default(), 0).await?,
        };
        if resp.error_code != 0 {
            return Err(ClientError::Broker {
                code: resp.error_code,
                message: "ApiVersions".into(),
            });
        }
        Ok(resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect())
    }

    /// The highest version of `key` both sides speak, given ours as `min..=max`.
    pub fn version(&self, key: ApiKey, min: i16, max: i16) -> Result<i16, ClientError> {
        let (theirs_min, theirs_max) = self
            .versions
            .get(&(key as i16))
            .copied()
            .ok_or(ClientError::Unsupported { api: api_name(key) })?;
        let v = max.min(theirs_max);
        if v < min.max(theirs_min) {
            return Err(ClientError::Unsupported { api: api_name(key) });
        }
        Ok(v)
    }

    /// Sends `req` at `version` and decodes the answer.
    pub async fn request<R: Request>(
        &self,
        req: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        let mut body = self.request_bytes(req, version).await?;
        R::Response::decode(&mut body, version)
            .map_err(|e| ClientError::Protocol(format!("decode response {}: {e}", R::KEY)))
    }

    /// Sends `req` and returns the response body undecoded (for callers that parse it
    /// themselves, such as a fetch that keeps record bytes zero-copy).
    pub async fn request_bytes<R: Request>(
        &self,
        req: &R,
        version: i16,
    ) -> Result<Bytes, ClientError> {
        let frame = encode_frame(req, version, &self.options.client_id)?;
        let (tx, rx) = oneshot::channel();
        let outgoing = Outgoing {
            frame,
            tail: Vec::new(),
            response_header_version: R::Response::header_version(version),
            reply: Some(tx),
        };
        self.tx
            .send(outgoing)
            .await
            .map_err(|_| ClientError::Closed(self.addr.to_string()))?;
        match tokio::time::timeout(self.options.request_timeout, rx).await {
            Err(_) => {
                // A late answer would be matched to the wrong request after this one is
                // abandoned: the connection is unusable.
                self.closed.store(true, Ordering::Release);
                Err(ClientError::Timeout(self.addr.to_string()))
            }
            Ok(Err(_)) => Err(ClientError::Closed(self.addr.to_string())),
            Ok(Ok(result)) => result,
        }
    }

    /// Queues `req` now and returns a handle for its answer: requests submitted one after
    /// another from one task go out in that order, while their answers are awaited
    /// elsewhere (how a producer keeps several requests in flight without reordering).
    pub async fn submit<R: Request>(
        &self,
        req: &R,
        version: i16,
    ) -> Result<PendingResponse<R::Response>, ClientError> {
        let frame = encode_frame(req, version, &self.options.client_id)?;
        self.submit_parts(
            frame,
            Vec::new(),
            R::Response::header_version(version),
            version,
        )
        .await
    }

    /// [`Connection::submit`] for a request encoded by the caller: `head` starts with
    /// the 4-byte size (covering `tail` too) and the request header with a placeholder
    /// correlation id at bytes 8..12; `tail` follows it on the wire uncopied.
    pub async fn submit_parts<T: Decodable>(
        &self,
        head: BytesMut,
        tail: Vec<Bytes>,
        response_header_version: i16,
        version: i16,
    ) -> Result<PendingResponse<T>, ClientError> {
        let (tx, rx) = oneshot::channel();
        let outgoing = Outgoing {
            frame: head,
            tail,
            response_header_version,
            reply: Some(tx),
        };
        self.tx
            .send(outgoing)
            .await
            .map_err(|_| ClientError::Closed(self.addr.to_string()))?;
        Ok(PendingResponse {
            rx,
            version,
            conn: self.clone(),
            _response: std::marker::PhantomData,
        })
    }

    /// [`Connection::send_only`] for a request encoded by the caller (see
    /// [`Connection::submit_parts`]).
    pub async fn send_parts_only(
        &self,
        head: BytesMut,
        tail: Vec<Bytes>,
    ) -> Result<(), ClientError> {
        let outgoing = Outgoing {
            frame: head,
            tail,
            response_header_version: 0,
            reply: None,
        };
        self.tx
            .send(outgoing)
            .await
            .map_err(|_| ClientError::Closed(self.addr.to_string()))
    }

    /// Sends a request the broker will not answer (Produce with acks=0).
    pub async fn send_only<R: Request>(&self, req: &R, version: i16) -> Result<(), ClientError> {
        let frame = encode_frame(req, version, &self.options.client_id)?;
        let outgoing = Outgoing {
            frame,
            tail: Vec::new(),
            response_header_version: 0,
            reply: None,
        };
        self.tx
            .send(outgoing)
            .await
            .map_err(|_| ClientError::Closed(self.addr.to_string()))
    }
}

/// The answer to a request queued with [`Connection::submit`].
#[derive(Debug)]
pub struct PendingResponse<T: Decodable> {
    rx: oneshot::Receiver<Result<Bytes, ClientError>>,
    version: i16,
    conn: Connection,
    _response: std::marker::PhantomData<fn() -> T>,
}

impl<T: Decodable> PendingResponse<T> {
    /// Waits (up to the request timeout) and decodes the answer.
    pub async fn wait(self) -> Result<T, ClientError> {
        let addr = self.conn.addr.to_string();
        let mut body = match tokio::time::timeout(self.conn.options.request_timeout, self.rx).await
        {
            Err(_) => {
                self.conn.closed.store(true, Ordering::Release);
                return Err(ClientError::Timeout(addr));
            }
            Ok(Err(_)) => return Err(ClientError::Closed(addr)),
            Ok(Ok(result)) => result?,
        };
        T::decode(&mut body, self.version)
            .map_err(|e| ClientError::Protocol(format!("decode response: {e}")))
    }
}

/// A connection to the first of `candidates` ("host:port") that answers; the last error
/// if none does.
pub async fn connect_any(
    candidates: impl IntoIterator<Item = String>,
    options: &ConnectionOptions,
) -> Result<Connection, ClientError> {
    let mut last = ClientError::Closed("no bootstrap servers".into());
    for addr in candidates {
        match Connection::connect(&addr, options.clone()).await {
            Ok(c) => return Ok(c),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn api_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        _ => "an API",
    }
}

fn fail_all(pending: &Pending, error: &ClientError) {
    let drained: Vec<_> = pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .drain(..)
        .collect();
    for (_, _, reply) in drained {
        let _ = reply.send(Err(error.clone()));
    }
}

async fn write_loop(
    addr: Arc<str>,
    mut write: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outgoing>,
    pending: Pending,
    closed: Arc<AtomicBool>,
) {
    let mut correlation: i32 = 0;
    while let Some(mut out) = rx.recv().await {
        correlation = correlation.wrapping_add(1);
        out.frame[8..12].copy_from_slice(&correlation.to_be_bytes());
        if let Some(reply) = out.reply.take() {
            // Queued before the bytes leave, so the reader always finds it.
            pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_back((correlation, out.response_header_version, reply));
        }
        if let Err(e) = write_all_parts(&mut write, &out.frame, &out.tail).await {
            tracing::debug!(%addr, error = %e, "write failed");
            closed.store(true, Ordering::Release);
            fail_all(&pending, &io_error(&addr, e));
            rx.close();
            // Requests already queued get their error from the dropped reply senders.
            while let Some(out) = rx.recv().await {
                if let Some(reply) = out.reply {
                    let _ = reply.send(Err(ClientError::Closed(addr.to_string())));
                }
            }
            return;
        }
    }
    let _ = write.shutdown().await;
}

/// Writes `head` then every part of `tail`, gathering them into as few syscalls as the
/// kernel allows.
async fn write_all_parts(
    write: &mut OwnedWriteHalf,
    head: &[u8],
    tail: &[Bytes],
) -> std::io::Result<()> {
    if tail.is_empty() {
        return write.write_all(head).await;
    }
    let mut parts: Vec<&[u8]> = Vec::with_capacity(tail.len() + 1);
    parts.push(head);
    parts.extend(tail.iter().map(|b| &b[..]));
    let mut first = 0;
    let mut offset = 0;
    while first < parts.len() {
        let slices: Vec<std::io::IoSlice<'_>> = std::iter::once(&parts[first][offset..])
            .chain(parts[first + 1..].iter().copied())
            .take(64)
            .map(std::io::IoSlice::new)
            .collect();
        let mut n = write.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 && first < parts.len() {
            let left = parts[first].len() - offset;
            if n >= left {
                n -= left;
                first += 1;
                offset = 0;
            } else {
                offset += n;
                n = 0;
            }
        }
        while first < parts.len() && parts[first].len() == offset {
            first += 1;
            offset = 0;
        }
    }
    Ok(())
}

async fn read_loop(
    addr: Arc<str>,
    mut read: OwnedReadHalf,
    pending: Pending,
    closed: Arc<AtomicBool>,
    max_frame: usize,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let error = loop {
        let frame = match decode_frame(&mut buf, max_frame) {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                match read.read_buf(&mut buf).await {
                    Ok(0) => break ClientError::Closed(addr.to_string()),
                    Ok(_) => {}
                    Err(e) => break io_error(&addr, e),
                }
                continue;
            }
            Err(e) => break ClientError::Protocol(format!("response frame: {e}")),
        };
        let next = pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front();
        let Some((correlation, header_version, reply)) = next else {
            break ClientError::Protocol("an answer nobody asked for".into());
        };
        match strip_header(frame, correlation, header_version) {
            Ok(body) => {
                let _ = reply.send(Ok(body));
            }
            Err(e) => {
                let _ = reply.send(Err(e.clone()));
                break e;
            }
        }
    };
    tracing::debug!(%addr, %error, "connection ended");
    closed.store(true, Ordering::Release);
    fail_all(&pending, &error);
}

/// Checks the correlation id and skips the response header.
fn strip_header(mut frame: Bytes, correlation: i32, version: i16) -> Result<Bytes, ClientError> {
    if frame.len() < 4 {
        return Err(ClientError::Protocol(
            "response shorter than its header".into(),
        ));
    }
    let got = frame.get_i32();
    if got != correlation {
        return Err(ClientError::Protocol(format!(
            "answer {got} where {correlation} was expected"
        )));
    }
    if version >= 1 {
        skip_tagged_fields(&mut frame)?;
    }
    Ok(frame)
}

fn read_unsigned_varint(buf: &mut Bytes) -> Result<u64, ClientError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        if !buf.has_remaining() {
            return Err(ClientError::Protocol("truncated varint".into()));
        }
        let b = buf.get_u8();
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(ClientError::Protocol("varint too long".into()))
}

fn skip_tagged_fields(buf: &mut Bytes) -> Result<(), ClientError> {
    let count = read_unsigned_varint(buf)?;
    for _ in 0..count {
        let _tag = read_unsigned_varint(buf)?;
        let len = usize::try_from(read_unsigned_varint(buf)?)
            .map_err(|_| ClientError::Protocol("tagged field too long".into()))?;
        if buf.remaining() < len {
            return Err(ClientError::Protocol("truncated tagged field".into()));
        }
        buf.advance(len);
    }
    Ok(())
}
