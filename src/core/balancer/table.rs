//! The registered workers: a [`Slab`] of [`Worker`]s, found by pid through
//! an [`IdMap`], with a pid-ordered index for what walks them all (version
//! routing, `/status`, the invariant checks) and must keep its order.
//!
//! On the request path a worker is found by its pid in the `IdMap` and an
//! index (the old `BTreeMap<Pid, Worker>` walked a tree), and the idle set
//! names workers by slab index; the ordered index is touched only at the
//! edges (join, removal).

use std::collections::BTreeMap;

use super::worker::Worker;
use crate::core::Pid;
use crate::core::id_map::IdMap;
use crate::core::slab::{Key, Slab};

#[derive(Debug, Default)]
pub(crate) struct WorkerTable {
    slab: Slab<Worker>,
    by_pid: IdMap<Pid, Key>,
    in_pid_order: BTreeMap<Pid, Key>,
}

impl WorkerTable {
    pub(crate) fn len(&self) -> usize {
        self.by_pid.len()
    }

    /// Registers a worker whose pid is not registered yet.
    pub(crate) fn insert(&mut self, worker: Worker) {
        let pid = worker.pid;
        let key = self.slab.insert(worker);
        self.by_pid.insert(pid, key);
        self.in_pid_order.insert(pid, key);
    }

    pub(crate) fn remove(&mut self, pid: &Pid) -> Option<Worker> {
        let key = self.by_pid.remove(pid)?;
        self.in_pid_order.remove(pid);
        self.slab.remove(key)
    }

    #[inline]
    pub(crate) fn get(&self, pid: &Pid) -> Option<&Worker> {
        self.slab.get(*self.by_pid.get(pid)?)
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, pid: &Pid) -> Option<&mut Worker> {
        self.slab.get_mut(*self.by_pid.get(pid)?)
    }

    /// The worker and its slab index (the name the idle set knows it by).
    #[inline]
    pub(crate) fn get_indexed_mut(&mut self, pid: &Pid) -> Option<(usize, &mut Worker)> {
        let key = *self.by_pid.get(pid)?;
        Some((key.index(), self.slab.get_mut(key)?))
    }

    /// The worker at a slab index, as the idle set names it.
    #[inline]
    pub(crate) fn at_index_mut(&mut self, index: usize) -> Option<&mut Worker> {
        let key = self.slab.key_at(index)?;
        self.slab.get_mut(key)
    }

    /// Every worker in pid order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &Worker> + '_ {
        self.in_pid_order.values().filter_map(|&key| self.slab.get(key))
    }

    /// Every pid in order.
    pub(crate) fn pids(&self) -> Vec<Pid> {
        self.in_pid_order.keys().copied().collect()
    }
}
