//! Sending a file region to a socket (`fjord.fetch.mode`): spliced with `sendfile` on a
//! non-blocking tokio socket, written from a read-only memory map of the segment, or
//! copied through a buffer.
#![allow(unsafe_code)]

use std::os::fd::AsRawFd;

use fjord_storage::FileRegion;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// Sends `region` from its file to `stream` without copying it through user space.
/// Loops over partial sends; waits for writability on `WouldBlock`. A file that got
/// shorter under us (a truncation) is an error: the response's size promised the bytes.
pub(crate) async fn send_region(stream: &TcpStream, region: &FileRegion) -> std::io::Result<()> {
    let mut offset = libc::off_t::try_from(region.position).map_err(std::io::Error::other)?;
    let mut left = usize::try_from(region.len).map_err(std::io::Error::other)?;
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

/// The most bytes one map covers: bounds how long populating it (reading pages in, on
/// this worker) can take, as [`COPY_CHUNK`] does for copies.
const MMAP_CHUNK: u64 = 4 << 20;

/// Sends `region` by writing straight from read-only maps of its file, at most
/// [`MMAP_CHUNK`] at a time: the page cache is copied once, into the socket, with no
/// buffer in between. Small regions go through [`copy_region`].
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
        // SAFETY: the file stays open for the map's life (the region holds its Arc) and
        // was just checked to cover the range, which is committed log data. Nothing
        // shortens or rewrites committed bytes of a segment while the broker serves
        // fetches: a failed append cuts back only to the committed end; a sealed segment
        // is recovered (and possibly cut) when its metadata is first loaded, before any
        // region into it exists, and that metadata is never dropped; retention unlinks
        // whole files, which keeps mapped pages valid; `Log::truncate_to` is not called
        // by the broker (see its doc). The map is read-only; memmap2 maps it shared, so
        // it sees the page cache as appends left it. A disk error while paging in raises
        // SIGBUS, which is why `auto` never picks this mode.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(start)
                .len(len)
                .populate()
                .map(&*region.file)?
        };
        stream.write_all(&map[skip..]).await?;
        position = piece_end;
    }
    Ok(())
}

/// The most bytes [`copy_region`] reads per `pread`.
const COPY_CHUNK: usize = 1 << 20;

/// Sends `region` by reading it into `buf` (grown to at most 1 MiB and kept for the next
/// call) and writing it. The reads hit the page cache for recent data, as `sendfile`'s do.
pub(crate) async fn copy_region(
    stream: &mut tokio::net::tcp::OwnedWriteHalf,
    region: &FileRegion,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut position = region.position;
    let end = region.position.saturating_add(region.len);
    while position < end {
        let want = usize::try_from(end - position).map_or(COPY_CHUNK, |n| n.min(COPY_CHUNK));
        buf.resize(want, 0);
        let n = region.file.read_at(&mut buf[..want], position)?;
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
