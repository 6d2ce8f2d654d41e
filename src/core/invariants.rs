//! The end-to-end promises every test layer checks: one observer, shared by
//! the unit tests, the proptests, the turmoil simulation and the fuzz targets.
//!
//! - [`Observer`] watches the inputs and outputs of a balancer from outside
//!   and checks the end-to-end promises (every request ends exactly once,
//!   503/504 only for their reasons, at most one retry, and none after a
//!   request reached a worker unless `retry_after_send` allows it, FIFO, no
//!   dispatch to an ineligible worker).
//!
//! The balancer's own consistency check lives with it
//! ([`Balancer::check_invariants`]). This module imports the balancer; the
//! balancer never imports this module.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::balancer::{Action, Balancer, RequestMeta};
use super::{Answer, Pid, RequestId, Time};

/// How a request ended, as seen from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// A worker's response head reached the client.
    Response,
    /// A synthesized answer.
    Answered(Answer),
    /// The client left first.
    ClientGone,
}

#[derive(Clone, Debug)]
struct Seen {
    meta: RequestMeta,
    arrived: Time,
    /// Order of arrival among all requests.
    order: u64,
    dispatches: Vec<(Time, Pid)>,
    /// The last dispatch failed after the request bytes were sent.
    sent_and_failed: bool,
    ending: Option<Ending>,
    queued: bool,
}

/// Watches a balancer from outside and checks its end-to-end promises.
///
/// Call [`Observer::before`] with the balancer before every input, report the
/// input with the matching `on_*` method, and pass every drained action to
/// [`Observer::on_action`] together with the balancer. [`Observer::finish`]
/// checks that every request ended exactly once.
#[derive(Debug, Default)]
pub struct Observer {
    requests: BTreeMap<RequestId, Seen>,
    next_order: u64,
    queue_len_before: usize,
    stopping_before: bool,
    queue_timeout: Duration,
    read_timeout: Duration,
    max_queue: usize,
    retry_after_send: bool,
    /// Requests never dispatched that are waiting, by arrival order.
    waiting_fresh: BTreeSet<(u64, RequestId)>,
    violations: Vec<String>,
}

impl Observer {
    /// An observer for a balancer with this configuration.
    pub fn new(b: &Balancer) -> Observer {
        let c = b.config();
        Observer {
            queue_timeout: c.queue_timeout,
            read_timeout: c.read_timeout,
            max_queue: c.max_queue,
            retry_after_send: c.retry_after_send,
            ..Observer::default()
        }
    }

    /// Call before feeding the balancer any input.
    pub fn before(&mut self, b: &Balancer) {
        self.queue_len_before = b.queue_len();
        self.stopping_before = b.is_stopping();
    }

    fn fail(&mut self, message: String) {
        self.violations.push(message);
    }

    fn end(&mut self, id: RequestId, ending: Ending) {
        let Some(seen) = self.requests.get_mut(&id) else {
            self.fail(format!("{id:?} ended ({ending:?}) but never arrived"));
            return;
        };
        if let Some(previous) = seen.ending {
            let message = format!("{id:?} ended twice: {previous:?} then {ending:?}");
            self.fail(message);
            return;
        }
        seen.ending = Some(ending);
        let order = seen.order;
        self.waiting_fresh.remove(&(order, id));
    }

    /// A request arrived (after `before`, with the same `now` given to the balancer).
    pub fn on_request(&mut self, id: RequestId, meta: RequestMeta, now: Time) {
        let order = self.next_order;
        self.next_order += 1;
        self.requests.insert(
            id,
            Seen {
                meta,
                arrived: now,
                order,
                dispatches: Vec::new(),
                sent_and_failed: false,
                ending: None,
                queued: false,
            },
        );
        self.waiting_fresh.insert((order, id));
    }

    /// The response head for `id` was reported to the balancer.
    pub fn on_response_head(&mut self, id: RequestId) {
        if self.requests.get(&id).is_some_and(|s| s.ending.is_none()) {
            self.end(id, Ending::Response);
        }
    }

    /// The dispatch of `id` failed after its bytes were sent.
    pub fn on_failed_after_send(&mut self, id: RequestId) {
        if let Some(seen) = self.requests.get_mut(&id) {
            seen.sent_and_failed = true;
        }
    }

    /// The client of `id` went away.
    pub fn on_client_gone(&mut self, id: RequestId) {
        if self.requests.get(&id).is_some_and(|s| s.ending.is_none()) {
            self.end(id, Ending::ClientGone);
        }
    }

    /// Checks one drained action against the balancer's state after the step.
    pub fn on_action(&mut self, action: &Action, b: &Balancer, now: Time) {
        match *action {
            Action::Dispatch { request, pid, attempt } => self.on_dispatch(request, pid, attempt, b, now),
            Action::Answer { request, answer } => self.on_answer(request, answer, now),
        }
    }

    fn on_dispatch(&mut self, id: RequestId, pid: Pid, attempt: u8, b: &Balancer, now: Time) {
        let Some(seen) = self.requests.get_mut(&id) else {
            self.fail(format!("dispatch of unknown {id:?}"));
            return;
        };
        let mut problems = Vec::new();
        if seen.ending.is_some() {
            problems.push(format!("{id:?} dispatched after it ended ({:?})", seen.ending));
        }
        if usize::from(attempt) != seen.dispatches.len() {
            problems.push(format!(
                "{id:?} attempt {attempt} after {} dispatches",
                seen.dispatches.len()
            ));
        }
        if seen.sent_and_failed && !self.retry_after_send {
            problems.push(format!(
                "{id:?} was sent again after reaching a worker, with retry_after_send off"
            ));
        } else if seen.sent_and_failed && !(seen.meta.idempotent && seen.meta.replayable) {
            problems.push(format!(
                "{id:?} is not idempotent+replayable and was sent again after reaching a worker"
            ));
        }
        let (order, first) = (seen.order, seen.dispatches.is_empty());
        seen.dispatches.push((now, pid));
        if seen.dispatches.len() > 2 {
            problems.push(format!(
                "{id:?} dispatched {} times (one retry at most)",
                seen.dispatches.len()
            ));
        }
        self.violations.extend(problems);
        if first {
            // FIFO: no request that arrived earlier and was never dispatched is still waiting.
            if let Some(&(o, earlier)) = self.waiting_fresh.first()
                && o < order
                && self.requests.get(&earlier).is_some_and(|s| s.queued)
            {
                self.fail(format!("{id:?} dispatched before the earlier queued {earlier:?}"));
            }
            self.waiting_fresh.remove(&(order, id));
        }
        match b.workers_view().find(|w| w.pid == pid) {
            None => self.fail(format!("{id:?} dispatched to unregistered {pid:?}")),
            Some(w) => {
                if w.in_flight != Some(id) {
                    self.fail(format!("{pid:?} got {id:?} but holds {:?}", w.in_flight));
                }
                // Eligibility (version, draining, stuck) is checked by the
                // balancer at the moment of dispatch: within one step a worker
                // can get a request and then be drained or outdated.
            }
        }
    }

    fn on_answer(&mut self, id: RequestId, answer: Answer, now: Time) {
        let Some(seen) = self.requests.get(&id).cloned() else {
            self.fail(format!("answer {answer:?} for unknown {id:?}"));
            return;
        };
        let legal = match answer {
            Answer::QueueFull => self.queue_len_before >= self.max_queue || (!seen.dispatches.is_empty()),
            Answer::NoCapacity => self.stopping_before || self.max_queue == 0 || seen.dispatches.len() >= 2,
            Answer::QueueTimeout => now >= seen.arrived + self.queue_timeout,
            Answer::UpstreamTimeout => seen
                .dispatches
                .last()
                .is_some_and(|&(t, _)| now >= t + self.read_timeout),
            Answer::UpstreamError => !seen.dispatches.is_empty(),
        };
        if !legal {
            self.fail(format!(
                "{id:?} answered {answer:?} at {now:?} without cause (arrived {:?}, dispatches {:?}, queue before {})",
                seen.arrived, seen.dispatches, self.queue_len_before
            ));
        }
        self.end(id, Ending::Answered(answer));
    }

    /// Records that `id` is waiting in the queue (call after the step when
    /// the balancer neither dispatched nor answered it).
    pub fn note_queued(&mut self, b: &Balancer) {
        let queued: BTreeSet<RequestId> = b.queue_entries().map(|(_, id)| id).collect();
        for id in queued {
            if let Some(seen) = self.requests.get_mut(&id) {
                seen.queued = true;
            }
        }
    }

    /// How `id` ended, if it has.
    pub fn ending(&self, id: RequestId) -> Option<Ending> {
        self.requests.get(&id).and_then(|s| s.ending)
    }

    /// Every violation seen so far.
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// Fails if any violation was seen, or (when `all_ended`) if a request
    /// has not ended.
    pub fn finish(&self, all_ended: bool) -> Result<(), String> {
        if let Some(v) = self.violations.first() {
            return Err(format!("{} violation(s), first: {v}", self.violations.len()));
        }
        if all_ended && let Some((id, _)) = self.requests.iter().find(|(_, s)| s.ending.is_none()) {
            return Err(format!("{id:?} never ended"));
        }
        Ok(())
    }
}
