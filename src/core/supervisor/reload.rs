//! Module hot reload and what workers report about their app: a reload
//! burst ([`Supervisor::reload_workers`]) signals each ready worker that
//! accepts it, or replaces it (replacement first) when it cannot reload or
//! has reached `max_reloads`; app errors ([`AppError`]) are recorded for
//! `/status` until a worker joins or reloads successfully.

use serde::Serialize;

use super::process::{ProcState, SpawnId};
use super::{Supervisor, SupervisorAction};
use crate::core::{Pid, Slot, Time, Version};

/// When a worker's app failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AppErrorPhase {
    /// Loading the app at start: the worker exits.
    Load,
    /// A module reload: the worker keeps its last good handler.
    Reload,
}

impl AppErrorPhase {
    /// `"load"` or `"reload"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            AppErrorPhase::Load => "load",
            AppErrorPhase::Reload => "reload",
        }
    }
}

/// The last app error a worker reported ([`Supervisor::handle_app_error`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppError {
    pub slot: Slot,
    pub pid: Pid,
    /// The generation of the worker that reported it.
    pub version: Version,
    pub phase: AppErrorPhase,
    /// The worker's message (first line, maybe a stack).
    pub message: String,
    /// When it was reported, in milliseconds on the caller's clock.
    pub at_ms: u64,
}

/// At most this many bytes of an app error's first line go into the reason
/// of an aborted rolling restart.
const REASON_MAX: usize = 300;

impl Supervisor {
    /// A module reload burst: every live process not on its way out gets it.
    /// A ready one that accepts reloads (see
    /// [`Supervisor::handle_ready_with_reload`]) and has not reached
    /// `max_reloads` gets a [`SupervisorAction::Reload`]; any other ready
    /// one is replaced like a recycle (replacement first, within
    /// `max_concurrent_recycles`; the fresh process loads the new code). One
    /// still booting gets the same treatment once it is ready. Ignored once
    /// stopping.
    ///
    /// During a rolling restart the burst applies the same way to the old
    /// and the new generation; replacements wait until the roll has ended
    /// (recycling never runs during one), and the old generation is then
    /// drained anyway if the roll completed.
    pub fn reload_workers(&mut self, now: Time) {
        self.observe(now);
        if !self.stopping {
            let ids: Vec<SpawnId> = self.procs.keys().copied().collect();
            for id in ids {
                self.apply_reload(id);
            }
        }
        self.advance(now);
    }

    /// Applies one reload burst to one process (see
    /// [`Supervisor::reload_workers`]).
    pub(super) fn apply_reload(&mut self, id: SpawnId) {
        let Some(p) = self.procs.get_mut(&id) else { return };
        if p.leave.is_some() {
            return;
        }
        match p.state {
            ProcState::Spawning { .. } | ProcState::Booting { .. } => p.reload_pending = true,
            ProcState::Ready { .. } => {
                if p.accepts_reload
                    && !self.config.reload_replaces(p.reloads)
                    && let Some(pid) = p.pid
                {
                    p.reloads += 1;
                    self.actions.push_back(SupervisorAction::Reload { pid });
                } else {
                    p.replace_for_reload = true;
                }
            }
            _ => {}
        }
    }

    /// `pid`'s app failed to load (at start) or to reload: recorded as the
    /// last app error for `/status` until a process joins or reports a
    /// successful reload. A load failure changes nothing else (the process
    /// exits, and its exit is handled as usual), but a rolling restart it
    /// aborts names the message. Unknown pids are ignored.
    pub fn handle_app_error(&mut self, pid: Pid, phase: AppErrorPhase, message: String, now: Time) {
        self.observe(now);
        if let Some(&id) = self.by_pid.get(&pid)
            && let Some(p) = self.procs.get_mut(&id)
        {
            p.app_error = Some(message.clone());
            self.app_error = Some(AppError {
                slot: p.slot,
                pid,
                version: p.version,
                phase,
                message,
                at_ms: self.now.as_micros() / 1000,
            });
        }
        self.advance(now);
    }

    /// `pid` reloaded its app successfully (`reloads`: the worker's own
    /// count, informational; the supervisor counts the signals it sent).
    /// Clears the recorded app error. Unknown pids are ignored.
    pub fn handle_reloaded(&mut self, pid: Pid, reloads: u64, now: Time) {
        // The worker's count may lag the signals (it coalesces them): only
        // the success matters here.
        let _ = reloads;
        self.observe(now);
        if let Some(&id) = self.by_pid.get(&pid)
            && let Some(p) = self.procs.get_mut(&id)
        {
            p.app_error = None;
            self.app_error = None;
        }
        self.advance(now);
    }

    /// The last app error reported, unless a process has joined or reloaded
    /// since.
    pub fn app_error(&self) -> Option<&AppError> {
        self.app_error.as_ref()
    }

    /// The app error `id` reported, as a suffix for a rolling restart's
    /// abort reason (`": <first line>"`), or empty.
    pub(super) fn app_error_suffix(&self, id: SpawnId) -> String {
        let Some(message) = self.procs.get(&id).and_then(|p| p.app_error.as_deref()) else {
            return String::new();
        };
        let line = message.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
        let mut end = line.len().min(REASON_MAX);
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        format!(": app error: {}", &line[..end])
    }
}
