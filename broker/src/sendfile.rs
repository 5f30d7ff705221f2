//! Sending a file region to a socket: spliced with `sendfile` on a non-blocking tokio
//! socket, or (when `fjord.fetch.sendfile` is off) copied through a buffer.
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
