//! Any bytes as produced records: validation at every level, record iteration and
//! decompression refuse bad input without panicking.
#![no_main]

use fjord_protocol::record_batch::{batches, validate_records, RecordValidation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for batch in batches(data) {
        let Ok((header, bytes)) = batch else { break };
        for level in [RecordValidation::Lengths, RecordValidation::Full] {
            let _ = validate_records(bytes, &header, level, 1 << 20);
        }
    }
});
