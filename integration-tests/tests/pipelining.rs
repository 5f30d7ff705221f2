//! Requests sent back to back on one connection are answered in order, also when the
//! per-connection byte budget is far smaller than what was sent.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use fjord_integration_tests::BrokerProcess;

fn api_versions(correlation: i32) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(&18i16.to_be_bytes());
    r.extend_from_slice(&0i16.to_be_bytes());
    r.extend_from_slice(&correlation.to_be_bytes());
    r.extend_from_slice(&(-1i16).to_be_bytes());
    let mut framed = (r.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&r);
    framed
}

fn pipeline(broker: &BrokerProcess, n: i32) {
    let mut s = TcpStream::connect(&broker.bootstrap).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let all: Vec<u8> = (0..n).flat_map(api_versions).collect();
    let mut writer = s.try_clone().expect("clone");
    let sender = std::thread::spawn(move || writer.write_all(&all).expect("send all"));
    for expected in 0..n {
        let mut size = [0u8; 4];
        s.read_exact(&mut size).expect("size");
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        s.read_exact(&mut body).expect("body");
        assert_eq!(
            i32::from_be_bytes([body[0], body[1], body[2], body[3]]),
            expected
        );
    }
    sender.join().expect("sender");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let broker = BrokerProcess::start(&[]);
    pipeline(&broker, 2000);
}

#[test]
fn a_tiny_byte_budget_slows_reading_but_loses_nothing() {
    let broker = BrokerProcess::start(&["queued.max.request.bytes=64"]);
    pipeline(&broker, 500);
}
