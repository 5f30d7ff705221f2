//! Raw-socket checks against the real broker: protocol traps, garbage, and shutdown.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use fjord_integration_tests::BrokerProcess;

fn connect(b: &BrokerProcess) -> TcpStream {
    let s = TcpStream::connect(&b.bootstrap).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

fn request(api_key: i16, version: i16, correlation: i32, body: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(&api_key.to_be_bytes());
    r.extend_from_slice(&version.to_be_bytes());
    r.extend_from_slice(&correlation.to_be_bytes());
    r.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    r.extend_from_slice(body);
    let mut framed = (r.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&r);
    framed
}

fn response(s: &mut TcpStream) -> Vec<u8> {
    let mut size = [0u8; 4];
    s.read_exact(&mut size).expect("response size");
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut body).expect("response body");
    body
}

fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

/// ApiVersions v0 round trip: the broker is alive and answering.
fn alive(b: &BrokerProcess) {
    let mut s = connect(b);
    s.write_all(&request(18, 0, 42, &[])).expect("send");
    let body = response(&mut s);
    assert_eq!(&body[..6], &[0, 0, 0, 42, 0, 0]);
}

#[test]
fn unknown_api_versions_version_gets_a_v0_answer_with_unsupported_version() {
    let broker = BrokerProcess::start(&[]);
    let mut s = connect(&broker);
    // Flexible header v2 of a future ApiVersions: client id, then an empty tag buffer.
    s.write_all(&request(18, 99, 7, &[0])).expect("send");
    let body = response(&mut s);
    assert_eq!(i32::from_be_bytes([body[0], body[1], body[2], body[3]]), 7);
    assert_eq!(
        i16::from_be_bytes([body[4], body[5]]),
        35,
        "UNSUPPORTED_VERSION"
    );
    let count = i32::from_be_bytes([body[6], body[7], body[8], body[9]]);
    let keys: Vec<i16> = (0..count as usize)
        .map(|i| i16::from_be_bytes([body[10 + 6 * i], body[11 + 6 * i]]))
        .collect();
    assert!(
        keys.contains(&18) && keys.contains(&0) && keys.contains(&1),
        "{keys:?}"
    );
}

#[test]
fn garbage_closes_that_connection_only() {
    let broker = BrokerProcess::start(&[]);
    // Unknown API key.
    let mut s = connect(&broker);
    s.write_all(&request(999, 0, 1, &[])).expect("send");
    assert!(closed(&mut s));
    // A size prefix over socket.request.max.bytes.
    let mut s = connect(&broker);
    s.write_all(&0x7fff_ffffi32.to_be_bytes()).expect("send");
    assert!(closed(&mut s));
    // A negative size.
    let mut s = connect(&broker);
    s.write_all(&(-5i32).to_be_bytes()).expect("send");
    assert!(closed(&mut s));
    // Metadata v1 whose topic array claims 2^31-1 entries in 4 bytes.
    let mut s = connect(&broker);
    s.write_all(&request(3, 1, 1, &0x7fff_ffffi32.to_be_bytes()))
        .expect("send");
    assert!(closed(&mut s));
    // A truncated header.
    let mut s = connect(&broker);
    s.write_all(&[0, 0, 0, 3, 0, 18, 0]).expect("send");
    assert!(closed(&mut s));
    alive(&broker);
}

#[test]
fn sigterm_stops_cleanly_and_writes_clean_shutdown_markers() {
    let mut broker = BrokerProcess::start(&[]);
    let keep = broker.take_data_dir().expect("data dir");
    // Produce one batch through the auto-created topic via Metadata (v1 allows creation).
    let mut s = connect(&broker);
    let mut body = 1i32.to_be_bytes().to_vec();
    body.extend_from_slice(&(5i16).to_be_bytes());
    body.extend_from_slice(b"clean");
    s.write_all(&request(3, 1, 1, &body)).expect("metadata");
    let _ = response(&mut s);
    drop(s);
    assert!(broker.terminate(), "fjord exits 0 on SIGTERM");
    let marker = keep.path().join("clean-0").join(".clean-shutdown");
    assert!(marker.exists(), "clean-shutdown marker written");
}
