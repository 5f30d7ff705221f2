//! The broker under test: a `fjord` process in a temp dir on a free port, Apache Kafka's
//! broker started by `bench/peers/kafka.sh`, or one already running (`--bootstrap`, with
//! `--broker-pid` to measure it). Spawned ones are stopped on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How the broker process came to be, and so how it is stopped.
#[derive(Debug)]
enum Process {
    /// A `fjord` child of this process.
    Fjord(Child),
    /// Kafka's broker, started (and stopped) by the peer script.
    Kafka { pid: u32 },
    /// Someone else's; never stopped here.
    External(Option<u32>),
}

/// A broker to run workloads against.
#[derive(Debug)]
pub(crate) struct Broker {
    process: Process,
    pub(crate) bootstrap: String,
    /// `fjord`, `kafka`, or `external`.
    pub(crate) name: &'static str,
    /// A spawned broker's temp dir (removed on drop).
    dir: Option<tempfile::TempDir>,
}

fn fjord_bin() -> PathBuf {
    std::env::var_os("FJORD_BIN")
        .map_or_else(|| PathBuf::from("target/release/fjord"), PathBuf::from)
}

/// `bench/peers/kafka.sh` (or `$FJORD_KAFKA_PEER`).
pub(crate) fn kafka_peer_script() -> PathBuf {
    std::env::var_os("FJORD_KAFKA_PEER").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/peers/kafka.sh")),
        PathBuf::from,
    )
}

/// Settings both brokers get, by Kafka's names: room for the 1 MiB records of the
/// large-record runs (Kafka's default `message.max.bytes` is 1 MiB including overhead).
/// `--broker-set` values come after them and win.
const COMMON_SETTINGS: &[&str] = &["message.max.bytes=16777216"];

impl Broker {
    /// The broker the options name: `--spawn-peer kafka`, `--spawn-broker`, or
    /// `--bootstrap` (with `--broker-pid`).
    pub(crate) fn for_options(o: &crate::options::Options) -> Result<Self> {
        match (o.spawn_peer.as_deref(), o.spawn_broker, &o.bootstrap) {
            (Some("kafka"), _, _) => Self::spawn_kafka(&o.broker_settings),
            (Some(other), _, _) => bail!("--spawn-peer {other}: the peer is kafka"),
            (None, true, _) => Self::spawn_fjord(&o.broker_settings),
            (None, false, Some(bootstrap)) => Ok(Self::external(bootstrap.clone(), o.broker_pid)),
            (None, false, None) => bail!("give --bootstrap, --spawn-broker or --spawn-peer kafka"),
        }
    }

    /// Starts `target/release/fjord` (or `$FJORD_BIN`) with `settings` (`key=value`).
    pub(crate) fn spawn_fjord(settings: &[String]) -> Result<Self> {
        let dir = tempfile::tempdir_in(".").context("temp dir")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let bin = fjord_bin();
        let child = Command::new(&bin)
            .args(COMMON_SETTINGS.iter().flat_map(|s| ["--set", s]))
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
        let broker = Self {
            process: Process::Fjord(child),
            bootstrap,
            name: "fjord",
            dir: Some(dir),
        };
        broker.await_port(Duration::from_secs(20))?;
        Ok(broker)
    }

    /// Starts Apache Kafka's broker with the peer script, in a temp dir, with `settings`.
    pub(crate) fn spawn_kafka(settings: &[String]) -> Result<Self> {
        let dir = tempfile::tempdir_in(".").context("temp dir")?;
        let script = kafka_peer_script();
        let out = Command::new(&script)
            .arg("start")
            .arg("--dir")
            .arg(dir.path())
            .args(COMMON_SETTINGS.iter().flat_map(|s| ["--set", s]))
            .args(settings.iter().flat_map(|s| ["--set", s.as_str()]))
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("run {}", script.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!("{} start failed: {stdout}", script.display());
        }
        let field = |key: &str| {
            stdout
                .split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .map(str::to_string)
        };
        let (Some(pid), Some(bootstrap)) = (
            field("pid=").and_then(|p| p.parse().ok()),
            field("bootstrap="),
        ) else {
            // It started but said something else: stop it by the pid file it keeps.
            let _ = Command::new(&script)
                .arg("stop")
                .arg("--dir")
                .arg(dir.path())
                .status();
            bail!(
                "{} start printed no pid= and bootstrap=: '{stdout}'",
                script.display()
            );
        };
        let broker = Self {
            process: Process::Kafka { pid },
            bootstrap,
            name: "kafka",
            dir: Some(dir),
        };
        broker.await_port(Duration::from_secs(20))?;
        Ok(broker)
    }

    /// Where a spawned broker keeps its partitions' directories (`log.dirs`).
    pub(crate) fn log_dir(&self) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?.path();
        Some(match self.process {
            Process::Kafka { .. } => dir.join("data"),
            _ => dir.to_path_buf(),
        })
    }

    /// A broker someone else runs, measured if its `pid` is given.
    pub(crate) fn external(bootstrap: String, pid: Option<u32>) -> Self {
        Self {
            process: Process::External(pid),
            bootstrap,
            name: "external",
            dir: None,
        }
    }

    fn await_port(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while std::net::TcpStream::connect(&self.bootstrap).is_err() {
            if Instant::now() > deadline {
                bail!("{} did not open {}", self.name, self.bootstrap);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The broker's process ID, when known.
    pub(crate) fn pid(&self) -> Option<u32> {
        match &self.process {
            Process::Fjord(child) => Some(child.id()),
            Process::Kafka { pid } => Some(*pid),
            Process::External(pid) => *pid,
        }
    }

    /// CPU seconds the broker process has used so far (user + system).
    pub(crate) fn cpu_seconds(&self) -> Option<f64> {
        self.pid().map(crate::limits::process_cpu_seconds)
    }

    /// The broker's peak resident set so far, in bytes (`VmHWM`).
    pub(crate) fn peak_rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        peak_rss_of_status(&status)
    }
}

/// `VmHWM` of a `/proc/PID/status` text, in bytes.
fn peak_rss_of_status(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl Drop for Broker {
    fn drop(&mut self) {
        match &mut self.process {
            Process::Fjord(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Process::Kafka { pid } => {
                let _ = Command::new(kafka_peer_script())
                    .arg("stop")
                    .arg(pid.to_string())
                    .status();
            }
            Process::External(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_rss_is_read_from_vmhwm_in_kib() {
        let status = "Name:\tfjord\nVmPeak:\t  999 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(peak_rss_of_status(status), Some(2048 * 1024));
        assert_eq!(peak_rss_of_status("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_has_a_peak_rss() {
        let me = Broker::external("127.0.0.1:1".into(), Some(std::process::id()));
        assert!(me.peak_rss_bytes().is_some_and(|b| b > 1 << 20));
        assert!(me.cpu_seconds().is_some());
    }
}
