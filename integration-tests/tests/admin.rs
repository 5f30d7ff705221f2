//! Topic administration through librdkafka's admin client against the real broker.

use std::time::Duration;

use fjord_integration_tests::BrokerProcess;
use rdkafka::admin::{
    AdminClient, AdminOptions, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin")
}

fn partitions(admin: &AdminClient<DefaultClientContext>, topic: &str) -> Option<usize> {
    let md = admin
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .expect("metadata");
    let t = md.topics().iter().find(|t| t.name() == topic)?;
    t.error().is_none().then(|| t.partitions().len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_describe_grow_and_delete_topics() {
    let broker = BrokerProcess::start(&["auto.create.topics.enable=false"]);
    let a = admin(&broker.bootstrap);
    let opts = AdminOptions::new();

    let topic =
        NewTopic::new("orders", 2, TopicReplication::Fixed(1)).set("retention.ms", "3600000");
    let created = a.create_topics(&[topic], &opts).await.expect("create");
    assert!(created[0].is_ok(), "{created:?}");
    let again = a
        .create_topics(
            &[NewTopic::new("orders", 1, TopicReplication::Fixed(1))],
            &opts,
        )
        .await
        .expect("create");
    assert_eq!(
        again[0].as_ref().expect_err("exists").1,
        RDKafkaErrorCode::TopicAlreadyExists
    );
    let bad = a
        .create_topics(
            &[NewTopic::new("bad/name", 1, TopicReplication::Fixed(1))],
            &opts,
        )
        .await
        .expect("create");
    assert_eq!(
        bad[0].as_ref().expect_err("invalid").1,
        RDKafkaErrorCode::InvalidTopic
    );
    let rf = a
        .create_topics(
            &[NewTopic::new("rf3", 1, TopicReplication::Fixed(3))],
            &opts,
        )
        .await
        .expect("create");
    assert_eq!(
        rf[0].as_ref().expect_err("rf").1,
        RDKafkaErrorCode::InvalidReplicationFactor
    );

    let described = a
        .describe_configs(&[ResourceSpecifier::Topic("orders")], &opts)
        .await
        .expect("describe");
    let resource = described[0].as_ref().expect("topic configs");
    let retention = resource.get("retention.ms").expect("retention.ms");
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    let segment = resource.get("segment.bytes").expect("segment.bytes");
    assert_eq!(segment.value.as_deref(), Some("1073741824"));
    let described = a
        .describe_configs(&[ResourceSpecifier::Broker(1)], &opts)
        .await
        .expect("describe broker");
    let broker_configs = described[0].as_ref().expect("broker configs");
    assert_eq!(
        broker_configs
            .get("auto.create.topics.enable")
            .and_then(|e| e.value.as_deref()),
        Some("false")
    );

    assert_eq!(partitions(&a, "orders"), Some(2));
    let grown = a
        .create_partitions(&[NewPartitions::new("orders", 4)], &opts)
        .await
        .expect("grow");
    assert!(grown[0].is_ok(), "{grown:?}");
    assert_eq!(partitions(&a, "orders"), Some(4));
    let shrink = a
        .create_partitions(&[NewPartitions::new("orders", 3)], &opts)
        .await
        .expect("shrink");
    assert_eq!(
        shrink[0].as_ref().expect_err("shrink").1,
        RDKafkaErrorCode::InvalidPartitions
    );
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .create()
        .expect("producer");
    let d = p
        .send_result(
            FutureRecord::<str, str>::to("orders")
                .partition(3)
                .payload("x"),
        )
        .expect("queue");
    assert_eq!(d.await.expect("delivered").expect("acked").offset, 0);

    let deleted = a.delete_topics(&["orders"], &opts).await.expect("delete");
    assert!(deleted[0].is_ok(), "{deleted:?}");
    assert_eq!(partitions(&a, "orders"), None);
    assert!(!broker.data.join("orders-0").exists());
    let missing = a
        .delete_topics(&["orders"], &opts)
        .await
        .expect("delete again");
    assert_eq!(
        missing[0].as_ref().expect_err("gone").1,
        RDKafkaErrorCode::UnknownTopicOrPartition
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_and_their_configs_survive_a_restart() {
    let mut broker = BrokerProcess::start(&[]);
    let keep = broker.take_data_dir().expect("data");
    let port = broker.port();
    let a = admin(&broker.bootstrap);
    let topic =
        NewTopic::new("kept", 3, TopicReplication::Fixed(1)).set("max.message.bytes", "2000");
    assert!(a
        .create_topics(&[topic], &AdminOptions::new())
        .await
        .expect("create")[0]
        .is_ok());
    drop(a);
    assert!(broker.terminate());
    let broker = BrokerProcess::start_in(keep.path(), port, &[]);
    let a = admin(&broker.bootstrap);
    assert_eq!(partitions(&a, "kept"), Some(3));
    let described = a
        .describe_configs(&[ResourceSpecifier::Topic("kept")], &AdminOptions::new())
        .await
        .expect("describe");
    let configs = described[0].as_ref().expect("configs");
    assert_eq!(
        configs
            .get("max.message.bytes")
            .and_then(|e| e.value.as_deref()),
        Some("2000")
    );
    // And the limit is enforced.
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("message.timeout.ms", "5000")
        .create()
        .expect("producer");
    let big = "x".repeat(3000);
    let err = p
        .send_result(
            FutureRecord::<str, str>::to("kept")
                .partition(0)
                .payload(&big),
        )
        .expect("queue")
        .await
        .expect("delivered")
        .expect_err("too large");
    assert_eq!(
        err.0.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_runs_in_the_background() {
    let broker = BrokerProcess::start(&["log.retention.check.interval.ms=200"]);
    let a = admin(&broker.bootstrap);
    let topic = NewTopic::new("aging", 1, TopicReplication::Fixed(1))
        .set("retention.ms", "60000")
        .set("segment.bytes", "2000");
    assert!(a
        .create_topics(&[topic], &AdminOptions::new())
        .await
        .expect("create")[0]
        .is_ok());
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    let old = 1_000_000_000_000i64; // 2001: long past retention
    for i in 0..40 {
        let value = "v".repeat(200);
        let r = FutureRecord::<str, str>::to("aging")
            .partition(0)
            .payload(&value)
            .timestamp(old + i);
        p.send_result(r)
            .expect("queue")
            .await
            .expect("delivered")
            .expect("acked");
    }
    let bootstrap = broker.bootstrap.clone();
    let low = tokio::task::spawn_blocking(move || {
        let c: rdkafka::consumer::BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .expect("consumer");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (low, high) = rdkafka::consumer::Consumer::fetch_watermarks(
                &c,
                "aging",
                0,
                Duration::from_secs(5),
            )
            .expect("watermarks");
            if low > 0 || std::time::Instant::now() > deadline {
                return (low, high);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .expect("watermarks");
    assert!(low.0 > 0, "old segments deleted, log start moved: {low:?}");
    assert_eq!(low.1, 40, "the active segment stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_malformed_topic_configs_are_refused() {
    let broker = BrokerProcess::start(&["auto.create.topics.enable=false"]);
    let a = admin(&broker.bootstrap);
    let opts = AdminOptions::new();
    let unknown = NewTopic::new("c1", 1, TopicReplication::Fixed(1)).set("no.such.config", "1");
    let r = a.create_topics(&[unknown], &opts).await.expect("create");
    assert_eq!(
        r[0].as_ref().expect_err("unknown").1,
        RDKafkaErrorCode::InvalidConfig
    );
    let injected = NewTopic::new("c2", 1, TopicReplication::Fixed(1))
        .set("retention.ms", "1\nfjord.partitions=0");
    let r = a.create_topics(&[injected], &opts).await.expect("create");
    assert_eq!(
        r[0].as_ref().expect_err("malformed").1,
        RDKafkaErrorCode::InvalidConfig
    );
    let bad_value = NewTopic::new("c3", 1, TopicReplication::Fixed(1)).set("segment.bytes", "lots");
    let r = a.create_topics(&[bad_value], &opts).await.expect("create");
    assert_eq!(
        r[0].as_ref().expect_err("bad value").1,
        RDKafkaErrorCode::InvalidConfig
    );
    assert_eq!(partitions(&a, "c1"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_partition_limit_refuses_creations_past_it() {
    let broker =
        BrokerProcess::start(&["fjord.max.partitions=5", "auto.create.topics.enable=false"]);
    let a = admin(&broker.bootstrap);
    let opts = AdminOptions::new();
    let first = a
        .create_topics(&[NewTopic::new("a", 3, TopicReplication::Fixed(1))], &opts)
        .await
        .expect("create");
    assert!(first[0].is_ok(), "{first:?}");
    let over = a
        .create_topics(&[NewTopic::new("b", 3, TopicReplication::Fixed(1))], &opts)
        .await
        .expect("create");
    assert_eq!(
        over[0].as_ref().expect_err("over the limit").1,
        RDKafkaErrorCode::InvalidPartitions
    );
    assert_eq!(partitions(&a, "b"), None);
    let grow_over = a
        .create_partitions(&[NewPartitions::new("a", 6)], &opts)
        .await
        .expect("grow");
    assert_eq!(
        grow_over[0].as_ref().expect_err("over the limit").1,
        RDKafkaErrorCode::InvalidPartitions
    );
    let grow = a
        .create_partitions(&[NewPartitions::new("a", 5)], &opts)
        .await
        .expect("grow");
    assert!(grow[0].is_ok(), "{grow:?}");
    assert_eq!(partitions(&a, "a"), Some(5));
}
