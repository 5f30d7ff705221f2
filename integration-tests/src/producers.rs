//! librdkafka producers as the transaction tests use them: sending at once
//! (`linger.ms=0`), plain or with a `transactional.id`.

use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;

/// A producer with no transactional id.
pub fn plain(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "0")
        .create()
        .expect("producer")
}

/// A producer with `transactional.id` `id` (not initialized yet).
pub fn transactional(bootstrap: &str, id: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", id)
        .set("linger.ms", "0")
        .create()
        .expect("transactional producer")
}
