//! The broker's Prometheus endpoint: scraped before and after traffic, the counters
//! move by what was sent; /health answers; a transaction shows while open (LSO lag) and
//! is counted with its duration once committed.

use std::time::Duration;

use fjord_integration_tests::metrics::{free_metrics_listener, http_get, sample};
use fjord_integration_tests::BrokerProcess;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

/// A broker serving /metrics on a free port, and that port's address.
fn broker_with_metrics() -> (BrokerProcess, String) {
    let (set, addr) = free_metrics_listener();
    (BrokerProcess::start(&[&set]), addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_traffic() {
    let (broker, addr) = broker_with_metrics();
    let (status, body) = http_get(&addr, "/health");
    assert_eq!(status, 200);
    assert_eq!(body.trim(), "ok");
    let (_, before) = http_get(&addr, "/metrics");
    assert_eq!(
        sample(&before, "fjord_topic_records_in_total{topic=\"seen\"}"),
        None
    );

    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for i in 0..10 {
        p.send(
            FutureRecord::<(), String>::to("seen").payload(&format!("value-{i}")),
            Duration::from_secs(10),
        )
        .await
        .expect("delivered");
    }
    let (status, after) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(
        sample(&after, "fjord_topic_records_in_total{topic=\"seen\"}"),
        Some(10.0),
        "{after}"
    );
    let bytes = sample(&after, "fjord_topic_bytes_in_total{topic=\"seen\"}").expect("bytes in");
    assert!(bytes > 70.0, "{bytes}");
    assert_eq!(
        sample(&after, "fjord_log_size_bytes{topic=\"seen\"}"),
        Some(bytes)
    );
    assert!(sample(&after, "fjord_partitions").is_some_and(|n| n >= 1.0));
    assert!(
        sample(&after, "fjord_connections").is_some_and(|n| n >= 1.0),
        "the producer is connected"
    );
    let produces = sample(
        &after,
        "fjord_request_duration_seconds_count{api=\"Produce\"}",
    )
    .expect("produce requests");
    assert!(produces >= 1.0);
    let (status, _) = http_get(&addr, "/nothing-here");
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produces_without_acks_are_counted_too() {
    let (broker, addr) = broker_with_metrics();
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("acks", "0")
        .set("enable.idempotence", "false")
        .create()
        .expect("producer");
    for i in 0..5 {
        p.send(
            FutureRecord::<(), String>::to("fire").payload(&format!("value-{i}")),
            Duration::from_secs(10),
        )
        .await
        .expect("sent");
    }
    // No answer says when the broker appended: wait for the counter.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = http_get(&addr, "/metrics");
        let records = sample(&text, "fjord_topic_records_in_total{topic=\"fire\"}");
        if records == Some(5.0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{records:?}\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_shows_its_lso_lag_and_is_counted_when_committed() {
    use fjord_producer::{Producer, ProducerRecord};
    let (broker, addr) = broker_with_metrics();
    fjord_integration_tests::create_topic(&broker.bootstrap, "txm", 1).await;
    let p = Producer::builder()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("transactional.id", "metered")
        .build()
        .expect("producer");
    p.init_transactions().await.expect("init");
    p.begin_transaction().expect("begin");
    for i in 0..3 {
        let d = p.send(ProducerRecord::new("txm", format!("r{i}")).partition(0));
        d.await.expect("send").await.expect("written");
    }
    let (_, open) = http_get(&addr, "/metrics");
    let lag = "fjord_partition_lso_lag{topic=\"txm\",partition=\"0\"}";
    assert_eq!(sample(&open, lag), Some(3.0), "three records past the LSO");
    assert_eq!(sample(&open, "fjord_transactions_ongoing"), Some(1.0));
    assert_eq!(
        sample(&open, "fjord_transactional_ids{state=\"Ongoing\"}"),
        Some(1.0)
    );
    let committed = "fjord_transactions_completed_total{result=\"commit\"}";
    assert_eq!(sample(&open, committed), Some(0.0));

    p.commit_transaction().await.expect("commit");
    let (_, done) = http_get(&addr, "/metrics");
    assert_eq!(sample(&done, lag), None, "nothing open: no lag");
    assert_eq!(sample(&done, "fjord_transactions_ongoing"), Some(0.0));
    assert_eq!(sample(&done, committed), Some(1.0));
    let count = "fjord_transaction_duration_seconds_count{result=\"commit\"}";
    assert_eq!(sample(&done, count), Some(1.0));
}
