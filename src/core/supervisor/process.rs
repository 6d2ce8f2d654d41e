//! One worker process as the supervisor sees it: its lifecycle
//! ([`ProcState`]), why it is leaving ([`Leave`]) and its record ([`Proc`]).

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::core::{Pid, Slot, Time, Version};

/// Names one spawn request; the caller answers it with
/// [`Supervisor::handle_spawned`] or [`Supervisor::handle_spawn_failed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct SpawnId(pub u64);

/// Lifecycle of one worker process.
///
/// ```text
///                 spawned              ready
///   Spawning ───────────────▶ Booting ───────▶ Ready ───── drain ─────▶ Draining
///    │    │                     │  │             │ ▲ stuck / unstuck      │ (stuck flag too)
///    │    │ cancel              │  │             └─┘ (flag)               │
///    │    ▼                     │  │ quit          │ quit                 │ quit
///    │  Spawning(cancelled)     │  └──────────▶ Quitting ◀────────────────┤
///    │    │ spawned             │                  │                      │ idle
///    │    │ (send Terminate)    │ terminate        │ deadline             ▼
///    │    └───────────────────▶ └───────────▶ Stopping ◀── terminate ── Ready/Draining
///    │                                            │ deadline (send Kill)
///    │                    kill (from any state with a pid)
///    │                                            ▼
///    │                                          Killed
///    ▼ spawn_failed
///  (gone)        exit: (gone) from any state with a pid; a crash from Booting
///                or Ready, planned from Draining, Quitting, Stopping, Killed
/// ```
///
/// Every state with a `deadline` is left by a timer: `Spawning` and
/// `Booting` miss the ready timeout (a crash, the process is killed or, with
/// no pid yet, cancelled); `Quitting` and `Stopping` escalate to `Kill`. The
/// stuck flag of `Ready`/`Draining` kills the process `stuck_grace` after it
/// was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ProcState {
    /// Spawn requested, pid unknown. A cancelled spawn is terminated as soon
    /// as it is known to have started.
    Spawning { deadline: Time, cancelled: bool },
    /// Started, not yet joined the balancer.
    Booting { deadline: Time },
    /// Joined and serving.
    Ready { since: Time, stuck_since: Option<Time> },
    /// Told the balancer to route nothing new to it; waiting for idle.
    Draining { stuck_since: Option<Time> },
    /// The worker quit on its own; waiting for its exit.
    Quitting { deadline: Time },
    /// SIGTERM sent; waiting for its exit.
    Stopping { deadline: Time },
    /// SIGKILL sent; waiting for its exit.
    Killed,
}

/// An event that does not apply to the state it arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Illegal {
    pub(super) state: &'static str,
    pub(super) event: &'static str,
}

impl fmt::Display for Illegal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event {} is illegal in state {}", self.event, self.state)
    }
}

/// A timer that has fired for a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Due {
    ReadyTimeout,
    StuckGrace,
    StopTimeout,
}

impl ProcState {
    pub(super) fn name(self) -> &'static str {
        match self {
            ProcState::Spawning { cancelled: false, .. } => "spawning",
            ProcState::Spawning { cancelled: true, .. } => "cancelled",
            ProcState::Booting { .. } => "starting",
            ProcState::Ready {
                stuck_since: Some(_), ..
            } => "stuck",
            ProcState::Ready { .. } => "ready",
            ProcState::Draining { .. } => "draining",
            ProcState::Quitting { .. } => "quitting",
            ProcState::Stopping { .. } => "stopping",
            ProcState::Killed => "killed",
        }
    }

    pub(super) fn illegal(self, event: &'static str) -> Illegal {
        Illegal {
            state: self.name(),
            event,
        }
    }

    /// The spawn request succeeded. Returns whether the process must be
    /// terminated at once (the spawn had been cancelled).
    pub(super) fn on_spawned(&mut self, now: Time, stop_timeout: Duration) -> Result<bool, Illegal> {
        match *self {
            ProcState::Spawning {
                deadline,
                cancelled: false,
            } => {
                *self = ProcState::Booting { deadline };
                Ok(false)
            }
            ProcState::Spawning { cancelled: true, .. } => {
                *self = ProcState::Stopping {
                    deadline: now + stop_timeout,
                };
                Ok(true)
            }
            s => Err(s.illegal("spawned")),
        }
    }

    pub(super) fn on_ready(&mut self, now: Time) -> Result<(), Illegal> {
        match *self {
            ProcState::Booting { .. } => {
                *self = ProcState::Ready {
                    since: now,
                    stuck_since: None,
                };
                Ok(())
            }
            s => Err(s.illegal("ready")),
        }
    }

    pub(super) fn on_drain(&mut self) -> Result<(), Illegal> {
        match *self {
            ProcState::Ready { stuck_since, .. } => {
                *self = ProcState::Draining { stuck_since };
                Ok(())
            }
            s => Err(s.illegal("drain")),
        }
    }

    pub(super) fn on_idle(&mut self, now: Time, stop_timeout: Duration) -> Result<(), Illegal> {
        match *self {
            ProcState::Draining { .. } => {
                *self = ProcState::Stopping {
                    deadline: now + stop_timeout,
                };
                Ok(())
            }
            s => Err(s.illegal("idle")),
        }
    }

    pub(super) fn on_terminate(&mut self, now: Time, stop_timeout: Duration) -> Result<(), Illegal> {
        match *self {
            ProcState::Booting { .. } | ProcState::Ready { .. } | ProcState::Draining { .. } => {
                *self = ProcState::Stopping {
                    deadline: now + stop_timeout,
                };
                Ok(())
            }
            s => Err(s.illegal("terminate")),
        }
    }

    pub(super) fn on_cancel(&mut self) -> Result<(), Illegal> {
        match *self {
            ProcState::Spawning {
                deadline,
                cancelled: false,
            } => {
                *self = ProcState::Spawning {
                    deadline,
                    cancelled: true,
                };
                Ok(())
            }
            s => Err(s.illegal("cancel")),
        }
    }

    pub(super) fn on_quit(&mut self, now: Time, stop_timeout: Duration) -> Result<(), Illegal> {
        match *self {
            ProcState::Booting { .. } | ProcState::Ready { .. } | ProcState::Draining { .. } => {
                *self = ProcState::Quitting {
                    deadline: now + stop_timeout,
                };
                Ok(())
            }
            s => Err(s.illegal("quit")),
        }
    }

    pub(super) fn on_kill(&mut self) -> Result<(), Illegal> {
        match *self {
            ProcState::Booting { .. }
            | ProcState::Ready { .. }
            | ProcState::Draining { .. }
            | ProcState::Quitting { .. }
            | ProcState::Stopping { .. } => {
                *self = ProcState::Killed;
                Ok(())
            }
            s => Err(s.illegal("kill")),
        }
    }

    pub(super) fn on_stuck(&mut self, now: Time) -> Result<(), Illegal> {
        match self {
            ProcState::Ready { stuck_since, .. } | ProcState::Draining { stuck_since } => {
                stuck_since.get_or_insert(now);
                Ok(())
            }
            s => Err(s.illegal("stuck")),
        }
    }

    pub(super) fn on_unstuck(&mut self) -> Result<(), Illegal> {
        match self {
            ProcState::Ready { stuck_since, .. } | ProcState::Draining { stuck_since } => {
                *stuck_since = None;
                Ok(())
            }
            s => Err(s.illegal("unstuck")),
        }
    }

    /// An exit in this state was asked for (or announced by a quit).
    pub(super) fn exit_is_planned(self) -> bool {
        matches!(
            self,
            ProcState::Draining { .. } | ProcState::Quitting { .. } | ProcState::Stopping { .. } | ProcState::Killed
        )
    }

    pub(super) fn before_ready(self) -> bool {
        matches!(self, ProcState::Spawning { .. } | ProcState::Booting { .. })
    }

    pub(super) fn is_ready(self) -> bool {
        matches!(self, ProcState::Ready { .. })
    }

    /// A state a primary or a replacement can be in.
    pub(super) fn can_hold_slot(self) -> bool {
        matches!(
            self,
            ProcState::Spawning { cancelled: false, .. } | ProcState::Booting { .. } | ProcState::Ready { .. }
        )
    }

    /// The next timer of this state and what it does.
    pub(super) fn timer(self, stuck_grace: Duration) -> Option<(Time, Due)> {
        match self {
            ProcState::Spawning {
                deadline,
                cancelled: false,
            }
            | ProcState::Booting { deadline } => Some((deadline, Due::ReadyTimeout)),
            ProcState::Ready {
                stuck_since: Some(t), ..
            }
            | ProcState::Draining { stuck_since: Some(t) } => Some((t + stuck_grace, Due::StuckGrace)),
            ProcState::Quitting { deadline } | ProcState::Stopping { deadline } => Some((deadline, Due::StopTimeout)),
            _ => None,
        }
    }
}

/// Why a retiring process is leaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Leave {
    /// Handed its slot to a recycling replacement.
    Recycled,
    /// Replaced by the new generation of a rolling restart.
    RolledOver,
    /// A new-generation process of an aborted rolling restart.
    RollAborted,
    /// A recycling replacement cancelled by the start of a rolling restart.
    Cancelled,
    /// Its slot is no longer wanted.
    ScaledDown,
    /// Killed after staying stuck past the grace period.
    Stuck,
    /// Killed (or cancelled) for missing the ready timeout.
    ReadyTimeout,
    /// Quit on its own.
    Quit,
    /// Graceful stop.
    Stop,
}

impl Leave {
    pub(super) fn name(self) -> &'static str {
        match self {
            Leave::Recycled => "recycled",
            Leave::RolledOver => "rolled over",
            Leave::RollAborted => "roll aborted",
            Leave::Cancelled => "cancelled",
            Leave::ScaledDown => "scaled down",
            Leave::Stuck => "stuck",
            Leave::ReadyTimeout => "ready timeout",
            Leave::Quit => "quit",
            Leave::Stop => "stop",
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Proc {
    pub(super) slot: Slot,
    pub(super) version: Version,
    pub(super) pid: Option<Pid>,
    pub(super) state: ProcState,
    pub(super) served: u64,
    pub(super) leave: Option<Leave>,
    /// Its join said it handles the module-reload signal.
    pub(super) accepts_reload: bool,
    /// `Reload` signals sent to it.
    pub(super) reloads: u32,
    /// A module reload came while it was not ready yet: applied when it is.
    pub(super) reload_pending: bool,
    /// A module reload must replace it (it cannot reload, or reached
    /// `max_reloads`): recycling picks it up as due.
    pub(super) replace_for_reload: bool,
    /// The last app error it reported (load or reload), for the reason of
    /// an aborted rolling restart.
    pub(super) app_error: Option<String>,
}
