//! Fjord's pure-Rust async Kafka producer. Not built yet: see the project's issues.
