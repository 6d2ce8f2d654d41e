//! A map keyed by the core's numeric ids ([`RequestId`], [`Pid`]): open
//! addressing with linear probing over a power-of-two table, half full at
//! most, with backward-shift deletion (no tombstones).
//!
//! The balancer looks a request up by id on every outcome of a dispatch and
//! a worker by pid on every completion; a tree walk there cost more than the
//! rest of the dispatch. The ids come from the caller's counter or the
//! operating system, never from a client, so the map needs no protection
//! against chosen keys: one folded multiply spreads an id over the table.
//! Unlike the standard hashed map (which the core may not use) nothing here
//! is random: the layout, and so the iteration order, depends only on the
//! operations, as the simulations need.

use super::{Pid, RequestId};

/// An id usable as an [`IdMap`] key.
pub trait Id: Copy + Eq {
    fn bits(self) -> u64;
}

impl Id for RequestId {
    #[inline]
    fn bits(self) -> u64 {
        self.0
    }
}

impl Id for Pid {
    #[inline]
    fn bits(self) -> u64 {
        u64::from(self.0)
    }
}

/// Spreads every bit of `bits` over the result (a folded 128-bit multiply
/// by the 64-bit golden ratio).
#[inline]
fn spread(bits: u64) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let product = u128::from(bits) * u128::from(K);
    (product as u64) ^ ((product >> 64) as u64)
}

/// Values by id; see the module documentation.
#[derive(Clone, Debug)]
pub struct IdMap<K, V> {
    slots: Vec<Option<(K, V)>>,
    len: usize,
}

impl<K: Id, V> Default for IdMap<K, V> {
    fn default() -> IdMap<K, V> {
        IdMap {
            slots: Vec::new(),
            len: 0,
        }
    }
}

impl<K: Id, V> IdMap<K, V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    #[inline]
    fn home(&self, key: K) -> usize {
        spread(key.bits()) as usize & self.mask()
    }

    /// The slot holding `key`.
    #[inline]
    fn find(&self, key: K) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let mask = self.mask();
        let mut at = self.home(key);
        loop {
            match &self.slots[at] {
                None => return None,
                Some((k, _)) if *k == key => return Some(at),
                Some(_) => at = (at + 1) & mask,
            }
        }
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.find(*key).is_some()
    }

    #[inline]
    pub fn get(&self, key: &K) -> Option<&V> {
        let at = self.find(*key)?;
        self.slots[at].as_ref().map(|(_, v)| v)
    }

    #[inline]
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let at = self.find(*key)?;
        self.slots[at].as_mut().map(|(_, v)| v)
    }

    /// Stores `value` under `key`; returns the value it replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mask = self.mask();
        let mut at = self.home(key);
        loop {
            match &mut self.slots[at] {
                slot @ None => {
                    *slot = Some((key, value));
                    self.len += 1;
                    return None;
                }
                Some((k, v)) if *k == key => return Some(std::mem::replace(v, value)),
                Some(_) => at = (at + 1) & mask,
            }
        }
    }

    fn grow(&mut self) {
        let capacity = (self.slots.len() * 2).max(16);
        let old = std::mem::replace(&mut self.slots, (0..capacity).map(|_| None).collect());
        self.len = 0;
        for (key, value) in old.into_iter().flatten() {
            self.insert(key, value);
        }
    }

    /// Takes the value of `key` out.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let mut hole = self.find(*key)?;
        let (_, value) = self.slots[hole].take()?;
        self.len -= 1;
        // Backward shift: pull up every entry of the run after the hole that
        // may sit there (its home is not in the cyclic range (hole, at]),
        // so a lookup never stops early at the emptied slot.
        let mask = self.mask();
        let mut at = hole;
        loop {
            at = (at + 1) & mask;
            let Some((k, _)) = &self.slots[at] else {
                break;
            };
            let home = self.home(*k);
            let stays = if hole <= at {
                hole < home && home <= at
            } else {
                hole < home || home <= at
            };
            if !stays {
                self.slots[hole] = self.slots[at].take();
                hole = at;
            }
        }
        Some(value)
    }

    /// Every key, in table order (deterministic, not sorted).
    pub fn keys(&self) -> impl Iterator<Item = &K> + '_ {
        self.slots.iter().flatten().map(|(k, _)| k)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn stores_replaces_and_removes() {
        let mut map = IdMap::default();
        assert_eq!(map.get(&RequestId(1)), None);
        assert_eq!(map.insert(RequestId(1), "a"), None);
        assert_eq!(map.insert(RequestId(1), "b"), Some("a"));
        assert_eq!(map.get(&RequestId(1)), Some(&"b"));
        assert_eq!(map.remove(&RequestId(1)), Some("b"));
        assert_eq!(map.remove(&RequestId(1)), None);
        assert!(map.is_empty());
    }

    #[test]
    fn sequential_ids_spread_over_the_table() {
        let homes: std::collections::BTreeSet<u64> = (0..4096u64).map(|i| spread(i) & 4095).collect();
        assert!(homes.len() > 2000, "{} distinct homes of 4096", homes.len());
    }

    proptest! {
        #[test]
        fn behaves_like_a_btree_map(ops in proptest::collection::vec((0..3u8, 0..64u64), 0..400)) {
            let mut map = IdMap::default();
            let mut model = BTreeMap::new();
            for (op, id) in ops {
                // Ids that collide on purpose: multiples of 16 share low bits.
                let key = RequestId(id * 16);
                match op {
                    0 => prop_assert_eq!(map.insert(key, id), model.insert(key, id)),
                    1 => prop_assert_eq!(map.remove(&key), model.remove(&key)),
                    _ => prop_assert_eq!(map.get(&key), model.get(&key)),
                }
                prop_assert_eq!(map.len(), model.len());
                for (k, v) in &model {
                    prop_assert_eq!(map.get(k), Some(v));
                }
                let mut keys: Vec<RequestId> = map.keys().copied().collect();
                keys.sort();
                prop_assert_eq!(keys, model.keys().copied().collect::<Vec<_>>());
            }
        }
    }
}
