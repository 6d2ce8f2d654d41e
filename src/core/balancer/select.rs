//! The set of routable idle workers, ordered by the selection policy.
//!
//! Only workers that can take a request right now are in the set (idle, of
//! the active version, not draining, not leaving, under budget), so picking is
//! the pre-dispatch check: whatever `pick` returns has nothing in flight.
//! Every operation is `O(log n)` in the number of workers.

use std::collections::{BTreeMap, BTreeSet};

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

#[derive(Debug)]
pub(crate) enum IdleSet {
    /// Keyed by the order in which workers went idle; the last is the warmest.
    Lifo {
        by_order: BTreeMap<u64, Pid>,
        next: u64,
    },
    RoundRobin {
        pids: BTreeSet<Pid>,
        last: Option<Pid>,
    },
    /// Keyed by (requests dispatched when it went idle, pid).
    LeastConnections {
        by_load: BTreeSet<(u64, Pid)>,
    },
}

impl IdleSet {
    pub(crate) fn new(policy: Policy) -> IdleSet {
        match policy {
            Policy::Lifo => IdleSet::Lifo {
                by_order: BTreeMap::new(),
                next: 0,
            },
            Policy::RoundRobin => IdleSet::RoundRobin {
                pids: BTreeSet::new(),
                last: None,
            },
            Policy::LeastConnections => IdleSet::LeastConnections {
                by_load: BTreeSet::new(),
            },
        }
    }

    /// Adds a worker; returns the key to remove it with.
    pub(crate) fn insert(&mut self, pid: Pid, dispatched: u64) -> u64 {
        match self {
            IdleSet::Lifo { by_order, next } => {
                let key = *next;
                *next += 1;
                by_order.insert(key, pid);
                key
            }
            IdleSet::RoundRobin { pids, .. } => {
                pids.insert(pid);
                u64::from(pid.0)
            }
            IdleSet::LeastConnections { by_load } => {
                by_load.insert((dispatched, pid));
                dispatched
            }
        }
    }

    pub(crate) fn remove(&mut self, pid: Pid, key: u64) {
        match self {
            IdleSet::Lifo { by_order, .. } => {
                by_order.remove(&key);
            }
            IdleSet::RoundRobin { pids, .. } => {
                pids.remove(&pid);
            }
            IdleSet::LeastConnections { by_load } => {
                by_load.remove(&(key, pid));
            }
        }
    }

    /// Takes the next worker out of the set.
    pub(crate) fn pick(&mut self) -> Option<Pid> {
        match self {
            IdleSet::Lifo { by_order, .. } => by_order.pop_last().map(|(_, pid)| pid),
            IdleSet::RoundRobin { pids, last } => {
                let after = last.and_then(|l| pids.range(Pid(l.0.saturating_add(1))..).next().copied());
                let pid = after.or_else(|| pids.first().copied())?;
                pids.remove(&pid);
                *last = Some(pid);
                Some(pid)
            }
            IdleSet::LeastConnections { by_load } => by_load.pop_first().map(|(_, pid)| pid),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            IdleSet::Lifo { by_order, .. } => by_order.len(),
            IdleSet::RoundRobin { pids, .. } => pids.len(),
            IdleSet::LeastConnections { by_load } => by_load.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifo_picks_the_warmest() {
        let mut set = IdleSet::new(Policy::Lifo);
        set.insert(Pid(1), 0);
        let k2 = set.insert(Pid(2), 0);
        set.insert(Pid(3), 0);
        assert_eq!(set.pick(), Some(Pid(3)));
        set.remove(Pid(2), k2);
        assert_eq!(set.pick(), Some(Pid(1)));
        assert_eq!(set.pick(), None);
    }

    #[test]
    fn round_robin_cycles_in_pid_order() {
        let mut set = IdleSet::new(Policy::RoundRobin);
        for p in [3, 1, 2] {
            set.insert(Pid(p), 0);
        }
        let first = set.pick().unwrap();
        set.insert(first, 0);
        let second = set.pick().unwrap();
        set.insert(second, 0);
        let third = set.pick().unwrap();
        assert_eq!([first, second, third], [Pid(1), Pid(2), Pid(3)]);
        set.insert(third, 0);
        assert_eq!(set.pick(), Some(Pid(1)), "wraps around");
    }

    #[test]
    fn least_connections_prefers_the_least_used() {
        let mut set = IdleSet::new(Policy::LeastConnections);
        set.insert(Pid(1), 5);
        set.insert(Pid(2), 2);
        set.insert(Pid(3), 9);
        assert_eq!(set.pick(), Some(Pid(2)));
        assert_eq!(set.pick(), Some(Pid(1)));
    }
}
