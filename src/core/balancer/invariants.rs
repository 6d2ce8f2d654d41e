//! The balancer's internal consistency ([`check_balancer`], run by
//! [`Balancer::check_invariants`] after every step in the tests) and the
//! read-only views it and `core::invariants::Observer` look through.

use std::collections::BTreeMap;

use super::{Balancer, Phase};
use crate::core::{Pid, RequestId, Version};

/// Checks the balancer's internal consistency.
fn check_balancer(b: &Balancer) -> Result<(), String> {
    if let Some(message) = b.illegal_dispatch() {
        return Err(format!("dispatch to an ineligible worker: {message}"));
    }
    if b.illegal_transitions() > 0 {
        return Err(format!("{} illegal worker transitions", b.illegal_transitions()));
    }
    let config = b.config();
    let mut on_worker: BTreeMap<RequestId, Pid> = BTreeMap::new();
    let mut routable = 0;
    for w in b.workers_view() {
        if w.in_idle_set != w.routable {
            return Err(format!(
                "{:?}: in idle set = {}, routable = {}",
                w.pid, w.in_idle_set, w.routable
            ));
        }
        if w.routable {
            routable += 1;
            if w.in_flight.is_some() || w.draining || w.leaving || w.stuck {
                return Err(format!(
                    "{:?} is routable while busy, draining, leaving or stuck",
                    w.pid
                ));
            }
            if Some(w.version) != b.active_version() {
                return Err(format!(
                    "{:?} of {:?} routable while {:?} is active",
                    w.pid,
                    w.version,
                    b.active_version()
                ));
            }
            if let Some(max) = config.max_requests_per_worker
                && w.dispatched >= max
            {
                return Err(format!("{:?} routable past its budget of {max}", w.pid));
            }
        }
        if let Some(id) = w.in_flight
            && let Some(other) = on_worker.insert(id, w.pid)
        {
            return Err(format!("{id:?} in flight on both {other:?} and {:?}", w.pid));
        }
    }
    if routable != b.idle_len() {
        return Err(format!(
            "idle set holds {} but {routable} workers are routable",
            b.idle_len()
        ));
    }
    if b.queue_len() > config.max_queue {
        return Err(format!("queue holds {} > max {}", b.queue_len(), config.max_queue));
    }
    if b.queue_len() > 0 && b.idle_len() > 0 {
        return Err(format!(
            "{} queued while {} workers sit idle",
            b.queue_len(),
            b.idle_len()
        ));
    }
    let mut last_seq = None;
    for (seq, id) in b.queue_entries() {
        if last_seq.is_some_and(|l| l >= seq) {
            return Err("queue out of order".into());
        }
        last_seq = Some(seq);
        match b.request_worker(id) {
            Some((true, None)) => {}
            other => {
                return Err(format!("queued {id:?} is not in the queued phase: {other:?}"));
            }
        }
    }
    for id in b.request_ids() {
        match b.request_worker(id) {
            Some((false, Some(pid))) => {
                if on_worker.get(&id) != Some(&pid) {
                    return Err(format!("{id:?} says it is on {pid:?}, which does not have it"));
                }
            }
            Some((true, None)) => {}
            other => return Err(format!("{id:?} in an impossible phase {other:?}")),
        }
    }
    for (id, pid) in &on_worker {
        if b.request_worker(*id).and_then(|(_, p)| p) != Some(*pid) {
            return Err(format!("{pid:?} holds {id:?}, which is not on it"));
        }
    }
    Ok(())
}

impl Balancer {
    /// Checks every internal invariant; the tests call this after each step.
    pub fn check_invariants(&self) -> Result<(), String> {
        check_balancer(self)
    }

    pub(crate) fn queue_entries(&self) -> impl Iterator<Item = (u64, RequestId)> + '_ {
        self.queue.iter().map(|(&s, &r)| (s, r))
    }

    pub(crate) fn illegal_dispatch(&self) -> Option<&str> {
        self.first_illegal_dispatch.as_deref()
    }

    pub(crate) fn idle_len(&self) -> usize {
        self.idle.len()
    }

    pub(crate) fn workers_view(&self) -> impl Iterator<Item = WorkerView> + '_ {
        self.workers.values().map(|w| WorkerView {
            pid: w.pid,
            version: w.version,
            in_flight: w.in_flight(),
            in_idle_set: w.in_idle_set,
            routable: self.is_routable(w),
            draining: w.draining,
            leaving: w.leaving,
            stuck: w.is_stuck(),
            dispatched: w.dispatched,
        })
    }

    pub(crate) fn request_worker(&self, id: RequestId) -> Option<(bool, Option<Pid>)> {
        let r = self.requests.get(&id)?;
        Some(match r.phase {
            Phase::Queued { .. } => (true, None),
            Phase::Dispatched { pid, .. }
            | Phase::Streaming { pid }
            | Phase::TimedOut { pid }
            | Phase::Abandoned { pid, .. } => (false, Some(pid)),
        })
    }

    pub(crate) fn request_ids(&self) -> impl Iterator<Item = RequestId> + '_ {
        self.requests.keys().copied()
    }
}

/// A read-only view of one worker for the invariant checker.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WorkerView {
    pub(crate) pid: Pid,
    pub(crate) version: Version,
    pub(crate) in_flight: Option<RequestId>,
    pub(crate) in_idle_set: bool,
    pub(crate) routable: bool,
    pub(crate) draining: bool,
    pub(crate) leaving: bool,
    pub(crate) stuck: bool,
    pub(crate) dispatched: u64,
}
