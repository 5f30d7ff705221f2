//! Sending a file region to a socket (`fjord.fetch.mode`): spliced with `sendfile` on a
//! non-blocking tokio socket, written from a read-only memory map of the segment, or
//! copied through a buffer.
#![allow(unsafe_code)]

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use fjord_storage::FileRegion;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// The most bytes [`send_region`] hands one `sendfile` call, and the unit in which it
/// checks the page cache first.
const SENDFILE_CHUNK: u64 = 1 << 20;

/// Sends `region` from its file to `stream` without copying it through user space.
/// `sendfile` reads the file inside the call, on this reactor thread, so each chunk whose
/// ends are not in the page cache (a consumer catching up from disk) is read into it on
/// the blocking pool first, through `scratch` (the connection's copy buffer). Loops over
/// partial sends; waits for writability on `WouldBlock`. A file that got shorter under us
/// (a truncation) is an error: the response's size promised the bytes.
pub(crate) async fn send_region(
    stream: &TcpStream,
    region: &FileRegion,
    scratch: &mut Vec<u8>,
) -> std::io::Result<()> {
    let end = region
        .position
        .checked_add(region.len)
        .filter(|end| i64::try_from(*end).is_ok())
        .ok_or_else(|| std::io::Error::other("region past the largest file offset"))?;
    let mut position = region.position;
    while position < end {
        let chunk_end = end.min(position + SENDFILE_CHUNK);
        warm(region, position, chunk_end, scratch).await?;
        let len = usize::try_from(chunk_end - position).map_err(std::io::Error::other)?;
        send_chunk(stream, region, position, len).await?;
        position = chunk_end;
    }
    Ok(())
}

/// Reads `from..to` of the region's file into the page cache on the blocking pool if its
/// first or last byte is not there, so that `sendfile` finds it in memory.
async fn warm(
    region: &FileRegion,
    from: u64,
    to: u64,
    scratch: &mut Vec<u8>,
) -> std::io::Result<()> {
    let mut byte = [0u8; 1];
    let page = rustix::param::page_size() as u64;
    let mut cold = read_cached(region, &mut byte, from)? == NoWaitRead::NeedsDisk;
    let last = to - 1;
    if !cold && last / page != from / page {
        cold = read_cached(region, &mut byte, last)? == NoWaitRead::NeedsDisk;
    }
    if cold {
        let want = usize::try_from(to - from).map_err(std::io::Error::other)?;
        scratch.resize(want, 0);
        read_on_pool(region, scratch, want, from).await?;
    }
    Ok(())
}

/// `sendfile` of `len` bytes of the region's file from `position`.
async fn send_chunk(
    stream: &TcpStream,
    region: &FileRegion,
    position: u64,
    len: usize,
) -> std::io::Result<()> {
    let mut offset = libc::off_t::try_from(position).map_err(std::io::Error::other)?;
    let mut left = len;
    let file_fd = region.file.as_raw_fd();
    while left > 0 {
        stream.writable().await?;
        let sent = stream.try_io(Interest::WRITABLE, || {
            // SAFETY: both descriptors are open for the duration of the call (the stream is
            // borrowed, the file is kept alive by the region's Arc); `offset` is a valid
            // pointer to a local; the kernel writes at most `left` bytes from the file and
            // updates `offset`, touching no user memory otherwise.
            let n = unsafe { libc::sendfile(stream.as_raw_fd(), file_fd, &mut offset, left) };
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match sent {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "segment shorter than the region",
                ))
            }
            Ok(n) => left -= n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Regions smaller than this are copied rather than mapped: a map costs two system calls
/// and page-table work that a small `pread` does not.
const MMAP_MIN: u64 = 64 << 10;

/// The most bytes one map covers.
const MMAP_CHUNK: u64 = 4 << 20;

/// Sends `region` by writing straight from read-only maps of its file, at most
/// [`MMAP_CHUNK`] at a time: the page cache is copied once, into the socket, with no
/// buffer in between. Small regions go through [`copy_region`]. As with `sendfile`, each
/// 1 MiB whose first or last byte is not in the page cache is read into it on the
/// blocking pool first (through `buf`), so populating the map seldom waits for the disk
/// on this reactor thread. Populating reports a page the disk cannot deliver as an
/// error, which fails the response; only a page evicted after that, and unreadable when
/// the copy faults it in again, raises SIGBUS.
pub(crate) async fn write_mapped_region(
    stream: &mut tokio::net::tcp::OwnedWriteHalf,
    region: &FileRegion,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    if region.len < MMAP_MIN {
        return copy_region(stream, region, buf).await;
    }
    let page = rustix::param::page_size() as u64;
    let end = region.position.saturating_add(region.len);
    if region.file.metadata()?.len() < end {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "segment shorter than the region",
        ));
    }
    let mut position = region.position;
    while position < end {
        let piece_end = end.min(position + MMAP_CHUNK);
        let start = position - position % page;
        let skip = usize::try_from(position - start).map_err(std::io::Error::other)?;
        let len = usize::try_from(piece_end - start).map_err(std::io::Error::other)?;
        let mut warmed = position;
        while warmed < piece_end {
            let to = piece_end.min(warmed + SENDFILE_CHUNK);
            warm(region, warmed, to, buf).await?;
            warmed = to;
        }
        // SAFETY: the file stays open for the map's life (the region holds its Arc) and
        // was just checked to cover the range, which is committed log data. Nothing
        // shortens or rewrites committed bytes of a segment while the broker serves
        // fetches: a failed append cuts back only to the committed end; a sealed segment
        // is recovered (and possibly cut) when its metadata is first loaded, before any
        // region into it exists, and that metadata is never dropped; retention unlinks
        // whole files, which keeps mapped pages valid; and a segment refuses
        // `Log::truncate_to` (RegionsInUse) while any region read from it, this one
        // included, is alive. The map is read-only; memmap2 maps it shared, so
        // it sees the page cache as appends left it. `populate` below faults every page
        // in and reports a page that cannot be read as an error; a page evicted after
        // that and unreadable when the copy faults it in again raises SIGBUS, which is
        // why `auto` never picks this mode.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(start)
                .len(len)
                .map(&*region.file)?
        };
        populate(&map)?;
        stream.write_all(&map[skip..]).await?;
        position = piece_end;
    }
    Ok(())
}

/// The most bytes [`copy_region`] reads per `pread`.
const COPY_CHUNK: usize = 1 << 20;

/// Sends `region` by reading it into `buf` (grown to at most 1 MiB and kept for the next
/// call) and writing it. Recent data is read right here from the page cache; what is not
/// cached (a consumer catching up from disk) is read on the blocking pool, so a disk
/// wait never stalls this reactor thread.
pub(crate) async fn copy_region(
    stream: &mut tokio::net::tcp::OwnedWriteHalf,
    region: &FileRegion,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    let mut position = region.position;
    let end = region.position.saturating_add(region.len);
    while position < end {
        let want = usize::try_from(end - position).map_or(COPY_CHUNK, |n| n.min(COPY_CHUNK));
        buf.resize(want, 0);
        let n = read_chunk(region, buf, want, position).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "segment shorter than the region",
            ));
        }
        stream.write_all(&buf[..n]).await?;
        position += n as u64;
    }
    Ok(())
}

/// What a read that must not wait for the disk found.
#[derive(Debug, PartialEq, Eq)]
enum NoWaitRead {
    /// This many bytes were in the page cache and are in the buffer (0 at the file's end).
    Read(usize),
    /// The first bytes need the disk (or a lock an append holds, on some file systems).
    NeedsDisk,
    /// The file system cannot read without waiting (no `RWF_NOWAIT`).
    Unknown,
}

/// Set once the kernel refused `MADV_POPULATE_READ` (before Linux 5.14).
static POPULATE_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// Faults in every page of `map` (`MADV_POPULATE_READ`), so that the copy from it finds
/// them in memory, and so that a page the disk cannot deliver is an error here, where
/// touching it would raise SIGBUS. Kernels without it leave the pages to fault in
/// during the copy.
fn populate(map: &memmap2::Mmap) -> std::io::Result<()> {
    if POPULATE_UNSUPPORTED.load(Ordering::Relaxed) {
        return Ok(());
    }
    match map.advise(memmap2::Advice::PopulateRead) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            if !POPULATE_UNSUPPORTED.swap(true, Ordering::Relaxed) {
                tracing::warn!("the kernel cannot populate maps with error reporting (MADV_POPULATE_READ, Linux 5.14); mmap-mode fetches fault pages in as they copy, and an unreadable page raises SIGBUS");
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Set once a file system refused `RWF_NOWAIT`: later reads skip the probe.
static NOWAIT_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// Reads what the page cache holds at `position` without waiting for the disk
/// (`RWF_NOWAIT`).
fn read_cached(region: &FileRegion, buf: &mut [u8], position: u64) -> std::io::Result<NoWaitRead> {
    use rustix::io::{preadv2, Errno, ReadWriteFlags};
    if NOWAIT_UNSUPPORTED.load(Ordering::Relaxed) {
        return Ok(NoWaitRead::Unknown);
    }
    let mut slices = [std::io::IoSliceMut::new(buf)];
    match preadv2(&*region.file, &mut slices, position, ReadWriteFlags::NOWAIT) {
        Ok(n) => Ok(NoWaitRead::Read(n)),
        Err(Errno::AGAIN) => Ok(NoWaitRead::NeedsDisk),
        Err(Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => {
            if !NOWAIT_UNSUPPORTED.swap(true, Ordering::Relaxed) {
                tracing::info!("the file system cannot read without waiting (RWF_NOWAIT); fetches read from disk in place, on the reactor thread");
            }
            Ok(NoWaitRead::Unknown)
        }
        Err(e) => Err(e.into()),
    }
}

/// Reads `want` bytes of `region` at `position` into `buf` without stalling the reactor
/// on the disk: in place from the page cache when it holds them, on the blocking pool
/// when it does not.
async fn read_chunk(
    region: &FileRegion,
    buf: &mut Vec<u8>,
    want: usize,
    position: u64,
) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    match read_cached(region, &mut buf[..want], position)? {
        NoWaitRead::Read(n) => Ok(n),
        NoWaitRead::Unknown => region.file.read_at(&mut buf[..want], position),
        NoWaitRead::NeedsDisk => read_on_pool(region, buf, want, position).await,
    }
}

/// A plain `pread` of `want` bytes into `buf`, on the blocking pool.
async fn read_on_pool(
    region: &FileRegion,
    buf: &mut Vec<u8>,
    want: usize,
    position: u64,
) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    #[cfg(test)]
    tests::OFF_REACTOR_READS.fetch_add(1, Ordering::Relaxed);
    let file = std::sync::Arc::clone(&region.file);
    let mut owned = std::mem::take(buf);
    let (read, owned) = tokio::task::spawn_blocking(move || {
        let read = file.read_at(&mut owned[..want], position);
        (read, owned)
    })
    .await
    .map_err(std::io::Error::other)?;
    *buf = owned;
    read
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::num::NonZeroU64;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    use tokio::io::AsyncReadExt;

    use super::*;

    /// Reads [`read_on_pool`] made.
    pub(super) static OFF_REACTOR_READS: AtomicUsize = AtomicUsize::new(0);

    /// Held by each test that counts [`OFF_REACTOR_READS`], so that they run one at a time.
    static COUNTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// A clean (synced) file of `len` patterned bytes next to the test binary, in the
    /// build directory: a disk-backed file system there, where /tmp may be tmpfs (whose
    /// pages `DONTNEED` cannot drop).
    fn synced_file(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let exe = std::env::current_exe().expect("test binary");
        let dir = exe.parent().expect("its directory");
        let mut file = tempfile::NamedTempFile::new_in(dir).expect("file");
        file.write_all(&data).expect("write");
        file.as_file().sync_all().expect("sync");
        (file, data)
    }

    /// A region of a synced 3 MiB file from byte `from` to its end, with the file's pages
    /// dropped (checked: a read of it now needs the disk), and the file's bytes. Keep the
    /// temp file alive while the region is used.
    fn uncached_region(from: u64) -> (tempfile::NamedTempFile, FileRegion, Vec<u8>) {
        let (file, data) = synced_file(3 << 20);
        let region = FileRegion::new(
            Arc::new(file.reopen().expect("reopen")),
            from,
            data.len() as u64 - from,
            0,
        );
        rustix::fs::fadvise(
            &*region.file,
            0,
            NonZeroU64::new(0),
            rustix::fs::Advice::DontNeed,
        )
        .expect("fadvise");
        let mut probe = [0u8; 1];
        assert_eq!(
            read_cached(&region, &mut probe, from).expect("probe"),
            NoWaitRead::NeedsDisk,
            "needs a disk-backed file system with RWF_NOWAIT (ext4, xfs, btrfs)"
        );
        (file, region, data)
    }

    /// A loopback pair: the accepted side and the connecting side.
    async fn pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let client = tokio::net::TcpStream::connect(listener.local_addr().expect("addr"));
        let (client, accepted) = tokio::join!(client, listener.accept());
        (accepted.expect("accept").0, client.expect("connect"))
    }

    /// Everything the other end of a fresh loopback pair reads while `send` writes to it.
    async fn through_socket<F>(send: impl FnOnce(tokio::net::TcpStream) -> F) -> Vec<u8>
    where
        F: std::future::Future<Output = std::io::Result<()>>,
    {
        let (server, mut client) = pair().await;
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            client.read_to_end(&mut all).await.map(|_| all)
        });
        send(server).await.expect("send");
        reader.await.expect("task").expect("read")
    }

    /// What `copy_region` of `region` delivers.
    async fn copied(region: &FileRegion) -> Vec<u8> {
        through_socket(|server| async move {
            let (_, mut write) = server.into_split();
            copy_region(&mut write, region, &mut Vec::new()).await
        })
        .await
    }

    /// What `write_mapped_region` of `region` delivers.
    async fn mapped(region: &FileRegion) -> Vec<u8> {
        through_socket(|server| async move {
            let (_, mut write) = server.into_split();
            write_mapped_region(&mut write, region, &mut Vec::new()).await
        })
        .await
    }

    /// What `send_region` of `region` delivers.
    async fn sendfiled(region: &FileRegion) -> Vec<u8> {
        through_socket(|server| async move { send_region(&server, region, &mut Vec::new()).await })
            .await
    }

    /// What `send` delivered, and how many reads it made on the blocking pool.
    async fn with_pool_reads(send: impl std::future::Future<Output = Vec<u8>>) -> (Vec<u8>, usize) {
        let before = OFF_REACTOR_READS.load(Ordering::Relaxed);
        let sent = send.await;
        (sent, OFF_REACTOR_READS.load(Ordering::Relaxed) - before)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn uncached_bytes_are_read_off_the_reactor_and_sent_whole() {
        let _counting = COUNTING.lock().await;
        let (_file, region, data) = uncached_region(1000);
        let (sent, pooled) = with_pool_reads(copied(&region)).await;
        assert!(sent == data[1000..], "the bytes of the region, in order");
        assert!(pooled >= 1, "uncached chunks go to the blocking pool");

        // The copy left the pages cached: now the reads need no disk and stay in place.
        let mut probe = vec![0u8; 4096];
        assert_eq!(
            read_cached(&region, &mut probe, 1000).expect("probe"),
            NoWaitRead::Read(4096)
        );
        assert_eq!(probe[..], data[1000..1000 + 4096]);
        let (sent, pooled) = with_pool_reads(copied(&region)).await;
        assert!(sent == data[1000..]);
        assert_eq!(pooled, 0, "all cached");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sendfile_reads_uncached_chunks_into_the_cache_off_the_reactor_first() {
        let _counting = COUNTING.lock().await;
        let (_file, region, data) = uncached_region(10);
        let (sent, pooled) = with_pool_reads(sendfiled(&region)).await;
        assert!(sent == data[10..]);
        // At least the first chunk; the kernel's readahead may bring in later ones.
        assert!(pooled >= 1, "uncached chunks are warmed on the pool");

        // Cached now: straight to sendfile.
        let (sent, pooled) = with_pool_reads(sendfiled(&region)).await;
        assert!(sent == data[10..]);
        assert_eq!(pooled, 0, "all cached");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mapped_writes_read_uncached_pieces_into_the_cache_off_the_reactor_first() {
        let _counting = COUNTING.lock().await;
        let (_file, region, data) = uncached_region(4099);
        let (sent, pooled) = with_pool_reads(mapped(&region)).await;
        assert!(sent == data[4099..]);
        assert!(pooled >= 1, "uncached pieces are warmed on the pool");

        let (sent, pooled) = with_pool_reads(mapped(&region)).await;
        assert!(sent == data[4099..]);
        assert_eq!(pooled, 0, "all cached");
    }

    #[test]
    fn populating_a_page_that_cannot_be_read_is_an_error_not_a_sigbus() {
        let (file, _) = synced_file(4096);
        // SAFETY: the map covers two pages of a one-page file; the test never touches its
        // bytes, and the second page is exactly what must not raise SIGBUS in populate.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .len(8192)
                .map(file.as_file())
                .expect("map")
        };
        assert!(
            populate(&map).is_err(),
            "a page past the end of the file (needs MADV_POPULATE_READ, Linux 5.14)"
        );
        // SAFETY: as above, one page, inside the file.
        let inside = unsafe {
            memmap2::MmapOptions::new()
                .len(4096)
                .map(file.as_file())
                .expect("map")
        };
        populate(&inside).expect("a readable page");
        assert_eq!(inside[4095], (4095 % 251) as u8);
    }
}
