//! What `/metrics` shows of one app, read from its status snapshot: the
//! numbers only, owned, with every label value already chosen and bounded
//! (status classes, `Rip-Reason` values, worker states, exit causes, slot
//! numbers; never a path, a request's host or a pid).

use crate::core::stats::Histogram;
use crate::observe::status::StatusSnapshot;

/// The balancer's worker states (`rip_workers{state}`), plus `starting` for
/// processes started but not yet joined. Every state is listed, 0 included,
/// so a series does not vanish when its count drops to 0.
pub const WORKER_STATES: [&str; 7] = [
    "starting",
    "idle",
    "busy",
    "stuck",
    "quarantined",
    "draining",
    "leaving",
];

/// The supervisor's slot states (`rip_worker_slot_state{state}`).
pub const SLOT_STATES: [&str; 7] = ["starting", "ready", "stuck", "backoff", "draining", "stopping", "empty"];

/// Exit causes that end a process without a new one taking its slot: the
/// others count in `rip_worker_restarts_total` too.
const NOT_RESTARTS: [&str; 2] = ["scale_down", "stop"];

/// One worker slot (`RIP_WORKER_ID`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotSeries {
    pub slot: u32,
    /// The supervisor's state of the slot (one of [`SLOT_STATES`]).
    pub state: &'static str,
    /// Requests its workers are running now (0 or 1 each).
    pub current_requests: u64,
}

/// One app's numbers, as `/metrics` shows them.
#[derive(Clone, Debug)]
pub struct AppSeries {
    /// The `app` label.
    pub app: String,
    /// The app can serve: a worker is registered and no stop has begun.
    pub ready: bool,
    /// `(1xx…5xx, responses)`.
    pub responses: [(&'static str, u64); 5],
    /// `(Rip-Reason, answers)`, every reason.
    pub rejections: Vec<(&'static str, u64)>,
    pub requests: u64,
    pub retries: u64,
    pub client_disconnects: u64,
    pub queue_current: u64,
    pub queue_limit: u64,
    pub in_flight: u64,
    pub desired_workers: u64,
    /// `(state, workers)` for every one of [`WORKER_STATES`].
    pub workers: Vec<(&'static str, u64)>,
    /// Requests completed by each slot's workers, index = slot.
    pub served_by_slot: Vec<u64>,
    /// Connections each front-door replica accepted, index = replica
    /// (`--lb-replicas`); empty when nobody counts (platform apps).
    pub accepted_by_replica: Vec<u64>,
    /// Every slot the supervisor knows.
    pub slots: Vec<SlotSeries>,
    /// `(cause, exits)`, every cause.
    pub exits: Vec<(&'static str, u64)>,
    pub request_duration: Histogram,
    pub queue_wait: Histogram,
    pub illegal_transitions: u64,
}

impl AppSeries {
    /// Reads what `/metrics` shows of `status`, labelled `app`.
    pub fn from_snapshot(app: &str, status: &StatusSnapshot) -> AppSeries {
        let mut workers: Vec<(&'static str, u64)> = WORKER_STATES.iter().map(|&s| (s, 0)).collect();
        let mut count_state = |state: &str| {
            if let Some((_, n)) = workers.iter_mut().find(|(s, _)| *s == state) {
                *n += 1;
            }
        };
        for worker in &status.pool {
            count_state(worker.worker.state);
        }
        let started_not_joined = status
            .supervisor
            .slots
            .iter()
            .flat_map(|slot| &slot.processes)
            .filter(|p| matches!(p.state, "spawning" | "starting"));
        for _ in started_not_joined {
            count_state("starting");
        }
        let slots = status
            .supervisor
            .slots
            .iter()
            .map(|slot| SlotSeries {
                slot: slot.slot.0,
                state: SLOT_STATES
                    .iter()
                    .copied()
                    .find(|&s| s == slot.state)
                    .unwrap_or("empty"),
                current_requests: status
                    .pool
                    .iter()
                    .filter(|w| w.worker.slot == slot.slot && matches!(w.worker.state, "busy" | "stuck"))
                    .count() as u64,
            })
            .collect();
        AppSeries {
            app: app.to_owned(),
            ready: status.workers > 0 && !status.stopping,
            responses: status.responses.by_label(),
            rejections: status.rejections.iter().map(|(&r, &n)| (r, n)).collect(),
            requests: status.counters.requests,
            retries: status.counters.retries,
            client_disconnects: status.counters.client_gone,
            queue_current: status.queue.depth as u64,
            queue_limit: status.queue.max as u64,
            in_flight: status.inflight as u64,
            desired_workers: u64::from(status.supervisor.desired),
            workers,
            served_by_slot: status.served_by_slot.clone(),
            accepted_by_replica: status.replicas.iter().map(|r| r.accepted).collect(),
            slots,
            exits: status.worker_exits.iter().map(|(&c, &n)| (c, n)).collect(),
            request_duration: status.request_duration.clone(),
            queue_wait: status.queue_wait.clone(),
            illegal_transitions: status.illegal_transitions,
        }
    }

    /// `(cause, exits)` for the causes after which the slot gets a new
    /// process (a crash, a recycle, a stuck worker, a rolling restart...).
    pub fn restarts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.exits
            .iter()
            .copied()
            .filter(|(cause, _)| !NOT_RESTARTS.contains(cause))
    }
}
