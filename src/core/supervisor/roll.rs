//! Replacing processes while the old ones keep serving: the rolling restart
//! to a new generation (start, progress, finish, abort) and recycling
//! (max requests, max age, a primary of the wrong generation, a module
//! reload the primary cannot take).

use super::Supervisor;
use super::process::{Leave, ProcState};
use super::slot::{Handover, Replacement, SlotState};
use super::status::LastRoll;
use crate::core::{Time, Version};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Roll {
    pub(super) from: Version,
    pub(super) to: Version,
}

impl Roll {
    /// How the roll ended, for [`Supervisor::status`].
    pub(super) fn ended(self, outcome: &'static str, reason: Option<String>, at: Time) -> LastRoll {
        let message = match &reason {
            None => format!("{outcome}: v{} -> v{}", self.from.0, self.to.0),
            Some(r) => format!("{outcome}: {r}"),
        };
        LastRoll {
            outcome,
            from: self.from,
            to: self.to,
            reason,
            at_ms: at.as_micros() / 1000,
            message,
        }
    }
}

impl Supervisor {
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
                let lost = self.slots[idx].state.on_replacement_lost();
                self.illegal.count(lost);
                self.retire(r.spawn, Leave::Cancelled);
            }
        }
        self.advance(now);
        Ok(())
    }

    /// A recycling handover is in progress in the slot: a recycling
    /// replacement is booting, or a recycled process has not exited yet.
    pub(super) fn slot_recycling(&self, idx: usize) -> bool {
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

    pub(super) fn recycles_in_progress(&self) -> u32 {
        (0..self.slots.len()).filter(|&idx| self.slot_recycling(idx)).count() as u32
    }

    /// The slot has a ready process of generation `to` holding it.
    pub(super) fn roll_satisfied(&self, idx: usize, to: Version) -> bool {
        self.members(idx).iter().any(|id| {
            let p = &self.procs[id];
            p.version == to && p.state.is_ready()
        })
    }

    pub(super) fn abort_roll(&mut self, reason: String) {
        let Some(roll) = self.roll.take() else { return };
        self.last_roll = Some(roll.ended("aborted", Some(reason), self.now));
        for idx in 0..self.slots.len() {
            if let SlotState::Occupied {
                replacement: Some(r), ..
            } = self.slots[idx].state
                && r.kind == Handover::Roll
            {
                let lost = self.slots[idx].state.on_replacement_lost();
                self.illegal.count(lost);
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
                let lost = self.slots[idx].state.on_primary_lost();
                self.illegal.count(lost);
                self.retire(primary, Leave::RollAborted);
            }
        }
    }

    pub(super) fn progress_roll(&mut self) {
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
                let replacing = self.slots[idx].state.on_spawn_replacement(Replacement {
                    spawn: id,
                    kind: Handover::Roll,
                });
                self.illegal.count_and_assert(replacing);
                booting += 1;
            }
        }
    }

    pub(super) fn finish_roll(&mut self, roll: Roll) {
        for idx in 0..self.slots.len() {
            if let SlotState::Occupied {
                replacement: Some(r), ..
            } = self.slots[idx].state
                && r.kind == Handover::Roll
            {
                let handed_over = self.slots[idx].state.on_replacement_ready();
                if let Some(old) = self.illegal.count_and_assert(handed_over) {
                    self.retire(old, Leave::RolledOver);
                }
            }
        }
        self.current = roll.to;
        self.roll = None;
        self.last_roll = Some(roll.ended("completed", None, self.now));
    }

    pub(super) fn start_recycles(&mut self) {
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
                || p.replace_for_reload
                || threshold.is_some_and(|t| p.served >= t)
                || max_age.is_some_and(|age| self.now >= since + age);
            if !due || self.slot_recycling(idx) || self.backoff_pending(idx) {
                continue;
            }
            let id = self.spawn(idx, self.current);
            let replacing = self.slots[idx].state.on_spawn_replacement(Replacement {
                spawn: id,
                kind: Handover::Recycle,
            });
            self.illegal.count_and_assert(replacing);
            budget -= 1;
        }
    }
}
