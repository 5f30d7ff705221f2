//! A live progress line on stderr (records, MB/s, elapsed, ETA), only on a terminal and
//! never with `--json`.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts records as a workload goes; prints while alive.
#[derive(Debug)]
pub(crate) struct Progress {
    pub(crate) done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    pub(crate) fn start(what: &str, total: u64, record_size: usize, quiet: bool) -> Self {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let (done, stop, what) = (Arc::clone(&done), Arc::clone(&stop), what.to_string());
            std::thread::spawn(move || {
                let start = Instant::now();
                while !stop.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(250));
                    let n = done.load(Ordering::Relaxed);
                    let secs = start.elapsed().as_secs_f64().max(1e-9);
                    let rate = n as f64 / secs;
                    let eta = if rate > 0.0 { (total.saturating_sub(n)) as f64 / rate } else { 0.0 };
                    eprint!(
                        "\r{what}: {n}/{total} records, {:.1} MB/s, {secs:.1} s elapsed, ETA {eta:.1} s   ",
                        rate * record_size as f64 / 1e6
                    );
                    let _ = std::io::stderr().flush();
                }
                eprint!("\r{}\r", " ".repeat(100));
            })
        });
        Self { done, stop, thread }
    }

    pub(crate) fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
