//! The read deadlines of dispatched requests, earliest first.
//!
//! A doubly linked list in a [`Slab`], ordered by `(deadline, request)`: a
//! request keeps the [`Key`] of its entry, so removing it is O(1), and
//! inserting walks back from the tail, which is O(1) in practice because a
//! deadline is `now + read_timeout` with `now` that never goes backwards
//! (a tie on the deadline walks past the entries of larger request ids at
//! the same instant, so the order is exactly the `BTreeSet<(Time,
//! RequestId)>` it replaces).

use crate::core::slab::{Key, Slab};
use crate::core::{RequestId, Time};

#[derive(Clone, Copy, Debug)]
struct Entry {
    deadline: Time,
    request: RequestId,
    prev: Option<Key>,
    next: Option<Key>,
}

/// `(deadline, request)` entries in ascending order.
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    entries: Slab<Entry>,
    first: Option<Key>,
    last: Option<Key>,
}

impl Deadlines {
    /// Adds an entry; returns the handle that removes it.
    pub(crate) fn insert(&mut self, deadline: Time, request: RequestId) -> Key {
        let order = (deadline, request);
        // The entry goes after `prev`: the last entry not greater than it.
        let mut prev = self.last;
        while let Some(key) = prev {
            let e = &self.entries.get(key).expect("linked entries are live");
            if (e.deadline, e.request) <= order {
                break;
            }
            prev = e.prev;
        }
        let next = match prev {
            Some(p) => self.entries.get(p).and_then(|e| e.next),
            None => self.first,
        };
        let key = self.entries.insert(Entry {
            deadline,
            request,
            prev,
            next,
        });
        match prev {
            Some(p) => self.entry_mut(p).next = Some(key),
            None => self.first = Some(key),
        }
        match next {
            Some(n) => self.entry_mut(n).prev = Some(key),
            None => self.last = Some(key),
        }
        key
    }

    fn entry_mut(&mut self, key: Key) -> &mut Entry {
        self.entries.get_mut(key).expect("linked entries are live")
    }

    /// Removes an entry; a stale handle changes nothing.
    pub(crate) fn remove(&mut self, key: Key) {
        let Some(entry) = self.entries.remove(key) else {
            return;
        };
        match entry.prev {
            Some(p) => self.entry_mut(p).next = entry.next,
            None => self.first = entry.next,
        }
        match entry.next {
            Some(n) => self.entry_mut(n).prev = entry.prev,
            None => self.last = entry.prev,
        }
    }

    /// The earliest entry.
    pub(crate) fn first(&self) -> Option<(Time, RequestId)> {
        let e = self.entries.get(self.first?)?;
        Some((e.deadline, e.request))
    }

    /// Removes and returns the earliest entry.
    pub(crate) fn pop_first(&mut self) -> Option<(Time, RequestId)> {
        let key = self.first?;
        let first = self.first();
        self.remove(key);
        first
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn earliest_first_and_ties_by_request() {
        let mut d = Deadlines::default();
        let t = Time::from_millis;
        d.insert(t(5), RequestId(9));
        let k = d.insert(t(7), RequestId(1));
        d.insert(t(5), RequestId(3));
        d.insert(t(2), RequestId(4));
        d.remove(k);
        d.remove(k);
        assert_eq!(d.len(), 3);
        let order: Vec<_> = std::iter::from_fn(|| d.pop_first()).collect();
        assert_eq!(
            order,
            [(t(2), RequestId(4)), (t(5), RequestId(3)), (t(5), RequestId(9))]
        );
        assert_eq!(d.first(), None);
    }

    proptest! {
        #[test]
        fn orders_like_a_btree_set(ops in proptest::collection::vec((0..3u8, 0..20u64, 0..6u64), 0..200)) {
            let mut d = Deadlines::default();
            let mut model = BTreeSet::new();
            let mut keys: Vec<(Key, (Time, RequestId))> = Vec::new();
            let mut next_id = 0;
            for (op, millis, pick) in ops {
                match op {
                    0 => {
                        next_id += 1;
                        let entry = (Time::from_millis(millis), RequestId(next_id));
                        keys.push((d.insert(entry.0, entry.1), entry));
                        model.insert(entry);
                    }
                    1 if !keys.is_empty() => {
                        let (key, entry) = keys.swap_remove(pick as usize % keys.len());
                        d.remove(key);
                        model.remove(&entry);
                    }
                    _ => {
                        let popped = d.pop_first();
                        prop_assert_eq!(popped, model.pop_first());
                        keys.retain(|(_, e)| Some(*e) != popped);
                    }
                }
                prop_assert_eq!(d.first(), model.first().copied());
                prop_assert_eq!(d.len(), model.len());
            }
        }
    }
}
