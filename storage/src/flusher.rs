//! Group commit: one background thread that `fdatasync`s files on request, covering every
//! request queued while the previous sync ran with a single call per file.
//!
//! Under load each sync absorbs many appends, so acks can mean "on disk" while throughput
//! stays near page-cache speed. The sync runs on the flusher's own thread, never on a
//! tokio worker; callers await a [`FlushTicket`].

use std::fs::File;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::error::{Result, StorageError};
use crate::io::Io;

type Reply = std::result::Result<(), Arc<std::io::Error>>;

/// A queued sync: the file, whether it is a directory (synced first in its batch, so a
/// new segment's name is durable before any ack for bytes in it), and who waits.
type Request = (Arc<File>, bool, Option<oneshot::Sender<Reply>>);

#[derive(Debug, Default)]
struct Queue {
    waiting: Vec<Request>,
    stopping: bool,
}

#[derive(Debug)]
struct Shared {
    io: Io,
    /// Set once a directory sync fails: the flusher's log directory can no longer be
    /// trusted to keep new files, so every later sync is answered with this error (as
    /// Kafka takes a failed log directory offline until a restart).
    dir_failure: Mutex<Option<Arc<std::io::Error>>>,
    queue: Mutex<Queue>,
    wake: Condvar,
    syncs: AtomicU64,
    requests: AtomicU64,
}

impl Shared {
    fn with_io(io: Io) -> Self {
        Self {
            io,
            dir_failure: Mutex::new(None),
            queue: Mutex::default(),
            wake: Condvar::new(),
            syncs: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }
}

/// Tells the thread to finish once every handle is gone.
#[derive(Debug)]
struct StopOnDrop(Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stopping = true;
        self.0.wake.notify_all();
    }
}

/// Handle to a group-commit thread. Cheap to clone; the thread drains its queue and exits
/// when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Flusher {
    shared: Arc<Shared>,
    _stop: Arc<StopOnDrop>,
}

impl Flusher {
    /// Starts a flusher thread named `name` (one per log directory is the usual choice).
    pub fn new(name: &str) -> std::io::Result<Self> {
        Self::with_io(name, Io::real())
    }

    /// A flusher whose syncs, and the file operations of every log given it, go
    /// through `io` (a test's fault injector; [`Flusher::new`] uses the OS).
    pub fn with_io(name: &str, io: Io) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::with_io(io));
        let worker = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("flush-{name}"))
            .spawn(move || run(&worker))?;
        Ok(Self {
            _stop: Arc::new(StopOnDrop(Arc::clone(&shared))),
            shared,
        })
    }

    /// Queues an `fdatasync` of `file`; the ticket completes when a sync that started after
    /// this call has finished.
    pub fn request(&self, file: Arc<File>) -> FlushTicket {
        let (tx, rx) = oneshot::channel();
        self.enqueue(file, false, Some(tx));
        FlushTicket { rx }
    }

    /// Queues an `fsync` of directory `dir` (after creating a file in it). It runs
    /// before the file syncs of its batch, and every later request lands in the same
    /// batch or a later one: a ticket for bytes in the new file completes only after the
    /// directory entry is durable.
    pub fn request_dir(&self, dir: Arc<File>) -> FlushTicket {
        let (tx, rx) = oneshot::channel();
        self.enqueue(dir, true, Some(tx));
        FlushTicket { rx }
    }

    /// Queues an `fdatasync` of `file` that nobody waits for.
    pub fn request_detached(&self, file: Arc<File>) {
        self.enqueue(file, false, None);
    }

    fn enqueue(&self, file: Arc<File>, dir: bool, reply: Option<oneshot::Sender<Reply>>) {
        self.shared.requests.fetch_add(1, Ordering::Relaxed);
        self.shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .waiting
            .push((file, dir, reply));
        self.shared.wake.notify_one();
    }

    /// The file-system seam this flusher and its logs use.
    pub fn io(&self) -> &Io {
        &self.shared.io
    }

    /// `fdatasync` calls made so far (fewer than requests when group commit works).
    pub fn syncs(&self) -> u64 {
        self.shared.syncs.load(Ordering::Relaxed)
    }

    /// Flush requests received so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }
}

fn run(shared: &Shared) {
    loop {
        let batch = {
            let mut queue = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
            while queue.waiting.is_empty() && !queue.stopping {
                queue = shared
                    .wake
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if queue.waiting.is_empty() {
                return;
            }
            std::mem::take(&mut queue.waiting)
        };
        sync_batch(shared, batch);
    }
}

/// Directories first, then each file's requests together.
fn sync_order(batch: &mut [Request]) {
    batch.sort_by_key(|(file, dir, _)| (!*dir, Arc::as_ptr(file) as usize));
}

/// Syncs each distinct file of `batch` once and answers every waiter.
fn sync_batch(shared: &Shared, mut batch: Vec<Request>) {
    sync_order(&mut batch);
    let mut i = 0;
    while i < batch.len() {
        let file = Arc::clone(&batch[i].0);
        let is_dir = batch[i].1;
        let result = shared.io.sync(&file, is_dir);
        let result = result.map_err(Arc::new);
        shared.syncs.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = &result {
            tracing::error!(error = %e, directory = is_dir, "fsync failed");
        }
        let mut failed_dir = shared
            .dir_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let (true, Err(e)) = (is_dir, &result) {
            // A new segment's name may not survive a crash: no sync after this one,
            // in this batch (directories come first) or later, may report success.
            failed_dir.get_or_insert_with(|| Arc::clone(e));
        }
        let result = match &*failed_dir {
            Some(e) if result.is_ok() => Err(Arc::clone(e)),
            _ => result,
        };
        drop(failed_dir);
        while i < batch.len() && Arc::ptr_eq(&batch[i].0, &file) {
            if let Some(reply) = batch[i].2.take() {
                // The waiter may have given up; that is not the flusher's concern.
                let _ = reply.send(result.clone());
            }
            i += 1;
        }
    }
}

/// Completes when the bytes of the append it came with are on disk.
///
/// Await it from async code; [`FlushTicket::wait`] blocks and is for threads outside a
/// runtime.
#[derive(Debug)]
pub struct FlushTicket {
    rx: oneshot::Receiver<Reply>,
}

impl FlushTicket {
    /// The outcome if the flush has finished, `None` while it runs. After it returns
    /// `Some`, the ticket is spent: do not await or wait on it.
    pub fn try_result(&mut self) -> Option<Result<()>> {
        match self.rx.try_recv() {
            Err(oneshot::error::TryRecvError::Empty) => None,
            Ok(reply) => Some(reply.map_err(StorageError::Flush)),
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(StorageError::FlusherStopped)),
        }
    }

    /// Blocks the calling thread until the flush is done. Must not be called from inside an
    /// async runtime.
    pub fn wait(self) -> Result<()> {
        match self.rx.blocking_recv() {
            Ok(reply) => reply.map_err(StorageError::Flush),
            Err(_) => Err(StorageError::FlusherStopped),
        }
    }
}

impl Future for FlushTicket {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| match r {
            Ok(reply) => reply.map_err(StorageError::Flush),
            Err(_) => Err(StorageError::FlusherStopped),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sync_per_file_covers_every_waiter() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Arc::new(File::create(dir.path().join("a")).expect("create"));
        let b = Arc::new(File::create(dir.path().join("b")).expect("create"));
        let shared = Shared::with_io(Io::real());
        let mut batch = Vec::new();
        let mut receivers = Vec::new();
        for i in 0..200 {
            let (tx, rx) = oneshot::channel();
            let file = if i % 3 == 0 { &a } else { &b };
            batch.push((Arc::clone(file), false, Some(tx)));
            receivers.push(FlushTicket { rx });
        }
        sync_batch(&shared, batch);
        assert_eq!(shared.syncs.load(Ordering::Relaxed), 2);
        for t in receivers {
            t.wait().expect("flushed");
        }
    }

    #[test]
    fn tickets_complete_through_the_thread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = Arc::new(File::create(dir.path().join("f")).expect("create"));
        let flusher = Flusher::new("test").expect("flusher");
        let tickets: Vec<_> = (0..50)
            .map(|_| flusher.request(Arc::clone(&file)))
            .collect();
        for t in tickets {
            t.wait().expect("flushed");
        }
        assert_eq!(flusher.requests(), 50);
        assert!((1..=50).contains(&flusher.syncs()));
    }

    #[test]
    fn directories_sync_before_the_files_queued_with_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = Arc::new(File::create(dir.path().join("f")).expect("create"));
        let d = Arc::new(File::open(dir.path()).expect("open dir"));
        let mut batch: Vec<Request> = vec![
            (Arc::clone(&file), false, None),
            (Arc::clone(&d), true, None),
            (Arc::clone(&file), false, None),
        ];
        sync_order(&mut batch);
        assert!(batch[0].1 && Arc::ptr_eq(&batch[0].0, &d));
        let flusher = Flusher::new("test").expect("flusher");
        flusher.request_dir(d).wait().expect("dir synced");
    }

    #[tokio::test]
    async fn tickets_are_awaitable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = Arc::new(File::create(dir.path().join("f")).expect("create"));
        let flusher = Flusher::new("test").expect("flusher");
        flusher.request(file).await.expect("flushed");
        assert_eq!(flusher.syncs(), 1);
    }

    #[test]
    fn a_failed_directory_sync_fails_every_sync_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fault = Arc::new(crate::fault::FaultIo::new());
        let io = Io::new(fault.clone());
        let file = Arc::new(
            io.open(&dir.path().join("f"), crate::io::OpenMode::ReadWrite)
                .expect("file"),
        );
        let d = Arc::new(io.open(dir.path(), crate::io::OpenMode::Read).expect("dir"));
        let shared = Shared::with_io(io);
        fault.fail_exact(crate::fault::Op::Sync, dir.path(), libc::EIO, true);
        // One batch: the directory (synced first) fails, so the file's sync, which
        // succeeds on its own, must not be reported as durable.
        let (dir_tx, dir_rx) = oneshot::channel();
        let (file_tx, file_rx) = oneshot::channel();
        sync_batch(
            &shared,
            vec![
                (Arc::clone(&file), false, Some(file_tx)),
                (Arc::clone(&d), true, Some(dir_tx)),
            ],
        );
        assert!(FlushTicket { rx: dir_rx }.wait().is_err());
        assert!(FlushTicket { rx: file_rx }.wait().is_err());
        // Nor any later one, though the disk answers again.
        let (tx, rx) = oneshot::channel();
        sync_batch(&shared, vec![(file, false, Some(tx))]);
        assert!(FlushTicket { rx }.wait().is_err());
    }
}
