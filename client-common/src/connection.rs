//! One TCP connection to one broker, shared by any number of tasks: requests are written in
//! the order they are submitted and answered in that order (Kafka's per-connection rule),
//! so many can be in flight at once. Two tasks own the socket halves; callers hold a
//! cheap handle and await their own answer.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use fjord_protocol::block_crc::{BlockCrcBuilder, BlockCrcs, BLOCK};
use fjord_protocol::frame::decode_frame;
use fjord_protocol::kafka_protocol::messages::api_versions_request::ApiVersionsRequest;
use fjord_protocol::kafka_protocol::messages::{ApiKey, RequestHeader};
use fjord_protocol::kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Request, StrBytes,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::error::ClientError;

/// A response body, with the CRCs of its blocks when the request asked for them.
#[derive(Debug)]
struct Answer {
    body: Bytes,
    crcs: Option<BlockCrcs>,
}

type Reply = oneshot::Sender<Result<Answer, ClientError>>;

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
    /// Whether the reader checksums the answer in blocks as it arrives (fetches).
    block_crcs: bool,
}

/// A request written and not answered yet.
struct Awaited {
    correlation: i32,
    response_header_version: i16,
    block_crcs: bool,
    reply: Reply,
}

/// Answers awaited, in the order their requests were written.
type Pending = Arc<Mutex<VecDeque<Awaited>>>;

/// The most bytes one socket read takes: bytes checksummed right after the read are
/// still in the CPU cache.
const READ_CHUNK: usize = 256 << 10;

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

    /// [`Connection::request`] for answers whose record batches the caller checks: the
    /// reader also checksums the answer in blocks while each block is in the CPU cache,
    /// and [`BlockCrcs::crc32c`] then gives a batch's CRC without reading it all again.
    pub async fn request_with_block_crcs<R: Request>(
        &self,
        req: &R,
        version: i16,
    ) -> Result<(R::Response, BlockCrcs), ClientError> {
        let Answer { mut body, crcs } = self.answer(req, version, true).await?;
        let response = R::Response::decode(&mut body, version)
            .map_err(|e| ClientError::Protocol(format!("decode response {}: {e}", R::KEY)))?;
        // The reader always builds them when asked; none would mean direct checks.
        let crcs = crcs.unwrap_or_else(|| BlockCrcBuilder::default().finish(Bytes::new()));
        Ok((response, crcs))
    }

    /// Sends `req` and returns the response body undecoded (for callers that parse it
    /// themselves, such as a fetch that keeps record bytes zero-copy).
    pub async fn request_bytes<R: Request>(
        &self,
        req: &R,
        version: i16,
    ) -> Result<Bytes, ClientError> {
        Ok(self.answer(req, version, false).await?.body)
    }

    /// Queues `req` and waits (up to the request timeout) for its answer.
    async fn answer<R: Request>(
        &self,
        req: &R,
        version: i16,
        block_crcs: bool,
    ) -> Result<Answer, ClientError> {
        let frame = encode_frame(req, version, &self.options.client_id)?;
        let (tx, rx) = oneshot::channel();
        let outgoing = Outgoing {
            frame,
            tail: Vec::new(),
            response_header_version: R::Response::header_version(version),
            reply: Some(tx),
            block_crcs,
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
            block_crcs: false,
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
            block_crcs: false,
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
            block_crcs: false,
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
    rx: oneshot::Receiver<Result<Answer, ClientError>>,
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
            Ok(Ok(result)) => result?.body,
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

/// Marks the connection closed and fails every request awaiting an answer. Both under
/// the pending lock: the writer checks `closed` under it before queueing a request, so
/// none can be queued after this ran (it would wait out its timeout for an answer
/// that cannot come).
fn close_and_fail_all(pending: &Pending, closed: &AtomicBool, error: &ClientError) {
    let drained: Vec<_> = {
        let mut queue = pending.lock().unwrap_or_else(PoisonError::into_inner);
        closed.store(true, Ordering::Release);
        queue.drain(..).collect()
    };
    for awaited in drained {
        let _ = awaited.reply.send(Err(error.clone()));
    }
}

/// Fails `out` and every request still queued for the writer: the connection is
/// closed.
async fn refuse_rest(addr: &str, out: Option<Outgoing>, rx: &mut mpsc::Receiver<Outgoing>) {
    if let Some(reply) = out.and_then(|o| o.reply) {
        let _ = reply.send(Err(ClientError::Closed(addr.to_string())));
    }
    rx.close();
    while let Some(out) = rx.recv().await {
        if let Some(reply) = out.reply {
            let _ = reply.send(Err(ClientError::Closed(addr.to_string())));
        }
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
            // Queued before the bytes leave, so the reader always finds it; not at all
            // once the reader has ended (a write to a socket the peer closed may still
            // succeed, and no answer would ever come).
            let mut queue = pending.lock().unwrap_or_else(PoisonError::into_inner);
            if closed.load(Ordering::Acquire) {
                drop(queue);
                let _ = reply.send(Err(ClientError::Closed(addr.to_string())));
                return refuse_rest(&addr, None, &mut rx).await;
            }
            queue.push_back(Awaited {
                correlation,
                response_header_version: out.response_header_version,
                block_crcs: out.block_crcs,
                reply,
            });
        } else if closed.load(Ordering::Acquire) {
            return refuse_rest(&addr, Some(out), &mut rx).await;
        }
        if let Err(e) = write_all_parts(&mut write, &out.frame, &out.tail).await {
            tracing::debug!(%addr, error = %e, "write failed");
            close_and_fail_all(&pending, &closed, &io_error(&addr, e));
            return refuse_rest(&addr, None, &mut rx).await;
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
    mut read: impl AsyncRead + Unpin,
    pending: Pending,
    closed: Arc<AtomicBool>,
    max_frame: usize,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // Block CRCs of the frame at the front of `buf`, when its request asked for them.
    let mut building: Option<BlockCrcBuilder> = None;
    let error = loop {
        let frame = match decode_frame(&mut buf, max_frame) {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                match read.read_buf(&mut (&mut buf).limit(READ_CHUNK)).await {
                    Ok(0) => break ClientError::Closed(addr.to_string()),
                    Ok(_) => {}
                    Err(e) => break io_error(&addr, e),
                }
                checksum_blocks(&buf, &pending, &mut building);
                continue;
            }
            Err(e) => break ClientError::Protocol(format!("response frame: {e}")),
        };
        let next = pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front();
        let Some(awaited) = next else {
            break ClientError::Protocol("an answer nobody asked for".into());
        };
        // Whatever was built belongs to this frame and goes with it; a frame that came
        // whole with an earlier read has no builder yet, and `finish` checksums it all.
        let builder = building.take();
        let crcs = awaited
            .block_crcs
            .then(|| builder.unwrap_or_default().finish(frame.clone()));
        match strip_header(frame, awaited.correlation, awaited.response_header_version) {
            Ok(body) => {
                let _ = awaited.reply.send(Ok(Answer { body, crcs }));
            }
            Err(e) => {
                let _ = awaited.reply.send(Err(e.clone()));
                break e;
            }
        }
    };
    tracing::debug!(%addr, %error, "connection ended");
    close_and_fail_all(&pending, &closed, &error);
}

/// Checksums the whole blocks that just arrived of the frame at the front of `buf`, if
/// the request it answers asked for block CRCs.
fn checksum_blocks(buf: &BytesMut, pending: &Pending, building: &mut Option<BlockCrcBuilder>) {
    let Some(size) = buf.get(..4) else {
        return;
    };
    if buf.len() < 4 + BLOCK {
        return; // no whole block yet
    }
    if building.is_none() {
        let wanted = pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .front()
            .is_some_and(|a| a.block_crcs);
        if !wanted {
            return;
        }
    }
    // The size may be unchecked yet (it can have arrived with this read): bad sizes are
    // refused by the next decode_frame, and this only bounds what is checksummed.
    let len = usize::try_from(u32::from_be_bytes([size[0], size[1], size[2], size[3]]))
        .unwrap_or(usize::MAX);
    let body = &buf[4..buf.len().min(len.saturating_add(4))];
    building
        .get_or_insert_with(BlockCrcBuilder::default)
        .update(body);
}

/// Checks the correlation id and skips the response header (its layout is the
/// protocol crate's).
fn strip_header(frame: Bytes, correlation: i32, version: i16) -> Result<Bytes, ClientError> {
    let (got, body) = fjord_protocol::response_header::parse_response_header(frame, version)
        .map_err(|e| ClientError::Protocol(format!("response header: {e}")))?;
    if got != correlation {
        return Err(ClientError::Protocol(format!(
            "answer {got} where {correlation} was expected"
        )));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    /// The queue holding one request that wants block CRCs or not.
    fn awaiting(block_crcs: bool) -> Pending {
        let (reply, _) = oneshot::channel();
        let pending: Pending = Arc::default();
        pending.lock().expect("lock").push_back(Awaited {
            correlation: 1,
            response_header_version: 0,
            block_crcs,
            reply,
        });
        pending
    }

    #[test]
    fn blocks_are_checksummed_as_they_arrive_not_when_the_frame_is_whole() {
        let body = noise(3 * BLOCK + 5, 3);
        let mut wire = BytesMut::new();
        wire.put_i32(body.len() as i32 + 1000); // more is still to come
        wire.extend_from_slice(&body);
        let pending = awaiting(true);
        let mut building = None;
        for (arrived, blocks) in [(3, None), (4 + BLOCK - 1, None), (4 + BLOCK, Some(1))] {
            checksum_blocks(&BytesMut::from(&wire[..arrived]), &pending, &mut building);
            assert_eq!(building.as_ref().map(BlockCrcBuilder::blocks), blocks);
        }
        checksum_blocks(&wire, &pending, &mut building);
        assert_eq!(building.as_ref().map(BlockCrcBuilder::blocks), Some(3));
        // Blocks of the frame body, which starts after the size.
        let frame = Bytes::from(body.clone());
        let crcs = building.take().expect("built").finish(frame.clone());
        assert_eq!(
            crcs.crc32c(&frame[7..3 * BLOCK]),
            fjord_protocol::crc::crc32c(&body[7..3 * BLOCK])
        );

        // An answer that did not ask gets nothing built.
        checksum_blocks(&wire, &awaiting(false), &mut building);
        assert!(building.is_none());
    }

    #[tokio::test]
    async fn block_crcs_go_with_the_answers_that_asked_for_them_across_uneven_reads() {
        // A fetch-sized answer, a small one that did not ask, and another large one.
        let bodies = [noise(300_000, 1), vec![1, 2, 3], noise(100_003, 2)];
        let wants = [true, false, true];
        let pending: Pending = Arc::default();
        let mut replies = Vec::new();
        for (i, wants) in wants.into_iter().enumerate() {
            let (tx, rx) = oneshot::channel();
            pending.lock().expect("lock").push_back(Awaited {
                correlation: i as i32 + 1,
                response_header_version: 0,
                block_crcs: wants,
                reply: tx,
            });
            replies.push(rx);
        }
        let mut wire = Vec::new();
        for (i, body) in bodies.iter().enumerate() {
            wire.extend((body.len() as i32 + 4).to_be_bytes());
            wire.extend((i as i32 + 1).to_be_bytes());
            wire.extend(body);
        }
        let (mut server, client) = tokio::io::duplex(64 << 10);
        let reader = tokio::spawn(read_loop(
            Arc::from("test"),
            client,
            Arc::clone(&pending),
            Arc::new(AtomicBool::new(false)),
            1 << 20,
        ));
        let mut at = 0;
        for step in [3, 5000, 17, 40_000, 70_001, 1].into_iter().cycle() {
            if at == wire.len() {
                break;
            }
            let end = (at + step).min(wire.len());
            server.write_all(&wire[at..end]).await.expect("write");
            at = end;
        }
        for ((reply, body), wants) in replies.into_iter().zip(&bodies).zip(wants) {
            let answer = reply.await.expect("answered").expect("ok");
            assert_eq!(answer.body[..], body[..]);
            let Some(crcs) = answer.crcs else {
                assert!(!wants, "block CRCs were asked for");
                continue;
            };
            assert!(wants, "block CRCs nobody asked for");
            // The frame body is the correlation id and then the answer.
            assert_eq!(crcs.blocks(), (body.len() + 4) / BLOCK);
            for (from, to) in [
                (0, body.len()),
                (21, body.len() - 1),
                (BLOCK, 5 * BLOCK + 3),
            ] {
                assert_eq!(
                    crcs.crc32c(&answer.body[from..to]),
                    fjord_protocol::crc::crc32c(&body[from..to]),
                    "{from}..{to}"
                );
            }
        }
        drop(server);
        reader.await.expect("reader ends");
    }
}
