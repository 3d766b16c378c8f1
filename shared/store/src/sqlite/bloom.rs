//! A Bloom filter over keys that are already 64-bit hashes: "surely absent" or "maybe present".
//! It lets the dedupe skip the on-disk index for nearly every new event.

/// Bits per key: about 1 % false positives with 7 probes.
const BITS_PER_KEY: usize = 10;
const PROBES: u64 = 7;
/// Words per block: every probe of a key falls in one 64-byte block (one cache line), so a
/// lookup costs one memory access however many probes it makes.
const BLOCK_WORDS: usize = 8;
const BLOCK_BITS: u64 = (BLOCK_WORDS * 64) as u64;

pub(super) struct Bloom {
    bits: Vec<u64>,
}

impl Bloom {
    /// A filter sized for `keys` keys (its false-positive rate climbs past that).
    pub(super) fn with_capacity(keys: usize) -> Self {
        let blocks = (keys.max(1024) * BITS_PER_KEY).div_ceil(64 * BLOCK_WORDS);
        Self { bits: vec![0; blocks * BLOCK_WORDS] }
    }

    /// The key's block, and its probe positions in that block (double hashing of the key's
    /// halves; the key is already a good hash).
    fn probes(&self, key: i64) -> (usize, impl Iterator<Item = (usize, u64)>) {
        let key = u64::from_ne_bytes(key.to_ne_bytes());
        let blocks = (self.bits.len() / BLOCK_WORDS) as u64;
        let block = ((key >> 32) % blocks) as usize * BLOCK_WORDS;
        let (h1, h2) = (key & 0xffff, ((key >> 16) & 0xffff) | 1);
        let bits = (0..PROBES).map(move |i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % BLOCK_BITS;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        });
        (block, bits)
    }

    pub(super) fn insert(&mut self, key: i64) {
        let (block, probes) = self.probes(key);
        for (word, mask) in probes {
            self.bits[block + word] |= mask;
        }
    }

    pub(super) fn may_contain(&self, key: i64) -> bool {
        let (block, mut probes) = self.probes(key);
        probes.all(|(word, mask)| self.bits[block + word] & mask != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spread(i: i64) -> i64 {
        // A cheap stand-in for the event hash.
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as i64).rotate_left(17)
    }

    #[test]
    fn never_forgets_a_key_and_rarely_invents_one() {
        let mut bloom = Bloom::with_capacity(10_000);
        for i in 0..10_000 {
            bloom.insert(spread(i));
        }
        assert!((0..10_000).all(|i| bloom.may_contain(spread(i))), "no false negatives");
        let false_positives = (10_000..110_000).filter(|&i| bloom.may_contain(spread(i))).count();
        assert!(false_positives < 3_000, "{false_positives} of 100000"); // ≈ 1 % expected
    }
}
