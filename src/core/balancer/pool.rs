//! The worker pool: which workers are routable (the idle set), draining and
//! leaving workers, and version routing.

use std::collections::BTreeMap;

use super::worker::Worker;
use super::{Balancer, WorkerEvent};
use crate::core::{Pid, Time, Version};

impl Balancer {
    pub(super) fn after_worker_change(&mut self, pid: Pid, _now: Time) {
        self.refresh(pid);
        self.report_idle_if_drained(pid);
        self.remove_if_gone(pid);
    }

    pub(super) fn leave(&mut self, pid: Pid, now: Time) {
        let now = self.tick(now);
        let Some(worker) = self.workers.get_mut(&pid) else {
            return;
        };
        worker.leaving = true;
        self.refresh(pid);
        self.remove_if_gone(pid);
        self.update_active_version();
        self.pump(now);
    }

    pub(super) fn remove_if_gone(&mut self, pid: Pid) {
        let Some(worker) = self.workers.get(&pid) else {
            return;
        };
        if worker.leaving && worker.in_flight().is_none() {
            if let Some(until) = worker.quarantined_until() {
                self.quarantines.remove(&(until, pid));
            }
            if worker.in_idle_set
                && let Some((index, _)) = self.workers.get_indexed_mut(&pid)
            {
                self.idle.remove(index);
            }
            self.workers.remove(&pid);
            self.events.push_back(WorkerEvent::Removed { pid });
        }
    }

    pub(super) fn report_idle_if_drained(&mut self, pid: Pid) {
        let Some(worker) = self.workers.get_mut(&pid) else {
            return;
        };
        if worker.draining && !worker.idle_reported && worker.in_flight().is_none() {
            worker.idle_reported = true;
            self.events.push_back(WorkerEvent::Idle { pid });
        }
    }

    pub(super) fn is_routable(&self, worker: &Worker) -> bool {
        worker.routable(self.active, self.config.max_requests_per_worker)
    }

    /// Puts a worker into the idle set or takes it out, as its state says.
    pub(super) fn refresh(&mut self, pid: Pid) {
        let (active, max) = (self.active, self.config.max_requests_per_worker);
        let Some((index, worker)) = self.workers.get_indexed_mut(&pid) else {
            return;
        };
        match (worker.routable(active, max), worker.in_idle_set) {
            (true, false) => {
                worker.in_idle_set = true;
                self.idle.insert(index, pid, worker.dispatched);
            }
            (false, true) => {
                worker.in_idle_set = false;
                self.idle.remove(index);
            }
            _ => {}
        }
    }

    /// Version routing: a newer version takes all new requests once it has
    /// as many ready workers as the active version, capped at the desired
    /// count (and at least one). Older versions never get traffic again.
    pub(super) fn update_active_version(&mut self) {
        let mut ready: BTreeMap<Version, usize> = BTreeMap::new();
        for worker in self.workers.values() {
            if worker.is_ready() {
                *ready.entry(worker.version).or_default() += 1;
            }
        }
        let active_ready = self.active.and_then(|v| ready.get(&v).copied()).unwrap_or(0);
        let quorum = active_ready.min(self.config.desired_workers as usize).max(1);
        let candidate = ready
            .iter()
            .rev()
            .filter(|&(&v, _)| self.active.is_none_or(|a| v > a))
            .find(|&(_, &n)| n >= quorum)
            .map(|(&v, _)| v);
        if let Some(version) = candidate {
            self.active = Some(version);
            self.events.push_back(WorkerEvent::VersionActivated { version });
            for pid in self.workers.pids() {
                self.refresh(pid);
            }
        }
    }
}
