//! More partitions than open files allowed: a broker under `ulimit -n 600` creates,
//! fills, restarts with and serves 1,200 partitions, closing idle segment files early
//! instead of failing with KAFKA_STORAGE_ERROR.

use std::sync::Arc;

use fjord_integration_tests::topics::describe_topic;
use fjord_integration_tests::{fjord, BrokerProcess};
use fjord_producer::{Producer, ProducerRecord};

const TOPICS: [&str; 3] = ["fd-a", "fd-b", "fd-c"];
const PARTITIONS: i32 = 400;

/// One record to every partition of every topic, each delivery checked.
async fn fill(bootstrap: &str, round: u32) {
    let producer = Producer::builder()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .build()
        .expect("producer");
    let mut deliveries = Vec::new();
    for topic in TOPICS {
        let topic: Arc<str> = topic.into();
        for p in 0..PARTITIONS {
            let mut record =
                ProducerRecord::new(Arc::clone(&topic), format!("round {round} partition {p}"));
            record.partition = Some(p);
            deliveries.push(producer.send(record).await.expect("send"));
        }
    }
    for d in deliveries {
        d.await.expect("delivered");
    }
    producer.close().await;
}

/// The sum of every partition's log end offset, per `fjord topics describe`.
fn records(bootstrap: &str, topic: &str) -> i64 {
    let out = describe_topic(bootstrap, topic);
    out.lines()
        .filter_map(|l| l.split("LogEndOffset: ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|n| n.parse::<i64>().expect("offset"))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_partitions_than_descriptors() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut broker = BrokerProcess::start_limited(data.path(), 0, &[], Some(600));
    let b = broker.bootstrap.clone();
    for topic in TOPICS {
        let count = PARTITIONS.to_string();
        let (ok, _, err) = fjord(
            &[
                "topics",
                "create",
                "--topic",
                topic,
                "--partitions",
                &count,
                "--bootstrap-server",
                &b,
            ],
            None,
        );
        assert!(ok, "{topic}: {err}");
    }
    fill(&b, 1).await;
    for topic in TOPICS {
        assert_eq!(records(&b, topic), i64::from(PARTITIONS), "{topic}");
    }

    // A crash and a restart under the same limit: every partition opens and takes more.
    let port = broker.port();
    broker.kill();
    let broker = BrokerProcess::start_limited(data.path(), port, &[], Some(600));
    let b = broker.bootstrap.clone();
    fill(&b, 2).await;
    for topic in TOPICS {
        assert_eq!(records(&b, topic), 2 * i64::from(PARTITIONS), "{topic}");
    }
}
