//! Splicing a file region into a socket with `sendfile`, on a non-blocking tokio socket.
#![allow(unsafe_code)]

use std::os::fd::AsRawFd;

use fjord_storage::FileRegion;
use tokio::io::Interest;
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
