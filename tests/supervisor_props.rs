//! Property tests of the supervisor against a simulated process table.
//!
//! A small simulation answers the supervisor's actions the way an operating
//! system and a load balancer would, in an order chosen by proptest: spawns
//! succeed or fail, processes join, serve, get stuck, quit or crash, drained
//! processes report idle, terminated and killed ones exit. After every step
//! the test checks `Supervisor::check_invariants` and the promises seen from
//! outside (signals only to live processes, exact backoff delays, no spawn
//! during a backoff or after stop, `Stopped` once and only when nothing
//! lives, capacity never dropping during planned handovers, module reloads
//! signalled exactly to the ready workers that accept them, below
//! `max_reloads`).
//!
//! `PROPTEST_CASES` overrides the number of cases.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestCaseError};
use rip_server::core::supervisor::{
    LastRoll, SpawnId, Supervisor, SupervisorAction, SupervisorConfig, SupervisorStatus,
};
use rip_server::core::{Pid, Slot, Time, Version};

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/supervisor_props.txt",
        ))),
        ..ProptestConfig::default()
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn expected_backoff(cfg: &SupervisorConfig, crashes: u32) -> Duration {
    let mut d = cfg.backoff_initial;
    for _ in 1..crashes {
        d = d.saturating_mul(2);
        if d >= cfg.backoff_max {
            return cfg.backoff_max;
        }
    }
    d.min(cfg.backoff_max)
}

#[derive(Debug, Clone)]
enum Op {
    Advance(u32),
    Spawned(u8),
    SpawnFailed(u8),
    Ready(u8),
    Crash(u8),
    Served(u8, u8),
    Stuck(u8),
    Unstuck(u8),
    Quit(u8),
    Idle(u8),
    ExitAsked(u8),
    ScaleBy(bool),
    ScaleTo(u8),
    Roll,
    ModuleReload,
    Stop,
}

#[derive(Debug, Clone)]
struct SimProc {
    slot: Slot,
    version: Version,
    joined_at: Option<Time>,
    joined: bool,
    drained: bool,
    idle_sent: bool,
    terminated: bool,
    killed: bool,
    quit: bool,
    stuck: bool,
    served: u64,
    requested_at: Time,
    stuck_at: Option<Time>,
    terminated_at: Option<Time>,
    quit_at: Option<Time>,
    /// Its join accepts the module-reload signal (decided at join).
    accepts_reload: bool,
    /// `Reload` signals it got.
    reloads: u32,
    /// A module reload came before it joined.
    burst_while_booting: bool,
}

impl SimProc {
    /// Joined and still taking new requests.
    fn serving(&self) -> bool {
        self.joined && !self.drained && !self.terminated && !self.killed && !self.quit
    }
}

struct Sim {
    sup: Supervisor,
    cfg: SupervisorConfig,
    now: Time,
    /// Spawns not answered yet, with the time they were requested.
    pending: Vec<(SpawnId, Slot, Version, Time)>,
    procs: BTreeMap<Pid, SimProc>,
    next_pid: u32,
    stop_called: bool,
    stopped: u32,
    /// Per slot: the earliest time the last status allowed a start, and
    /// the crash that began that backoff.
    not_before: BTreeMap<Slot, (Time, Time)>,
    /// Per slot: the backoff delays seen, in order, with their crash counts.
    backoffs: BTreeMap<Slot, Vec<(u32, u64)>>,
    log: Vec<String>,
    spawns_seen: u64,
    stats: Stats,
    /// Spawns seen during a backoff in this step.
    early_spawns: Vec<(Slot, Time, Time)>,
    /// Spawns of this step.
    step_spawns: Vec<SupervisorAction>,
    last_roll: Option<LastRoll>,
    /// Spawns not answered yet when a module reload came.
    pending_burst: BTreeSet<SpawnId>,
    /// `Reload` targets of this step.
    step_reloads: Vec<Pid>,
}

/// What a run went through (to show the generators reach every path).
#[derive(Debug, Clone, Default)]
struct Stats {
    drains: u64,
    terminates: u64,
    /// Kills of processes that had not been terminated (stuck, ready timeout).
    hard_kills: u64,
    /// Kills after a Terminate (stop timeout).
    escalations: u64,
    stopped: u64,
    backoffs: u64,
    recycles: u64,
    rolls_completed: u64,
    rolls_aborted: u64,
    max_processes_in_a_slot: usize,
    /// Backoffs ended early by a crash-count reset.
    early_by_reset: u64,
    /// `Reload` signals.
    reloads: u64,
}

impl Sim {
    fn new(cfg: SupervisorConfig) -> Result<Sim, TestCaseError> {
        let sup = Supervisor::new(cfg.clone(), Time::ZERO);
        let cfg = sup.config().clone();
        let mut sim = Sim {
            sup,
            cfg,
            now: Time::ZERO,
            pending: Vec::new(),
            procs: BTreeMap::new(),
            next_pid: 1000,
            stop_called: false,
            stopped: 0,
            not_before: BTreeMap::new(),
            backoffs: BTreeMap::new(),
            log: Vec::new(),
            spawns_seen: 0,
            stats: Stats::default(),
            early_spawns: Vec::new(),
            step_spawns: Vec::new(),
            last_roll: None,
            pending_burst: BTreeSet::new(),
            step_reloads: Vec::new(),
        };
        sim.after_step("new")?;
        Ok(sim)
    }

    fn fail(&self, msg: String) -> TestCaseError {
        let keep = std::env::var("SUPERVISOR_LOG_LINES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(40);
        let tail = &self.log[self.log.len().saturating_sub(keep)..];
        let status = serde_json::to_string(&self.sup.status(self.now)).unwrap_or_default();
        TestCaseError::fail(format!(
            "{msg}\n--- last steps ---\n{}\n--- status ---\n{status}",
            tail.join("\n")
        ))
    }

    fn pick<T: Clone>(items: &[T], i: u8) -> Option<T> {
        (!items.is_empty()).then(|| items[usize::from(i) % items.len()].clone())
    }

    fn pids_where(&self, f: impl Fn(&SimProc) -> bool) -> Vec<Pid> {
        self.procs.iter().filter(|(_, p)| f(p)).map(|(&pid, _)| pid).collect()
    }

    /// Drains and checks the actions, then checks the state.
    fn after_step(&mut self, what: &str) -> Result<(), TestCaseError> {
        self.log.push(format!("{:?} {what}", self.now));
        while let Some(a) = self.sup.poll_action() {
            self.log.push(format!("{:?}   -> {a:?}", self.now));
            self.on_action(a)?;
        }
        // Reloads come only from a module reload, or from a join that
        // brings a burst received while booting (both check the targets).
        if !self.step_reloads.is_empty() && what != "module reload" && !what.starts_with("ready ") {
            return Err(self.fail(format!("Reload of {:?} on {what}", self.step_reloads)));
        }
        if let Err(e) = self.sup.check_invariants() {
            return Err(self.fail(format!("invariant: {e}")));
        }
        let live: Vec<Pid> = self.procs.keys().copied().collect();
        if self.sup.live_pids() != live {
            return Err(self.fail(format!(
                "live pids {:?} but the process table has {live:?}",
                self.sup.live_pids()
            )));
        }
        if let Some(t) = self.sup.poll_timeout()
            && t <= self.now
        {
            return Err(self.fail(format!("poll_timeout {t:?} is not in the future")));
        }
        let status = self.sup.status(self.now);
        // Every start is of the newest generation: the one being rolled to,
        // else the routed one.
        let newest = self.sup.rolling_to().unwrap_or(self.sup.generation());
        for a in std::mem::take(&mut self.step_spawns) {
            if let SupervisorAction::Spawn { version, .. } = a
                && version != newest
            {
                return Err(self.fail(format!("{a:?} while the newest generation is {newest:?}")));
            }
        }
        for (slot, t, crashed_at) in std::mem::take(&mut self.early_spawns) {
            // The reset is earned: a worker of the slot that joined after the
            // crash has served for `backoff_reset_after`.
            let reset = status.slots.iter().any(|s| s.slot == slot && s.crashes == 0);
            let earned = self.procs.values().any(|p| {
                p.slot == slot
                    && p.serving()
                    && p.joined_at
                        .is_some_and(|j| j >= crashed_at && self.now >= j + self.cfg.backoff_reset_after)
            });
            if !reset || !earned {
                return Err(self.fail(format!(
                    "{slot:?} started at {:?} during a backoff until {t:?}",
                    self.now
                )));
            }
            self.stats.early_by_reset += 1;
        }
        if status.last_roll != self.last_roll {
            match status.last_roll.as_deref() {
                Some(r) if r.starts_with("completed") => self.stats.rolls_completed += 1,
                Some(r) if r.starts_with("aborted") => self.stats.rolls_aborted += 1,
                _ => {}
            }
            self.last_roll = status.last_roll.clone();
        }
        self.stats.recycles += u64::from(status.recycling > 0);
        self.stats.backoffs += status.slots.iter().filter(|s| s.state == "backoff").count() as u64;
        let most = status.slots.iter().map(|s| s.processes.len()).max().unwrap_or(0);
        self.stats.max_processes_in_a_slot = self.stats.max_processes_in_a_slot.max(most);
        self.check_status(&status)
    }

    fn check_status(&mut self, status: &SupervisorStatus) -> Result<(), TestCaseError> {
        self.not_before.clear();
        for s in &status.slots {
            match (s.next_attempt_in_ms, s.backoff_ms) {
                (Some(next), Some(delay)) => {
                    let want = expected_backoff(&self.cfg, s.crashes);
                    if s.crashes == 0 || delay != want.as_millis() as u64 {
                        return Err(self.fail(format!(
                            "{:?}: backoff {delay} ms after {} crashes, want {want:?}",
                            s.slot, s.crashes
                        )));
                    }
                    if delay < self.cfg.backoff_initial.as_millis() as u64
                        || delay > self.cfg.backoff_max.as_millis() as u64
                    {
                        return Err(self.fail(format!("{:?}: backoff {delay} ms outside [initial, max]", s.slot)));
                    }
                    if next == 0 || next > delay {
                        return Err(self.fail(format!(
                            "{:?}: next attempt in {next} ms with a {delay} ms backoff",
                            s.slot
                        )));
                    }
                    let until = self.now + ms(next);
                    let crashed_at = Time::from_micros(until.as_micros() - delay * 1000);
                    self.not_before.insert(s.slot, (until, crashed_at));
                    let seen = self.backoffs.entry(s.slot).or_default();
                    if seen.last() != Some(&(s.crashes, delay)) {
                        seen.push((s.crashes, delay));
                    }
                }
                (None, None) => {
                    if s.state == "backoff" {
                        return Err(self.fail(format!("{:?} in backoff with no next attempt", s.slot)));
                    }
                }
                other => {
                    return Err(self.fail(format!("{:?}: inconsistent backoff fields {other:?}", s.slot)));
                }
            }
        }
        // Consecutive backoffs of a slot grow (or hold at the cap) while crashes add up.
        for (slot, seen) in &self.backoffs {
            for w in seen.windows(2) {
                let ((c0, d0), (c1, d1)) = (w[0], w[1]);
                if c1 > c0 && d1 < d0 {
                    return Err(self.fail(format!(
                        "{slot:?}: backoff shrank from {d0} to {d1} ms as crashes rose {c0} -> {c1}"
                    )));
                }
            }
        }
        Ok(())
    }

    fn on_action(&mut self, a: SupervisorAction) -> Result<(), TestCaseError> {
        match a {
            SupervisorAction::Spawn { spawn, slot, version } => {
                if self.stop_called || self.stopped > 0 {
                    return Err(self.fail(format!("{a:?} after stop")));
                }
                if let Some(&(t, crashed_at)) = self.not_before.get(&slot)
                    && self.now < t
                {
                    // Only a crash-count reset (a stable run) ends a backoff
                    // early; checked once the step's status is known.
                    self.early_spawns.push((slot, t, crashed_at));
                }
                self.step_spawns.push(a);
                if slot.0 >= self.sup.desired() {
                    return Err(self.fail(format!("{a:?} for an unwanted slot (desired {})", self.sup.desired())));
                }
                if self.pending.iter().any(|p| p.0 == spawn) {
                    return Err(self.fail(format!("{a:?} reuses a spawn id")));
                }
                let _ = version;
                self.spawns_seen += 1;
                self.pending.push((spawn, slot, version, self.now));
            }
            SupervisorAction::Drain { pid } => match self.procs.get_mut(&pid) {
                Some(p) if p.joined && !p.drained && !p.terminated && !p.killed => {
                    p.drained = true;
                    self.stats.drains += 1;
                }
                other => {
                    let other = other.cloned();
                    return Err(self.fail(format!("{a:?} to {other:?}")));
                }
            },
            SupervisorAction::Terminate { pid } => match self.procs.get_mut(&pid) {
                // A worker the balancer may still route to is never terminated
                // (that would cost a client a failed request), except at stop,
                // when the balancer has finished everything.
                Some(p) if p.serving() && !self.stop_called => {
                    let p = p.clone();
                    return Err(self.fail(format!("{a:?} to a routable worker {p:?}")));
                }
                Some(p) if !p.terminated && !p.killed => {
                    p.terminated = true;
                    p.terminated_at = Some(self.now);
                    self.stats.terminates += 1;
                }
                other => {
                    let other = other.cloned();
                    return Err(self.fail(format!("{a:?} to {other:?}")));
                }
            },
            SupervisorAction::Kill { pid } => match self.procs.get_mut(&pid) {
                Some(p) if !p.killed => {
                    // A kill needs a reason: a Terminate or a quit that did not
                    // end in time, a stuck request past the grace, a missed join.
                    let cfg = &self.cfg;
                    let earliest = [
                        p.terminated_at.map(|t| t + cfg.stop_timeout),
                        p.quit_at.map(|t| t + cfg.stop_timeout),
                        p.stuck_at.filter(|_| p.stuck).map(|t| t + cfg.stuck_grace),
                        (!p.joined).then(|| p.requested_at + cfg.ready_timeout),
                    ]
                    .into_iter()
                    .flatten()
                    .min();
                    if earliest.is_none_or(|t| self.now < t) {
                        let p = p.clone();
                        return Err(self.fail(format!("{a:?} at {:?} without cause ({earliest:?}): {p:?}", self.now)));
                    }
                    p.killed = true;
                    if p.terminated {
                        self.stats.escalations += 1;
                    } else {
                        self.stats.hard_kills += 1;
                    }
                }
                other => {
                    let other = other.cloned();
                    return Err(self.fail(format!("{a:?} to {other:?}")));
                }
            },
            SupervisorAction::Reload { pid } => match self.procs.get_mut(&pid) {
                Some(p) if p.serving() && p.accepts_reload => {
                    p.reloads += 1;
                    if self.cfg.max_reloads.is_some_and(|m| m > 0 && p.reloads >= m) {
                        let p = p.clone();
                        return Err(self.fail(format!("{a:?} reaches max_reloads: {p:?}")));
                    }
                    self.step_reloads.push(pid);
                    self.stats.reloads += 1;
                }
                other => {
                    let other = other.cloned();
                    return Err(self.fail(format!("{a:?} to {other:?}")));
                }
            },
            SupervisorAction::Stopped => {
                if !self.stop_called || self.stopped > 0 || !self.procs.is_empty() || !self.pending.is_empty() {
                    return Err(self.fail(format!(
                        "Stopped (stop called {}, seen {} times, {} live, {} pending)",
                        self.stop_called,
                        self.stopped,
                        self.procs.len(),
                        self.pending.len()
                    )));
                }
                self.stopped += 1;
                self.stats.stopped += 1;
            }
        }
        Ok(())
    }

    /// Moves the clock to `target`, firing every timeout on its due time.
    fn advance_to(&mut self, target: Time) -> Result<(), TestCaseError> {
        while let Some(t) = self.sup.poll_timeout()
            && t <= target
        {
            self.now = t;
            self.sup.handle_timeout(t);
            self.after_step("timeout")?;
        }
        self.now = target;
        self.sup.handle_timeout(target);
        self.after_step("tick")
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let now = self.now;
        match *op {
            Op::Advance(d) => return self.advance_to(now + ms(u64::from(d))),
            Op::Spawned(i) => {
                if let Some(k) = Sim::pick(&(0..self.pending.len()).collect::<Vec<_>>(), i) {
                    let (spawn, slot, version, requested_at) = self.pending.remove(k);
                    let pid = Pid(self.next_pid);
                    self.next_pid += 1;
                    self.procs.insert(
                        pid,
                        SimProc {
                            slot,
                            version,
                            joined_at: None,
                            joined: false,
                            drained: false,
                            idle_sent: false,
                            terminated: false,
                            killed: false,
                            quit: false,
                            stuck: false,
                            served: 0,
                            requested_at,
                            stuck_at: None,
                            terminated_at: None,
                            quit_at: None,
                            accepts_reload: false,
                            reloads: 0,
                            burst_while_booting: self.pending_burst.remove(&spawn),
                        },
                    );
                    self.sup.handle_spawned(spawn, pid, now);
                    return self.after_step(&format!("spawned {spawn:?} as {pid:?}"));
                }
            }
            Op::SpawnFailed(i) => {
                if let Some(k) = Sim::pick(&(0..self.pending.len()).collect::<Vec<_>>(), i) {
                    let (spawn, _, _, _) = self.pending.remove(k);
                    self.pending_burst.remove(&spawn);
                    self.sup.handle_spawn_failed(spawn, now);
                    return self.after_step(&format!("spawn failed {spawn:?}"));
                }
            }
            Op::Ready(i) => {
                if let Some(pid) = Sim::pick(&self.pids_where(|p| !p.joined && !p.killed), i) {
                    return self.ready(pid);
                }
            }
            Op::Crash(i) => {
                if let Some(pid) = Sim::pick(&self.pids_where(|_| true), i) {
                    self.procs.remove(&pid);
                    self.sup.handle_exit(pid, now);
                    return self.after_step(&format!("crash {pid:?}"));
                }
            }
            Op::Served(i, k) => {
                if let Some(pid) = Sim::pick(&self.pids_where(|p| p.serving()), i) {
                    let p = self.procs.get_mut(&pid).unwrap();
                    p.served += u64::from(k);
                    let n = p.served;
                    self.sup.handle_served(pid, n, now);
                    return self.after_step(&format!("served {pid:?} {n}"));
                }
            }
            Op::Stuck(i) => {
                if let Some(pid) = Sim::pick(&self.pids_where(|p| p.joined && !p.stuck && !p.killed), i) {
                    let p = self.procs.get_mut(&pid).unwrap();
                    p.stuck = true;
                    p.stuck_at = Some(now);
                    self.sup.handle_stuck(pid, now);
                    return self.after_step(&format!("stuck {pid:?}"));
                }
            }
            Op::Unstuck(i) => {
                if let Some(pid) = Sim::pick(&self.pids_where(|p| p.stuck && !p.killed), i) {
                    self.procs.get_mut(&pid).unwrap().stuck = false;
                    self.sup.handle_unstuck(pid, now);
                    return self.after_step(&format!("unstuck {pid:?}"));
                }
            }
            Op::Quit(i) => {
                if let Some(pid) = Sim::pick(&self.pids_where(|p| p.joined && !p.quit && !p.killed), i) {
                    let p = self.procs.get_mut(&pid).unwrap();
                    p.quit = true;
                    p.quit_at = Some(now);
                    self.sup.handle_quit(pid, now);
                    return self.after_step(&format!("quit {pid:?}"));
                }
            }
            Op::Idle(i) => {
                if let Some(pid) = Sim::pick(&self.pids_where(|p| p.drained && !p.idle_sent && !p.stuck), i) {
                    self.procs.get_mut(&pid).unwrap().idle_sent = true;
                    self.sup.handle_idle(pid, now);
                    return self.after_step(&format!("idle {pid:?}"));
                }
            }
            Op::ExitAsked(i) => {
                if let Some(pid) = Sim::pick(&self.pids_where(|p| p.terminated || p.killed || p.quit), i) {
                    self.procs.remove(&pid);
                    self.sup.handle_exit(pid, now);
                    return self.after_step(&format!("exit {pid:?}"));
                }
            }
            Op::ScaleBy(up) => {
                self.sup.scale_by(if up { 1 } else { -1 }, now);
                return self.after_step(&format!("scale by {}", if up { "+1" } else { "-1" }));
            }
            Op::ScaleTo(n) => {
                self.sup.scale_to(u32::from(n), now);
                return self.after_step(&format!("scale to {n}"));
            }
            Op::Roll => {
                let was_rolling = self.sup.rolling_to().is_some();
                let r = self.sup.rolling_restart(now);
                if r.is_ok() == (was_rolling || self.stop_called) {
                    return Err(self.fail(format!(
                        "rolling_restart gave {r:?} (rolling {was_rolling}, stop {})",
                        self.stop_called
                    )));
                }
                return self.after_step(&format!("rolling restart {r:?}"));
            }
            Op::ModuleReload => {
                let limit = self.cfg.max_reloads.filter(|&m| m > 0);
                let expected = if self.stop_called {
                    Vec::new()
                } else {
                    self.pids_where(|p| p.serving() && p.accepts_reload && limit.is_none_or(|m| p.reloads + 1 < m))
                };
                for p in self.procs.values_mut().filter(|p| !p.joined) {
                    p.burst_while_booting = true;
                }
                self.pending_burst.extend(self.pending.iter().map(|p| p.0));
                self.sup.reload_workers(now);
                self.after_step("module reload")?;
                let mut got = std::mem::take(&mut self.step_reloads);
                got.sort_unstable();
                if got != expected {
                    return Err(self.fail(format!("module reload signalled {got:?}, want {expected:?}")));
                }
            }
            Op::Stop => {
                self.stop_called = true;
                self.sup.stop(now);
                return self.after_step("stop");
            }
        }
        Ok(())
    }

    /// `pid` joins (accepting module reloads unless its pid is a multiple
    /// of 3); a module reload that came while it booted is signalled now if
    /// it accepts reloads and is below `max_reloads`.
    fn ready(&mut self, pid: Pid) -> Result<(), TestCaseError> {
        let p = self.procs.get_mut(&pid).unwrap();
        p.joined = true;
        p.joined_at = Some(self.now);
        p.accepts_reload = !pid.0.is_multiple_of(3);
        let (accepts, burst, reloads) = (p.accepts_reload, p.burst_while_booting, p.reloads);
        self.sup.handle_ready_with_reload(pid, accepts, self.now);
        self.after_step(&format!("ready {pid:?}"))?;
        let limit = self.cfg.max_reloads.filter(|&m| m > 0);
        let serving = self.procs.get(&pid).is_some_and(SimProc::serving);
        let expected = if serving && accepts && burst && limit.is_none_or(|m| reloads + 1 < m) {
            vec![pid]
        } else {
            Vec::new()
        };
        let got = std::mem::take(&mut self.step_reloads);
        if got != expected {
            return Err(self.fail(format!("{pid:?} joined: signalled {got:?}, want {expected:?}")));
        }
        Ok(())
    }

    /// Answers everything promptly (no faults) for a while; returns whether
    /// every wanted slot was ready with nothing else alive at some point.
    fn settle(&mut self) -> Result<bool, TestCaseError> {
        for _ in 0..600 {
            let st = self.sup.status(self.now);
            let wanted = self.sup.desired() as usize;
            if st.rolling.is_none()
                && self.pending.is_empty()
                && self.procs.len() == wanted
                && st.slots.len() == wanted
                && st.slots.iter().all(|s| s.state == "ready")
            {
                return Ok(true);
            }
            self.answer_all()?;
            self.advance_to(self.now + ms(50))?;
        }
        Ok(false)
    }

    /// One round of prompt answers.
    fn answer_all(&mut self) -> Result<(), TestCaseError> {
        while !self.pending.is_empty() {
            self.apply(&Op::Spawned(0))?;
        }
        for pid in self.pids_where(|p| p.stuck && !p.killed) {
            self.procs.get_mut(&pid).unwrap().stuck = false;
            self.sup.handle_unstuck(pid, self.now);
            self.after_step(&format!("unstuck {pid:?}"))?;
        }
        for pid in self.pids_where(|p| !p.joined && !p.killed && !p.terminated) {
            self.ready(pid)?;
        }
        for pid in self.pids_where(|p| p.drained && !p.idle_sent) {
            self.procs.get_mut(&pid).unwrap().idle_sent = true;
            self.sup.handle_idle(pid, self.now);
            self.after_step(&format!("idle {pid:?}"))?;
        }
        for pid in self.pids_where(|p| p.terminated || p.killed || p.quit) {
            self.procs.remove(&pid);
            self.sup.handle_exit(pid, self.now);
            self.after_step(&format!("exit {pid:?}"))?;
        }
        Ok(())
    }

    /// Stops and answers until `Stopped`; fails if it never comes.
    fn stop_and_finish(&mut self) -> Result<(), TestCaseError> {
        if !self.stop_called {
            self.apply(&Op::Stop)?;
        }
        for _ in 0..100 {
            if self.stopped > 0 {
                break;
            }
            while !self.pending.is_empty() {
                self.apply(&Op::Spawned(0))?;
            }
            for pid in self.pids_where(|p| p.terminated || p.killed || p.quit) {
                self.procs.remove(&pid);
                self.sup.handle_exit(pid, self.now);
                self.after_step(&format!("exit {pid:?}"))?;
            }
            self.advance_to(self.now + ms(500))?;
        }
        if self.stopped != 1 || !self.sup.live_pids().is_empty() {
            return Err(self.fail(format!(
                "stop did not finish: Stopped seen {} times, live {:?}",
                self.stopped,
                self.sup.live_pids()
            )));
        }
        self.advance_to(self.now + ms(60_000))?;
        if self.stopped != 1 {
            return Err(self.fail("Stopped emitted again".to_string()));
        }
        Ok(())
    }
}

fn config_strategy() -> impl Strategy<Value = SupervisorConfig> {
    (
        (
            1u32..=4,
            prop::option::of(1u64..=20),
            prop::option::of(3_000u64..=30_000),
        ),
        (10u64..=200, 1u32..=64, 500u64..=8_000),
        (500u64..=10_000, 500u64..=10_000, 0u64..=5_000),
        (0u32..=3, 1u32..=3, prop::option::of(0u32..=4)),
    )
        .prop_map(
            |(
                (workers, max_requests, max_age),
                (initial, factor, reset),
                (ready, stop, stuck),
                (recycles, spawns, max_reloads),
            )| {
                SupervisorConfig {
                    workers,
                    max_requests,
                    max_age: max_age.map(ms),
                    backoff_initial: ms(initial),
                    backoff_max: ms(initial * u64::from(factor)),
                    backoff_reset_after: ms(reset),
                    ready_timeout: ms(ready),
                    stop_timeout: ms(stop),
                    stuck_grace: ms(stuck),
                    max_concurrent_recycles: recycles,
                    max_concurrent_spawns: spawns,
                    max_reloads,
                }
            },
        )
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u32..400).prop_map(Op::Advance),
        2 => (0u32..20_000).prop_map(Op::Advance),
        6 => any::<u8>().prop_map(Op::Spawned),
        1 => any::<u8>().prop_map(Op::SpawnFailed),
        6 => any::<u8>().prop_map(Op::Ready),
        2 => any::<u8>().prop_map(Op::Crash),
        4 => (any::<u8>(), 1u8..6).prop_map(|(i, k)| Op::Served(i, k)),
        1 => any::<u8>().prop_map(Op::Stuck),
        1 => any::<u8>().prop_map(Op::Unstuck),
        1 => any::<u8>().prop_map(Op::Quit),
        4 => any::<u8>().prop_map(Op::Idle),
        4 => any::<u8>().prop_map(Op::ExitAsked),
        1 => any::<bool>().prop_map(Op::ScaleBy),
        1 => (0u8..6).prop_map(Op::ScaleTo),
        2 => Just(Op::Roll),
        1 => Just(Op::ModuleReload),
    ]
}

/// No faults: nothing crashes, fails, hangs or quits on its own, and the
/// worker count stays put.
fn faultless_op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u32..300).prop_map(Op::Advance),
        1 => (0u32..3_000).prop_map(Op::Advance),
        6 => any::<u8>().prop_map(Op::Spawned),
        6 => any::<u8>().prop_map(Op::Ready),
        4 => (any::<u8>(), 1u8..6).prop_map(|(i, k)| Op::Served(i, k)),
        4 => any::<u8>().prop_map(Op::Idle),
        4 => any::<u8>().prop_map(Op::ExitAsked),
        2 => Just(Op::Roll),
        1 => Just(Op::ModuleReload),
    ]
}

fn run_arbitrary(cfg: SupervisorConfig, ops: &[Op], stop_at: Option<usize>) -> Result<Stats, TestCaseError> {
    let mut sim = Sim::new(cfg)?;
    for (i, op) in ops.iter().enumerate() {
        if stop_at == Some(i) {
            sim.apply(&Op::Stop)?;
        }
        sim.apply(op)?;
    }
    if !sim.stop_called && !sim.settle()? {
        return Err(sim.fail("never settled with prompt answers".to_string()));
    }
    sim.stop_and_finish()?;
    Ok(sim.stats)
}

fn run_faultless(cfg: SupervisorConfig, ops: &[Op]) -> Result<Stats, TestCaseError> {
    let mut sim = Sim::new(cfg)?;
    let n = sim.sup.desired() as usize;
    let mut full = false;
    for op in ops {
        let completed_before = sim.stats.rolls_completed;
        sim.apply(op)?;
        let routed = sim.sup.generation();
        let serving = sim.procs.values().filter(|p| p.serving()).count();
        let serving_routed = sim
            .procs
            .values()
            .filter(|p| p.serving() && p.version == routed)
            .count();
        if serving_routed >= n {
            full = true;
        }
        if full && serving_routed < n {
            return Err(sim.fail(format!(
                "only {serving_routed} of {n} workers of {routed:?} serve ({serving} in all)"
            )));
        }
        if sim.stats.rolls_completed > completed_before {
            // At the switch every old worker is draining and all N new ones serve.
            let stale = sim
                .procs
                .values()
                .filter(|p| p.serving() && p.version != routed)
                .count();
            if stale > 0 {
                return Err(sim.fail(format!(
                    "{stale} old workers still routable after the switch to {routed:?}"
                )));
            }
        }
    }
    if !sim.settle()? {
        return Err(sim.fail("never settled".to_string()));
    }
    sim.stop_and_finish()?;
    Ok(sim.stats)
}

proptest! {
    #![proptest_config(cases(256))]

    /// Arbitrary inputs: invariants, signal targets, backoff, stop.
    #[test]
    fn arbitrary_inputs_keep_every_promise(
        cfg in config_strategy(),
        ops in prop::collection::vec(op_strategy(), 1..150),
        stop_at in prop::option::of(0usize..150),
    ) {
        run_arbitrary(cfg, &ops, stop_at)?;
    }

    /// Without faults, the processes that take new requests never fall below
    /// N once all N have joined: not during recycling, not during a rolling
    /// restart (old ones drain only after all new ones are ready), not after.
    #[test]
    fn planned_handovers_keep_full_capacity(
        cfg in config_strategy(),
        ops in prop::collection::vec(faultless_op_strategy(), 1..200),
    ) {
        run_faultless(cfg, &ops)?;
    }

    /// One slot that keeps failing in every possible way: each delay before
    /// the next start is exactly `min(initial·2^(c-1), max)`, and a run that
    /// stayed ready for `backoff_reset_after` starts the count over.
    #[test]
    fn crash_loop_delays_grow_cap_and_reset(
        initial in 10u64..500,
        factor in 1u32..100,
        failures in prop::collection::vec((0u8..5, 0u64..20_000), 1..25),
    ) {
        let cfg = SupervisorConfig {
            workers: 1,
            backoff_initial: ms(initial),
            backoff_max: ms(initial * u64::from(factor)),
            ..SupervisorConfig::default()
        };
        let reset = cfg.backoff_reset_after.as_millis() as u64;
        let ready_timeout = cfg.ready_timeout.as_millis() as u64;
        let mut sim = Sim::new(cfg.clone())?;
        let mut crashes = 0u32;
        for &(mode, d) in &failures {
            prop_assert_eq!(sim.pending.len(), 1, "{}", sim.fail("one spawn pending".to_string()));
            let spawned_at = sim.now;
            match mode {
                // The spawn itself fails.
                0 => {
                    sim.apply(&Op::SpawnFailed(0))?;
                    crashes += 1;
                }
                // Dies while booting.
                1 => {
                    sim.apply(&Op::Spawned(0))?;
                    sim.advance_to(spawned_at + ms(d % ready_timeout))?;
                    sim.apply(&Op::Crash(0))?;
                    crashes += 1;
                }
                // Never joins: killed at the ready timeout.
                2 => {
                    sim.apply(&Op::Spawned(0))?;
                    sim.advance_to(spawned_at + ms(ready_timeout))?;
                    sim.apply(&Op::ExitAsked(0))?;
                    crashes += 1;
                }
                // Joins, serves a short while, dies.
                3 => {
                    sim.apply(&Op::Spawned(0))?;
                    sim.apply(&Op::Ready(0))?;
                    sim.advance_to(spawned_at + ms(d % reset))?;
                    sim.apply(&Op::Crash(0))?;
                    crashes += 1;
                }
                // Joins, stays up past the reset, dies: the count starts over.
                _ => {
                    sim.apply(&Op::Spawned(0))?;
                    sim.apply(&Op::Ready(0))?;
                    sim.advance_to(spawned_at + ms(reset + d))?;
                    sim.apply(&Op::Crash(0))?;
                    crashes = 1;
                }
            }
            let crashed_at = sim.now;
            let st = sim.sup.status(sim.now);
            prop_assert_eq!(st.slots[0].crashes, crashes);
            prop_assert_eq!(st.slots[0].state, "backoff");
            let before = sim.spawns_seen;
            let want = expected_backoff(&cfg, crashes);
            sim.advance_to(crashed_at + (want - ms(1)))?;
            prop_assert_eq!(sim.spawns_seen, before, "{}", sim.fail(format!("spawned before {want:?}")));
            sim.advance_to(crashed_at + want)?;
            prop_assert_eq!(sim.spawns_seen, before + 1, "{}", sim.fail(format!("no spawn at {want:?}")));
        }
        sim.stop_and_finish()?;
    }
}

/// The generators are not vacuous: with a fixed seed they reach every path
/// the properties are about (handovers, rolls completed and aborted,
/// backoffs, kills, escalations, stops).
#[test]
fn the_generators_reach_every_interesting_path() {
    use proptest::test_runner::TestRunner;
    use std::cell::RefCell;

    let total = RefCell::new(Stats::default());
    let add = |s: Stats| {
        let mut t = total.borrow_mut();
        t.drains += s.drains;
        t.terminates += s.terminates;
        t.hard_kills += s.hard_kills;
        t.escalations += s.escalations;
        t.stopped += s.stopped;
        t.backoffs += s.backoffs;
        t.recycles += s.recycles;
        t.rolls_completed += s.rolls_completed;
        t.rolls_aborted += s.rolls_aborted;
        t.reloads += s.reloads;
        t.max_processes_in_a_slot = t.max_processes_in_a_slot.max(s.max_processes_in_a_slot);
    };
    let strategy = (
        config_strategy(),
        prop::collection::vec(op_strategy(), 1..150),
        prop::option::of(0usize..150),
    );
    let runner = || {
        TestRunner::new_with_rng(
            ProptestConfig {
                cases: 64,
                failure_persistence: None,
                ..ProptestConfig::default()
            },
            proptest::test_runner::TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
        )
    };
    runner()
        .run(&strategy, |(cfg, ops, stop_at)| {
            run_arbitrary(cfg, &ops, stop_at).map(&add)
        })
        .unwrap();
    let faultless = (
        config_strategy(),
        prop::collection::vec(faultless_op_strategy(), 1..200),
    );
    runner()
        .run(&faultless, |(cfg, ops)| run_faultless(cfg, &ops).map(&add))
        .unwrap();
    let t = total.into_inner();
    eprintln!("{t:#?}");
    assert!(
        t.drains > 0 && t.terminates > 0 && t.hard_kills > 0 && t.escalations > 0,
        "{t:?}"
    );
    assert_eq!(t.stopped, 128, "every run ends with exactly one Stopped: {t:?}");
    assert!(t.backoffs > 0 && t.recycles > 0, "{t:?}");
    assert!(t.rolls_completed > 0 && t.rolls_aborted > 0, "{t:?}");
    assert!(t.max_processes_in_a_slot >= 2, "{t:?}");
    assert!(t.reloads > 0, "{t:?}");
}
