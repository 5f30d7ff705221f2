//! What this machine can do, measured in the same run as the workload: loopback TCP
//! throughput with large buffers, sequential file writes (with and without fdatasync),
//! and a cached file sent to a socket.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use anyhow::Result;

/// Loopback TCP throughput in bytes/s: one thread writes 1 MiB chunks, another reads.
pub(crate) fn loopback_bytes_per_sec(total: u64) -> Result<f64> {
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
    let mut s = TcpStream::connect(addr)?;
    let chunk = vec![7u8; 1 << 20];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        s.write_all(&chunk)?;
        sent += chunk.len() as u64;
    }
    drop(s);
    let got = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))??;
    Ok(got as f64 / start.elapsed().as_secs_f64())
}

/// CPU seconds (user + system) of process `pid` from /proc.
pub(crate) fn process_cpu_seconds(pid: u32) -> f64 {
    stat_ticks(pid, [11, 12]) / 100.0
}

/// CPU seconds (user + system) of the finished children process `pid` has waited for:
/// the Java client tools the bench runs, and what they ran.
pub(crate) fn children_cpu_seconds(pid: u32) -> f64 {
    stat_ticks(pid, [13, 14]) / 100.0
}

/// The sum of two clock-tick fields of `/proc/PID/stat`, counted after the command name
/// (0 is the state field; 11 and 12 are utime and stime, 13 and 14 cutime and cstime).
fn stat_ticks(pid: u32, at: [usize; 2]) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    at.iter().map(|&i| ticks(i)).sum()
}

/// Bytes/s of sequential 1 MiB `write`s to a new file in the working directory (the page
/// cache, as the broker appends), or with an `fdatasync` after each write when `sync`.
pub(crate) fn file_write_bytes_per_sec(total: u64, sync: bool) -> Result<f64> {
    let mut file = tempfile::tempfile_in(".")?;
    let chunk = vec![7u8; 1 << 20];
    let start = Instant::now();
    let mut written = 0u64;
    while written < total {
        file.write_all(&chunk)?;
        if sync {
            file.sync_data()?;
        }
        written += chunk.len() as u64;
    }
    Ok(written as f64 / start.elapsed().as_secs_f64())
}

/// Every limit, printed (`fjord-bench limits`).
pub(crate) fn print_all(json: bool) -> Result<()> {
    let loopback = loopback_bytes_per_sec(4 << 30)?;
    let write = file_write_bytes_per_sec(2 << 30, false)?;
    let write_sync = file_write_bytes_per_sec(256 << 20, true)?;
    let (sendfile, copy, mapped) = file_to_socket_limits()?;
    if json {
        println!(
            "{{\"loopback_mb_per_sec\":{:.1},\"file_write_mb_per_sec\":{:.1},\"file_write_fdatasync_mb_per_sec\":{:.1},\"sendfile_mb_per_sec\":{:.1},\"pread_write_mb_per_sec\":{:.1},\"mmap_write_mb_per_sec\":{:.1}}}",
            loopback / 1e6,
            write / 1e6,
            write_sync / 1e6,
            sendfile / 1e6,
            copy / 1e6,
            mapped / 1e6
        );
        return Ok(());
    }
    println!(
        "loopback TCP (1 MiB writes):                  {:>8.0} MB/s",
        loopback / 1e6
    );
    println!(
        "sequential file write, page cache (1 MiB):     {:>8.0} MB/s",
        write / 1e6
    );
    println!(
        "sequential file write + fdatasync per MiB:     {:>8.0} MB/s",
        write_sync / 1e6
    );
    println!(
        "sendfile, cached file to loopback (1 MiB):     {:>8.0} MB/s",
        sendfile / 1e6
    );
    println!(
        "pread+write, cached file to loopback (1 MiB):  {:>8.0} MB/s",
        copy / 1e6
    );
    println!(
        "write from mmap, cached file to loopback:      {:>8.0} MB/s",
        mapped / 1e6
    );
    Ok(())
}

/// Bytes/s of sending a page-cached file to a loopback socket in each of the ways a fetch
/// can (`fjord.fetch.mode`): `sendfile`, `pread`+`write`, and `write` from a memory map.
pub(crate) fn file_to_socket_limits() -> Result<(f64, f64, f64)> {
    let sendfile = crate::sendfile_limit::sendfile_bytes_per_sec(1 << 30, 2, 1 << 20)?;
    let copy = crate::sendfile_limit::read_write_bytes_per_sec(1 << 30, 2, 1 << 20)?;
    let mapped = crate::sendfile_limit::mapped_write_bytes_per_sec(1 << 30, 2, 1 << 20)?;
    Ok((sendfile, copy, mapped))
}
