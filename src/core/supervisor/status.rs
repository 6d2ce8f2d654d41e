//! What the supervisor shows of itself: the `/status` snapshot
//! ([`SupervisorStatus`] and its parts) and [`Supervisor::status`], which
//! builds it.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::Supervisor;
use super::process::{Leave, ProcState, SpawnId};
use super::reload::AppError;
use super::slot::{Role, SlotState};
use crate::core::{Pid, Slot, Time, Version};

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
    /// The last app error a worker reported, until a worker joins or
    /// reloads successfully ([`Supervisor::app_error`]).
    pub app_error: Option<AppError>,
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
    /// Module-reload signals sent to it.
    pub reloads: u32,
}

impl Supervisor {
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
                    reloads: p.reloads,
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
            app_error: self.app_error.clone(),
            recycling: self.recycles_in_progress(),
            stopping: self.stopping,
            stopped: self.stopped_emitted,
            slots,
        }
    }
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
