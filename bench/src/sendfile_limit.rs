//! The machine's file-to-socket limits: a page-cached file sent to a loopback socket the
//! ways a fetch can (`sendfile`, `pread`+`write`, `write` from a memory map), without a
//! broker in between.
#![allow(unsafe_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Instant;

use anyhow::{Context, Result};

/// A reader thread that drains a loopback connection in 1 MiB reads; returns the
/// connected writer side and the thread, which yields the byte count at EOF.
fn drained_socket() -> Result<(TcpStream, std::thread::JoinHandle<std::io::Result<u64>>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0u64;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok(got);
            }
            got += n as u64;
        }
    });
    Ok((TcpStream::connect(addr)?, reader))
}

/// A file of `size` bytes in the page cache.
fn cached_file(size: u64) -> Result<std::fs::File> {
    let mut file = tempfile::tempfile_in(".").context("temp file")?;
    let chunk = vec![7u8; 1 << 20];
    let mut written = 0;
    while written < size {
        file.write_all(&chunk)?;
        written += chunk.len() as u64;
    }
    Ok(file)
}

/// Bytes/s of `sendfile` from a page-cached file of `file_size` bytes to a loopback
/// socket, `rounds` times over, `chunk` bytes per call.
pub(crate) fn sendfile_bytes_per_sec(file_size: u64, rounds: u32, chunk: usize) -> Result<f64> {
    let file = cached_file(file_size)?;
    let (socket, reader) = drained_socket()?;
    let start = Instant::now();
    for _ in 0..rounds {
        let mut offset: libc::off_t = 0;
        let end = libc::off_t::try_from(file_size)?;
        while offset < end {
            let left = usize::try_from(end - offset)?.min(chunk);
            // SAFETY: both descriptors are open for the call; `offset` points to a local;
            // the kernel reads at most `left` bytes of the file and touches no user memory.
            let n =
                unsafe { libc::sendfile(socket.as_raw_fd(), file.as_raw_fd(), &mut offset, left) };
            if n <= 0 {
                return Err(std::io::Error::last_os_error()).context("sendfile");
            }
        }
    }
    drop(socket);
    let got = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))??;
    Ok(got as f64 / start.elapsed().as_secs_f64())
}

/// Bytes/s of the copying alternative to [`sendfile_bytes_per_sec`]: `pread` into a
/// `chunk`-byte buffer, then `write`.
pub(crate) fn read_write_bytes_per_sec(file_size: u64, rounds: u32, chunk: usize) -> Result<f64> {
    use std::os::unix::fs::FileExt;
    let file = cached_file(file_size)?;
    let (mut socket, reader) = drained_socket()?;
    let mut buf = vec![0u8; chunk];
    let start = Instant::now();
    for _ in 0..rounds {
        let mut offset = 0u64;
        while offset < file_size {
            let n = file.read_at(&mut buf, offset)?;
            socket.write_all(&buf[..n])?;
            offset += n as u64;
        }
    }
    drop(socket);
    let got = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))??;
    Ok(got as f64 / start.elapsed().as_secs_f64())
}

/// Bytes/s of `write` straight from a read-only memory map of the file (what a fetch does
/// with `fjord.fetch.mode=mmap`), `chunk` bytes per call.
pub(crate) fn mapped_write_bytes_per_sec(file_size: u64, rounds: u32, chunk: usize) -> Result<f64> {
    let file = cached_file(file_size)?;
    let len = usize::try_from(file_size)?;
    // SAFETY: the file is a private temp file of exactly `len` bytes, open for the map's
    // life, and nothing truncates it; the map is read-only.
    let map = unsafe { memmap2::MmapOptions::new().len(len).map(&file)? };
    let (mut socket, reader) = drained_socket()?;
    let start = Instant::now();
    for _ in 0..rounds {
        for piece in map.chunks(chunk) {
            socket.write_all(piece)?;
        }
    }
    drop(socket);
    let got = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))??;
    Ok(got as f64 / start.elapsed().as_secs_f64())
}
