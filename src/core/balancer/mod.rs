//! The load balancer of one app: pool selection, the bounded queue, retry
//! budgets and version routing, as a sans-IO state machine.
//!
//! # Driving it
//!
//! The caller (the front door's driver task, a simulation, a test) owns the
//! [`Balancer`] and, in a loop:
//!
//! 1. feeds it exactly one input: [`Balancer::handle_request`],
//!    [`Balancer::handle_join`], an outcome such as
//!    [`Balancer::handle_response_head`], or [`Balancer::handle_timeout`]
//!    when the deadline from [`Balancer::poll_timeout`] has passed;
//! 2. drains [`Balancer::poll_action`] (dispatch or answer a request) and
//!    [`Balancer::poll_worker_event`] (news for the supervisor) until both
//!    return `None`;
//! 3. sleeps until the next input or `poll_timeout()`.
//!
//! ```
//! use rip_server::core::balancer::{Action, Balancer, BalancerConfig, RequestMeta, WorkerInfo};
//! use rip_server::core::{Pid, RequestId, Slot, Time, Version};
//!
//! let mut lb = Balancer::new(BalancerConfig::default());
//! let now = Time::ZERO;
//! let worker = WorkerInfo { pid: Pid(7), slot: Slot(0), version: Version(1), socket: "/tmp/w0.sock".into() };
//! lb.handle_join(worker, now).unwrap();
//! lb.handle_request(RequestId(1), RequestMeta::GET, now);
//! assert_eq!(lb.poll_action(), Some(Action::Dispatch { request: RequestId(1), pid: Pid(7), attempt: 0 }));
//! lb.handle_response_head(RequestId(1), now);
//! lb.handle_complete(RequestId(1), true, now);
//! assert_eq!(lb.poll_action(), None);
//! ```
//!
//! # Guarantees (checked by [`Balancer::check_invariants`] and the proptests)
//!
//! - A worker has at most one request in flight, and a request is dispatched
//!   only to a registered, idle worker of the active version that is not
//!   draining, leaving, stuck, quarantined or over its request budget.
//! - No request waits in the queue while such a worker exists.
//! - The queue is FIFO by arrival and never holds more than `max_queue`
//!   requests; a full queue answers `503 queue_full` at once; a queued request
//!   is answered `504 queue_timeout` when, and only when, its deadline passed.
//! - Every request ends exactly once: a response head from a worker, a
//!   synthesized [`Answer`], or its client going away.
//! - At most one retry per request, and only when the worker refused it
//!   (busy reply, connect failure: it never took the request), or, with
//!   [`BalancerConfig::retry_after_send`] (off by default), when the
//!   connection failed after the request was sent and the request is
//!   idempotent with a replayable body. By default such a request is answered
//!   `502 upstream_error`: its worker may have died of it.
//!
//! # Layout
//!
//! This file holds the types, the request and worker inputs, the outputs,
//! the queries and dispatching. Beside it: `outcome` (what became of a
//! dispatch, retries), `timeouts` (deadlines), `pool` (the idle set, draining
//! and leaving workers, version routing), `select` (the selection policies),
//! `worker` (one worker's state machine), `table` (the registered workers,
//! in a slab), `deadlines` (the read deadlines, a list with O(1) removal),
//! `status` (counters and the `/status` snapshot), `invariants` (the
//! consistency check) and `tests`.
//! The balancer imports only `crate::core`'s value types ([`Answer`],
//! [`Pid`], [`Time`], ...), `crate::core::stats` and the containers
//! `crate::core::slab` and `crate::core::id_map`, never
//! `core::invariants`, `core::node` or the supervisor.
//!
//! # Cost
//!
//! A dispatch and its completion touch no tree: requests are in an
//! [`IdMap`] (by the caller's id), workers in a slab found by their pid in
//! another,
//! the idle set names workers by slab index (LIFO O(1), round-robin and
//! least-connections O(log n) heaps), and a read deadline is removed through
//! the handle its request keeps. Nothing allocates once the tables have
//! grown to the pool's size (`benches/core.rs`, `docs/benchmarking.md`).
//!
//! # Counters
//!
//! [`Balancer::stats`] holds what the balancer decided (answers by reason,
//! dispatches, retries, the queue-wait histogram); `/status`'s
//! [`Counters`] are read from it. [`Balancer::illegal_transitions`] counts
//! worker transitions the balancer chose and the worker refused (0 unless it
//! has a bug).

mod deadlines;
mod invariants;
mod outcome;
mod pool;
mod select;
mod status;
mod table;
mod timeouts;
mod worker;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use deadlines::Deadlines;
use select::IdleSet;
pub use select::Policy;
use table::WorkerTable;
use worker::Worker;

pub use status::{BalancerStats, BalancerStatus, Counters, WorkerStatus};

use super::id_map::IdMap;
use super::slab::Key;
use super::stats::IllegalTransitions;
use super::{Answer, Pid, RequestId, Slot, Time, Version};

/// Connection refusals in a row after which a registered worker is reported
/// to the supervisor (as [`WorkerEvent::Stuck`]) to be replaced.
pub const REFUSALS_BEFORE_UNHEALTHY: u32 = 3;

/// Settings of one balancer.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BalancerConfig {
    /// Requests that may wait for a worker (`--max-queue`); 0 never queues.
    pub max_queue: usize,
    /// Longest wait in the queue before `504 queue_timeout`.
    pub queue_timeout: Duration,
    /// Longest wait for a worker's response head before `504 upstream_timeout`.
    pub read_timeout: Duration,
    /// How long a worker that refused a request (busy reply, connect failure,
    /// broken connection) is left out of the pool before it is tried again.
    pub quarantine: Duration,
    pub policy: Policy,
    /// Requests after which a worker is recycled; the balancer sends it no
    /// more than this many, so a worker that exits on its own budget never
    /// has a request in its socket when it goes.
    pub max_requests_per_worker: Option<u64>,
    /// The number of workers the supervisor keeps; it sets the quorum a new
    /// version needs before it takes the traffic.
    pub desired_workers: u32,
    /// Retry (once, on another worker) an idempotent, replayable request
    /// whose connection failed after it was sent and before a response head
    /// (default false). The worker may have been running the request when
    /// it died: a request that crashes its worker would crash a second one.
    /// A busy reply or a connect failure (the worker never took the request)
    /// is retried once whatever this says.
    pub retry_after_send: bool,
}

impl Default for BalancerConfig {
    fn default() -> BalancerConfig {
        BalancerConfig {
            max_queue: 8192,
            queue_timeout: Duration::from_millis(2000),
            read_timeout: Duration::from_millis(5000),
            quarantine: Duration::from_millis(250),
            policy: Policy::Lifo,
            max_requests_per_worker: None,
            desired_workers: 1,
            retry_after_send: false,
        }
    }
}

/// What the balancer needs to know about a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestMeta {
    /// The method is idempotent (GET, HEAD, OPTIONS, PUT, DELETE, TRACE).
    pub idempotent: bool,
    /// The body can be sent again (no body, or a body the adapter kept).
    pub replayable: bool,
}

impl RequestMeta {
    /// A GET without a body.
    pub const GET: RequestMeta = RequestMeta {
        idempotent: true,
        replayable: true,
    };
    /// A POST whose body streams through and cannot be replayed.
    pub const POST: RequestMeta = RequestMeta {
        idempotent: false,
        replayable: false,
    };
}

/// A worker announcing itself (the control socket's `join`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerInfo {
    pub pid: Pid,
    pub slot: Slot,
    pub version: Version,
    pub socket: String,
}

/// Why a join was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinError {
    /// The pid is registered already with another slot or socket.
    Conflict(Pid),
    /// The supervisor is stopping this process: it may not take requests.
    NotWanted(Pid),
    /// No process with this pid was started by the manager.
    Unknown(Pid),
    /// The process was started for another slot.
    WrongSlot { pid: Pid, slot: Slot },
}

/// What the caller must do for a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send request `request` to worker `pid` (attempt 0, or 1 for the retry),
    /// then report exactly one outcome for this dispatch:
    /// `handle_response_head` (+ `handle_complete`), `handle_busy`,
    /// `handle_connect_failed` or `handle_failed_after_send`.
    Dispatch { request: RequestId, pid: Pid, attempt: u8 },
    /// Answer the client with this synthesized reply; the request has ended.
    /// If the request was in flight (read timeout), keep reading the worker's
    /// reply in the background and report `handle_complete` when it ends.
    Answer { request: RequestId, answer: Answer },
}

/// News for the supervisor, drained with [`Balancer::poll_worker_event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum WorkerEvent {
    /// The worker finished its `count`th exchange.
    Served { pid: Pid, count: u64 },
    /// The worker's request passed the read timeout; it may be hung.
    Stuck { pid: Pid },
    /// The stuck worker finished its request after all.
    Unstuck { pid: Pid },
    /// A worker asked to drain has nothing in flight (reported once).
    Idle { pid: Pid },
    /// The worker left the pool (quit or exit) and has nothing in flight.
    Removed { pid: Pid },
    /// A newer version now takes all new requests.
    VersionActivated { version: Version },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting in the queue; `seq` is its place, `deadline` its queue timeout.
    Queued { seq: u64 },
    /// Sent to `pid`; no response head yet. `entry` is the deadline's
    /// place in `read_deadlines`.
    Dispatched { pid: Pid, deadline: Time, entry: Key },
    /// The worker's response is streaming; the request has ended for the
    /// balancer but the worker is busy until `handle_complete`.
    Streaming { pid: Pid },
    /// Answered 504 at the read timeout; the worker is still on it.
    TimedOut { pid: Pid },
    /// The client went away while it was in flight; the worker finishes it.
    Abandoned {
        pid: Pid,
        /// The read deadline still runs (until a response head): a worker
        /// that never answers is stuck whether or not its client waits.
        deadline: Option<Time>,
        /// The deadline's place in `read_deadlines` (stale once it is None).
        entry: Key,
    },
}

#[derive(Clone, Copy, Debug)]
struct Request {
    meta: RequestMeta,
    /// When it arrived (the start of its queue wait).
    arrived: Time,
    /// Deadline in the queue: arrival + queue timeout, kept across a retry.
    queue_deadline: Time,
    /// Dispatches so far (1 after the first, 2 after the retry).
    dispatches: u8,
    phase: Phase,
}

/// The load balancer of one app. See the [module documentation](self).
#[derive(Debug)]
pub struct Balancer {
    config: BalancerConfig,
    workers: WorkerTable,
    idle: IdleSet,
    /// By id, not ordered: nothing walks the requests in id order, and
    /// every outcome of a dispatch looks one up.
    requests: IdMap<RequestId, Request>,
    /// FIFO by arrival order (`seq`), so a retried request keeps its place.
    queue: BTreeMap<u64, RequestId>,
    next_seq: u64,
    /// (deadline, request) of every dispatched request awaiting its head.
    read_deadlines: Deadlines,
    /// (end, pid) of every quarantined worker.
    quarantines: BTreeSet<(Time, Pid)>,
    active: Option<Version>,
    stopping: bool,
    actions: VecDeque<Action>,
    events: VecDeque<WorkerEvent>,
    stats: BalancerStats,
    /// Worker transitions this balancer chose and the worker refused.
    illegal: IllegalTransitions,
    /// The first dispatch to a worker that was not routable (must stay
    /// `None`; [`Balancer::check_invariants`] reports it).
    first_illegal_dispatch: Option<String>,
    /// The latest `now` seen; time never goes backwards inside the core.
    now: Time,
}

impl Balancer {
    /// Creates a balancer with no workers.
    pub fn new(config: BalancerConfig) -> Balancer {
        Balancer {
            idle: IdleSet::new(config.policy),
            config,
            workers: WorkerTable::default(),
            requests: IdMap::default(),
            queue: BTreeMap::new(),
            // Sequence numbers start mid-range so a retry can re-enter in
            // front of the first queued request.
            next_seq: 1 << 62,
            read_deadlines: Deadlines::default(),
            quarantines: BTreeSet::new(),
            active: None,
            stopping: false,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            stats: BalancerStats::default(),
            illegal: IllegalTransitions::default(),
            first_illegal_dispatch: None,
            now: Time::ZERO,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BalancerConfig {
        &self.config
    }

    fn tick(&mut self, now: Time) -> Time {
        self.now = self.now.max(now);
        self.now
    }

    // ----- inputs: requests ---------------------------------------------

    /// A request arrived. Call once per request with a fresh id, then drain
    /// `poll_action`: it is dispatched at once, queued, or answered 503.
    pub fn handle_request(&mut self, id: RequestId, meta: RequestMeta, now: Time) {
        let now = self.tick(now);
        self.stats.requests += 1;
        if self.requests.contains_key(&id) {
            debug_assert!(false, "request {id:?} arrived twice");
            return;
        }
        if self.stopping {
            self.answer_new(id, Answer::NoCapacity);
            return;
        }
        let request = Request {
            meta,
            arrived: now,
            queue_deadline: now + self.config.queue_timeout,
            dispatches: 0,
            phase: Phase::Queued { seq: 0 },
        };
        if self.queue.is_empty()
            && let Some(pid) = self.idle_pick()
        {
            self.requests.insert(id, request);
            self.dispatch(id, pid, now);
            return;
        }
        if self.config.max_queue == 0 {
            self.answer_new(id, Answer::NoCapacity);
        } else if self.queue.len() >= self.config.max_queue {
            self.answer_new(id, Answer::QueueFull);
        } else {
            self.requests.insert(id, request);
            self.enqueue(id);
            self.stats.queued += 1;
        }
    }

    // ----- inputs: workers ----------------------------------------------

    /// A worker joined (it listens and is ready). Joining twice with the same
    /// details is harmless.
    pub fn handle_join(&mut self, info: WorkerInfo, now: Time) -> Result<(), JoinError> {
        let now = self.tick(now);
        if let Some(existing) = self.workers.get(&info.pid) {
            if existing.slot == info.slot && existing.socket == info.socket && existing.version == info.version {
                return Ok(());
            }
            return Err(JoinError::Conflict(info.pid));
        }
        let worker = Worker::new(info.pid, info.slot, info.version, info.socket);
        self.workers.insert(worker);
        self.update_active_version();
        self.refresh(info.pid);
        self.pump(now);
        Ok(())
    }

    /// The worker quit (deregistered). It gets no new request and leaves the
    /// pool when its request in flight, if any, completes.
    pub fn handle_quit(&mut self, pid: Pid, now: Time) {
        self.leave(pid, now);
    }

    /// The worker's process exited. Its request in flight, if any, still
    /// ends through the outcome the adapter reports for it.
    pub fn handle_exit(&mut self, pid: Pid, now: Time) {
        self.leave(pid, now);
    }

    /// The supervisor wants this worker gone: route nothing new to it, and
    /// report [`WorkerEvent::Idle`] once it has nothing in flight.
    pub fn handle_drain(&mut self, pid: Pid, now: Time) {
        let now = self.tick(now);
        let Some(worker) = self.workers.get_mut(&pid) else {
            return;
        };
        worker.draining = true;
        self.refresh(pid);
        self.update_active_version();
        self.report_idle_if_drained(pid);
        self.pump(now);
    }

    /// Sets the number of workers the supervisor keeps (the version quorum).
    pub fn set_desired_workers(&mut self, n: u32, now: Time) {
        let now = self.tick(now);
        self.config.desired_workers = n.max(1);
        self.update_active_version();
        self.pump(now);
    }

    /// Stops taking new requests (graceful stop): later arrivals get
    /// `503 no_capacity`; queued and in-flight requests finish.
    pub fn begin_stop(&mut self, now: Time) {
        self.tick(now);
        self.stopping = true;
    }

    // ----- outputs ------------------------------------------------------

    /// The next thing to do for a request. Drain until `None` after every input.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next piece of news for the supervisor. Drain until `None` after
    /// every input.
    #[must_use]
    pub fn poll_worker_event(&mut self) -> Option<WorkerEvent> {
        self.events.pop_front()
    }

    // ----- queries ------------------------------------------------------

    /// Requests waiting in the queue.
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Requests being handled by workers (including timed-out and abandoned
    /// ones whose workers have not finished).
    pub fn in_flight(&self) -> usize {
        self.workers.values().filter(|w| w.in_flight().is_some()).count()
    }

    /// No request queued and none in flight: a graceful stop may proceed.
    pub fn is_drained(&self) -> bool {
        self.queue.is_empty() && self.requests.is_empty()
    }

    /// Whether the balancer refuses new requests.
    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// The version that new requests go to.
    pub fn active_version(&self) -> Option<Version> {
        self.active
    }

    /// Registered workers (including draining and leaving ones).
    pub fn registered(&self) -> usize {
        self.workers.len()
    }

    /// Workers that can take a request now.
    pub fn routable(&self) -> usize {
        self.idle.len()
    }

    /// Registered workers of the active version that are serving or able to
    /// (not draining, leaving or stuck): the capacity behind new requests.
    pub fn capacity(&self) -> usize {
        self.workers
            .values()
            .filter(|w| Some(w.version) == self.active && w.is_ready())
            .count()
    }

    /// The socket a registered worker listens on.
    pub fn worker_socket(&self, pid: Pid) -> Option<&str> {
        self.workers.get(&pid).map(|w| w.socket.as_str())
    }

    /// The registered process of `slot`, preferring one that is draining
    /// (used to resolve a `quit` that names only the slot).
    pub fn pid_for_slot(&self, slot: Slot) -> Option<Pid> {
        let mut of_slot = self.workers.values().filter(|w| w.slot == slot && !w.leaving);
        let first = of_slot.next()?;
        if first.draining {
            return Some(first.pid);
        }
        Some(of_slot.find(|w| w.draining).map_or(first.pid, |w| w.pid))
    }

    /// Whether the request still waits for a decision (queued, or
    /// dispatched without a response head); false once it has its answer.
    pub fn awaits_decision(&self, id: RequestId) -> bool {
        self.requests
            .get(&id)
            .is_some_and(|r| matches!(r.phase, Phase::Queued { .. } | Phase::Dispatched { .. }))
    }

    /// The request a worker is handling, if any.
    pub fn request_on(&self, pid: Pid) -> Option<RequestId> {
        self.workers.get(&pid).and_then(Worker::in_flight)
    }

    /// The worker a request is on, if it is on one.
    pub fn worker_of(&self, id: RequestId) -> Option<Pid> {
        match self.requests.get(&id)?.phase {
            Phase::Queued { .. } => None,
            Phase::Dispatched { pid, .. }
            | Phase::Streaming { pid }
            | Phase::TimedOut { pid }
            | Phase::Abandoned { pid, .. } => Some(pid),
        }
    }

    // ----- internals ----------------------------------------------------

    fn answer_new(&mut self, id: RequestId, answer: Answer) {
        self.stats.count_answer(answer);
        self.actions.push_back(Action::Answer { request: id, answer });
    }

    /// Answers a request that is not on a worker and forgets it.
    fn answer_existing(&mut self, id: RequestId, answer: Answer) {
        self.requests.remove(&id);
        self.answer_new(id, answer);
    }

    fn enqueue(&mut self, id: RequestId) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(request) = self.requests.get_mut(&id) {
            request.phase = Phase::Queued { seq };
        }
        self.queue.insert(seq, id);
    }

    fn idle_pick(&mut self) -> Option<Pid> {
        let index = self.idle.pick()?;
        // The idle set holds only registered workers (removal takes them out).
        let worker = self.workers.at_index_mut(index)?;
        worker.in_idle_set = false;
        Some(worker.pid)
    }

    fn dispatch(&mut self, id: RequestId, pid: Pid, now: Time) {
        let deadline = now + self.config.read_timeout;
        let Some(request) = self.requests.get_mut(&id) else {
            return;
        };
        let attempt = request.dispatches;
        if attempt == 0 {
            let waited = now.as_micros().saturating_sub(request.arrived.as_micros());
            self.stats.queue_wait.observe(waited);
        }
        request.dispatches += 1;
        let entry = self.read_deadlines.insert(deadline, id);
        request.phase = Phase::Dispatched { pid, deadline, entry };
        // The idle set holds only routable workers; check it at the moment
        // of dispatch, where the invariant checker cannot look.
        let (active, max) = (self.active, self.config.max_requests_per_worker);
        match self.workers.get_mut(&pid) {
            Some(worker) if worker.routable(active, max) => {
                self.illegal.count_and_assert(worker.on_dispatch(id));
            }
            other => {
                self.illegal.note();
                self.first_illegal_dispatch
                    .get_or_insert_with(|| format!("{id:?} dispatched to {pid:?}: {other:?}"));
                if let Some(worker) = other {
                    self.illegal.count(worker.on_dispatch(id));
                }
            }
        }
        self.stats.dispatches += 1;
        self.actions.push_back(Action::Dispatch {
            request: id,
            pid,
            attempt,
        });
    }

    /// Moves queued requests onto idle workers while both exist.
    fn pump(&mut self, now: Time) {
        while !self.queue.is_empty() && !self.idle.is_empty() {
            let Some((_, id)) = self.queue.pop_first() else {
                break;
            };
            if !self.requests.contains_key(&id) {
                continue;
            }
            if let Some(pid) = self.idle_pick() {
                self.dispatch(id, pid, now);
            }
        }
    }
}

#[cfg(test)]
mod tests;
