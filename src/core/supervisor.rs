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

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::core::{Pid, Slot, Time, Version};

/// The supervisor's knobs. [`Default`] gives the documented defaults.
///
/// [`Supervisor::new`] sanitises a config: `workers` is at least 1,
/// `max_concurrent_spawns` at least 1 and `backoff_max` at least
/// `backoff_initial`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorConfig {
    /// Desired number of workers at start (default 1).
    pub workers: u32,
    /// Recycle a worker after this many requests (`r:N`); `None` = never.
    pub max_requests: Option<u64>,
    /// Recycle a worker after it has been ready this long (`r:…,Ss`); `None` = never.
    pub max_age: Option<Duration>,
    /// First crash-loop delay (default 100 ms).
    pub backoff_initial: Duration,
    /// Largest crash-loop delay (default 10 s).
    pub backoff_max: Duration,
    /// A worker that stays ready this long resets its slot's crash count (default 5 s).
    pub backoff_reset_after: Duration,
    /// A started worker must join within this, counted from the spawn request (default 30 s).
    pub ready_timeout: Duration,
    /// SIGTERM → SIGKILL escalation (default 10 s).
    pub stop_timeout: Duration,
    /// A worker reported stuck is killed after this (default 5 s).
    pub stuck_grace: Duration,
    /// Slots with a recycling handover in progress, at most (default 1; 0 disables recycling).
    pub max_concurrent_recycles: u32,
    /// New-generation processes booting at once during a rolling restart (default 2).
    pub max_concurrent_spawns: u32,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            workers: 1,
            max_requests: None,
            max_age: None,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            backoff_reset_after: Duration::from_secs(5),
            ready_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(10),
            stuck_grace: Duration::from_secs(5),
            max_concurrent_recycles: 1,
            max_concurrent_spawns: 2,
        }
    }
}

impl SupervisorConfig {
    /// The wait after `crashes` consecutive crashes:
    /// `min(backoff_initial · 2^(crashes-1), backoff_max)`, zero for no crash.
    pub fn backoff_delay(&self, crashes: u32) -> Duration {
        if crashes == 0 {
            return Duration::ZERO;
        }
        let exp = crashes - 1;
        if exp >= 32 {
            return self.backoff_max;
        }
        self.backoff_initial
            .checked_mul(1u32 << exp)
            .map_or(self.backoff_max, |d| d.min(self.backoff_max))
    }

    /// The served count at which a replacement starts:
    /// `max(1, max_requests − max(1, max_requests/10))`.
    pub fn recycle_threshold(&self) -> Option<u64> {
        self.max_requests.map(|max| {
            let lead = (max / 10).max(1);
            max.saturating_sub(lead).max(1)
        })
    }

    fn sanitized(mut self) -> Self {
        self.workers = self.workers.max(1);
        self.max_concurrent_spawns = self.max_concurrent_spawns.max(1);
        self.backoff_max = self.backoff_max.max(self.backoff_initial);
        self
    }
}

/// Names one spawn request; the caller answers it with
/// [`Supervisor::handle_spawned`] or [`Supervisor::handle_spawn_failed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct SpawnId(pub u64);

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
    /// The graceful stop has finished: no process is left. Emitted once.
    Stopped,
}

/// A snapshot for `/status` and logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SupervisorStatus {
    /// Workers wanted.
    pub desired: u32,
    /// The generation the balancer routes to ([`Supervisor::generation`]).
    pub generation: Version,
    /// The rolling restart in progress.
    pub rolling: Option<RollStatus>,
    /// How the last rolling restart ended.
    pub last_roll: Option<LastRoll>,
    /// Slots with a recycling handover in progress.
    pub recycling: u32,
    /// A graceful stop has begun.
    pub stopping: bool,
    /// [`SupervisorAction::Stopped`] has been emitted.
    pub stopped: bool,
    /// Every wanted slot, and every other slot that still has a process.
    pub slots: Vec<SlotStatus>,
}

/// How a rolling restart ended. Serialises as an object; reads as its
/// `message` (`"completed: v1 -> v2"`, `"aborted: slot 1 v2 died before
/// joining"`, `"interrupted: stop"`) through `Deref<Target = str>` and `Display`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastRoll {
    /// `"completed"`, `"aborted"` or `"interrupted"`.
    pub outcome: &'static str,
    pub from: Version,
    pub to: Version,
    /// Why it did not complete.
    pub reason: Option<String>,
    /// When it ended, in milliseconds on the caller's clock.
    pub at_ms: u64,
    /// One line for humans.
    pub message: String,
}

impl LastRoll {
    fn new(roll: Roll, outcome: &'static str, reason: Option<String>, at: Time) -> LastRoll {
        let message = match &reason {
            None => format!("{outcome}: v{} -> v{}", roll.from.0, roll.to.0),
            Some(r) => format!("{outcome}: {r}"),
        };
        LastRoll {
            outcome,
            from: roll.from,
            to: roll.to,
            reason,
            at_ms: at.as_micros() / 1000,
            message,
        }
    }
}

impl std::ops::Deref for LastRoll {
    type Target = str;
    fn deref(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for LastRoll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Progress of a rolling restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollStatus {
    pub from: Version,
    pub to: Version,
    /// Slots that have a ready process of `to`.
    pub ready: u32,
    /// Slots wanted.
    pub total: u32,
}

/// One slot in [`SupervisorStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotStatus {
    pub slot: Slot,
    /// `"starting"`, `"ready"`, `"stuck"`, `"backoff"`, `"draining"`,
    /// `"stopping"` or `"empty"`.
    pub state: &'static str,
    /// The primary's pid.
    pub pid: Option<Pid>,
    /// The primary's generation.
    pub version: Option<Version>,
    /// Requests the primary has completed.
    pub served: Option<u64>,
    /// Consecutive crashes.
    pub crashes: u32,
    /// Processes started for this slot after its first.
    pub restarts: u64,
    /// Time left before the next start is allowed, while a backoff is pending.
    pub next_attempt_in_ms: Option<u64>,
    /// The backoff delay in force, while a backoff is pending.
    pub backoff_ms: Option<u64>,
    /// Every process of the slot.
    pub processes: Vec<ProcessStatus>,
}

/// One process in [`SlotStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessStatus {
    pub spawn: SpawnId,
    pub pid: Option<Pid>,
    pub version: Version,
    /// `"primary"`, `"replacement"` or `"retiring"`.
    pub role: &'static str,
    /// `"spawning"`, `"cancelled"`, `"starting"`, `"ready"`, `"stuck"`,
    /// `"draining"`, `"quitting"`, `"stopping"` or `"killed"`.
    pub state: &'static str,
    pub served: u64,
    /// Why a retiring process is leaving.
    pub leaving: Option<&'static str>,
}

// ---------------------------------------------------------------------------
// Process lifecycle
// ---------------------------------------------------------------------------

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
enum ProcState {
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
struct Illegal {
    state: &'static str,
    event: &'static str,
}

impl fmt::Display for Illegal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event {} is illegal in state {}", self.event, self.state)
    }
}

/// A timer that has fired for a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    ReadyTimeout,
    StuckGrace,
    StopTimeout,
}

impl ProcState {
    fn name(self) -> &'static str {
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

    fn illegal(self, event: &'static str) -> Illegal {
        Illegal {
            state: self.name(),
            event,
        }
    }

    /// The spawn request succeeded. Returns whether the process must be
    /// terminated at once (the spawn had been cancelled).
    fn on_spawned(&mut self, now: Time, stop_timeout: Duration) -> Result<bool, Illegal> {
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

    fn on_ready(&mut self, now: Time) -> Result<(), Illegal> {
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

    fn on_drain(&mut self) -> Result<(), Illegal> {
        match *self {
            ProcState::Ready { stuck_since, .. } => {
                *self = ProcState::Draining { stuck_since };
                Ok(())
            }
            s => Err(s.illegal("drain")),
        }
    }

    fn on_idle(&mut self, now: Time, stop_timeout: Duration) -> Result<(), Illegal> {
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

    fn on_terminate(&mut self, now: Time, stop_timeout: Duration) -> Result<(), Illegal> {
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

    fn on_cancel(&mut self) -> Result<(), Illegal> {
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

    fn on_quit(&mut self, now: Time, stop_timeout: Duration) -> Result<(), Illegal> {
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

    fn on_kill(&mut self) -> Result<(), Illegal> {
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

    fn on_stuck(&mut self, now: Time) -> Result<(), Illegal> {
        match self {
            ProcState::Ready { stuck_since, .. } | ProcState::Draining { stuck_since } => {
                stuck_since.get_or_insert(now);
                Ok(())
            }
            s => Err(s.illegal("stuck")),
        }
    }

    fn on_unstuck(&mut self) -> Result<(), Illegal> {
        match self {
            ProcState::Ready { stuck_since, .. } | ProcState::Draining { stuck_since } => {
                *stuck_since = None;
                Ok(())
            }
            s => Err(s.illegal("unstuck")),
        }
    }

    /// An exit in this state was asked for (or announced by a quit).
    fn exit_is_planned(self) -> bool {
        matches!(
            self,
            ProcState::Draining { .. } | ProcState::Quitting { .. } | ProcState::Stopping { .. } | ProcState::Killed
        )
    }

    fn before_ready(self) -> bool {
        matches!(self, ProcState::Spawning { .. } | ProcState::Booting { .. })
    }

    fn is_ready(self) -> bool {
        matches!(self, ProcState::Ready { .. })
    }

    /// A state a primary or a replacement can be in.
    fn can_hold_slot(self) -> bool {
        matches!(
            self,
            ProcState::Spawning { cancelled: false, .. } | ProcState::Booting { .. } | ProcState::Ready { .. }
        )
    }

    /// The next timer of this state and what it does.
    fn timer(self, stuck_grace: Duration) -> Option<(Time, Due)> {
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
enum Leave {
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
    fn name(self) -> &'static str {
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
struct Proc {
    slot: Slot,
    version: Version,
    pid: Option<Pid>,
    state: ProcState,
    served: u64,
    leave: Option<Leave>,
}

// ---------------------------------------------------------------------------
// Slot lifecycle
// ---------------------------------------------------------------------------

/// Why a replacement is booting for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handover {
    /// Recycling (max requests, max age, or a primary of the wrong generation).
    Recycle,
    /// Rolling restart to a new generation.
    Roll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Replacement {
    spawn: SpawnId,
    kind: Handover,
}

/// Who holds a slot.
///
/// ```text
///                       spawn_primary
///        ┌────────────────────────────────────────────┐
///        │                                            ▼
///      Vacant ◀──────── primary_lost ─────────── Occupied{p} ◀──────────────────┐
///       │  ▲                                       │     ▲                       │
///       │  │                     spawn_replacement │     │ replacement_lost      │ replacement_ready
///       │  │                                       ▼     │ (r goes)              │ (p retires, r → p)
///       │  │                                   Occupied{p, r} ───────────────────┤
///       │  │                                                   primary_lost      │
///       │  │ unwanted (scale down, stop):                      (r → p) ──────────┘
///       │  └─ from any state; p and r retire
///       │ wait_backoff (a crash backoff is pending)
///       ▼
///     Backoff ─── spawn_primary (backoff over) ──▶ Occupied{p}
/// ```
///
/// A slot is *wanted* while its number is below the desired count and no
/// stop has begun; a wanted slot is never left `Vacant` after a step. The
/// backoff deadline is not stored in the state: it is computed from the
/// slot's crash count and last crash time, so a recycling replacement (which
/// runs while the slot is `Occupied`) waits for the same deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    /// Nobody holds the slot.
    Vacant,
    /// Wanted, waiting for its crash backoff to end.
    Backoff,
    /// A primary holds the slot, maybe with a replacement on the way.
    Occupied {
        primary: SpawnId,
        replacement: Option<Replacement>,
    },
}

impl SlotState {
    fn name(self) -> &'static str {
        match self {
            SlotState::Vacant => "vacant",
            SlotState::Backoff => "backoff",
            SlotState::Occupied { replacement: None, .. } => "occupied",
            SlotState::Occupied {
                replacement: Some(_), ..
            } => "handover",
        }
    }

    fn illegal(self, event: &'static str) -> Illegal {
        Illegal {
            state: self.name(),
            event,
        }
    }

    fn on_spawn_primary(&mut self, primary: SpawnId) -> Result<(), Illegal> {
        match *self {
            SlotState::Vacant | SlotState::Backoff => {
                *self = SlotState::Occupied {
                    primary,
                    replacement: None,
                };
                Ok(())
            }
            s => Err(s.illegal("spawn_primary")),
        }
    }

    fn on_wait_backoff(&mut self) -> Result<(), Illegal> {
        match *self {
            SlotState::Vacant => {
                *self = SlotState::Backoff;
                Ok(())
            }
            s => Err(s.illegal("wait_backoff")),
        }
    }

    fn on_spawn_replacement(&mut self, r: Replacement) -> Result<(), Illegal> {
        match *self {
            SlotState::Occupied {
                primary,
                replacement: None,
            } => {
                *self = SlotState::Occupied {
                    primary,
                    replacement: Some(r),
                };
                Ok(())
            }
            s => Err(s.illegal("spawn_replacement")),
        }
    }

    /// The replacement takes over; returns the old primary.
    fn on_replacement_ready(&mut self) -> Result<SpawnId, Illegal> {
        match *self {
            SlotState::Occupied {
                primary,
                replacement: Some(r),
            } => {
                *self = SlotState::Occupied {
                    primary: r.spawn,
                    replacement: None,
                };
                Ok(primary)
            }
            s => Err(s.illegal("replacement_ready")),
        }
    }

    fn on_replacement_lost(&mut self) -> Result<Replacement, Illegal> {
        match *self {
            SlotState::Occupied {
                primary,
                replacement: Some(r),
            } => {
                *self = SlotState::Occupied {
                    primary,
                    replacement: None,
                };
                Ok(r)
            }
            s => Err(s.illegal("replacement_lost")),
        }
    }

    /// The primary is gone (or going): the replacement, if any, takes over.
    fn on_primary_lost(&mut self) -> Result<(), Illegal> {
        match *self {
            SlotState::Occupied {
                replacement: Some(r), ..
            } => {
                *self = SlotState::Occupied {
                    primary: r.spawn,
                    replacement: None,
                };
                Ok(())
            }
            SlotState::Occupied { replacement: None, .. } => {
                *self = SlotState::Vacant;
                Ok(())
            }
            s => Err(s.illegal("primary_lost")),
        }
    }

    /// Returns the processes that held the slot.
    fn on_unwanted(&mut self) -> Vec<SpawnId> {
        let held = match *self {
            SlotState::Occupied { primary, replacement } => {
                let mut v = vec![primary];
                v.extend(replacement.map(|r| r.spawn));
                v
            }
            _ => Vec::new(),
        };
        *self = SlotState::Vacant;
        held
    }
}

#[derive(Debug, Clone)]
struct SlotEntry {
    state: SlotState,
    /// Processes of this slot on their way out, in retirement order.
    retiring: Vec<SpawnId>,
    /// Consecutive crashes.
    crashes: u32,
    last_crash_at: Time,
    /// Processes started for this slot.
    spawns: u64,
}

impl SlotEntry {
    fn new() -> SlotEntry {
        SlotEntry {
            state: SlotState::Vacant,
            retiring: Vec::new(),
            crashes: 0,
            last_crash_at: Time::ZERO,
            spawns: 0,
        }
    }
}

/// What a process is to its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Primary,
    Replacement(Handover),
    Retiring,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Roll {
    from: Version,
    to: Version,
}

// ---------------------------------------------------------------------------
// The supervisor
// ---------------------------------------------------------------------------

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
    stopping: bool,
    stopped_emitted: bool,
    slots: Vec<SlotEntry>,
    procs: BTreeMap<SpawnId, Proc>,
    by_pid: BTreeMap<Pid, SpawnId>,
    next_spawn: u64,
    actions: VecDeque<SupervisorAction>,
    /// Set if a `Spawn` was ever queued after `stop` (checked by `check_invariants`).
    spawned_while_stopping: bool,
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
            stopping: false,
            stopped_emitted: false,
            slots: Vec::new(),
            procs: BTreeMap::new(),
            by_pid: BTreeMap::new(),
            next_spawn: 1,
            actions: VecDeque::new(),
            spawned_while_stopping: false,
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
            match p.state.on_spawned(now, stop_timeout) {
                Ok(terminate) => {
                    p.pid = Some(pid);
                    self.by_pid.insert(pid, spawn);
                    if terminate {
                        self.actions.push_back(SupervisorAction::Terminate { pid });
                    }
                }
                Err(e) => debug_assert!(false, "{e}"),
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
            self.detach(spawn, !cancelled, "could not be spawned");
            self.remove(spawn);
        }
        self.advance(now);
    }

    /// `pid` joined the balancer and serves. Call when its join has been
    /// accepted by the balancer. Joins of processes on their way out are
    /// ignored (the caller should refuse them: see `ProcessStatus::leaving`).
    pub fn handle_ready(&mut self, pid: Pid, now: Time) {
        self.observe(now);
        if let Some(&id) = self.by_pid.get(&pid)
            && let Some(p) = self.procs.get_mut(&id)
            && p.state.on_ready(now).is_ok()
        {
            let idx = p.slot.0 as usize;
            if let Some(Role::Replacement(Handover::Recycle)) = self.role(id) {
                match self.slots[idx].state.on_replacement_ready() {
                    Ok(old) => self.retire(old, Leave::Recycled),
                    Err(e) => debug_assert!(false, "{e}"),
                }
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
            let _ignored = p.state.on_stuck(now);
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
            let _ignored = p.state.on_unstuck();
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

    /// Starts a rolling restart to a fresh generation: call on SIGHUP (or a
    /// process-mode reload). Errors if one is in progress or a stop has begun.
    pub fn rolling_restart(&mut self, now: Time) -> Result<(), &'static str> {
        self.observe(now);
        if self.stopping {
            return Err("stopping");
        }
        if self.roll.is_some() {
            return Err("a rolling restart is already in progress");
        }
        let to = Version(self.next_version);
        self.next_version += 1;
        self.roll = Some(Roll { from: self.current, to });
        // Booting recycling replacements would be replaced again: cancel them.
        for idx in 0..self.slots.len() {
            if let SlotState::Occupied {
                replacement: Some(r), ..
            } = self.slots[idx].state
                && r.kind == Handover::Recycle
            {
                let _r = self.slots[idx].state.on_replacement_lost();
                self.retire(r.spawn, Leave::Cancelled);
            }
        }
        self.advance(now);
        Ok(())
    }

    /// Graceful stop: no more spawns, terminate every process, kill those
    /// still alive after `stop_timeout`, then emit `Stopped` once. Call after
    /// the balancer has finished the queued and in-flight requests.
    pub fn stop(&mut self, now: Time) {
        self.observe(now);
        if !self.stopping {
            self.stopping = true;
            if let Some(roll) = self.roll.take() {
                self.last_roll = Some(LastRoll::new(roll, "interrupted", Some("stop".to_string()), self.now));
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

    /// Every started process not yet reaped, sorted.
    pub fn live_pids(&self) -> Vec<Pid> {
        self.by_pid.keys().copied().collect()
    }

    /// A snapshot for `/status` and logs (`now` only computes the time left
    /// before backoffs end).
    pub fn status(&self, now: Time) -> SupervisorStatus {
        let now = now.max(self.now);
        let mut slots = Vec::new();
        for (idx, entry) in self.slots.iter().enumerate() {
            let wanted = self.is_wanted(idx);
            let mut processes: Vec<ProcessStatus> = Vec::new();
            for (&id, p) in self.procs.iter().filter(|(_, p)| p.slot.0 as usize == idx) {
                let role = match self.role(id) {
                    Some(Role::Primary) => "primary",
                    Some(Role::Replacement(_)) => "replacement",
                    _ => "retiring",
                };
                processes.push(ProcessStatus {
                    spawn: id,
                    pid: p.pid,
                    version: p.version,
                    role,
                    state: p.state.name(),
                    served: p.served,
                    leaving: p.leave.map(Leave::name),
                });
            }
            if !wanted && processes.is_empty() {
                continue;
            }
            let primary = match entry.state {
                SlotState::Occupied { primary, .. } => self.procs.get(&primary),
                _ => None,
            };
            let state = match (entry.state, primary) {
                (SlotState::Occupied { .. }, Some(p)) => match p.state {
                    ProcState::Ready {
                        stuck_since: Some(_), ..
                    } => "stuck",
                    ProcState::Ready { .. } => "ready",
                    _ => "starting",
                },
                (SlotState::Backoff, _) => "backoff",
                _ => {
                    let retiring = entry.retiring.iter().filter_map(|id| self.procs.get(id));
                    let mut any = false;
                    let mut draining = false;
                    for p in retiring {
                        any = true;
                        draining |= matches!(p.state, ProcState::Draining { .. });
                    }
                    match (any, draining) {
                        (_, true) => "draining",
                        (true, false) => "stopping",
                        _ => "empty",
                    }
                }
            };
            let until = self.backoff_until(idx).filter(|&t| t > now);
            slots.push(SlotStatus {
                slot: Slot(idx as u32),
                state,
                pid: primary.and_then(|p| p.pid),
                version: primary.map(|p| p.version),
                served: primary.map(|p| p.served),
                crashes: entry.crashes,
                restarts: entry.spawns.saturating_sub(1),
                next_attempt_in_ms: until.map(|t| t.as_micros().saturating_sub(now.as_micros()).div_ceil(1000)),
                backoff_ms: until.map(|_| millis(self.config.backoff_delay(entry.crashes))),
                processes,
            });
        }
        SupervisorStatus {
            desired: self.desired,
            generation: self.current,
            rolling: self.roll.map(|r| RollStatus {
                from: r.from,
                to: r.to,
                ready: (0..self.desired as usize)
                    .filter(|&idx| self.roll_satisfied(idx, r.to))
                    .count() as u32,
                total: self.desired,
            }),
            last_roll: self.last_roll.clone(),
            recycling: self.recycles_in_progress(),
            stopping: self.stopping,
            stopped: self.stopped_emitted,
            slots,
        }
    }

    /// Checks the internal consistency (used by the tests after every step).
    pub fn check_invariants(&self) -> Result<(), String> {
        let cfg = &self.config;
        // Pid index.
        for (&pid, &id) in &self.by_pid {
            match self.procs.get(&id) {
                Some(p) if p.pid == Some(pid) => {}
                _ => return Err(format!("pid index {pid:?} -> {id:?} is stale")),
            }
        }
        for (&id, p) in &self.procs {
            if let Some(pid) = p.pid
                && self.by_pid.get(&pid) != Some(&id)
            {
                return Err(format!("{id:?} has {pid:?} but the pid index disagrees"));
            }
            if p.pid.is_none() != matches!(p.state, ProcState::Spawning { .. }) {
                return Err(format!("{id:?} in state {} with pid {:?}", p.state.name(), p.pid));
            }
            if (p.slot.0 as usize) >= self.slots.len() {
                return Err(format!("{id:?} belongs to unknown {:?}", p.slot));
            }
            if p.version.0 >= self.next_version {
                return Err(format!("{id:?} has {:?}, newer than any generation", p.version));
            }
            // Every process has exactly one role.
            let idx = p.slot.0 as usize;
            let entry = &self.slots[idx];
            let mut roles = entry.retiring.iter().filter(|&&r| r == id).count();
            if let SlotState::Occupied { primary, replacement } = entry.state {
                roles += usize::from(primary == id);
                roles += usize::from(replacement.is_some_and(|r| r.spawn == id));
            }
            if roles != 1 {
                return Err(format!("{id:?} holds {roles} roles in {:?}", p.slot));
            }
            // Timers are never left overdue after a step.
            if let Some((t, due)) = p.state.timer(cfg.stuck_grace)
                && t <= self.now
            {
                return Err(format!(
                    "{id:?} has an overdue {due:?} timer at {t:?} (now {:?})",
                    self.now
                ));
            }
        }
        let mut recycle_slots = 0u32;
        let mut roll_booting = 0u32;
        for (idx, entry) in self.slots.iter().enumerate() {
            let slot = Slot(idx as u32);
            let wanted = self.is_wanted(idx);
            for id in &entry.retiring {
                let Some(p) = self.procs.get(id) else {
                    return Err(format!("{slot:?} retires unknown {id:?}"));
                };
                if p.state.can_hold_slot() {
                    return Err(format!("retiring {id:?} of {slot:?} is {}", p.state.name()));
                }
                if p.leave.is_none() {
                    return Err(format!("retiring {id:?} of {slot:?} has no reason to leave"));
                }
            }
            match entry.state {
                SlotState::Vacant if wanted => return Err(format!("wanted {slot:?} is vacant")),
                SlotState::Vacant => {}
                SlotState::Backoff => {
                    if !wanted {
                        return Err(format!("unwanted {slot:?} in backoff"));
                    }
                    if entry.crashes == 0 || self.backoff_until(idx).is_none_or(|t| t <= self.now) {
                        return Err(format!("{slot:?} in backoff without a pending backoff"));
                    }
                }
                SlotState::Occupied { primary, replacement } => {
                    if !wanted {
                        return Err(format!("unwanted {slot:?} is occupied"));
                    }
                    let Some(p) = self.procs.get(&primary) else {
                        return Err(format!("{slot:?} primary {primary:?} unknown"));
                    };
                    if !p.state.can_hold_slot() || p.slot != slot {
                        return Err(format!(
                            "{slot:?} primary {primary:?} is {} in {:?}",
                            p.state.name(),
                            p.slot
                        ));
                    }
                    if let Some(r) = replacement {
                        let Some(rp) = self.procs.get(&r.spawn) else {
                            return Err(format!("{slot:?} replacement {:?} unknown", r.spawn));
                        };
                        if !rp.state.can_hold_slot() || rp.slot != slot || r.spawn == primary {
                            return Err(format!("{slot:?} replacement {:?} is {}", r.spawn, rp.state.name()));
                        }
                        match r.kind {
                            Handover::Recycle => {
                                if self.roll.is_some() {
                                    return Err(format!("{slot:?} recycles during a rolling restart"));
                                }
                                if rp.state.is_ready() || !p.state.is_ready() {
                                    return Err(format!(
                                        "{slot:?} recycle handover with primary {} and replacement {}",
                                        p.state.name(),
                                        rp.state.name()
                                    ));
                                }
                                if rp.version != self.current {
                                    return Err(format!("{slot:?} recycles to {:?}", rp.version));
                                }
                            }
                            Handover::Roll => {
                                let Some(roll) = self.roll else {
                                    return Err(format!("{slot:?} has a roll replacement and no roll"));
                                };
                                if rp.version != roll.to {
                                    return Err(format!("{slot:?} roll replacement at {:?}", rp.version));
                                }
                                if !rp.state.is_ready() {
                                    roll_booting += 1;
                                }
                            }
                        }
                    }
                }
            }
            if self.slot_recycling(idx) {
                recycle_slots += 1;
            }
            if entry.crashes > 0 {
                let d = cfg.backoff_delay(entry.crashes);
                if d < cfg.backoff_initial || d > cfg.backoff_max {
                    return Err(format!("{slot:?} backoff {d:?} outside [initial, max]"));
                }
            }
        }
        if recycle_slots > cfg.max_concurrent_recycles {
            return Err(format!(
                "{recycle_slots} recycling handovers > max {}",
                cfg.max_concurrent_recycles
            ));
        }
        if roll_booting > cfg.max_concurrent_spawns {
            return Err(format!(
                "{roll_booting} roll replacements booting > max {}",
                cfg.max_concurrent_spawns
            ));
        }
        if let Some(roll) = self.roll {
            if roll.from != self.current || roll.to <= roll.from {
                return Err(format!("roll {roll:?} with generation {:?}", self.current));
            }
            if roll.to.0 >= self.next_version {
                return Err(format!(
                    "roll to {:?} but next version is {}",
                    roll.to, self.next_version
                ));
            }
        }
        if self.current.0 >= self.next_version {
            return Err(format!(
                "generation {:?} but next version is {}",
                self.current, self.next_version
            ));
        }
        if self.desired == 0 {
            return Err("desired is 0".to_string());
        }
        if self.stopping {
            if self.roll.is_some() {
                return Err("rolling while stopping".to_string());
            }
            if let Some((id, _)) = self
                .procs
                .iter()
                .find(|(_, p)| matches!(p.state, ProcState::Spawning { cancelled: false, .. }))
            {
                return Err(format!("{id:?} still wanted while stopping"));
            }
        }
        if self.spawned_while_stopping {
            return Err("a Spawn was queued after stop".to_string());
        }
        if self.stopped_emitted && !self.procs.is_empty() {
            return Err(format!("Stopped emitted with {} processes left", self.procs.len()));
        }
        if self.stopped_emitted != (self.stopping && self.procs.is_empty()) {
            return Err("Stopped not emitted although nothing is left".to_string());
        }
        Ok(())
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

    /// A recycling handover is in progress in the slot: a recycling
    /// replacement is booting, or a recycled process has not exited yet.
    fn slot_recycling(&self, idx: usize) -> bool {
        let entry = &self.slots[idx];
        matches!(
            entry.state,
            SlotState::Occupied {
                replacement: Some(Replacement {
                    kind: Handover::Recycle,
                    ..
                }),
                ..
            }
        ) || entry
            .retiring
            .iter()
            .any(|id| self.procs.get(id).is_some_and(|p| p.leave == Some(Leave::Recycled)))
    }

    fn recycles_in_progress(&self) -> u32 {
        (0..self.slots.len()).filter(|&idx| self.slot_recycling(idx)).count() as u32
    }

    /// The slot has a ready process of generation `to` holding it.
    fn roll_satisfied(&self, idx: usize, to: Version) -> bool {
        self.members(idx).iter().any(|id| {
            let p = &self.procs[id];
            p.version == to && p.state.is_ready()
        })
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
        match p.state {
            ProcState::Spawning { cancelled: false, .. } => {
                let _ok = p.state.on_cancel();
            }
            ProcState::Booting { .. } => {
                if p.state.on_terminate(now, stop_timeout).is_ok()
                    && let Some(pid) = p.pid
                {
                    self.actions.push_back(SupervisorAction::Terminate { pid });
                }
            }
            ProcState::Ready { .. } | ProcState::Draining { .. } if stopping => {
                if p.state.on_terminate(now, stop_timeout).is_ok()
                    && let Some(pid) = p.pid
                {
                    self.actions.push_back(SupervisorAction::Terminate { pid });
                }
            }
            ProcState::Ready { .. } => {
                if p.state.on_drain().is_ok()
                    && let Some(pid) = p.pid
                {
                    self.actions.push_back(SupervisorAction::Drain { pid });
                }
            }
            _ => {}
        }
        self.push_retiring(id);
    }

    fn kill(&mut self, id: SpawnId) {
        if let Some(p) = self.procs.get_mut(&id)
            && p.state.on_kill().is_ok()
            && let Some(pid) = p.pid
        {
            self.actions.push_back(SupervisorAction::Kill { pid });
        }
    }

    fn record_crash(&mut self, idx: usize) {
        let e = &mut self.slots[idx];
        e.crashes = e.crashes.saturating_add(1);
        e.last_crash_at = self.now;
    }

    /// Resets the crash count of slots where a process that joined after the
    /// last crash has stayed ready for `backoff_reset_after`.
    fn reset_crash_counts(&mut self) {
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

    /// Takes a process out of its role (primary or replacement) because it
    /// is gone or going, with the consequences for its slot: the replacement
    /// takes over, the crash is counted, a failed new generation aborts the
    /// rolling restart. The caller then removes or retires the process.
    fn detach(&mut self, id: SpawnId, crash: bool, what: &str) {
        let Some(p) = self.procs.get(&id) else { return };
        let (slot, version, before_ready) = (p.slot, p.version, p.state.before_ready());
        let idx = slot.0 as usize;
        match self.role(id) {
            None | Some(Role::Retiring) => return,
            Some(Role::Primary) => {
                if let Err(e) = self.slots[idx].state.on_primary_lost() {
                    debug_assert!(false, "{e}");
                }
                if crash {
                    self.record_crash(idx);
                }
            }
            Some(Role::Replacement(kind)) => {
                if let Err(e) = self.slots[idx].state.on_replacement_lost() {
                    debug_assert!(false, "{e}");
                }
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
            self.abort_roll(format!("slot {} v{} {what}", slot.0, version.0));
        }
    }

    fn abort_roll(&mut self, reason: String) {
        let Some(roll) = self.roll.take() else { return };
        self.last_roll = Some(LastRoll::new(roll, "aborted", Some(reason), self.now));
        for idx in 0..self.slots.len() {
            if let SlotState::Occupied {
                replacement: Some(r), ..
            } = self.slots[idx].state
                && r.kind == Handover::Roll
            {
                let _r = self.slots[idx].state.on_replacement_lost();
                self.retire(r.spawn, Leave::RollAborted);
            }
            // A slot refilled at the new generation during the roll: if it has
            // not joined yet, start over at the old one; if it serves, it is
            // recycled back later (wrong generation).
            if let SlotState::Occupied {
                primary,
                replacement: None,
            } = self.slots[idx].state
                && self.procs[&primary].version == roll.to
                && self.procs[&primary].state.before_ready()
            {
                let _ok = self.slots[idx].state.on_primary_lost();
                self.retire(primary, Leave::RollAborted);
            }
        }
    }

    /// Forgets an exited process, after detaching it from its role.
    fn process_exited(&mut self, id: SpawnId) {
        let Some(p) = self.procs.get(&id) else { return };
        let crash = !p.state.exit_is_planned();
        self.detach(id, crash, "died before joining");
        self.remove(id);
    }

    fn remove(&mut self, id: SpawnId) {
        if let Some(p) = self.procs.remove(&id) {
            if let Some(pid) = p.pid {
                self.by_pid.remove(&pid);
            }
            self.slots[p.slot.0 as usize].retiring.retain(|&r| r != id);
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
                        if p.state.on_cancel().is_err() {
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
                    let _ok = self.slots[idx].state.on_wait_backoff();
                }
                SlotState::Backoff if self.backoff_pending(idx) => {}
                SlotState::Vacant | SlotState::Backoff => {
                    let id = self.spawn(idx, version);
                    if let Err(e) = self.slots[idx].state.on_spawn_primary(id) {
                        debug_assert!(false, "{e}");
                    }
                }
            }
        }
    }

    fn progress_roll(&mut self) {
        let Some(roll) = self.roll else { return };
        let wanted = self.desired as usize;
        if (0..wanted).all(|idx| self.roll_satisfied(idx, roll.to)) {
            self.finish_roll(roll);
            return;
        }
        let mut booting = 0u32;
        for idx in 0..wanted {
            for id in self.members(idx) {
                let p = &self.procs[&id];
                if p.version == roll.to && !p.state.is_ready() {
                    booting += 1;
                }
            }
        }
        for idx in 0..wanted {
            if booting >= self.config.max_concurrent_spawns {
                break;
            }
            if let SlotState::Occupied {
                primary,
                replacement: None,
            } = self.slots[idx].state
                && self.procs[&primary].version != roll.to
                && !self.backoff_pending(idx)
            {
                let id = self.spawn(idx, roll.to);
                if let Err(e) = self.slots[idx].state.on_spawn_replacement(Replacement {
                    spawn: id,
                    kind: Handover::Roll,
                }) {
                    debug_assert!(false, "{e}");
                }
                booting += 1;
            }
        }
    }

    fn finish_roll(&mut self, roll: Roll) {
        for idx in 0..self.slots.len() {
            if let SlotState::Occupied {
                replacement: Some(r), ..
            } = self.slots[idx].state
                && r.kind == Handover::Roll
            {
                match self.slots[idx].state.on_replacement_ready() {
                    Ok(old) => self.retire(old, Leave::RolledOver),
                    Err(e) => debug_assert!(false, "{e}"),
                }
            }
        }
        self.current = roll.to;
        self.roll = None;
        self.last_roll = Some(LastRoll::new(roll, "completed", None, self.now));
    }

    fn start_recycles(&mut self) {
        let cfg = &self.config;
        let mut budget = cfg.max_concurrent_recycles.saturating_sub(self.recycles_in_progress());
        let threshold = cfg.recycle_threshold();
        let max_age = cfg.max_age;
        for idx in 0..self.desired as usize {
            if budget == 0 {
                break;
            }
            let SlotState::Occupied {
                primary,
                replacement: None,
            } = self.slots[idx].state
            else {
                continue;
            };
            let p = &self.procs[&primary];
            let ProcState::Ready {
                since,
                stuck_since: None,
            } = p.state
            else {
                continue;
            };
            let due = p.version != self.current
                || threshold.is_some_and(|t| p.served >= t)
                || max_age.is_some_and(|age| self.now >= since + age);
            if !due || self.slot_recycling(idx) || self.backoff_pending(idx) {
                continue;
            }
            let id = self.spawn(idx, self.current);
            if let Err(e) = self.slots[idx].state.on_spawn_replacement(Replacement {
                spawn: id,
                kind: Handover::Recycle,
            }) {
                debug_assert!(false, "{e}");
            }
            budget -= 1;
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use SupervisorAction::{Drain, Kill, Spawn, Stopped, Terminate};

    fn ms(n: u64) -> Time {
        Time::from_millis(n)
    }

    /// A tiny driver: keeps the clock, hands out pids, drains actions and
    /// checks the invariants after every step.
    struct H {
        s: Supervisor,
        now: Time,
        next_pid: u32,
    }

    impl H {
        fn new(config: SupervisorConfig) -> (H, Vec<SupervisorAction>) {
            let s = Supervisor::new(config, Time::ZERO);
            let mut h = H {
                s,
                now: Time::ZERO,
                next_pid: 100,
            };
            let a = h.drain();
            (h, a)
        }

        fn drain(&mut self) -> Vec<SupervisorAction> {
            if let Err(e) = self.s.check_invariants() {
                panic!("invariant broken at {:?}: {e}\n{:#?}", self.now, self.s);
            }
            std::iter::from_fn(|| self.s.poll_action()).collect()
        }

        fn at(&mut self, t: u64) -> &mut Self {
            assert!(ms(t) >= self.now);
            self.now = ms(t);
            self
        }

        fn timeout(&mut self) -> Vec<SupervisorAction> {
            self.s.handle_timeout(self.now);
            self.drain()
        }

        /// Jumps to the next timeout and fires it.
        fn next_timeout(&mut self) -> Vec<SupervisorAction> {
            let t = self.s.poll_timeout().expect("a timeout is pending");
            assert!(t > self.now);
            self.now = t;
            self.timeout()
        }

        fn spawned(&mut self, spawn: SpawnId) -> (Pid, Vec<SupervisorAction>) {
            let pid = Pid(self.next_pid);
            self.next_pid += 1;
            self.s.handle_spawned(spawn, pid, self.now);
            (pid, self.drain())
        }

        /// Answers a spawn and makes the process ready.
        fn boot(&mut self, spawn: SpawnId) -> (Pid, Vec<SupervisorAction>) {
            let (pid, mut a) = self.spawned(spawn);
            self.s.handle_ready(pid, self.now);
            a.extend(self.drain());
            (pid, a)
        }

        fn ready(&mut self, pid: Pid) -> Vec<SupervisorAction> {
            self.s.handle_ready(pid, self.now);
            self.drain()
        }

        fn exit(&mut self, pid: Pid) -> Vec<SupervisorAction> {
            self.s.handle_exit(pid, self.now);
            self.drain()
        }

        fn served(&mut self, pid: Pid, n: u64) -> Vec<SupervisorAction> {
            self.s.handle_served(pid, n, self.now);
            self.drain()
        }

        fn idle(&mut self, pid: Pid) -> Vec<SupervisorAction> {
            self.s.handle_idle(pid, self.now);
            self.drain()
        }

        fn slot(&self, n: u32) -> SlotStatus {
            self.s
                .status(self.now)
                .slots
                .into_iter()
                .find(|s| s.slot == Slot(n))
                .expect("slot listed")
        }
    }

    fn spawns(actions: &[SupervisorAction]) -> Vec<(SpawnId, Slot, Version)> {
        actions
            .iter()
            .filter_map(|a| match *a {
                Spawn { spawn, slot, version } => Some((spawn, slot, version)),
                _ => None,
            })
            .collect()
    }

    fn one_spawn(actions: &[SupervisorAction]) -> SpawnId {
        let s = spawns(actions);
        assert_eq!(s.len(), 1, "expected one spawn in {actions:?}");
        s[0].0
    }

    fn config(workers: u32) -> SupervisorConfig {
        SupervisorConfig {
            workers,
            ..SupervisorConfig::default()
        }
    }

    /// Boots every spawn in `actions`; returns the pids in order.
    fn boot_all(h: &mut H, actions: &[SupervisorAction]) -> Vec<Pid> {
        spawns(actions)
            .into_iter()
            .map(|(id, _, _)| {
                let (pid, a) = h.boot(id);
                assert!(a.is_empty(), "booting {id:?} gave {a:?}");
                pid
            })
            .collect()
    }

    #[test]
    fn new_spawns_every_slot_at_version_one() {
        let (h, a) = H::new(config(3));
        assert_eq!(
            spawns(&a),
            vec![
                (SpawnId(1), Slot(0), Version(1)),
                (SpawnId(2), Slot(1), Version(1)),
                (SpawnId(3), Slot(2), Version(1)),
            ]
        );
        assert_eq!(h.s.desired(), 3);
        assert_eq!(h.s.generation(), Version(1));
        assert_eq!(h.slot(0).state, "starting");
    }

    #[test]
    fn config_helpers() {
        let c = SupervisorConfig {
            backoff_max: Duration::from_millis(1000),
            ..config(1)
        };
        let delays: Vec<u128> = (0..8).map(|n| c.backoff_delay(n).as_millis()).collect();
        assert_eq!(delays, vec![0, 100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(c.backoff_delay(u32::MAX), Duration::from_millis(1000));
        let t = |m| {
            SupervisorConfig {
                max_requests: Some(m),
                ..config(1)
            }
            .recycle_threshold()
        };
        assert_eq!(t(1000), Some(900));
        assert_eq!(t(10), Some(9));
        assert_eq!(t(5), Some(4));
        assert_eq!(t(1), Some(1));
        assert_eq!(SupervisorConfig::default().recycle_threshold(), None);
    }

    #[test]
    fn crash_loop_backoff_grows_and_caps() {
        let c = SupervisorConfig {
            backoff_max: Duration::from_millis(1600),
            ..config(1)
        };
        let (mut h, a) = H::new(c);
        let mut spawn = one_spawn(&a);
        let mut delays = Vec::new();
        for _ in 0..8 {
            let (pid, a) = h.spawned(spawn);
            assert!(a.is_empty());
            h.at(h.now.as_micros() / 1000 + 7);
            let crashed_at = h.now;
            assert!(h.exit(pid).is_empty(), "no respawn before the backoff");
            assert_eq!(h.slot(0).state, "backoff");
            let next = h.s.poll_timeout().unwrap();
            assert_eq!(
                h.slot(0).next_attempt_in_ms,
                Some(millis(next.saturating_since(crashed_at)))
            );
            let a = h.next_timeout();
            spawn = one_spawn(&a);
            delays.push(h.now.saturating_since(crashed_at).as_millis());
        }
        assert_eq!(delays, vec![100, 200, 400, 800, 1600, 1600, 1600, 1600]);
        assert_eq!(h.slot(0).crashes, 8);
        assert_eq!(h.slot(0).restarts, 8);
    }

    #[test]
    fn crash_count_resets_only_after_a_stable_run() {
        let (mut h, a) = H::new(config(1));
        let mut spawn = one_spawn(&a);
        // Three crashes at boot: 100, 200, 400.
        for _ in 0..3 {
            let (pid, _) = h.spawned(spawn);
            let _ = h.exit(pid);
            spawn = one_spawn(&h.next_timeout());
        }
        assert_eq!(h.slot(0).crashes, 3);
        // Ready for 4.9 s, then crash: no reset, next delay 800 ms.
        let (pid, _) = h.boot(spawn);
        let t = h.now.as_micros() / 1000;
        h.at(t + 4_900);
        let _ = h.exit(pid);
        assert_eq!(h.slot(0).crashes, 4);
        assert_eq!(h.slot(0).next_attempt_in_ms, Some(800));
        spawn = one_spawn(&h.next_timeout());
        // Ready for 5 s: the count resets on the timer.
        let (pid, _) = h.boot(spawn);
        let ready_at = h.now;
        assert_eq!(h.s.poll_timeout(), Some(ready_at + Duration::from_secs(5)));
        let _ = h.next_timeout();
        assert_eq!(h.slot(0).crashes, 0);
        // The next crash starts over at 100 ms.
        let t = h.now.as_micros() / 1000;
        h.at(t + 1);
        let _ = h.exit(pid);
        assert_eq!(h.slot(0).crashes, 1);
        assert_eq!(h.slot(0).next_attempt_in_ms, Some(100));
    }

    #[test]
    fn spawn_failure_and_missed_ready_timeout_are_crashes() {
        let (mut h, a) = H::new(config(1));
        h.s.handle_spawn_failed(one_spawn(&a), h.now);
        assert!(h.drain().is_empty());
        assert_eq!(h.slot(0).crashes, 1);
        let spawn = one_spawn(&h.next_timeout());
        assert_eq!(h.now, ms(100));
        let (pid, _) = h.spawned(spawn);
        // No join within 30 s of the spawn request: killed, crash 2, 200 ms.
        let a = h.next_timeout();
        assert_eq!(h.now, ms(30_100));
        assert_eq!(a, vec![Kill { pid }]);
        assert_eq!(h.slot(0).crashes, 2);
        assert_eq!(h.slot(0).state, "backoff");
        // The killed process's exit is expected: no extra crash.
        assert!(h.exit(pid).is_empty());
        assert_eq!(h.slot(0).crashes, 2);
        let a = h.next_timeout();
        assert_eq!(h.now, ms(30_300));
        assert_eq!(spawns(&a).len(), 1);
    }

    #[test]
    fn a_crash_looping_slot_does_not_block_the_others() {
        let (mut h, a) = H::new(config(2));
        let s = spawns(&a);
        let (p1, _) = h.boot(s[1].0);
        let mut spawn = s[0].0;
        for _ in 0..5 {
            let (pid, _) = h.spawned(spawn);
            let _ = h.exit(pid);
            spawn = one_spawn(&h.next_timeout());
        }
        let st = h.s.status(h.now);
        assert_eq!(st.slots[1].state, "ready");
        assert_eq!(st.slots[1].pid, Some(p1));
        assert_eq!(st.slots[0].crashes, 5);
        assert_eq!(h.s.live_pids(), vec![p1]);
    }

    #[test]
    fn planned_quit_respawns_at_once_without_crash() {
        let (mut h, a) = H::new(config(1));
        let (pid, _) = h.boot(one_spawn(&a));
        h.at(50);
        h.s.handle_quit(pid, h.now);
        let a = h.drain();
        let (_, slot, version) = spawns(&a)[0];
        assert_eq!((slot, version), (Slot(0), Version(1)));
        assert!(h.exit(pid).is_empty());
        assert_eq!(h.slot(0).crashes, 0);
        assert_eq!(h.slot(0).restarts, 1);
    }

    #[test]
    fn recycle_starts_the_replacement_before_draining_the_old_worker() {
        let c = SupervisorConfig {
            max_requests: Some(10),
            ..config(1)
        };
        let (mut h, a) = H::new(c);
        let (old, _) = h.boot(one_spawn(&a));
        assert!(h.served(old, 8).is_empty());
        let a = h.served(old, 9);
        let (new_spawn, slot, version) = spawns(&a)[0];
        assert_eq!((a.len(), slot, version), (1, Slot(0), Version(1)));
        assert_eq!(h.s.status(h.now).recycling, 1);
        let (new, a) = h.spawned(new_spawn);
        assert!(a.is_empty(), "the old worker keeps serving while the replacement boots");
        assert_eq!(h.s.live_pids(), vec![old, new]);
        assert_eq!(h.ready(new), vec![Drain { pid: old }]);
        assert_eq!(h.slot(0).pid, Some(new));
        assert_eq!(h.idle(old), vec![Terminate { pid: old }]);
        assert!(h.exit(old).is_empty());
        assert_eq!(h.s.status(h.now).recycling, 0);
        assert_eq!(h.slot(0).crashes, 0);
        assert_eq!(h.slot(0).restarts, 1);
    }

    #[test]
    fn recycle_terminated_worker_is_killed_after_stop_timeout() {
        let c = SupervisorConfig {
            max_requests: Some(10),
            ..config(1)
        };
        let (mut h, a) = H::new(c);
        let (old, _) = h.boot(one_spawn(&a));
        let a = h.served(old, 9);
        let (new, _) = h.spawned(one_spawn(&a));
        let _ = h.ready(new);
        let _ = h.idle(old);
        assert_eq!(h.next_timeout(), vec![Kill { pid: old }]);
        assert_eq!(h.now, ms(10_000));
    }

    #[test]
    fn recycle_replacement_crash_keeps_the_old_worker_and_backs_off() {
        let c = SupervisorConfig {
            max_age: Some(Duration::from_secs(60)),
            ..config(1)
        };
        let (mut h, a) = H::new(c);
        let (old, _) = h.boot(one_spawn(&a));
        assert_eq!(h.s.poll_timeout(), Some(ms(60_000)));
        let a = h.next_timeout();
        let (new, _) = h.spawned(one_spawn(&a));
        assert!(h.exit(new).is_empty(), "no drain, no immediate retry");
        assert_eq!(h.slot(0).state, "ready");
        assert_eq!(h.slot(0).pid, Some(old));
        assert_eq!(h.slot(0).crashes, 1);
        assert_eq!(h.slot(0).next_attempt_in_ms, Some(100));
        let a = h.next_timeout();
        assert_eq!(h.now, ms(60_100));
        let (new, _) = h.spawned(one_spawn(&a));
        assert_eq!(h.ready(new), vec![Drain { pid: old }]);
    }

    #[test]
    fn recycles_are_one_at_a_time_by_default() {
        let c = SupervisorConfig {
            max_age: Some(Duration::from_secs(10)),
            ..config(3)
        };
        let (mut h, a) = H::new(c);
        let olds = boot_all(&mut h, &a);
        let a = h.at(10_000).timeout();
        assert_eq!(spawns(&a).len(), 1, "one handover at a time");
        let (new, _) = h.boot(spawns(&a)[0].0);
        let _ = new;
        let _ = h.idle(olds[0]);
        // Still one handover in progress until the old process exits.
        assert!(h.at(10_500).timeout().is_empty());
        let a = h.exit(olds[0]);
        assert_eq!(spawns(&a).iter().map(|s| s.1).collect::<Vec<_>>(), vec![Slot(1)]);
    }

    #[test]
    fn the_worker_quitting_at_its_budget_hands_over_to_the_booting_replacement() {
        let c = SupervisorConfig {
            max_requests: Some(10),
            ..config(1)
        };
        let (mut h, a) = H::new(c);
        let (old, _) = h.boot(one_spawn(&a));
        let a = h.served(old, 9);
        let (new, _) = h.spawned(one_spawn(&a));
        let _ = h.served(old, 10);
        h.s.handle_quit(old, h.now);
        assert!(h.drain().is_empty(), "the replacement already boots: no extra spawn");
        assert_eq!(h.slot(0).state, "starting");
        assert!(h.exit(old).is_empty());
        assert!(h.ready(new).is_empty());
        assert_eq!(h.slot(0).state, "ready");
    }

    #[test]
    fn stuck_worker_is_killed_after_the_grace_and_replaced_at_once() {
        let (mut h, a) = H::new(config(1));
        let (pid, _) = h.boot(one_spawn(&a));
        h.at(1_000);
        h.s.handle_stuck(pid, h.now);
        assert!(h.drain().is_empty());
        assert_eq!(h.slot(0).state, "stuck");
        h.at(2_000);
        h.s.handle_unstuck(pid, h.now);
        assert!(h.drain().is_empty());
        assert_eq!(h.s.poll_timeout(), None);
        h.s.handle_stuck(pid, h.now);
        let _ = h.drain();
        let a = h.next_timeout();
        assert_eq!(h.now, ms(7_000));
        assert_eq!(a[0], Kill { pid });
        assert_eq!(spawns(&a).len(), 1);
        assert!(h.exit(pid).is_empty());
        assert_eq!(h.slot(0).crashes, 0);
        assert_eq!(h.slot(0).restarts, 1);
    }

    #[test]
    fn rolling_restart_never_drains_old_workers_before_all_new_are_ready() {
        let (mut h, a) = H::new(config(3));
        let olds = boot_all(&mut h, &a);
        h.at(1_000);
        h.s.rolling_restart(h.now).unwrap();
        assert_eq!(
            h.s.rolling_restart(h.now),
            Err("a rolling restart is already in progress")
        );
        let a = h.drain();
        let s = spawns(&a);
        assert_eq!(
            s.iter().map(|s| (s.1, s.2)).collect::<Vec<_>>(),
            vec![(Slot(0), Version(2)), (Slot(1), Version(2))]
        );
        assert_eq!(a.len(), 2);
        assert_eq!(h.s.generation(), Version(1));
        assert_eq!(h.s.rolling_to(), Some(Version(2)));
        let (_, a) = h.boot(s[0].0);
        let s2 = spawns(&a);
        assert_eq!(
            s2.iter().map(|s| (s.1, s.2)).collect::<Vec<_>>(),
            vec![(Slot(2), Version(2))]
        );
        assert_eq!(a.len(), 1, "no drain yet: {a:?}");
        let (_, a) = h.boot(s[1].0);
        assert!(a.is_empty());
        let st = h.s.status(h.now).rolling.unwrap();
        assert_eq!((st.ready, st.total), (2, 3));
        let (_, a) = h.boot(s2[0].0);
        assert_eq!(a, olds.iter().map(|&pid| Drain { pid }).collect::<Vec<_>>());
        assert_eq!(h.s.generation(), Version(2));
        assert_eq!(h.s.status(h.now).last_roll.as_deref(), Some("completed: v1 -> v2"));
        for &pid in &olds {
            assert_eq!(h.idle(pid), vec![Terminate { pid }]);
            assert!(h.exit(pid).is_empty());
        }
        assert!(
            h.s.status(h.now)
                .slots
                .iter()
                .all(|s| s.state == "ready" && s.version == Some(Version(2)))
        );
    }

    #[test]
    fn rolling_restart_abort_keeps_the_old_generation() {
        let (mut h, a) = H::new(config(3));
        let olds = boot_all(&mut h, &a);
        h.s.rolling_restart(h.now).unwrap();
        let s = spawns(&h.drain());
        assert_eq!(s.len(), 2, "two spawns at a time");
        let (ready_new, a) = h.boot(s[0].0);
        let s2 = spawns(&a);
        assert_eq!(s2.len(), 1, "slot 2's turn");
        let (booting_new, _) = h.spawned(s[1].0);
        // The v2 worker of slot 1 dies at boot: abort.
        let a = h.exit(booting_new);
        assert!(a.contains(&Drain { pid: ready_new }), "{a:?}");
        assert!(
            olds.iter()
                .all(|&pid| !a.contains(&Drain { pid }) && !a.contains(&Terminate { pid }))
        );
        assert!(spawns(&a).is_empty());
        assert_eq!(h.s.generation(), Version(1));
        assert_eq!(h.s.rolling_to(), None);
        let st = h.s.status(h.now);
        assert!(
            st.last_roll
                .as_deref()
                .unwrap()
                .starts_with("aborted: slot 1 v2 died before joining"),
            "{:?}",
            st.last_roll
        );
        assert!(
            st.slots
                .iter()
                .all(|s| s.state == "ready" && s.version == Some(Version(1)))
        );
        assert_eq!(
            st.slots[1].crashes, 0,
            "a failed new generation is not a crash of the slot"
        );
        // Slot 2's v2 spawn is cancelled, then terminated once it has started.
        let (late, a) = h.spawned(s2[0].0);
        assert_eq!(a, vec![Terminate { pid: late }]);
        assert!(h.exit(late).is_empty());
        // A later roll uses a fresh version.
        h.s.rolling_restart(h.now).unwrap();
        assert!(spawns(&h.drain()).iter().all(|s| s.2 == Version(3)));
    }

    #[test]
    fn rolling_restart_missing_the_ready_timeout_aborts() {
        let (mut h, a) = H::new(config(1));
        let old = boot_all(&mut h, &a)[0];
        h.s.rolling_restart(h.now).unwrap();
        let a = h.drain();
        let (new, _) = h.spawned(one_spawn(&a));
        let a = h.next_timeout();
        assert_eq!(a, vec![Kill { pid: new }]);
        assert_eq!(h.slot(0).pid, Some(old));
        assert_eq!(h.s.generation(), Version(1));
        assert!(
            h.s.status(h.now)
                .last_roll
                .unwrap()
                .contains("missed the ready timeout")
        );
    }

    #[test]
    fn an_old_worker_crashing_during_a_roll_is_replaced_at_the_new_version() {
        let c = SupervisorConfig {
            max_concurrent_spawns: 1,
            ..config(2)
        };
        let (mut h, a) = H::new(c);
        let olds = boot_all(&mut h, &a);
        h.s.rolling_restart(h.now).unwrap();
        let s = spawns(&h.drain());
        assert_eq!(s.len(), 1);
        let (_new0, a) = h.boot(s[0].0);
        assert_eq!(
            spawns(&a).iter().map(|s| (s.1, s.2)).collect::<Vec<_>>(),
            vec![(Slot(1), Version(2))]
        );
        assert_eq!(h.s.status(h.now).slots[1].processes.len(), 2);
        // The old worker of slot 1 crashes: its v2 replacement takes the slot.
        let a = h.at(10).exit(olds[1]);
        assert!(spawns(&a).is_empty(), "{a:?}");
        assert_eq!(h.slot(1).state, "starting");
        assert_eq!(h.slot(1).version, Some(Version(2)));
    }

    #[test]
    fn old_worker_crash_without_replacement_respawns_at_the_new_version() {
        let c = SupervisorConfig {
            max_concurrent_spawns: 1,
            ..config(2)
        };
        let (mut h, a) = H::new(c);
        let olds = boot_all(&mut h, &a);
        h.s.rolling_restart(h.now).unwrap();
        let _ = h.drain();
        let _ = h.at(10).exit(olds[1]);
        let a = h.next_timeout();
        assert_eq!(
            spawns(&a).iter().map(|s| (s.1, s.2)).collect::<Vec<_>>(),
            vec![(Slot(1), Version(2))]
        );
    }

    #[test]
    fn scale_up_and_down() {
        let (mut h, a) = H::new(config(2));
        let pids = boot_all(&mut h, &a);
        h.s.scale_by(1, h.now);
        let a = h.drain();
        assert_eq!(spawns(&a).iter().map(|s| s.1).collect::<Vec<_>>(), vec![Slot(2)]);
        let p2 = boot_all(&mut h, &a)[0];
        h.s.scale_to(1, h.now);
        assert_eq!(h.drain(), vec![Drain { pid: p2 }, Drain { pid: pids[1] }]);
        assert_eq!(h.s.desired(), 1);
        assert_eq!(h.slot(2).state, "draining");
        assert_eq!(h.idle(p2), vec![Terminate { pid: p2 }]);
        assert_eq!(h.slot(2).state, "stopping");
        let _ = h.exit(p2);
        h.s.scale_by(-5, h.now);
        assert!(h.drain().is_empty());
        assert_eq!(h.s.desired(), 1);
        assert_eq!(h.s.status(h.now).slots.len(), 2, "slot 1 still drains");
    }

    #[test]
    fn stop_terminates_everything_and_emits_stopped_once() {
        let (mut h, a) = H::new(config(3));
        let s = spawns(&a);
        let (p0, _) = h.boot(s[0].0);
        let (p1, _) = h.spawned(s[1].0);
        // s[2] not answered yet.
        h.at(5);
        h.s.stop(h.now);
        assert_eq!(h.drain(), vec![Terminate { pid: p0 }, Terminate { pid: p1 }]);
        assert_eq!(h.s.rolling_restart(h.now), Err("stopping"));
        let (p2, a) = h.spawned(s[2].0);
        assert_eq!(a, vec![Terminate { pid: p2 }]);
        assert!(h.exit(p0).is_empty());
        assert!(h.exit(p2).is_empty());
        assert_eq!(h.next_timeout(), vec![Kill { pid: p1 }]);
        assert_eq!(h.now, ms(10_005));
        assert_eq!(h.exit(p1), vec![Stopped]);
        h.s.stop(h.now);
        assert!(h.timeout().is_empty());
        assert!(h.s.is_stopped());
        assert!(h.s.live_pids().is_empty());
    }

    #[test]
    fn stop_with_nothing_alive_is_immediate() {
        let (mut h, a) = H::new(config(1));
        h.s.handle_spawn_failed(one_spawn(&a), h.now);
        let _ = h.drain();
        h.s.stop(h.now);
        assert_eq!(h.drain(), vec![Stopped]);
        h.s.scale_by(1, h.now);
        assert!(h.timeout().is_empty());
    }

    #[test]
    fn status_serialises_for_the_status_page() {
        let (mut h, a) = H::new(config(2));
        let s = spawns(&a);
        let (p0, _) = h.boot(s[0].0);
        h.s.handle_spawn_failed(s[1].0, h.now);
        let _ = h.drain();
        h.s.rolling_restart(h.now).unwrap();
        let a = h.drain();
        let (new, _) = h.spawned(one_spawn(&a));
        let _ = h.exit(new);
        let v = serde_json::to_value(h.s.status(h.now)).unwrap();
        assert_eq!(v["desired"], 2);
        assert_eq!(v["generation"], 1);
        assert_eq!(v["rolling"], serde_json::Value::Null);
        assert_eq!(v["last_roll"]["outcome"], "aborted");
        assert_eq!(v["last_roll"]["from"], 1);
        assert_eq!(v["last_roll"]["to"], 2);
        assert_eq!(v["last_roll"]["message"], "aborted: slot 0 v2 died before joining");
        assert_eq!(v["slots"][0]["state"], "ready");
        assert_eq!(v["slots"][0]["pid"], p0.0);
        assert_eq!(v["slots"][0]["processes"][0]["role"], "primary");
        assert_eq!(v["slots"][1]["state"], "backoff");
        assert_eq!(v["slots"][1]["crashes"], 1);
        assert_eq!(v["slots"][1]["next_attempt_in_ms"], 100);
        assert_eq!(v["slots"][1]["backoff_ms"], 100);
        let last = h.s.status(h.now).last_roll.unwrap();
        assert!(last.starts_with("aborted"));
        assert_eq!(last.to_string(), last.message);
    }

    #[test]
    fn illegal_transitions_are_rejected() {
        let mut s = ProcState::Spawning {
            deadline: ms(1),
            cancelled: false,
        };
        assert!(s.on_ready(ms(0)).is_err());
        assert!(s.on_idle(ms(0), Duration::ZERO).is_err());
        assert_eq!(s.on_spawned(ms(0), Duration::ZERO), Ok(false));
        assert!(s.on_spawned(ms(0), Duration::ZERO).is_err());
        assert!(s.on_drain().is_err());
        s.on_ready(ms(0)).unwrap();
        assert!(!s.exit_is_planned());
        s.on_drain().unwrap();
        assert!(s.exit_is_planned());
        let e = s.on_ready(ms(0)).unwrap_err();
        assert_eq!(e.to_string(), "event ready is illegal in state draining");
        s.on_kill().unwrap();
        assert!(s.on_kill().is_err());
        let mut slot = SlotState::Vacant;
        assert!(slot.on_replacement_ready().is_err());
        assert!(slot.on_primary_lost().is_err());
        slot.on_spawn_primary(SpawnId(1)).unwrap();
        assert!(slot.on_spawn_primary(SpawnId(2)).is_err());
        assert!(slot.on_wait_backoff().is_err());
    }
}
