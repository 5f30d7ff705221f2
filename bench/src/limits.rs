//! What this machine can do, measured in the same run as the workload: loopback TCP
//! throughput with large buffers, and a cached file sent to a socket.

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
    (ticks(11) + ticks(12)) / 100.0
}

pub(crate) fn print_all() -> Result<()> {
    let bps = loopback_bytes_per_sec(4 << 30)?;
    println!("loopback TCP (1 MiB writes): {:.0} MB/s", bps / 1e6);
    let (sendfile, copy) = file_to_socket_limits()?;
    println!(
        "sendfile, cached file to loopback (1 MiB calls): {:.0} MB/s",
        sendfile / 1e6
    );
    println!(
        "pread+write, cached file to loopback (1 MiB calls): {:.0} MB/s",
        copy / 1e6
    );
    Ok(())
}

/// Bytes/s of sending a page-cached file to a loopback socket: with `sendfile` (what a
/// fetch does) and with `pread`+`write` (what it does with `fjord.fetch.sendfile=false`).
pub(crate) fn file_to_socket_limits() -> Result<(f64, f64)> {
    let sendfile = crate::sendfile_limit::sendfile_bytes_per_sec(1 << 30, 2, 1 << 20)?;
    let copy = crate::sendfile_limit::read_write_bytes_per_sec(1 << 30, 2, 1 << 20)?;
    Ok((sendfile, copy))
}
