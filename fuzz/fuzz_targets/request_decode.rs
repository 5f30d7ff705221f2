//! Any bytes as a request frame: decoding answers or refuses, never panics or aborts.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fjord_broker::handler::decode_request(bytes::Bytes::copy_from_slice(data));
});
