//! A Bloom filter over keys that are already 64-bit hashes: "surely absent" or "maybe present".
//! It lets the dedupe skip the on-disk index for nearly every new event.

/// Bits per key: about 1 % false positives with 7 probes.
const BITS_PER_KEY: usize = 10;
const PROBES: u64 = 7;

pub(super) struct Bloom {
    bits: Vec<u64>,
}

impl Bloom {
    /// A filter sized for `keys` keys (its false-positive rate climbs past that).
    pub(super) fn with_capacity(keys: usize) -> Self {
        let words = (keys.max(1024) * BITS_PER_KEY).div_ceil(64);
        Self { bits: vec![0; words] }
    }

    /// Probe positions by double hashing the two halves of the key.
    fn positions(&self, key: i64) -> impl Iterator<Item = usize> + '_ {
        let key = u64::from_ne_bytes(key.to_ne_bytes());
        let (h1, h2) = (key & 0xffff_ffff, (key >> 32) | 1);
        let m = (self.bits.len() * 64) as u64;
        (0..PROBES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % m) as usize)
    }

    pub(super) fn insert(&mut self, key: i64) {
        let positions: Vec<usize> = self.positions(key).collect();
        for p in positions {
            self.bits[p / 64] |= 1 << (p % 64);
        }
    }

    pub(super) fn may_contain(&self, key: i64) -> bool {
        self.positions(key).all(|p| self.bits[p / 64] & (1 << (p % 64)) != 0)
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
