//! What the balancer shows of itself: its statistics ([`BalancerStats`]),
//! the `/status` counters read from them, the `/status` snapshot and the
//! count of illegal transitions.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Balancer;
use crate::core::stats::Histogram;
use crate::core::{Answer, Pid, Slot, Version};

/// What the balancer has decided since it was created: the one store behind
/// the `/status` counters ([`Counters`]), `/metrics` and the dashboard.
/// Every number is counted where the decision is made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BalancerStats {
    /// Requests that arrived.
    pub requests: u64,
    /// Requests that had to wait in the queue on arrival.
    pub queued: u64,
    /// Dispatches to a worker, retries included.
    pub dispatches: u64,
    /// Second dispatches (at most one per request).
    pub retries: u64,
    /// Worker response heads relayed to a waiting client.
    pub responses: u64,
    /// Requests whose client left before their answer.
    pub client_gone: u64,
    /// Synthesized answers by reason ([`Answer::reason`]), every reason
    /// listed from the start.
    pub answers: BTreeMap<&'static str, u64>,
    /// Time from arrival to first dispatch, in microseconds (0 for a request
    /// dispatched at once); one observation per dispatched request.
    pub queue_wait: Histogram,
    /// Time from arrival to the end of the worker's response, in
    /// microseconds, for every request whose client got the worker's
    /// answer (not for synthesized answers, which [`BalancerStats::answers`]
    /// counts, nor for a client that left first).
    pub request_duration: Histogram,
    /// Exchanges completed by the workers of each slot (index = slot,
    /// `RIP_WORKER_ID`), across the processes that held it: unlike a
    /// worker's own `served`, it does not start again when the worker is
    /// replaced.
    pub served_by_slot: Vec<u64>,
}

impl Default for BalancerStats {
    fn default() -> BalancerStats {
        BalancerStats {
            requests: 0,
            queued: 0,
            dispatches: 0,
            retries: 0,
            responses: 0,
            client_gone: 0,
            answers: Answer::ALL.iter().map(|a| (a.reason(), 0)).collect(),
            queue_wait: Histogram::default(),
            request_duration: Histogram::default(),
            served_by_slot: Vec::new(),
        }
    }
}

impl BalancerStats {
    pub(super) fn count_answer(&mut self, answer: Answer) {
        *self.answers.entry(answer.reason()).or_default() += 1;
    }

    /// One more exchange completed by the worker in `slot`.
    pub(super) fn count_served(&mut self, slot: Slot) {
        let index = slot.0 as usize;
        if index >= self.served_by_slot.len() {
            // Slots are `0..N-1`, so this grows once per new slot.
            self.served_by_slot.resize(index + 1, 0);
        }
        self.served_by_slot[index] += 1;
    }

    /// Synthesized answers with this reason so far.
    pub fn answered(&self, answer: Answer) -> u64 {
        self.answers.get(answer.reason()).copied().unwrap_or(0)
    }
}

/// The counters `/status` shows, read from [`BalancerStats`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub requests: u64,
    pub dispatched: u64,
    pub retries: u64,
    pub queued: u64,
    pub responses: u64,
    pub queue_full: u64,
    pub no_capacity: u64,
    pub queue_timeout: u64,
    pub upstream_timeout: u64,
    pub upstream_error: u64,
    pub client_gone: u64,
}

impl From<&BalancerStats> for Counters {
    fn from(s: &BalancerStats) -> Counters {
        Counters {
            requests: s.requests,
            dispatched: s.dispatches,
            retries: s.retries,
            queued: s.queued,
            responses: s.responses,
            queue_full: s.answered(Answer::QueueFull),
            no_capacity: s.answered(Answer::NoCapacity),
            queue_timeout: s.answered(Answer::QueueTimeout),
            upstream_timeout: s.answered(Answer::UpstreamTimeout),
            upstream_error: s.answered(Answer::UpstreamError),
            client_gone: s.client_gone,
        }
    }
}

/// One worker as `/status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkerStatus {
    pub pid: Pid,
    pub slot: Slot,
    pub version: Version,
    pub state: &'static str,
    pub served: u64,
    pub socket: String,
}

/// The balancer's state as `/status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BalancerStatus {
    pub queued: usize,
    pub in_flight: usize,
    pub active_version: Option<Version>,
    pub registered: usize,
    pub routable: usize,
    pub workers: Vec<WorkerStatus>,
    pub counters: Counters,
}

impl Balancer {
    /// Everything counted since creation: answers by reason, the
    /// queue-wait histogram, dispatches, retries.
    pub fn stats(&self) -> &BalancerStats {
        &self.stats
    }

    /// The `/status` counters, read from [`Balancer::stats`].
    pub fn counters(&self) -> Counters {
        Counters::from(&self.stats)
    }

    /// Worker transitions the balancer chose and the worker's state machine
    /// refused, plus dispatches to a worker that was not routable (each one a
    /// bug; release builds skip a refused transition and count it here, debug
    /// builds stop at a refused dispatch).
    pub fn illegal_transitions(&self) -> u64 {
        self.illegal.total()
    }

    /// A snapshot for `/status`.
    pub fn status(&self) -> BalancerStatus {
        BalancerStatus {
            queued: self.queue.len(),
            in_flight: self.in_flight(),
            active_version: self.active,
            registered: self.workers.len(),
            routable: self.idle.len(),
            workers: self
                .workers
                .values()
                .map(|w| WorkerStatus {
                    pid: w.pid,
                    slot: w.slot,
                    version: w.version,
                    state: w.state_name(),
                    served: w.completed,
                    socket: w.socket.clone(),
                })
                .collect(),
            counters: self.counters(),
        }
    }
}
