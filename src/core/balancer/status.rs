//! What the balancer shows of itself: the counters and the `/status`
//! snapshot.

use super::Balancer;
use crate::core::{Answer, Pid, Slot, Version};

/// Counters since the balancer was created.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
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

impl Counters {
    pub(super) fn count(&mut self, answer: Answer) {
        match answer {
            Answer::QueueFull => self.queue_full += 1,
            Answer::NoCapacity => self.no_capacity += 1,
            Answer::QueueTimeout => self.queue_timeout += 1,
            Answer::UpstreamTimeout => self.upstream_timeout += 1,
            Answer::UpstreamError => self.upstream_error += 1,
        }
    }
}

/// One worker as `/status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WorkerStatus {
    pub pid: Pid,
    pub slot: Slot,
    pub version: Version,
    pub state: &'static str,
    pub served: u64,
    pub socket: String,
}

/// The balancer's state as `/status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
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
    /// Counters since creation.
    pub fn counters(&self) -> &Counters {
        &self.counters
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
            counters: self.counters.clone(),
        }
    }
}
