//! Idempotent producers: librdkafka with enable.idempotence, and raw Produce requests
//! replaying the same batch (a retry) and skipping a sequence (a gap).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use fjord_integration_tests::{fjord, BrokerProcess};
use fjord_protocol::compression::Compression;
use fjord_protocol::record_batch::{BatchBuilder, RecordSpec};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

fn produce_v3(s: &mut TcpStream, correlation: i32, topic: &str, batch: &[u8]) -> (i16, i64) {
    let mut body = Vec::new();
    body.extend_from_slice(&(-1i16).to_be_bytes()); // transactional id
    body.extend_from_slice(&(-1i16).to_be_bytes()); // acks
    body.extend_from_slice(&5000i32.to_be_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&(topic.len() as i16).to_be_bytes());
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&0i32.to_be_bytes());
    body.extend_from_slice(&(batch.len() as i32).to_be_bytes());
    body.extend_from_slice(batch);
    let mut req = Vec::new();
    req.extend_from_slice(&0i16.to_be_bytes());
    req.extend_from_slice(&3i16.to_be_bytes());
    req.extend_from_slice(&correlation.to_be_bytes());
    req.extend_from_slice(&(-1i16).to_be_bytes());
    req.extend_from_slice(&body);
    s.write_all(&(req.len() as i32).to_be_bytes())
        .expect("send");
    s.write_all(&req).expect("send");
    let mut size = [0u8; 4];
    s.read_exact(&mut size).expect("size");
    let mut resp = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut resp).expect("body");
    // correlation, topics[1], name, partitions[1], index, error, base_offset
    let at = 4 + 4 + 2 + topic.len() + 4 + 4;
    let error = i16::from_be_bytes([resp[at], resp[at + 1]]);
    let mut off = [0u8; 8];
    off.copy_from_slice(&resp[at + 2..at + 10]);
    (error, i64::from_be_bytes(off))
}

/// Creates `topic` with `fjord topics create`: a Produce never creates a topic itself
/// (it queues an auto-creation and answers UNKNOWN_TOPIC_OR_PARTITION, as Kafka does).
fn create(broker: &BrokerProcess, topic: &str) {
    let (ok, _, err) = fjord(
        &[
            "topics",
            "create",
            "--topic",
            topic,
            "--bootstrap-server",
            &broker.bootstrap,
        ],
        None,
    );
    assert!(ok, "{err}");
}

fn batch(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new(Compression::None, 1_000).with_producer(pid, epoch, seq);
    for i in 0..n {
        b.push(RecordSpec::value(format!("r{i}")));
    }
    b.build().expect("batch")
}

#[test]
fn retried_batches_are_acknowledged_once_and_gaps_rejected() {
    let broker = BrokerProcess::start(&[]);
    let t = "idem";
    create(&broker, t);
    let mut s = TcpStream::connect(&broker.bootstrap).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    assert_eq!(produce_v3(&mut s, 1, t, &batch(7, 0, 0, 3)), (0, 0));
    assert_eq!(produce_v3(&mut s, 2, t, &batch(7, 0, 3, 2)), (0, 3));
    // The first batch again (a retry after a lost response): same offset, nothing added.
    assert_eq!(produce_v3(&mut s, 3, t, &batch(7, 0, 0, 3)), (0, 0));
    // A gap: sequence 9 when 5 is next.
    assert_eq!(
        produce_v3(&mut s, 4, t, &batch(7, 0, 9, 1)).0,
        45,
        "OUT_OF_ORDER_SEQUENCE_NUMBER"
    );
    assert_eq!(produce_v3(&mut s, 5, t, &batch(7, 0, 5, 1)), (0, 5));
    // An older epoch after a newer one.
    assert_eq!(produce_v3(&mut s, 6, t, &batch(7, 1, 0, 1)), (0, 6));
    assert_eq!(
        produce_v3(&mut s, 7, t, &batch(7, 0, 6, 1)).0,
        47,
        "INVALID_PRODUCER_EPOCH"
    );
    // A plain (non-idempotent) batch is always appended.
    assert_eq!(produce_v3(&mut s, 8, t, &batch(-1, -1, -1, 1)), (0, 7));
}

#[test]
fn duplicate_detection_survives_a_restart() {
    let mut broker = BrokerProcess::start(&[]);
    let keep = broker.take_data_dir().expect("data dir");
    let port = broker.port();
    create(&broker, "idem");
    let mut s = TcpStream::connect(&broker.bootstrap).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    assert_eq!(produce_v3(&mut s, 1, "idem", &batch(9, 0, 0, 4)), (0, 0));
    broker.kill();
    let broker = BrokerProcess::start_in(keep.path(), port, &[]);
    let mut s = TcpStream::connect(&broker.bootstrap).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    assert_eq!(
        produce_v3(&mut s, 1, "idem", &batch(9, 0, 0, 4)),
        (0, 0),
        "duplicate after restart"
    );
    assert_eq!(produce_v3(&mut s, 2, "idem", &batch(9, 0, 4, 1)), (0, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_idempotent_producer_delivers_in_order() {
    let broker = BrokerProcess::start(&[]);
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("enable.idempotence", "true")
        .set("compression.type", "zstd")
        .set("linger.ms", "2")
        .create()
        .expect("producer");
    let mut pending = Vec::new();
    for i in 0..2000 {
        let value = format!("v{i}");
        pending.push(
            p.send_result(
                FutureRecord::<str, str>::to("idem-rd")
                    .partition(0)
                    .payload(&value),
            )
            .expect("queue"),
        );
    }
    for (i, d) in pending.into_iter().enumerate() {
        assert_eq!(d.await.expect("delivered").expect("acked").offset, i as i64);
    }
}
