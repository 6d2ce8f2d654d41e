//! Deadlines: queue timeouts, read timeouts and quarantine ends
//! ([`Balancer::handle_timeout`], [`Balancer::poll_timeout`]), and giving up
//! on the queue when a graceful stop runs out of time.

use super::{Action, Answer, Balancer, Phase, WorkerEvent};
use crate::core::Time;

impl Balancer {
    /// Answers every queued request `503 no_capacity` (a graceful stop ran
    /// out of time).
    pub fn abandon_queue(&mut self, now: Time) {
        self.tick(now);
        while let Some((_, id)) = self.queue.pop_first() {
            if self.requests.contains_key(&id) {
                self.answer_existing(id, Answer::NoCapacity);
            }
        }
    }

    /// Fires every deadline that has passed: queue timeouts (504), read
    /// timeouts (504, worker stuck) and quarantine ends. Call when
    /// `poll_timeout()` has passed; calling early does nothing.
    pub fn handle_timeout(&mut self, now: Time) {
        let now = self.tick(now);
        while let Some(&(end, pid)) = self.quarantines.first() {
            if end > now {
                break;
            }
            self.quarantines.remove(&(end, pid));
            if let Some(worker) = self.workers.get_mut(&pid)
                && worker.quarantined_until() == Some(end)
            {
                self.illegal.count(worker.on_quarantine_end(now));
                self.refresh(pid);
                self.report_idle_if_drained(pid);
                self.remove_if_gone(pid);
            }
        }
        while let Some((deadline, id)) = self.read_deadlines.first() {
            if deadline > now {
                break;
            }
            self.read_deadlines.pop_first();
            let Some(request) = self.requests.get_mut(&id) else {
                continue;
            };
            let pid = match request.phase {
                Phase::Dispatched { pid, .. } => pid,
                Phase::Abandoned {
                    pid, deadline: Some(d), ..
                } if d == deadline => {
                    // Nobody to answer, but the worker is stuck all the same.
                    request.phase = Phase::TimedOut { pid };
                    if let Some(worker) = self.workers.get_mut(&pid) {
                        self.illegal.count(worker.on_read_timeout(id));
                    }
                    self.events.push_back(WorkerEvent::Stuck { pid });
                    self.update_active_version();
                    continue;
                }
                _ => continue,
            };
            request.phase = Phase::TimedOut { pid };
            if let Some(worker) = self.workers.get_mut(&pid) {
                self.illegal.count(worker.on_read_timeout(id));
            }
            self.events.push_back(WorkerEvent::Stuck { pid });
            self.stats.count_answer(Answer::UpstreamTimeout);
            self.actions.push_back(Action::Answer {
                request: id,
                answer: Answer::UpstreamTimeout,
            });
            self.update_active_version();
        }
        while let Some((&seq, &id)) = self.queue.first_key_value() {
            let Some(request) = self.requests.get(&id) else {
                self.queue.remove(&seq);
                continue;
            };
            if request.queue_deadline > now {
                break;
            }
            self.queue.remove(&seq);
            self.answer_existing(id, Answer::QueueTimeout);
        }
        self.pump(now);
    }

    /// When `handle_timeout` must be called next, if any deadline is pending.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        let queue = self
            .queue
            .values()
            .next()
            .and_then(|id| self.requests.get(id))
            .map(|r| r.queue_deadline);
        let read = self.read_deadlines.first().map(|(t, _)| t);
        let quarantine = self.quarantines.first().map(|&(t, _)| t);
        [queue, read, quarantine].into_iter().flatten().min()
    }
}
