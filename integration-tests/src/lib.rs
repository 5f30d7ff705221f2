//! Helpers for the end-to-end tests in `tests/`: start the real `fjord` binary as a
//! process on a free port with its own data directory, and stop it.

pub mod http;
pub mod metrics;
pub mod producers;
pub mod reading;
pub mod topics;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port free right now (the OS picks it; another process could take it
/// before the caller binds it, so only for processes that cannot report their own).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Path of the `fjord` binary: `FJORD_BIN`, else next to the test executable's `deps/`.
pub fn fjord_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FJORD_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let bin = dir.join("fjord");
    assert!(
        bin.exists(),
        "{} not built: run `cargo build --bin fjord` first (scripts/test does)",
        bin.display()
    );
    bin
}

/// Runs the `fjord` tool with `args` and `stdin`; returns (success, stdout, stderr).
pub fn fjord(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(fjord_bin())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fjord runs");
    if let Some(input) = stdin {
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), input.as_bytes())
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("fjord finished");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Creates `name` with `partitions` partitions through librdkafka's admin client,
/// failing the test if the broker refuses.
pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin");
    let r = admin
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create");
    assert!(r.iter().all(Result::is_ok), "{r:?}");
}

/// A running broker process, killed on drop.
#[derive(Debug)]
pub struct BrokerProcess {
    child: Child,
    /// `127.0.0.1:PORT` to bootstrap from.
    pub bootstrap: String,
    /// Its data directory.
    pub data: PathBuf,
    /// Every line it has logged so far.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _tmp: Option<tempfile::TempDir>,
}

impl BrokerProcess {
    /// Starts a broker on a port of its own choosing (port 0, read back from its log:
    /// no window in which another process can take it) with a fresh data directory and
    /// extra `--set`s.
    pub fn start(sets: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().to_path_buf();
        let mut b = Self::start_in(&data, 0, sets);
        b._tmp = Some(tmp);
        b
    }

    /// Starts a broker on `port` (0: any free port) over an existing data directory.
    pub fn start_in(data: &Path, port: u16, sets: &[&str]) -> Self {
        Self::start_limited(data, port, sets, None)
    }

    /// As [`Self::start_in`], with the process's open-file limit (`ulimit -n`) set to
    /// `fd_limit` when given.
    pub fn start_limited(data: &Path, port: u16, sets: &[&str], fd_limit: Option<u32>) -> Self {
        let mut cmd = match fd_limit {
            None => Command::new(fjord_bin()),
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(fjord_bin());
                sh
            }
        };
        cmd.arg("--set")
            .arg(format!("listeners=PLAINTEXT://127.0.0.1:{port}"));
        cmd.arg("--set").arg(format!("log.dirs={}", data.display()));
        for s in sets {
            cmd.arg("--set").arg(s);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn fjord");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = std::sync::Arc::clone(&log);
        // Find the bound address in the log, then keep echoing the log for failing tests.
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(addr) = line.split("address=").nth(1) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(
                            addr.split_whitespace()
                                .next()
                                .unwrap_or_default()
                                .to_string(),
                        );
                    }
                }
                eprintln!("[fjord] {line}");
                kept.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let bootstrap = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("fjord reported its listening address");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&bootstrap).is_err() {
            assert!(
                Instant::now() < deadline,
                "fjord did not start listening on {bootstrap}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            bootstrap,
            data: data.to_path_buf(),
            log,
            _tmp: None,
        }
    }

    /// The lines it has logged so far that contain `text`.
    pub fn log_lines_with(&self, text: &str) -> Vec<String> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter().filter(|l| l.contains(text)).cloned().collect()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.bootstrap
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }

    /// Keeps the data directory alive after this process handle is gone.
    pub fn take_data_dir(&mut self) -> Option<tempfile::TempDir> {
        self._tmp.take()
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
