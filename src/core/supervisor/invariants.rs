//! The supervisor's internal consistency, checked by the tests after every
//! step (`Supervisor::check_invariants`).

use super::Supervisor;
use super::process::ProcState;
use super::slot::{Handover, SlotState};
use crate::core::Slot;

impl Supervisor {
    /// Checks the internal consistency (used by the tests after every step).
    pub fn check_invariants(&self) -> Result<(), String> {
        let cfg = &self.config;
        if self.illegal.total() > 0 {
            return Err(format!("{} illegal transitions", self.illegal.total()));
        }
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
            // Module reloads: signals only to processes whose join accepted
            // them, fewer than `max_reloads`; a pending burst only before
            // ready (it is applied on ready); a replacement asked for only
            // of a process that was ready.
            if p.reloads > 0 && !p.accepts_reload {
                return Err(format!("{id:?} got {} reloads without accepting them", p.reloads));
            }
            if let Some(max) = cfg.max_reloads.filter(|&m| m > 0)
                && p.reloads >= max
            {
                return Err(format!("{id:?} got {} reloads, max {max}", p.reloads));
            }
            if p.reload_pending && p.state.is_ready() {
                return Err(format!("{id:?} is ready with a reload still pending"));
            }
            if p.replace_for_reload && p.state.before_ready() {
                return Err(format!("{id:?} is to be replaced for a reload before it was ready"));
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
}
