//! Creating and describing topics from a test.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

/// Creates `name` (one partition) with `configs` through librdkafka's admin API; any
/// refusal fails the test.
pub async fn create_topic(bootstrap: &str, name: &str, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin");
    let mut topic = NewTopic::new(name, 1, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let r = admin
        .create_topics(&[topic], &AdminOptions::new())
        .await
        .expect("create");
    assert!(r.iter().all(Result::is_ok), "{r:?}");
}

/// What `fjord topics describe --topic TOPIC` prints.
pub fn describe_topic(bootstrap: &str, topic: &str) -> String {
    let (ok, out, err) = crate::fjord(
        &[
            "topics",
            "describe",
            "--topic",
            topic,
            "--bootstrap-server",
            bootstrap,
        ],
        None,
    );
    assert!(ok, "{err}");
    out
}
