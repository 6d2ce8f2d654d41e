//! A tiny seeded random number generator (SplitMix64): every random choice
//! the harness makes (service times, faults, client think times) comes from
//! one of these, seeded from the scenario's seed, so a seed replays exactly.

/// SplitMix64 (Steele, Lea and Flood): small, fast, and good enough to
/// spread a seed over service times and fault schedules.
#[derive(Clone, Debug)]
pub struct Rng(u64);

/// Mixes two numbers into a well-spread seed.
pub fn mix(a: u64, b: u64) -> u64 {
    let mut r = Rng(a ^ b.rotate_left(32) ^ 0x243F_6A88_85A3_08D3);
    r.next_u64()
}

/// A stable hash of a name (FNV-1a), for per-host seeds.
pub fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Rng {
    /// A generator for this seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo { lo } else { lo + self.below(hi - lo + 1) }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }

    /// A duration in `lo..=hi`, in whole milliseconds.
    pub fn millis(&mut self, lo: std::time::Duration, hi: std::time::Duration) -> std::time::Duration {
        let (lo, hi) = (lo.as_millis() as u64, hi.as_millis() as u64);
        std::time::Duration::from_millis(self.range(lo, hi))
    }

    /// An independent generator derived from this one.
    pub fn fork(&mut self, salt: u64) -> Rng {
        Rng(mix(self.next_u64(), salt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_numbers() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }

    #[test]
    fn ranges_stay_in_bounds() {
        let mut r = Rng::new(7);
        for _ in 0..1000 {
            let v = r.range(3, 9);
            assert!((3..=9).contains(&v));
        }
        assert_eq!(r.range(5, 5), 5);
        assert_eq!(r.below(0), 0);
    }
}
