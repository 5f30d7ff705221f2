//! Fjord's pure-Rust async Kafka consumer. Not built yet: see the project's issues.
