//! CRC-32C (Castagnoli), the checksum of RecordBatch v2, in one place.
//!
//! Backed by `crc-fast`, which folds with carry-less multiplication (VPCLMULQDQ where the
//! CPU has it) and measured 128 GB/s against 26 GB/s for the `crc32c` crate on 15 KiB
//! batches on our machines; the CRC is on every produce and recovery path. Tests check
//! it against the `crc32c` crate.

use crc_fast::{CrcAlgorithm, Digest};

/// CRC-32C of `bytes`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc_fast::checksum(CrcAlgorithm::Crc32Iscsi, bytes) as u32
}

/// The CRC-32C of `A ‖ bytes`, given `crc = crc32c(A)`.
pub fn crc32c_append(crc: u32, bytes: &[u8]) -> u32 {
    // The digest's state is the CRC before the final inversion.
    let mut digest = Digest::new_with_init_state(CrcAlgorithm::Crc32Iscsi, u64::from(!crc));
    digest.update(bytes);
    digest.finalize() as u32
}

/// A CRC-32C computed over several pieces, for data that is not contiguous in memory.
#[derive(Clone)]
pub struct Crc32c(Digest);

impl std::fmt::Debug for Crc32c {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Crc32c").finish()
    }
}

impl Default for Crc32c {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32c {
    /// An empty checksum.
    pub fn new() -> Self {
        Self(Digest::new(CrcAlgorithm::Crc32Iscsi))
    }

    /// Adds the next piece.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The checksum of all pieces so far.
    pub fn finish(&self) -> u32 {
        self.0.finalize() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn matches_the_crc32c_crate(bytes in proptest::collection::vec(any::<u8>(), 0..5000), split in 0usize..5000) {
            let expected = crc32c::crc32c(&bytes);
            prop_assert_eq!(super::crc32c(&bytes), expected);
            let split = split.min(bytes.len());
            let mut pieces = Crc32c::new();
            pieces.update(&bytes[..split]);
            pieces.update(&bytes[split..]);
            prop_assert_eq!(pieces.finish(), expected);
            let head = super::crc32c(&bytes[..split]);
            prop_assert_eq!(crc32c_append(head, &bytes[split..]), expected);
            prop_assert_eq!(crc32c::crc32c_append(head, &bytes[split..]), expected);
        }
    }

    #[test]
    fn known_vector() {
        // The CRC-32C check value from the Castagnoli paper / RFC 3720.
        assert_eq!(super::crc32c(b"123456789"), 0xe306_9283);
    }
}
