//! Helpers for the end-to-end tests in `tests/`: start the real `fjord` binary as a
//! process on a free port with its own data directory, and stop it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// A running broker process, killed on drop.
#[derive(Debug)]
pub struct BrokerProcess {
    child: Child,
    /// `127.0.0.1:PORT` to bootstrap from.
    pub bootstrap: String,
    /// Its data directory.
    pub data: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl BrokerProcess {
    /// Starts a broker on a free port with a fresh data directory and extra `--set`s.
    pub fn start(sets: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().to_path_buf();
        let mut b = Self::start_in(&data, free_port(), sets);
        b._tmp = Some(tmp);
        b
    }

    /// Starts a broker on `port` over an existing data directory.
    pub fn start_in(data: &Path, port: u16, sets: &[&str]) -> Self {
        let mut cmd = Command::new(fjord_bin());
        cmd.arg("--set")
            .arg(format!("listeners=PLAINTEXT://127.0.0.1:{port}"));
        cmd.arg("--set").arg(format!("log.dirs={}", data.display()));
        for s in sets {
            cmd.arg("--set").arg(s);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
        let child = cmd.spawn().expect("spawn fjord");
        let bootstrap = format!("127.0.0.1:{port}");
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
            _tmp: None,
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.bootstrap
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
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
