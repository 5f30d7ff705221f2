//! The `fjord` broker binary.
//!
//! The network side (protocol handlers, reactor) is not built yet; the storage engine it
//! will serve from is `fjord-storage`.

fn main() -> std::process::ExitCode {
    eprintln!(
        "fjord: the broker is not yet implemented (storage engine only so far); \
         it will serve the Kafka protocol on 127.0.0.1:9092 with data under ./data"
    );
    std::process::ExitCode::from(2)
}
