//! A slab: values stored in a `Vec` by index, with a free list, and handles
//! ([`Key`]) that carry a generation so a handle to a removed value never
//! reaches the value that reuses its place.
//!
//! The balancer keeps its workers, its requests and its read deadlines in
//! slabs: a lookup is an index and a comparison instead of a tree walk, and
//! once the slab has grown to the pool's size nothing allocates.

/// A handle to a value in a [`Slab`]: its index and the generation of the
/// place when the value went in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    index: u32,
    generation: u32,
}

impl Key {
    /// The place in the slab (stable while the value is there); side tables
    /// indexed by it need no hashing.
    pub fn index(self) -> usize {
        self.index as usize
    }
}

#[derive(Clone, Debug)]
enum Entry<T> {
    Occupied {
        generation: u32,
        value: T,
    },
    /// `next_free` is the next vacant index, or `u32::MAX` at the end.
    Vacant {
        generation: u32,
        next_free: u32,
    },
}

const NO_FREE: u32 = u32::MAX;

/// Values by [`Key`]; insertion and removal are O(1) and reuse freed places.
#[derive(Clone, Debug)]
pub struct Slab<T> {
    entries: Vec<Entry<T>>,
    first_free: u32,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Slab<T> {
        Slab::new()
    }
}

impl<T> Slab<T> {
    /// An empty slab.
    pub const fn new() -> Slab<T> {
        Slab {
            entries: Vec::new(),
            first_free: NO_FREE,
            len: 0,
        }
    }

    /// Values stored.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// One past the highest index ever used: the size a side table indexed
    /// by [`Key::index`] needs.
    pub fn index_bound(&self) -> usize {
        self.entries.len()
    }

    /// Stores a value; returns its handle.
    pub fn insert(&mut self, value: T) -> Key {
        self.len += 1;
        if let Some(entry) = self.entries.get_mut(self.first_free as usize) {
            let index = self.first_free;
            let Entry::Vacant { generation, next_free } = *entry else {
                unreachable!("the free list holds only vacant entries");
            };
            self.first_free = next_free;
            *entry = Entry::Occupied { generation, value };
            return Key { index, generation };
        }
        let index = u32::try_from(self.entries.len()).expect("fewer than 2^32 - 1 values");
        assert!(index != NO_FREE, "fewer than 2^32 - 1 values");
        self.entries.push(Entry::Occupied { generation: 0, value });
        Key { index, generation: 0 }
    }

    /// Takes the value out; `None` if the handle is stale.
    pub fn remove(&mut self, key: Key) -> Option<T> {
        let entry = self.entries.get_mut(key.index as usize)?;
        match entry {
            Entry::Occupied { generation, .. } if *generation == key.generation => {}
            _ => return None,
        }
        let vacant = Entry::Vacant {
            // A new generation, so the handle just used is stale from now on.
            generation: key.generation.wrapping_add(1),
            next_free: self.first_free,
        };
        let Entry::Occupied { value, .. } = std::mem::replace(entry, vacant) else {
            unreachable!("checked above");
        };
        self.first_free = key.index;
        self.len -= 1;
        Some(value)
    }

    /// The value behind a handle; `None` if it was removed.
    #[inline]
    pub fn get(&self, key: Key) -> Option<&T> {
        match self.entries.get(key.index as usize)? {
            Entry::Occupied { generation, value } if *generation == key.generation => Some(value),
            _ => None,
        }
    }

    /// The value behind a handle, mutably; `None` if it was removed.
    #[inline]
    pub fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        match self.entries.get_mut(key.index as usize)? {
            Entry::Occupied { generation, value } if *generation == key.generation => Some(value),
            _ => None,
        }
    }

    /// The handle of the value at `index`, if one is there.
    pub fn key_at(&self, index: usize) -> Option<Key> {
        match self.entries.get(index)? {
            Entry::Occupied { generation, .. } => Some(Key {
                index: index as u32,
                generation: *generation,
            }),
            Entry::Vacant { .. } => None,
        }
    }

    /// Every value with its handle, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (Key, &T)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| match entry {
                Entry::Occupied { generation, value } => Some((
                    Key {
                        index: index as u32,
                        generation: *generation,
                    },
                    value,
                )),
                Entry::Vacant { .. } => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_returns_values_by_key() {
        let mut slab = Slab::new();
        let a = slab.insert("a");
        let b = slab.insert("b");
        assert_eq!((slab.get(a), slab.get(b)), (Some(&"a"), Some(&"b")));
        assert_eq!(slab.len(), 2);
        *slab.get_mut(a).unwrap() = "A";
        assert_eq!(slab.remove(a), Some("A"));
        assert_eq!(slab.len(), 1);
        assert_eq!(slab.iter().map(|(_, v)| *v).collect::<Vec<_>>(), ["b"]);
    }

    #[test]
    fn a_stale_key_never_reaches_the_value_that_reuses_its_place() {
        let mut slab = Slab::new();
        let old = slab.insert(1);
        assert_eq!(slab.remove(old), Some(1));
        let new = slab.insert(2);
        assert_eq!(new.index(), old.index(), "the place is reused");
        assert_eq!(slab.get(old), None);
        assert_eq!(slab.get_mut(old), None);
        assert_eq!(slab.remove(old), None);
        assert_eq!(slab.get(new), Some(&2));
        assert_eq!(slab.key_at(new.index()), Some(new));
    }

    #[test]
    fn freed_places_are_reused_before_the_slab_grows() {
        let mut slab = Slab::new();
        let keys: Vec<Key> = (0..8).map(|i| slab.insert(i)).collect();
        for &k in &keys[2..6] {
            slab.remove(k);
        }
        for i in 0..4 {
            slab.insert(100 + i);
        }
        assert_eq!(slab.index_bound(), 8);
        assert_eq!(slab.len(), 8);
        slab.insert(200);
        assert_eq!(slab.index_bound(), 9);
    }
}
