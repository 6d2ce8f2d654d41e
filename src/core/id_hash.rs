//! A hasher for the core's numeric ids ([`RequestId`](super::RequestId),
//! [`Pid`](super::Pid)) in `HashMap`s on the hot path.
//!
//! The ids come from the caller's counter or the operating system, never
//! from a client, so the map needs no protection against chosen keys (what
//! the standard `SipHash` pays for): one folded multiply spreads a number
//! over both the low bits (the bucket) and the high bits (the tag), and the
//! map lookups of a dispatch cost nanoseconds. Deterministic: iteration
//! order depends only on the operations, as the simulations need.

use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` hasher for integer keys (see the module documentation).
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHasher(u64);

/// `BuildHasher` for [`IdHasher`].
pub type BuildIdHasher = BuildHasherDefault<IdHasher>;

impl IdHasher {
    #[inline]
    fn mix(&mut self, value: u64) {
        // The 64-bit golden ratio; the folded 128-bit product mixes every
        // input bit into both halves.
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        let product = u128::from(self.0 ^ value) * u128::from(K);
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }
}

impl Hasher for IdHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u64(&mut self, value: u64) {
        self.mix(value);
    }

    #[inline]
    fn write_u32(&mut self, value: u32) {
        self.mix(u64::from(value));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::hash::BuildHasher;

    use super::*;
    use crate::core::RequestId;

    #[test]
    fn sequential_ids_spread_over_the_buckets_and_the_tags() {
        let build = BuildIdHasher::default();
        let hashes: Vec<u64> = (0..4096u64).map(|i| build.hash_one(RequestId(i))).collect();
        let low: HashSet<u64> = hashes.iter().map(|h| h & 4095).collect();
        let top: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert!(low.len() > 2000, "low bits: {} distinct of 4096", low.len());
        assert_eq!(top.len(), 128, "every 7-bit tag is used");
    }

    #[test]
    fn a_map_with_it_behaves_like_any_map() {
        let mut map: HashMap<RequestId, u64, BuildIdHasher> = HashMap::default();
        for i in 0..1000 {
            map.insert(RequestId(i * 7), i);
        }
        assert_eq!(map.get(&RequestId(700)), Some(&100));
        assert_eq!(map.remove(&RequestId(7)), Some(1));
        assert_eq!(map.len(), 999);
    }
}
