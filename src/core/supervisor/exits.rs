//! A process going away: taking it out of its slot (the replacement takes
//! over, a crash backs the slot off, a failed new generation aborts the roll),
//! forgetting it, and counting every exit by its cause ([`ExitCause`]).

use std::collections::BTreeMap;

use serde::Serialize;

use super::Supervisor;
use super::process::{Leave, ProcState, SpawnId};
use super::slot::{Handover, Role};

/// Why a worker process ended, counted once per process by
/// [`Supervisor::exit_counts`] when the supervisor learns of the exit (or of
/// the failed spawn). Serialises as [`ExitCause::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitCause {
    /// An exit nobody asked for, before or after joining.
    Crash,
    /// The worker program could not be started.
    SpawnFailed,
    /// Killed (or cancelled) for not joining within `ready_timeout`.
    ReadyTimeout,
    /// Killed after staying stuck past `stuck_grace`.
    Stuck,
    /// Handed its slot to a replacement (max requests, max age).
    Recycled,
    /// Replaced by a rolling restart, or stopped because one began or was
    /// aborted.
    RollingRestart,
    /// Its slot was no longer wanted.
    ScaleDown,
    /// It quit on its own.
    Quit,
    /// Graceful stop.
    Stop,
}

impl ExitCause {
    /// Every cause, in a fixed order.
    pub const ALL: [ExitCause; 9] = [
        ExitCause::Crash,
        ExitCause::SpawnFailed,
        ExitCause::ReadyTimeout,
        ExitCause::Stuck,
        ExitCause::Recycled,
        ExitCause::RollingRestart,
        ExitCause::ScaleDown,
        ExitCause::Quit,
        ExitCause::Stop,
    ];

    /// A stable snake_case name (the `cause` label of
    /// `rip_worker_restarts_total`).
    pub const fn as_str(self) -> &'static str {
        match self {
            ExitCause::Crash => "crash",
            ExitCause::SpawnFailed => "spawn_failed",
            ExitCause::ReadyTimeout => "ready_timeout",
            ExitCause::Stuck => "stuck",
            ExitCause::Recycled => "recycled",
            ExitCause::RollingRestart => "rolling_restart",
            ExitCause::ScaleDown => "scale_down",
            ExitCause::Quit => "quit",
            ExitCause::Stop => "stop",
        }
    }
}

impl From<Leave> for ExitCause {
    fn from(leave: Leave) -> ExitCause {
        match leave {
            Leave::Recycled => ExitCause::Recycled,
            Leave::RolledOver | Leave::RollAborted | Leave::Cancelled => ExitCause::RollingRestart,
            Leave::ScaledDown => ExitCause::ScaleDown,
            Leave::Stuck => ExitCause::Stuck,
            Leave::ReadyTimeout => ExitCause::ReadyTimeout,
            Leave::Quit => ExitCause::Quit,
            Leave::Stop => ExitCause::Stop,
        }
    }
}

impl Supervisor {
    /// Worker exits since the supervisor was created, by cause; every cause
    /// is listed (0 until it happens).
    pub fn exit_counts(&self) -> &BTreeMap<ExitCause, u64> {
        &self.exits
    }

    /// Forgets an exited process, after detaching it from its role. An exit
    /// in a planned state carries the reason it was sent away; any other is
    /// a crash.
    pub(super) fn process_exited(&mut self, id: SpawnId) {
        let Some(p) = self.procs.get(&id) else { return };
        let crash = !p.state.exit_is_planned();
        // A planned state is only ever entered with a reason to leave.
        let cause = match p.leave {
            Some(leave) if !crash => ExitCause::from(leave),
            _ => ExitCause::Crash,
        };
        self.detach(id, crash, "died before joining");
        self.remove(id, cause);
    }

    /// Starting the process failed: detach and forget it (a crash of its
    /// slot unless the spawn had been cancelled).
    pub(super) fn spawn_failed(&mut self, id: SpawnId, cancelled: bool) {
        self.detach(id, !cancelled, "could not be spawned");
        self.remove(id, ExitCause::SpawnFailed);
    }

    /// Takes a process out of its role (primary or replacement) because it
    /// is gone or going, with the consequences for its slot: the replacement
    /// takes over, the crash is counted, a failed new generation aborts the
    /// rolling restart. The caller then removes or retires the process.
    pub(super) fn detach(&mut self, id: SpawnId, crash: bool, what: &str) {
        let Some(p) = self.procs.get(&id) else { return };
        let (slot, version, before_ready) = (p.slot, p.version, p.state.before_ready());
        let idx = slot.0 as usize;
        match self.role(id) {
            None | Some(Role::Retiring) => return,
            Some(Role::Primary) => {
                let lost = self.slots[idx].state.on_primary_lost();
                self.illegal.count_and_assert(lost);
                if crash {
                    self.record_crash(idx);
                }
            }
            Some(Role::Replacement(kind)) => {
                let lost = self.slots[idx].state.on_replacement_lost();
                self.illegal.count_and_assert(lost);
                // A new generation failing to boot aborts the roll; it says
                // nothing about the slot's own health.
                if crash && !(kind == Handover::Roll && before_ready) {
                    self.record_crash(idx);
                }
            }
        }
        if crash
            && before_ready
            && let Some(roll) = self.roll
            && roll.to == version
        {
            let app_error = self.app_error_suffix(id);
            self.abort_roll(format!("slot {} v{} {what}{app_error}", slot.0, version.0));
        }
    }

    /// Forgets a process that has ended, counting its exit once.
    fn remove(&mut self, id: SpawnId, cause: ExitCause) {
        if let Some(p) = self.procs.remove(&id) {
            *self.exits.entry(cause).or_default() += 1;
            if let Some(pid) = p.pid {
                self.by_pid.remove(&pid);
            }
            self.slots[p.slot.0 as usize].retiring.retain(|&r| r != id);
        }
    }

    fn record_crash(&mut self, idx: usize) {
        let e = &mut self.slots[idx];
        e.crashes = e.crashes.saturating_add(1);
        e.last_crash_at = self.now;
    }

    /// Resets the crash count of slots where a process that joined after the
    /// last crash has stayed ready for `backoff_reset_after`.
    pub(super) fn reset_crash_counts(&mut self) {
        for idx in 0..self.slots.len() {
            let entry = &self.slots[idx];
            if entry.crashes == 0 {
                continue;
            }
            let stable = self.members(idx).iter().any(|id| match self.procs[id].state {
                ProcState::Ready { since, .. } => {
                    since >= entry.last_crash_at && self.now >= since + self.config.backoff_reset_after
                }
                _ => false,
            });
            if stable {
                self.slots[idx].crashes = 0;
            }
        }
    }
}
