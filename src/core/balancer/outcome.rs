//! What became of a dispatch: the outcome inputs (`handle_response_head`,
//! `handle_complete`, `handle_busy`, `handle_connect_failed`,
//! `handle_failed_after_send`, `handle_client_gone`,
//! `handle_dispatch_unused`), the retry decision and freeing the worker.

use super::{Answer, Balancer, Phase, REFUSALS_BEFORE_UNHEALTHY, WorkerEvent};
use crate::core::{Pid, RequestId, Time};

impl Balancer {
    /// The worker's response head arrived for `id`: the request has its
    /// answer. Call `handle_complete` when the exchange is over.
    pub fn handle_response_head(&mut self, id: RequestId, now: Time) {
        self.tick(now);
        let Some(request) = self.requests.get_mut(&id) else {
            return;
        };
        let (pid, entry) = match request.phase {
            Phase::Dispatched { pid, entry, .. } => (pid, entry),
            Phase::Abandoned {
                pid,
                deadline: Some(_),
                entry,
            } => {
                // Nobody waits for it, but the worker answered: not stuck.
                request.phase = Phase::Abandoned {
                    pid,
                    deadline: None,
                    entry,
                };
                self.read_deadlines.remove(entry);
                if let Some(worker) = self.workers.get_mut(&pid) {
                    self.illegal.count(worker.on_head(id));
                }
                return;
            }
            // The head of a request already answered (timed out) changes
            // nothing for the client.
            _ => return,
        };
        request.phase = Phase::Streaming { pid };
        self.read_deadlines.remove(entry);
        self.stats.responses += 1;
        if let Some(worker) = self.workers.get_mut(&pid) {
            self.illegal.count(worker.on_head(id));
        }
    }

    /// The exchange with the worker for `id` is over: the whole response was
    /// relayed (`clean`), or the connection broke after the head, or a
    /// timed-out or abandoned request finally ended. Frees the worker.
    pub fn handle_complete(&mut self, id: RequestId, clean: bool, now: Time) {
        let now = self.tick(now);
        let Some(request) = self.requests.get(&id).copied() else {
            return;
        };
        let pid = match request.phase {
            Phase::Queued { .. } => return,
            Phase::Dispatched { pid, entry, .. } => {
                // A complete without a head: treat the head as received.
                self.read_deadlines.remove(entry);
                self.stats.responses += 1;
                self.observe_duration(request.arrived, now);
                pid
            }
            Phase::Streaming { pid } => {
                self.observe_duration(request.arrived, now);
                pid
            }
            Phase::TimedOut { pid } | Phase::Abandoned { pid, .. } => pid,
        };
        self.requests.remove(&id);
        let quarantine = (!clean).then(|| now + self.config.quarantine);
        self.worker_done(pid, id, quarantine, now);
    }

    /// One bucket increment: the request's time from arrival to the end of
    /// its worker's response.
    fn observe_duration(&mut self, arrived: Time, now: Time) {
        let micros = now.as_micros().saturating_sub(arrived.as_micros());
        self.stats.request_duration.observe(micros);
    }

    /// The worker answered `503 Rip-Worker-Busy`: it did not take the request.
    pub fn handle_busy(&mut self, id: RequestId, now: Time) {
        self.refused(id, Answer::NoCapacity, now);
    }

    /// Connecting to the worker failed: nothing was sent.
    pub fn handle_connect_failed(&mut self, id: RequestId, now: Time) {
        self.refused(id, Answer::UpstreamError, now);
    }

    /// The connection failed after request bytes were sent and before a
    /// response head: the worker may have started on the request (and may
    /// have died of it). Answered `502 upstream_error`, unless
    /// [`retry_after_send`](super::BalancerConfig::retry_after_send) is set and the request is
    /// idempotent, replayable and not yet retried.
    pub fn handle_failed_after_send(&mut self, id: RequestId, now: Time) {
        let now = self.tick(now);
        let Some(request) = self.requests.get(&id).copied() else {
            return;
        };
        let pid = match request.phase {
            Phase::Dispatched { pid, entry, .. } => {
                self.read_deadlines.remove(entry);
                pid
            }
            Phase::TimedOut { pid } | Phase::Abandoned { pid, .. } | Phase::Streaming { pid } => {
                // Already ended for the client; only the worker is freed.
                self.requests.remove(&id);
                self.worker_done(pid, id, Some(now + self.config.quarantine), now);
                return;
            }
            Phase::Queued { .. } => return,
        };
        self.worker_done(pid, id, Some(now + self.config.quarantine), now);
        // Off by default: a request that killed its worker would kill a
        // second one when replayed (`GET /crash`).
        let may_retry = self.config.retry_after_send
            && request.meta.idempotent
            && request.meta.replayable
            && request.dispatches < 2;
        if may_retry {
            self.stats.retries += 1;
            self.retry(id, now);
        } else {
            self.answer_existing(id, Answer::UpstreamError);
        }
        self.pump(now);
    }

    /// The client went away. A queued request leaves the queue without
    /// taking a worker; an in-flight one is left to finish on its worker (its
    /// response is discarded), so the worker is released by
    /// `handle_complete` as usual.
    pub fn handle_client_gone(&mut self, id: RequestId, now: Time) {
        self.tick(now);
        let Some(request) = self.requests.get_mut(&id) else {
            return;
        };
        match request.phase {
            Phase::Queued { seq } => {
                self.queue.remove(&seq);
                self.requests.remove(&id);
                self.stats.client_gone += 1;
            }
            Phase::Dispatched { pid, deadline, entry } => {
                request.phase = Phase::Abandoned {
                    pid,
                    deadline: Some(deadline),
                    entry,
                };
                self.stats.client_gone += 1;
            }
            Phase::Streaming { .. } | Phase::TimedOut { .. } | Phase::Abandoned { .. } => {}
        }
    }

    /// The dispatch of `id` was never carried out because its client left
    /// first: the worker goes back to the pool untouched and the request ends.
    pub fn handle_dispatch_unused(&mut self, id: RequestId, now: Time) {
        let now = self.tick(now);
        let Some(request) = self.requests.get(&id).copied() else {
            return;
        };
        let pid = match request.phase {
            Phase::Dispatched { pid, entry, .. } => {
                self.read_deadlines.remove(entry);
                self.stats.client_gone += 1;
                pid
            }
            Phase::Abandoned { pid, .. } => pid,
            _ => return,
        };
        self.requests.remove(&id);
        if let Some(worker) = self.workers.get_mut(&pid) {
            self.illegal.count(worker.on_refused(id, None));
        }
        self.after_worker_change(pid, now);
        self.pump(now);
    }

    /// A busy reply or connect failure: the worker did not take the request.
    pub(super) fn refused(&mut self, id: RequestId, last_answer: Answer, now: Time) {
        let now = self.tick(now);
        let Some(request) = self.requests.get(&id).copied() else {
            return;
        };
        let Phase::Dispatched { pid, entry, .. } = request.phase else {
            if let Phase::TimedOut { pid } | Phase::Abandoned { pid, .. } = request.phase {
                // Ended for the client already; free the worker.
                self.requests.remove(&id);
                self.worker_done(pid, id, Some(now + self.config.quarantine), now);
            }
            return;
        };
        self.read_deadlines.remove(entry);
        let until = now + self.config.quarantine;
        if let Some(worker) = self.workers.get_mut(&pid) {
            self.illegal.count(worker.on_refused(id, Some(until)));
            // A live process that keeps refusing connections is as useless
            // as a hung one: after a few in a row, let the supervisor replace
            // it (a busy reply proves it alive, so it does not count).
            if last_answer == Answer::UpstreamError {
                worker.refusals += 1;
                if worker.refusals >= REFUSALS_BEFORE_UNHEALTHY && !worker.unhealthy {
                    worker.unhealthy = true;
                    self.events.push_back(WorkerEvent::Stuck { pid });
                }
            }
        }
        self.quarantines.insert((until, pid));
        self.after_worker_change(pid, now);
        if request.dispatches < 2 {
            self.stats.retries += 1;
            self.retry(id, now);
        } else {
            self.answer_existing(id, last_answer);
        }
        self.pump(now);
    }

    /// Sends a request to another worker now, or back to its place in the
    /// queue; it keeps its original queue deadline.
    pub(super) fn retry(&mut self, id: RequestId, now: Time) {
        let Some(request) = self.requests.get(&id).copied() else {
            return;
        };
        if request.queue_deadline <= now {
            self.answer_existing(id, Answer::QueueTimeout);
            return;
        }
        if let Some(pid) = self.idle_pick() {
            self.dispatch(id, pid, now);
        } else if self.queue.len() >= self.config.max_queue {
            self.answer_existing(id, Answer::QueueFull);
        } else {
            // The retry re-enters at the front: it arrived before anything queued.
            let seq = match self.queue.keys().next() {
                Some(&first) => first - 1,
                None => {
                    self.next_seq += 1;
                    self.next_seq - 1
                }
            };
            if let Some(r) = self.requests.get_mut(&id) {
                r.phase = Phase::Queued { seq };
            }
            self.queue.insert(seq, id);
        }
    }

    /// Frees a worker after its exchange ended.
    pub(super) fn worker_done(&mut self, pid: Pid, id: RequestId, quarantine: Option<Time>, now: Time) {
        let (active, max) = (self.active, self.config.max_requests_per_worker);
        let Some((index, worker)) = self.workers.get_indexed_mut(&pid) else {
            return;
        };
        let was_stuck = worker.is_stuck();
        if self.illegal.count(worker.on_complete(id, quarantine)).is_none() {
            return;
        }
        self.stats.count_served(worker.slot);
        self.events.push_back(WorkerEvent::Served {
            pid,
            count: worker.completed,
        });
        worker.refusals = 0;
        if worker.unhealthy {
            worker.unhealthy = false;
            self.events.push_back(WorkerEvent::Unstuck { pid });
        }
        if let Some(until) = quarantine {
            self.quarantines.insert((until, pid));
        }
        if !was_stuck && !worker.draining && !worker.leaving {
            // The common case, with the borrow in hand: back into the idle set.
            if !worker.in_idle_set && worker.routable(active, max) {
                worker.in_idle_set = true;
                self.idle.insert(index, pid, worker.dispatched);
            }
        } else {
            if was_stuck {
                self.events.push_back(WorkerEvent::Unstuck { pid });
                self.update_active_version();
            }
            self.after_worker_change(pid, now);
        }
        self.pump(now);
    }
}
