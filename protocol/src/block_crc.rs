//! CRC-32C of a received frame in fixed blocks, computed by the reader while each block
//! was still in the CPU cache, so that a consumer checking a large record batch later does
//! not read the whole batch again from memory: the batch's CRC is put together from the
//! blocks it covers, and only its ragged ends are read again.
//!
//! Putting CRCs together uses the GF(2) identity behind zlib's `crc32_combine`:
//! `crc(A ‖ B) = crc(A) · x^(8·|B|) mod P  ⊕  crc(B)`, with the multiplier for one block
//! length computed once, so joining a block costs 32 shift-and-xor steps. (The `crc-fast`
//! and `crc32c` crates combine by building GF(2) matrices on every call: tens of
//! microseconds each.)

use bytes::Bytes;

use crate::crc::{crc32c, crc32c_append};

/// The reflected CRC-32C polynomial.
const POLY: u32 = 0x82f6_3b78;

/// Bytes per block: small enough that a batch's ends read again are a few percent of a
/// large batch, large enough that the per-block work is negligible.
pub const BLOCK: usize = 16 << 10;

/// `a · b mod P` in the reflected bit order CRC-32C uses (bit 31 is x^0).
fn multiply(a: u32, mut b: u32) -> u32 {
    let mut m = 1u32 << 31;
    let mut p = 0u32;
    while m != 0 {
        if a & m != 0 {
            p ^= b;
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
    p
}

/// `x^(8·n) mod P`: the multiplier that moves a CRC past `n` more bytes.
fn shift_for(n: u64) -> u32 {
    let mut result = 1u32 << 31; // x^0
    let mut power = 1u32 << 30; // x^1, squared up to x^(2^k) as bits of 8·n are read
    let mut bits = n.saturating_mul(8);
    while bits != 0 {
        if bits & 1 != 0 {
            result = multiply(power, result);
        }
        power = multiply(power, power);
        bits >>= 1;
    }
    result
}

/// Computes block CRCs of one frame's body as its bytes arrive.
#[derive(Debug, Default)]
pub struct BlockCrcBuilder {
    crcs: Vec<u32>,
}

impl BlockCrcBuilder {
    /// Checksums every whole block of `received` (the frame body so far, from its first
    /// byte) not checksummed yet. Call after each read, while the new bytes are cached.
    pub fn update(&mut self, received: &[u8]) {
        let done = self.crcs.len() * BLOCK;
        if let Some(new) = received.get(done..) {
            self.crcs.extend(new.chunks_exact(BLOCK).map(crc32c));
        }
    }

    /// Whole blocks checksummed so far.
    pub fn blocks(&self) -> usize {
        self.crcs.len()
    }

    /// The checksums, tied to `frame`, which must hold exactly the bytes given to
    /// [`BlockCrcBuilder::update`] (from the same first byte): block CRCs of other bytes
    /// would make [`BlockCrcs::crc32c`] answer for those.
    pub fn finish(mut self, frame: Bytes) -> BlockCrcs {
        self.update(&frame);
        self.crcs.truncate(frame.len() / BLOCK);
        debug_assert!(
            self.crcs
                .iter()
                .zip(frame.chunks_exact(BLOCK))
                .all(|(crc, block)| *crc == crc32c(block)),
            "block CRCs of other bytes than the frame"
        );
        BlockCrcs {
            frame,
            crcs: self.crcs,
            block_shift: shift_for(BLOCK as u64),
        }
    }
}

/// CRCs of the whole [`BLOCK`]s of one frame body. Holds the frame, so the memory the
/// blocks describe cannot be freed and reused while this exists.
#[derive(Debug, Clone)]
pub struct BlockCrcs {
    frame: Bytes,
    crcs: Vec<u32>,
    block_shift: u32,
}

impl BlockCrcs {
    /// Whole blocks checksummed.
    pub fn blocks(&self) -> usize {
        self.crcs.len()
    }

    /// The CRC-32C of `bytes`. Bytes inside the frame (a slice of it, such as a record
    /// batch decoded from it without copying) use the block CRCs for the whole blocks
    /// they cover; anything else is checksummed directly. The answer is the same.
    pub fn crc32c(&self, bytes: &[u8]) -> u32 {
        let base = self.frame.as_ptr() as usize;
        let start = bytes.as_ptr() as usize;
        let Some(offset) = start.checked_sub(base) else {
            return crc32c(bytes);
        };
        if offset.saturating_add(bytes.len()) > self.frame.len() {
            return crc32c(bytes);
        }
        let end = offset + bytes.len();
        let first = offset.div_ceil(BLOCK);
        let last = (end / BLOCK).min(self.crcs.len());
        if first >= last {
            return crc32c(bytes);
        }
        let head = first * BLOCK - offset;
        let mut crc = crc32c(&bytes[..head]);
        for block in &self.crcs[first..last] {
            crc = multiply(self.block_shift, crc) ^ block;
        }
        crc32c_append(crc, &bytes[last * BLOCK - offset..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// Block CRCs of `body` as a reader would build them, fed in `piece`-byte reads.
    fn received(body: &[u8], piece: usize) -> BlockCrcs {
        let mut builder = BlockCrcBuilder::default();
        let mut got = 0;
        while got < body.len() {
            got = (got + piece).min(body.len());
            builder.update(&body[..got]);
        }
        builder.finish(Bytes::copy_from_slice(body))
    }

    proptest! {
        #[test]
        fn combine_matches_the_crc_of_the_concatenation(
            a in proptest::collection::vec(any::<u8>(), 0..3000),
            b in proptest::collection::vec(any::<u8>(), 0..3000),
        ) {
            let whole = [a.clone(), b.clone()].concat();
            let joined = multiply(shift_for(b.len() as u64), crc32c(&a)) ^ crc32c(&b);
            prop_assert_eq!(joined, crc32c::crc32c(&whole));
        }

        #[test]
        fn any_range_of_the_frame_gets_its_own_crc(
            start in 0usize..200_000,
            len in 0usize..200_000,
            piece in 1usize..70_000,
        ) {
            let body = noise(200_000, 7);
            let crcs = received(&body, piece);
            let frame = crcs.frame.clone();
            let start = start.min(frame.len());
            let end = (start + len).min(frame.len());
            prop_assert_eq!(crcs.crc32c(&frame[start..end]), crc32c::crc32c(&body[start..end]));
        }
    }

    #[test]
    fn block_boundaries_and_bytes_outside_the_frame() {
        let body = noise(10 * BLOCK + 5, 3);
        let crcs = received(&body, 100_000);
        let frame = crcs.frame.clone();
        for (start, end) in [
            (0, frame.len()),
            (BLOCK, 4 * BLOCK),
            (BLOCK - 1, 4 * BLOCK + 1),
            (21, 10 * BLOCK),
            (3 * BLOCK, 10 * BLOCK + 5),
        ] {
            assert_eq!(
                crcs.crc32c(&frame[start..end]),
                crc32c::crc32c(&body[start..end]),
                "{start}..{end}"
            );
        }
        // The same bytes elsewhere in memory: checksummed directly, same answer.
        assert_eq!(crcs.crc32c(&body), crc32c::crc32c(&body));
    }

    #[test]
    fn a_changed_byte_in_a_whole_block_changes_the_crc() {
        // The blocks are checksums of what arrived: a batch whose stored CRC was made
        // over other bytes must not match, wherever in the batch the difference is.
        let sent = noise(6 * BLOCK, 11);
        for at in [0, BLOCK / 2, 3 * BLOCK + 17, 6 * BLOCK - 1] {
            let mut arrived = sent.clone();
            arrived[at] ^= 0x40;
            let crcs = received(&arrived, 4096);
            let frame = crcs.frame.clone();
            assert_ne!(crcs.crc32c(&frame[..]), crc32c::crc32c(&sent), "byte {at}");
            assert_eq!(crcs.crc32c(&frame[..]), crc32c::crc32c(&arrived));
        }
    }
}
