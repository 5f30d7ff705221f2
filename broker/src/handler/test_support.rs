//! What the handler tests share: a request context, a response's body, a broker over a
//! temp dir.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use fjord_protocol::kafka_protocol::messages::ApiKey;

use super::{Ctx, Part, Response};
use crate::config::BrokerConfig;
use crate::state::Broker;

/// The context of a request of `key` at `version`.
pub(super) fn ctx(key: ApiKey, version: i16) -> Ctx {
    Ctx {
        correlation_id: 1,
        version,
        response_header_version: key.response_header_version(version),
        listener: 0,
    }
}

/// The body of a response with a non-flexible (v0) header: size and correlation id
/// skipped. A fetch response must carry no file regions.
pub(super) fn body(response: Response) -> Bytes {
    let mut all = BytesMut::new();
    match response {
        Response::Frame(b) => all.extend_from_slice(&b),
        Response::Fetch(f) => {
            for part in f.parts {
                match part {
                    Part::Bytes(b) => all.extend_from_slice(&b),
                    Part::Region(_) => panic!("a response with records from files"),
                }
            }
        }
        Response::None => panic!("no response"),
    }
    let mut all = all.freeze();
    all.advance(8);
    all
}

/// A broker with default settings over `dir`.
pub(super) fn open(dir: &std::path::Path) -> Arc<Broker> {
    let sets = vec![("log.dirs".to_string(), dir.display().to_string())];
    Arc::new(
        Broker::open(BrokerConfig::from_sources(None, &sets).expect("config")).expect("broker"),
    )
}
