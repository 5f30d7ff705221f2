//! `fjord --log-format json`: every line a JSON object a log collector can take, one line
//! per connection opened and closed, and bad input named with its peer.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use fjord_integration_tests::{fjord, fjord_bin};

#[test]
fn json_logs_are_one_object_per_line_with_connection_events() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(fjord_bin())
        .args(["--log-format", "json", "--set"])
        .arg(format!("log.dirs={}", data.path().display()))
        .args(["--set", "listeners=PLAINTEXT://127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fjord");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines: Vec<String> = Vec::new();
    let address = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("broker starts");
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("json line");
        lines.push(line);
        if parsed["fields"]["message"] == "fjord listening" {
            break parsed["fields"]["address"]
                .as_str()
                .expect("address field")
                .to_string();
        }
    };

    // One well-behaved client, then one that sends garbage.
    let (ok, _, err) = fjord(&["topics", "list", "--bootstrap-server", &address], None);
    assert!(ok, "{err}");
    let mut bad = std::net::TcpStream::connect(&address).expect("connect");
    bad.write_all(&[0, 0, 0, 6, 0x7f, 0x7f, 0, 0, 0, 1])
        .expect("write");
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut bad, &mut sink);
    assert!(sink.is_empty(), "no answer to garbage");

    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    assert!(child.wait().expect("wait").success(), "clean exit");
    reader.join().expect("reader");
    lines.extend(rx.try_iter());

    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for e in &events {
        assert!(
            e["timestamp"].is_string() && e["level"].is_string() && e["target"].is_string(),
            "{e}"
        );
        assert!(e["fields"]["message"].is_string(), "{e}");
    }
    let count = |message: &str| {
        events
            .iter()
            .filter(|e| e["fields"]["message"] == message)
            .count()
    };
    assert_eq!(count("connection opened"), 2, "{lines:#?}");
    assert_eq!(count("connection closed"), 2, "{lines:#?}");
    let refused = events
        .iter()
        .find(|e| e["level"] == "WARN" && e["fields"]["peer"].is_string())
        .unwrap_or_else(|| panic!("no warning about the bad client: {lines:#?}"));
    assert!(
        refused["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("closing connection")),
        "{refused}"
    );
    assert_eq!(count("stopped"), 1, "{lines:#?}");
}
