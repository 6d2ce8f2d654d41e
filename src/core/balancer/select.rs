//! The set of routable idle workers, ordered by the selection policy.
//!
//! Only workers that can take a request right now are in the set (idle, of
//! the active version, not draining, not leaving, under budget), so picking is
//! the pre-dispatch check: whatever `pick` returns has nothing in flight.
//!
//! Workers are named by their place in the balancer's worker slab (the
//! index of their [`Key`](crate::core::slab::Key)), so the set's side
//! tables are plain vectors: LIFO is a doubly linked list (every operation
//! O(1)), round-robin and least-connections are indexed binary heaps
//! (O(log n), removal of any member included). Nothing allocates once the
//! tables have grown to the pool's size.

use super::super::Pid;

/// How an idle worker is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Last in, first out: the most recently freed (warmest) worker first.
    #[default]
    Lifo,
    /// Round-robin over worker pids.
    RoundRobin,
    /// Least connections; with one request per worker every idle worker has
    /// none, so ties go to the worker that has served the fewest requests.
    LeastConnections,
}

impl Policy {
    /// The `--lb-policy` value: `lifo`, `rr` or `lc`.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Lifo => "lifo",
            Policy::RoundRobin => "rr",
            Policy::LeastConnections => "lc",
        }
    }

    /// Parses an `--lb-policy` value.
    pub fn from_name(name: &str) -> Option<Policy> {
        match name {
            "lifo" => Some(Policy::Lifo),
            "rr" => Some(Policy::RoundRobin),
            "lc" => Some(Policy::LeastConnections),
            _ => None,
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

const NIL: u32 = u32::MAX;

#[derive(Debug)]
pub(crate) enum IdleSet {
    /// The order in which workers went idle; the tail is the warmest.
    Lifo(Stack),
    /// Keyed by (lap, pid): a pid after the last one picked is in the
    /// current lap, one at or before it in the next, so the minimum is the
    /// next pid in round-robin order, wrapping around.
    RoundRobin {
        heap: IndexedHeap,
        lap: u64,
        last: Option<Pid>,
    },
    /// Keyed by (requests dispatched when it went idle, pid).
    LeastConnections(IndexedHeap),
}

impl IdleSet {
    pub(crate) fn new(policy: Policy) -> IdleSet {
        match policy {
            Policy::Lifo => IdleSet::Lifo(Stack::default()),
            Policy::RoundRobin => IdleSet::RoundRobin {
                heap: IndexedHeap::default(),
                lap: 0,
                last: None,
            },
            Policy::LeastConnections => IdleSet::LeastConnections(IndexedHeap::default()),
        }
    }

    /// Adds the worker at slab index `index` (not already in the set).
    pub(crate) fn insert(&mut self, index: usize, pid: Pid, dispatched: u64) {
        match self {
            IdleSet::Lifo(stack) => stack.push(index),
            IdleSet::RoundRobin { heap, lap, last } => {
                // The pids the old `range(last + 1..)` reached are this lap's.
                let threshold = last.map_or(0, |l| l.0.saturating_add(1));
                let lap = if pid.0 >= threshold { *lap } else { *lap + 1 };
                heap.push(index, (lap, pid.0));
            }
            IdleSet::LeastConnections(heap) => heap.push(index, (dispatched, pid.0)),
        }
    }

    /// Takes the worker at slab index `index` out of the set, if it is there.
    pub(crate) fn remove(&mut self, index: usize) {
        match self {
            IdleSet::Lifo(stack) => stack.remove(index),
            IdleSet::RoundRobin { heap, .. } | IdleSet::LeastConnections(heap) => heap.remove(index),
        }
    }

    /// Takes the next worker out of the set; returns its slab index.
    pub(crate) fn pick(&mut self) -> Option<usize> {
        match self {
            IdleSet::Lifo(stack) => stack.pop(),
            IdleSet::RoundRobin { heap, lap, last } => {
                let (index, (picked_lap, pid)) = heap.pop()?;
                // Nothing was left in this lap: the next one begins.
                *lap = picked_lap;
                *last = Some(Pid(pid));
                Some(index)
            }
            IdleSet::LeastConnections(heap) => heap.pop().map(|(index, _)| index),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            IdleSet::Lifo(stack) => stack.len,
            IdleSet::RoundRobin { heap, .. } | IdleSet::LeastConnections(heap) => heap.entries.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A doubly linked list over slab indices: push and pop at the tail,
/// removal anywhere, all O(1).
#[derive(Debug, Default)]
pub(crate) struct Stack {
    /// `(prev, next)` by slab index; `member` says whether it is linked.
    links: Vec<Link>,
    tail: u32,
    len: usize,
}

#[derive(Clone, Copy, Debug)]
struct Link {
    prev: u32,
    next: u32,
    member: bool,
}

const UNLINKED: Link = Link {
    prev: NIL,
    next: NIL,
    member: false,
};

impl Stack {
    fn link_mut(&mut self, index: usize) -> &mut Link {
        if index >= self.links.len() {
            self.links.resize(index + 1, UNLINKED);
        }
        &mut self.links[index]
    }

    fn push(&mut self, index: usize) {
        if self.len == 0 {
            self.tail = NIL;
        }
        let tail = self.tail;
        let link = self.link_mut(index);
        if link.member {
            return;
        }
        *link = Link {
            prev: tail,
            next: NIL,
            member: true,
        };
        if tail != NIL {
            self.links[tail as usize].next = index as u32;
        }
        self.tail = index as u32;
        self.len += 1;
    }

    fn pop(&mut self) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let index = self.tail as usize;
        self.remove(index);
        Some(index)
    }

    fn remove(&mut self, index: usize) {
        let Some(&link) = self.links.get(index) else {
            return;
        };
        if !link.member {
            return;
        }
        self.links[index] = UNLINKED;
        if link.prev != NIL {
            self.links[link.prev as usize].next = link.next;
        }
        if link.next != NIL {
            self.links[link.next as usize].prev = link.prev;
        } else {
            self.tail = link.prev;
        }
        self.len -= 1;
    }
}

/// A binary min-heap of slab indices by a `(u64, u32)` key, with each
/// member's position kept so any member can be removed in O(log n).
#[derive(Debug, Default)]
pub(crate) struct IndexedHeap {
    /// `(key, slab index)`, heap-ordered by key.
    entries: Vec<((u64, u32), u32)>,
    /// Position in `entries` by slab index, `NIL` when absent.
    positions: Vec<u32>,
}

impl IndexedHeap {
    fn push(&mut self, index: usize, key: (u64, u32)) {
        if index >= self.positions.len() {
            self.positions.resize(index + 1, NIL);
        }
        if self.positions[index] != NIL {
            return;
        }
        let at = self.entries.len();
        self.entries.push((key, index as u32));
        self.positions[index] = at as u32;
        self.sift_up(at);
    }

    fn pop(&mut self) -> Option<(usize, (u64, u32))> {
        let &(key, index) = self.entries.first()?;
        self.take(0);
        Some((index as usize, key))
    }

    fn remove(&mut self, index: usize) {
        match self.positions.get(index) {
            Some(&at) if at != NIL => self.take(at as usize),
            _ => {}
        }
    }

    /// Removes the entry at heap position `at`.
    fn take(&mut self, at: usize) {
        let last = self.entries.len() - 1;
        let (_, gone) = self.entries[at];
        self.positions[gone as usize] = NIL;
        if at == last {
            self.entries.pop();
            return;
        }
        let moved = self.entries.pop().expect("not empty");
        self.entries[at] = moved;
        self.positions[moved.1 as usize] = at as u32;
        if at > 0 && moved.0 < self.entries[(at - 1) / 2].0 {
            self.sift_up(at);
        } else {
            self.sift_down(at);
        }
    }

    fn sift_up(&mut self, mut at: usize) {
        let entry = self.entries[at];
        while at > 0 {
            let parent = (at - 1) / 2;
            let above = self.entries[parent];
            if above.0 <= entry.0 {
                break;
            }
            self.entries[at] = above;
            self.positions[above.1 as usize] = at as u32;
            at = parent;
        }
        self.entries[at] = entry;
        self.positions[entry.1 as usize] = at as u32;
    }

    /// Floyd's bottom-up sift: the entry moved here came from the bottom and
    /// usually belongs near it, so walk the smaller children down to a leaf
    /// (one comparison a level instead of two) and sift the entry up from
    /// there.
    fn sift_down(&mut self, at: usize) {
        let entry = self.entries[at];
        let len = self.entries.len();
        let mut hole = at;
        loop {
            let left = 2 * hole + 1;
            if left >= len {
                break;
            }
            let right = left + 1;
            let child = if right < len && self.entries[right].0 < self.entries[left].0 {
                right
            } else {
                left
            };
            let below = self.entries[child];
            self.entries[hole] = below;
            self.positions[below.1 as usize] = hole as u32;
            hole = child;
        }
        // Called only when the entry is not below its parent (see `take`),
        // so sifting up from the leaf never climbs past `at`.
        self.entries[hole] = entry;
        self.sift_up(hole);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    /// The idle set as it was, over `BTreeMap`s: the model the slab-indexed
    /// set must match pick for pick.
    enum Model {
        Lifo { by_order: BTreeMap<u64, Pid>, next: u64 },
        RoundRobin { pids: BTreeSet<Pid>, last: Option<Pid> },
        LeastConnections { by_load: BTreeSet<(u64, Pid)> },
    }

    impl Model {
        fn insert(&mut self, pid: Pid, dispatched: u64) {
            match self {
                Model::Lifo { by_order, next } => {
                    by_order.insert(*next, pid);
                    *next += 1;
                }
                Model::RoundRobin { pids, .. } => {
                    pids.insert(pid);
                }
                Model::LeastConnections { by_load } => {
                    by_load.insert((dispatched, pid));
                }
            }
        }

        fn remove(&mut self, pid: Pid) {
            match self {
                Model::Lifo { by_order, .. } => by_order.retain(|_, p| *p != pid),
                Model::RoundRobin { pids, .. } => {
                    pids.remove(&pid);
                }
                Model::LeastConnections { by_load } => by_load.retain(|(_, p)| *p != pid),
            }
        }

        fn pick(&mut self) -> Option<Pid> {
            match self {
                Model::Lifo { by_order, .. } => by_order.pop_last().map(|(_, pid)| pid),
                Model::RoundRobin { pids, last } => {
                    let after = last.and_then(|l| pids.range(Pid(l.0.saturating_add(1))..).next().copied());
                    let pid = after.or_else(|| pids.first().copied())?;
                    pids.remove(&pid);
                    *last = Some(pid);
                    Some(pid)
                }
                Model::LeastConnections { by_load } => by_load.pop_first().map(|(_, pid)| pid),
            }
        }
    }

    /// Slab index `i` holds pid `pids[i]`.
    fn pids() -> Vec<Pid> {
        [9, 3, 14, 1, 7, u32::MAX, 2, 11, 0, 5].map(Pid).to_vec()
    }

    #[test]
    fn lifo_picks_the_warmest() {
        let mut set = IdleSet::new(Policy::Lifo);
        set.insert(1, Pid(1), 0);
        set.insert(2, Pid(2), 0);
        set.insert(3, Pid(3), 0);
        assert_eq!(set.pick(), Some(3));
        set.remove(2);
        assert_eq!(set.pick(), Some(1));
        assert_eq!(set.pick(), None);
    }

    #[test]
    fn round_robin_cycles_in_pid_order() {
        let mut set = IdleSet::new(Policy::RoundRobin);
        // Slab index = pid here.
        for p in [3, 1, 2] {
            set.insert(p, Pid(p as u32), 0);
        }
        let mut next = || {
            let i = set.pick().unwrap();
            set.insert(i, Pid(i as u32), 0);
            i
        };
        assert_eq!([next(), next(), next(), next()], [1, 2, 3, 1], "wraps around");
    }

    #[test]
    fn least_connections_prefers_the_least_used() {
        let mut set = IdleSet::new(Policy::LeastConnections);
        set.insert(1, Pid(1), 5);
        set.insert(2, Pid(2), 2);
        set.insert(3, Pid(3), 9);
        assert_eq!(set.pick(), Some(2));
        assert_eq!(set.pick(), Some(1));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert { slot: usize, dispatched: u64 },
        Remove { slot: usize },
        Pick,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..10usize, 0..4u64).prop_map(|(slot, dispatched)| Op::Insert { slot, dispatched }),
            1 => (0..10usize).prop_map(|slot| Op::Remove { slot }),
            3 => Just(Op::Pick),
        ]
    }

    proptest! {
        #[test]
        fn picks_what_the_btree_sets_picked(policy in prop_oneof![
            Just(Policy::Lifo), Just(Policy::RoundRobin), Just(Policy::LeastConnections)
        ], ops in proptest::collection::vec(op(), 0..200)) {
            let pids = pids();
            let mut set = IdleSet::new(policy);
            let mut model = match policy {
                Policy::Lifo => Model::Lifo { by_order: BTreeMap::new(), next: 0 },
                Policy::RoundRobin => Model::RoundRobin { pids: BTreeSet::new(), last: None },
                Policy::LeastConnections => Model::LeastConnections { by_load: BTreeSet::new() },
            };
            let mut members = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Insert { slot, dispatched } => {
                        // The balancer never inserts a member twice.
                        if members.insert(slot) {
                            set.insert(slot, pids[slot], dispatched);
                            model.insert(pids[slot], dispatched);
                        }
                    }
                    Op::Remove { slot } => {
                        members.remove(&slot);
                        set.remove(slot);
                        model.remove(pids[slot]);
                    }
                    Op::Pick => {
                        let picked = set.pick();
                        if let Some(slot) = picked {
                            members.remove(&slot);
                        }
                        prop_assert_eq!(picked.map(|s| pids[s]), model.pick());
                    }
                }
                prop_assert_eq!(set.len(), members.len());
            }
        }
    }
}
