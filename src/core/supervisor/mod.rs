//! The manager's brain: how many workers, which process to start or stop, when.
//!
//! [`Supervisor`] is a sans-IO state machine in the style of quinn-proto and
//! str0m. The caller (the manager adapter) feeds it what happened through the
//! `handle_*` methods and the commands ([`Supervisor::scale_to`],
//! [`Supervisor::rolling_restart`], [`Supervisor::stop`]), then drains
//! [`Supervisor::poll_action`] until it returns `None` and carries out each
//! [`SupervisorAction`] (start a process, tell the balancer to drain one, send
//! a signal). [`Supervisor::poll_timeout`] says when to call
//! [`Supervisor::handle_timeout`] next. Nothing here reads a clock: every
//! input carries `now`, and the same inputs always give the same outputs.
//!
//! # Vocabulary
//!
//! - A *slot* is the stable worker number `0..N-1` (`RIP_WORKER_ID`).
//! - A *process* is one start of a worker program, named by the [`SpawnId`]
//!   the supervisor gave it and, once started, by its [`Pid`].
//! - Each slot has at most one *primary* (the process that serves the slot, or
//!   is booting to serve it) and at most one *replacement* (a process booting,
//!   or in a rolling restart already serving, that will take the slot over).
//!   Processes on their way out (draining, quitting, terminated, killed) are
//!   *retiring*; they keep their slot number until they exit.
//!
//! # Policy
//!
//! 1. **Crash-loop backoff, per slot.** After `c ≥ 1` consecutive crashes the
//!    slot waits `min(backoff_initial · 2^(c-1), backoff_max)` after the last
//!    crash before its next start. A crash is an exit nobody asked for, an
//!    exit before joining, a failed spawn, or a missed `ready_timeout` (the
//!    process is then killed). The count resets once a process of the slot
//!    that became ready after the last crash has stayed ready for
//!    `backoff_reset_after`. A slot never gives up and never blocks another.
//! 2. **Planned exits** (the supervisor drained, terminated or killed the
//!    process, or the worker quit on its own) respawn at once, unless the
//!    slot still has a crash backoff pending.
//! 3. **Recycling, replacement first.** When a ready primary has served
//!    `max_requests − lead` requests (`lead = max(1, max_requests/10)`; the
//!    threshold never goes below 1), or has been ready for `max_age`, a
//!    replacement of the same slot starts while the old process keeps serving.
//!    When the replacement joins, the old one is drained, terminated when idle
//!    and killed after `stop_timeout`. At most `max_concurrent_recycles` slots
//!    have a handover in progress (from the replacement's start to the old
//!    process's exit). A replacement that crashes counts as a crash of the
//!    slot: the old process keeps serving and the next attempt backs off.
//! 4. **Stuck workers** are killed `stuck_grace` after the balancer reports
//!    them stuck, unless it reports them unstuck first. The slot is refilled at
//!    once (no crash counted).
//! 5. **Rolling restart** from generation `g` to a fresh `g'`: replacements at
//!    `g'` start for every slot, at most `max_concurrent_spawns` booting at a
//!    time, while every old process keeps serving. When every slot has a ready
//!    `g'` process, all old processes are drained at once and
//!    [`Supervisor::generation`] becomes `g'`. If a `g'` process crashes
//!    before joining or misses `ready_timeout`, the roll is aborted: every
//!    `g'` process is drained (if it joined) or terminated, the old generation
//!    keeps serving and the generation stays `g`.
//! 6. **Scaling** up starts new slots; scaling down drains the highest slots.
//!    At least one worker is always wanted.
//! 7. **Stop** terminates everything, kills what outlives `stop_timeout`, and
//!    emits [`SupervisorAction::Stopped`] once, when no process is left.
//! 8. **Module reload** ([`Supervisor::reload_workers`]): every ready worker
//!    that accepts reloads gets [`SupervisorAction::Reload`] until it reaches
//!    `max_reloads`; the others, and those that reached it, are replaced as
//!    in rule 3. A worker still booting gets the burst once it is ready.
//!
//! # Layout
//!
//! This file holds [`Supervisor`] itself: its inputs (`handle_*`), commands,
//! outputs (`poll_*`), queries and the bookkeeping they share. Beside it:
//! `config` (knobs, backoff and recycling arithmetic), `process` (one
//! process's lifecycle), `slot` (who holds a slot), `exits` (a process going
//! away, and exits counted by [`ExitCause`]), `roll` (rolling restarts and
//! recycling), `reload` (module reloads and the app errors workers report),
//! `status` (the `/status` snapshot), `invariants` (the
//! consistency check the tests run) and `tests`. Files that add methods to
//! [`Supervisor`] import it from here; no two sibling files import each other.
//! From outside this folder they import only std, serde, `crate::core`'s
//! value types ([`Pid`], [`Slot`], [`Time`], [`Version`]) and
//! `crate::core::stats`.
//!
//! # Counters
//!
//! [`Supervisor::exit_counts`] counts every process that ended, once, by
//! cause; [`Supervisor::illegal_transitions`] counts transitions the
//! supervisor chose and its state machines refused (0 unless it has a bug).

mod config;
mod exits;
mod invariants;
mod process;
mod reload;
mod roll;
mod slot;
mod status;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::core::stats::IllegalTransitions;
use crate::core::{Pid, Slot, Time, Version};

pub use config::SupervisorConfig;
pub use exits::ExitCause;
pub use process::SpawnId;
use process::{Due, Leave, Proc, ProcState};
pub use reload::{AppError, AppErrorPhase};
use roll::Roll;
use slot::{Handover, Role, SlotEntry, SlotState};
pub use status::{LastRoll, ProcessStatus, RollStatus, SlotStatus, SupervisorStatus};

/// What the caller must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SupervisorAction {
    /// Start a worker process for `slot` at `version` (`RIP_WORKER_ID`,
    /// `RIP_VERSION`). Answer with `handle_spawned` or `handle_spawn_failed`.
    /// Two processes of one slot may be alive at once (handover).
    Spawn {
        spawn: SpawnId,
        slot: Slot,
        version: Version,
    },
    /// Tell the balancer to route no new request to `pid`; it finishes what it
    /// has and the balancer then reports `handle_idle`.
    Drain { pid: Pid },
    /// SIGTERM: the worker finishes its request, quits and exits.
    Terminate { pid: Pid },
    /// SIGKILL.
    Kill { pid: Pid },
    /// The module-reload signal (SIGHUP): the worker loads the app's code
    /// again when it is idle. Sent only to workers whose join accepted it.
    Reload { pid: Pid },
    /// The graceful stop has finished: no process is left. Emitted once.
    Stopped,
}

/// The manager's brain. See the [module docs](self) for the policy.
#[derive(Debug, Clone)]
pub struct Supervisor {
    config: SupervisorConfig,
    /// The latest time seen (inputs never move it backwards).
    now: Time,
    desired: u32,
    /// The generation the balancer routes to.
    current: Version,
    /// The next unused generation number.
    next_version: u64,
    roll: Option<Roll>,
    last_roll: Option<LastRoll>,
    /// The last app error reported, until a process joins or reloads.
    app_error: Option<AppError>,
    stopping: bool,
    stopped_emitted: bool,
    slots: Vec<SlotEntry>,
    procs: BTreeMap<SpawnId, Proc>,
    by_pid: BTreeMap<Pid, SpawnId>,
    next_spawn: u64,
    actions: VecDeque<SupervisorAction>,
    /// Set if a `Spawn` was ever queued after `stop` (checked by `check_invariants`).
    spawned_while_stopping: bool,
    /// Processes ended, by cause (every cause present).
    exits: BTreeMap<ExitCause, u64>,
    /// Transitions this supervisor chose and its state machines refused.
    illegal: IllegalTransitions,
}

impl Supervisor {
    /// Creates the supervisor at startup and queues a `Spawn` for slots
    /// `0..workers` at `Version(1)`: drain [`Supervisor::poll_action`] next.
    pub fn new(config: SupervisorConfig, now: Time) -> Supervisor {
        let config = config.sanitized();
        let mut s = Supervisor {
            desired: config.workers,
            config,
            now,
            current: Version(1),
            next_version: 2,
            roll: None,
            last_roll: None,
            app_error: None,
            stopping: false,
            stopped_emitted: false,
            slots: Vec::new(),
            procs: BTreeMap::new(),
            by_pid: BTreeMap::new(),
            next_spawn: 1,
            actions: VecDeque::new(),
            spawned_while_stopping: false,
            exits: ExitCause::ALL.iter().map(|&c| (c, 0)).collect(),
            illegal: IllegalTransitions::default(),
        };
        s.advance(now);
        s
    }

    /// The sanitised configuration in force.
    pub fn config(&self) -> &SupervisorConfig {
        &self.config
    }

    // -- outputs ------------------------------------------------------------

    /// The next thing to do. Call after every input (and after `new`) until
    /// it returns `None`, and carry out each action in order.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<SupervisorAction> {
        self.actions.pop_front()
    }

    /// When to call [`Supervisor::handle_timeout`] next (`None`: nothing is
    /// timed; wait for the next input). Ask again after every input: it is
    /// always later than the last `now` seen.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        let now = self.now;
        let grace = self.config.stuck_grace;
        let mut next: Option<Time> = None;
        let mut consider = |t: Time| {
            if t > now && next.is_none_or(|n| t < n) {
                next = Some(t);
            }
        };
        for p in self.procs.values() {
            if let Some((t, _)) = p.state.timer(grace) {
                consider(t);
            }
        }
        for (idx, entry) in self.slots.iter().enumerate() {
            if let Some(t) = self.backoff_until(idx) {
                consider(t);
            }
            if entry.crashes > 0 {
                for id in self.members(idx) {
                    if let ProcState::Ready { since, .. } = self.procs[&id].state
                        && since >= entry.last_crash_at
                    {
                        consider(since + self.config.backoff_reset_after);
                    }
                }
            }
            if let (
                Some(age),
                SlotState::Occupied {
                    primary,
                    replacement: None,
                },
            ) = (self.config.max_age, entry.state)
                && let ProcState::Ready { since, .. } = self.procs[&primary].state
            {
                consider(since + age);
            }
        }
        next
    }

    // -- inputs -------------------------------------------------------------

    /// The process for `spawn` has started as `pid`. Call as soon as the
    /// spawn for a `Spawn` action returns, before any other input about
    /// `pid`. If the spawn was cancelled meanwhile (stop, aborted roll), the
    /// answer is a `Terminate`. Unknown spawn ids are ignored.
    pub fn handle_spawned(&mut self, spawn: SpawnId, pid: Pid, now: Time) {
        self.observe(now);
        if let Some(&old) = self.by_pid.get(&pid)
            && old != spawn
        {
            // The pid was reused, so its previous owner has exited unreported.
            self.process_exited(old);
        }
        let stop_timeout = self.config.stop_timeout;
        if let Some(p) = self.procs.get_mut(&spawn)
            && p.pid.is_none()
        {
            let started = p.state.on_spawned(now, stop_timeout);
            if let Some(terminate) = self.illegal.count_and_assert(started) {
                p.pid = Some(pid);
                self.by_pid.insert(pid, spawn);
                if terminate {
                    self.actions.push_back(SupervisorAction::Terminate { pid });
                }
            }
        }
        self.advance(now);
    }

    /// Starting the process for a `Spawn` action failed (the caller could not
    /// fork or exec). Counts as a crash of its slot.
    pub fn handle_spawn_failed(&mut self, spawn: SpawnId, now: Time) {
        self.observe(now);
        if let Some(p) = self.procs.get(&spawn)
            && let ProcState::Spawning { cancelled, .. } = p.state
        {
            self.spawn_failed(spawn, cancelled);
        }
        self.advance(now);
    }

    /// `pid` joined the balancer and serves, without accepting module
    /// reloads: [`Supervisor::handle_ready_with_reload`] with `false`.
    pub fn handle_ready(&mut self, pid: Pid, now: Time) {
        self.handle_ready_with_reload(pid, false, now);
    }

    /// `pid` joined the balancer and serves; `accepts_reload`: its join said
    /// it handles the module-reload signal. Call when its join has been
    /// accepted by the balancer. Joins of processes on their way out are
    /// ignored (the caller should refuse them: see `ProcessStatus::leaving`).
    /// A join clears the recorded app error, and a module reload that came
    /// while the process booted is applied now.
    pub fn handle_ready_with_reload(&mut self, pid: Pid, accepts_reload: bool, now: Time) {
        self.observe(now);
        if let Some(&id) = self.by_pid.get(&pid)
            && let Some(p) = self.procs.get_mut(&id)
            && p.state.on_ready(now).is_ok()
        {
            p.accepts_reload = accepts_reload;
            let reload_pending = std::mem::take(&mut p.reload_pending);
            let idx = p.slot.0 as usize;
            if let Some(Role::Replacement(Handover::Recycle)) = self.role(id) {
                let handed_over = self.slots[idx].state.on_replacement_ready();
                if let Some(old) = self.illegal.count_and_assert(handed_over) {
                    self.retire(old, Leave::Recycled);
                }
            }
            self.app_error = None;
            if reload_pending {
                self.apply_reload(id);
            }
        }
        self.advance(now);
    }

    /// `pid` deregistered on its own: call when its quit message arrives.
    /// Its exit is then planned (no crash) and its slot is refilled at once.
    /// It is killed if it has not exited after `stop_timeout`.
    pub fn handle_quit(&mut self, pid: Pid, now: Time) {
        self.observe(now);
        if let Some(&id) = self.by_pid.get(&pid) {
            let mut state = self.procs[&id].state;
            if state.on_quit(now, self.config.stop_timeout).is_ok() {
                self.detach(id, false, "quit");
                if let Some(p) = self.procs.get_mut(&id) {
                    p.state = state;
                    p.leave.get_or_insert(Leave::Quit);
                }
                self.push_retiring(id);
            }
        }
        self.advance(now);
    }

    /// `pid` was reaped: call on every child exit. An exit nobody asked for
    /// (no `Drain`/`Terminate`/`Kill` sent, no quit received) is a crash.
    pub fn handle_exit(&mut self, pid: Pid, now: Time) {
        self.observe(now);
        if let Some(&id) = self.by_pid.get(&pid) {
            self.process_exited(id);
        }
        self.advance(now);
    }

    /// The balancer reports `pid` has completed `count` requests in all;
    /// call whenever the count changes (recycling is checked here).
    pub fn handle_served(&mut self, pid: Pid, count: u64, now: Time) {
        self.observe(now);
        if let Some(&id) = self.by_pid.get(&pid)
            && let Some(p) = self.procs.get_mut(&id)
        {
            p.served = p.served.max(count);
        }
        self.advance(now);
    }

    /// The balancer saw a read timeout on `pid`: call once per timeout. The
    /// process is killed after `stuck_grace` (and its slot refilled at once,
    /// no crash counted) unless [`Supervisor::handle_unstuck`] comes first.
    pub fn handle_stuck(&mut self, pid: Pid, now: Time) {
        self.observe(now);
        if let Some(&id) = self.by_pid.get(&pid)
            && let Some(p) = self.procs.get_mut(&id)
        {
            // A report about a process already on its way out no longer
            // applies: ignored, not an illegal transition.
            let _late = p.state.on_stuck(now);
        }
        self.advance(now);
    }

    /// The stuck request of `pid` finished after all: call when the balancer
    /// sees the late response end.
    pub fn handle_unstuck(&mut self, pid: Pid, now: Time) {
        self.observe(now);
        if let Some(&id) = self.by_pid.get(&pid)
            && let Some(p) = self.procs.get_mut(&id)
        {
            let _late = p.state.on_unstuck();
        }
        self.advance(now);
    }

    /// `pid`, which was sent `Drain`, has nothing in flight any more: call
    /// once, when the balancer has no request left on it (at once if it was
    /// idle when drained). The answer is a `Terminate`.
    pub fn handle_idle(&mut self, pid: Pid, now: Time) {
        self.observe(now);
        if let Some(&id) = self.by_pid.get(&pid)
            && let Some(p) = self.procs.get_mut(&id)
            && p.state.on_idle(now, self.config.stop_timeout).is_ok()
        {
            self.actions.push_back(SupervisorAction::Terminate { pid });
        }
        self.advance(now);
    }

    /// Call when the time from [`Supervisor::poll_timeout`] has come (or
    /// later); early or extra calls are harmless.
    pub fn handle_timeout(&mut self, now: Time) {
        self.observe(now);
        self.advance(now);
    }

    // -- commands -----------------------------------------------------------

    /// Wants `n` workers (at least 1; 0 counts as 1): call on a scale
    /// command. Scaling up starts the new slots at once; scaling down drains
    /// the highest slots. Ignored once stopping.
    pub fn scale_to(&mut self, n: u32, now: Time) {
        self.observe(now);
        if !self.stopping {
            let n = n.max(1);
            for idx in (n..self.desired).rev() {
                let idx = idx as usize;
                for id in self.slots[idx].state.on_unwanted() {
                    self.retire(id, Leave::ScaledDown);
                }
            }
            self.desired = n;
        }
        self.advance(now);
    }

    /// One worker more (`+1`, call on SIGTTIN) or fewer (`-1`, SIGTTOU);
    /// never below 1.
    pub fn scale_by(&mut self, delta: i32, now: Time) {
        let n = i64::from(self.desired) + i64::from(delta);
        let n = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
        self.scale_to(n, now);
    }

    /// Graceful stop: no more spawns, terminate every process, kill those
    /// still alive after `stop_timeout`, then emit `Stopped` once. Call after
    /// the balancer has finished the queued and in-flight requests.
    pub fn stop(&mut self, now: Time) {
        self.observe(now);
        if !self.stopping {
            self.stopping = true;
            if let Some(roll) = self.roll.take() {
                self.last_roll = Some(roll.ended("interrupted", Some("stop".to_string()), self.now));
            }
            for idx in 0..self.slots.len() {
                for id in self.slots[idx].state.on_unwanted() {
                    self.retire(id, Leave::Stop);
                }
                for id in self.slots[idx].retiring.clone() {
                    self.retire(id, Leave::Stop);
                }
            }
        }
        self.advance(now);
    }

    // -- queries ------------------------------------------------------------

    /// Workers wanted.
    pub fn desired(&self) -> u32 {
        self.desired
    }

    /// The generation routed to: the old one during a rolling restart, the
    /// new one from the moment all its workers are ready and the old ones are
    /// drained. An aborted roll leaves it unchanged. (The generation being
    /// rolled to is [`Supervisor::rolling_to`].)
    pub fn generation(&self) -> Version {
        self.current
    }

    /// The generation being rolled to, if a rolling restart is in progress.
    pub fn rolling_to(&self) -> Option<Version> {
        self.roll.map(|r| r.to)
    }

    /// Whether a graceful stop has begun.
    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// Whether `Stopped` has been emitted.
    pub fn is_stopped(&self) -> bool {
        self.stopped_emitted
    }

    /// The slot of a live process.
    pub fn slot_of(&self, pid: Pid) -> Option<Slot> {
        self.by_pid.get(&pid).map(|id| self.procs[id].slot)
    }

    /// Whether a live process is being retired (drained, terminated or killed).
    pub fn is_leaving(&self, pid: Pid) -> bool {
        self.by_pid.get(&pid).is_some_and(|id| self.procs[id].leave.is_some())
    }

    /// Transitions the supervisor chose and its state machines refused
    /// (each one a bug; release builds skip the transition and count it
    /// here, debug builds stop where the supervisor has always asserted).
    /// Late inputs that no longer apply (a quit from a process already
    /// terminated, an unstuck report for a killed one) are ignored by
    /// design and not counted.
    pub fn illegal_transitions(&self) -> u64 {
        self.illegal.total()
    }

    /// Every started process not yet reaped, sorted.
    pub fn live_pids(&self) -> Vec<Pid> {
        self.by_pid.keys().copied().collect()
    }

    // -- internals ----------------------------------------------------------

    fn observe(&mut self, now: Time) {
        self.now = self.now.max(now);
        self.reset_crash_counts();
    }

    fn is_wanted(&self, idx: usize) -> bool {
        !self.stopping && idx < self.desired as usize
    }

    /// The end of the slot's crash backoff, if it has crashed since its last stable run.
    fn backoff_until(&self, idx: usize) -> Option<Time> {
        let e = &self.slots[idx];
        (e.crashes > 0).then(|| e.last_crash_at + self.config.backoff_delay(e.crashes))
    }

    fn backoff_pending(&self, idx: usize) -> bool {
        self.backoff_until(idx).is_some_and(|t| t > self.now)
    }

    /// The primary and replacement of a slot.
    fn members(&self, idx: usize) -> Vec<SpawnId> {
        match self.slots[idx].state {
            SlotState::Occupied { primary, replacement } => {
                let mut v = vec![primary];
                v.extend(replacement.map(|r| r.spawn));
                v
            }
            _ => Vec::new(),
        }
    }

    fn role(&self, id: SpawnId) -> Option<Role> {
        let p = self.procs.get(&id)?;
        let entry = self.slots.get(p.slot.0 as usize)?;
        match entry.state {
            SlotState::Occupied { primary, .. } if primary == id => return Some(Role::Primary),
            SlotState::Occupied {
                replacement: Some(r), ..
            } if r.spawn == id => {
                return Some(Role::Replacement(r.kind));
            }
            _ => {}
        }
        entry.retiring.contains(&id).then_some(Role::Retiring)
    }

    fn spawn(&mut self, idx: usize, version: Version) -> SpawnId {
        if self.stopping {
            self.spawned_while_stopping = true;
        }
        let id = SpawnId(self.next_spawn);
        self.next_spawn += 1;
        let slot = Slot(idx as u32);
        let deadline = self.now + self.config.ready_timeout;
        self.procs.insert(
            id,
            Proc {
                slot,
                version,
                pid: None,
                state: ProcState::Spawning {
                    deadline,
                    cancelled: false,
                },
                served: 0,
                leave: None,
                accepts_reload: false,
                reloads: 0,
                reload_pending: false,
                replace_for_reload: false,
                app_error: None,
            },
        );
        self.slots[idx].spawns += 1;
        self.actions.push_back(SupervisorAction::Spawn {
            spawn: id,
            slot,
            version,
        });
        id
    }

    fn push_retiring(&mut self, id: SpawnId) {
        let idx = self.procs[&id].slot.0 as usize;
        if !self.slots[idx].retiring.contains(&id) {
            self.slots[idx].retiring.push(id);
        }
    }

    /// Sends a process that no longer holds a role on its way out: a pending
    /// spawn is cancelled, a booting one terminated, a ready one drained (or
    /// terminated when stopping).
    fn retire(&mut self, id: SpawnId, leave: Leave) {
        let (now, stop_timeout, stopping) = (self.now, self.config.stop_timeout, self.stopping);
        let Some(p) = self.procs.get_mut(&id) else {
            return;
        };
        p.leave.get_or_insert(leave);
        let pid = p.pid;
        let action = match p.state {
            ProcState::Spawning { cancelled: false, .. } => {
                self.illegal.count(p.state.on_cancel());
                None
            }
            ProcState::Booting { .. } => {
                let terminated = self.illegal.count(p.state.on_terminate(now, stop_timeout));
                terminated.and(pid).map(|pid| SupervisorAction::Terminate { pid })
            }
            ProcState::Ready { .. } | ProcState::Draining { .. } if stopping => {
                let terminated = self.illegal.count(p.state.on_terminate(now, stop_timeout));
                terminated.and(pid).map(|pid| SupervisorAction::Terminate { pid })
            }
            ProcState::Ready { .. } => {
                let drained = self.illegal.count(p.state.on_drain());
                drained.and(pid).map(|pid| SupervisorAction::Drain { pid })
            }
            _ => None,
        };
        self.actions.extend(action);
        self.push_retiring(id);
    }

    fn kill(&mut self, id: SpawnId) {
        if let Some(p) = self.procs.get_mut(&id)
            && self.illegal.count(p.state.on_kill()).is_some()
            && let Some(pid) = p.pid
        {
            self.actions.push_back(SupervisorAction::Kill { pid });
        }
    }

    /// Fires due timers, then brings the slots towards what is wanted.
    fn advance(&mut self, now: Time) {
        self.now = self.now.max(now);
        while self.slots.len() < self.desired as usize {
            self.slots.push(SlotEntry::new());
        }
        self.fire_timers();
        self.reset_crash_counts();
        if self.stopping {
            if self.procs.is_empty() && !self.stopped_emitted {
                self.stopped_emitted = true;
                self.actions.push_back(SupervisorAction::Stopped);
            }
            return;
        }
        self.fill_slots();
        if self.roll.is_some() {
            self.progress_roll();
        }
        if self.roll.is_none() {
            self.start_recycles();
        }
    }

    fn fire_timers(&mut self) {
        let (now, grace) = (self.now, self.config.stuck_grace);
        let due: Vec<SpawnId> = self
            .procs
            .iter()
            .filter(|(_, p)| p.state.timer(grace).is_some_and(|(t, _)| t <= now))
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            // An earlier timer in this loop may have changed this process.
            let Some(p) = self.procs.get(&id) else {
                continue;
            };
            let Some((t, due)) = p.state.timer(grace) else {
                continue;
            };
            if t > now {
                continue;
            }
            match due {
                Due::ReadyTimeout => {
                    self.detach(id, true, "missed the ready timeout");
                    if let Some(p) = self.procs.get_mut(&id) {
                        p.leave.get_or_insert(Leave::ReadyTimeout);
                        // No pid yet: cancel the spawn; started: kill it.
                        if let ProcState::Spawning { .. } = p.state {
                            self.illegal.count(p.state.on_cancel());
                        } else {
                            self.kill(id);
                        }
                    }
                    self.push_retiring(id);
                }
                Due::StuckGrace => {
                    self.detach(id, false, "stuck");
                    if let Some(p) = self.procs.get_mut(&id) {
                        p.leave.get_or_insert(Leave::Stuck);
                    }
                    self.kill(id);
                    self.push_retiring(id);
                }
                Due::StopTimeout => self.kill(id),
            }
        }
    }

    /// Starts a primary in every wanted slot that has none and no backoff pending.
    fn fill_slots(&mut self) {
        let version = self.roll.map_or(self.current, |r| r.to);
        for idx in 0..self.desired as usize {
            match self.slots[idx].state {
                SlotState::Occupied { .. } => {}
                SlotState::Vacant if self.backoff_pending(idx) => {
                    let waiting = self.slots[idx].state.on_wait_backoff();
                    self.illegal.count(waiting);
                }
                SlotState::Backoff if self.backoff_pending(idx) => {}
                SlotState::Vacant | SlotState::Backoff => {
                    let id = self.spawn(idx, version);
                    let occupied = self.slots[idx].state.on_spawn_primary(id);
                    self.illegal.count_and_assert(occupied);
                }
            }
        }
    }
}
