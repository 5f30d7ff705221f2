//! A `fjord` process in a temp dir on a free port, stopped on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A spawned broker.
#[derive(Debug)]
pub(crate) struct SpawnedBroker {
    child: Child,
    pub(crate) bootstrap: String,
    _dir: tempfile::TempDir,
}

fn fjord_bin() -> PathBuf {
    std::env::var_os("FJORD_BIN")
        .map_or_else(|| PathBuf::from("target/release/fjord"), PathBuf::from)
}

impl SpawnedBroker {
    pub(crate) fn start(settings: &[String]) -> Result<Self> {
        let dir = tempfile::tempdir_in(".").context("temp dir")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let bin = fjord_bin();
        let child = Command::new(&bin)
            // Room for the 1 MiB records of the large-record runs (Kafka's default is
            // 1 MiB including overhead); --broker-set can still override it.
            .arg("--set")
            .arg("message.max.bytes=16777216")
            .arg("--set")
            .arg(format!("listeners=PLAINTEXT://127.0.0.1:{port}"))
            .arg("--set")
            .arg(format!("log.dirs={}", dir.path().display()))
            .args(settings.iter().flat_map(|s| ["--set", s.as_str()]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "start {} (build it with cargo build --release --bin fjord)",
                    bin.display()
                )
            })?;
        let bootstrap = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&bootstrap).is_err() {
            if Instant::now() > deadline {
                bail!("fjord did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            child,
            bootstrap,
            _dir: dir,
        })
    }

    /// CPU seconds the broker process has used so far (user + system).
    pub(crate) fn cpu_seconds(&self) -> f64 {
        crate::limits::process_cpu_seconds(self.child.id())
    }
}

impl Drop for SpawnedBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
