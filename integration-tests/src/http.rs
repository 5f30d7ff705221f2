//! A minimal HTTP client for tests: the broker's metrics endpoint and a schema
//! registry's REST API. HTTP/1.0, so every server answers without chunked encoding and
//! closes the connection after the response.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// `method path` with an optional JSON body to the HTTP server at `addr`: the status
/// code and the body. Panics (a test failure) when the server is unreachable or the
/// answer is not HTTP.
pub fn request(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if let Some(body) = body {
        req.push_str(&format!(
            "Content-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    s.write_all(req.as_bytes()).expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    let (head, body) = out
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {out}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status code in {head}"));
    (status, body.to_string())
}
