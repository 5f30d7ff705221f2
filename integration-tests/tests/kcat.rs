//! kcat, the CLI most people try first, on Debian's librdkafka 2.0.2 (an old client: its
//! ApiVersions and Fetch choices differ from the rdkafka crate's 2.12). scripts/test
//! installs it; the test fails, not skips, when it is missing.

use std::io::Write;
use std::process::{Command, Stdio};

use fjord_integration_tests::BrokerProcess;

fn kcat(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("kcat")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kcat is installed (scripts/test installs it)");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("kcat ran");
    assert!(
        out.status.success(),
        "kcat {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

#[test]
fn kcat_produces_consumes_and_lists() {
    let broker = BrokerProcess::start(&[]);
    let b = broker.bootstrap.as_str();
    let lines: Vec<String> = (0..500).map(|i| format!("line {i}")).collect();
    let input = lines.join("\n") + "\n";
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("kcat-{codec}");
        kcat(
            &["-P", "-b", b, "-t", &topic, "-p", "0", "-z", codec],
            Some(&input),
        );
        let out = kcat(
            &[
                "-C",
                "-b",
                b,
                "-t",
                &topic,
                "-p",
                "0",
                "-o",
                "beginning",
                "-e",
                "-q",
            ],
            None,
        );
        assert_eq!(out.lines().collect::<Vec<_>>(), lines, "{codec}");
    }
    // Keys and offsets, as kcat's format string prints them.
    kcat(
        &["-P", "-b", b, "-t", "keyed", "-K", ":"],
        Some("a:1\nb:2\n"),
    );
    let out = kcat(
        &[
            "-C",
            "-b",
            b,
            "-t",
            "keyed",
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%k=%s@%o\n",
        ],
        None,
    );
    assert_eq!(out, "a=1@0\nb=2@1\n");
    // Starting from the end minus one.
    let out = kcat(
        &["-C", "-b", b, "-t", "keyed", "-o", "-1", "-e", "-q"],
        None,
    );
    assert_eq!(out, "2\n");
    let listing = kcat(&["-L", "-b", b], None);
    assert!(
        listing.contains("topic \"kcat-zstd\" with 1 partitions"),
        "{listing}"
    );
    assert!(listing.contains("broker 1 at 127.0.0.1"), "{listing}");
}
