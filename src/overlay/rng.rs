//! The overlay's source of chance: which neighbour a join walks to, which addresses a
//! shuffle offers, whom to evict. A small seeded generator (SplitMix64) that the caller
//! owns and hands in, so the same seed replays the same overlay in the simulator, and a
//! servant seeds it from the operating system's random source.
//!
//! Nothing secret depends on it: keys, nonces and session secrets come from `getrandom`.
//! What an attacker could gain from predicting it is where a walk goes next, and the
//! servant's seed is fresh OS randomness at every start.

/// SplitMix64 (Steele, Lea and Flood, 2014): 64 bits of state, passes BigCrush, and is
/// what xoshiro's authors recommend for seeding; plenty for choosing among a few dozen.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator that replays the same choices for the same `seed`.
    pub fn seeded(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// A generator seeded from the operating system (falls back to the clock and the
    /// process id when the OS has no random source to give, which only affects choices).
    pub fn from_os() -> Rng {
        Rng::seeded(crate::identity::random_u64())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0), without the bias of a plain `%` (Lemire's method).
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// One element, chosen uniformly; `None` from an empty slice.
    pub fn choose<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            Some(&items[self.below(items.len())])
        }
    }

    /// Up to `k` distinct elements, chosen uniformly, in random order.
    pub fn sample<T: Clone>(&mut self, items: &[T], k: usize) -> Vec<T> {
        let mut picked: Vec<T> = items.to_vec();
        let k = k.min(picked.len());
        for i in 0..k {
            let j = i + self.below(picked.len() - i);
            picked.swap(i, j);
        }
        picked.truncate(k);
        picked
    }

    /// `base` plus or minus up to a quarter of it, so timers of many servants started
    /// together do not keep firing together.
    pub fn jitter(&mut self, base: u64) -> u64 {
        let spread = base / 2;
        if spread == 0 {
            base
        } else {
            base - base / 4 + self.next_u64() % spread
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_choices() {
        let (mut a, mut b) = (Rng::seeded(7), Rng::seeded(7));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn below_stays_below_and_covers() {
        let mut rng = Rng::seeded(1);
        let mut seen = [false; 6];
        for _ in 0..1000 {
            let x = rng.below(6);
            seen[x] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn sample_is_distinct_and_bounded() {
        let mut rng = Rng::seeded(3);
        let items: Vec<u32> = (0..10).collect();
        let mut s = rng.sample(&items, 4);
        assert_eq!(s.len(), 4);
        s.sort();
        s.dedup();
        assert_eq!(s.len(), 4);
        assert_eq!(rng.sample(&items, 50).len(), 10);
    }
}
