//! One worker slot: who holds it ([`SlotState`]), the replacement on its way
//! ([`Replacement`]) and its crash history ([`SlotEntry`]).

use super::process::{Illegal, SpawnId};
use crate::core::Time;

/// Why a replacement is booting for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Handover {
    /// Recycling (max requests, max age, or a primary of the wrong generation).
    Recycle,
    /// Rolling restart to a new generation.
    Roll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Replacement {
    pub(super) spawn: SpawnId,
    pub(super) kind: Handover,
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
pub(super) enum SlotState {
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
    pub(super) fn name(self) -> &'static str {
        match self {
            SlotState::Vacant => "vacant",
            SlotState::Backoff => "backoff",
            SlotState::Occupied { replacement: None, .. } => "occupied",
            SlotState::Occupied {
                replacement: Some(_), ..
            } => "handover",
        }
    }

    pub(super) fn illegal(self, event: &'static str) -> Illegal {
        Illegal {
            state: self.name(),
            event,
        }
    }

    pub(super) fn on_spawn_primary(&mut self, primary: SpawnId) -> Result<(), Illegal> {
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

    pub(super) fn on_wait_backoff(&mut self) -> Result<(), Illegal> {
        match *self {
            SlotState::Vacant => {
                *self = SlotState::Backoff;
                Ok(())
            }
            s => Err(s.illegal("wait_backoff")),
        }
    }

    pub(super) fn on_spawn_replacement(&mut self, r: Replacement) -> Result<(), Illegal> {
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
    pub(super) fn on_replacement_ready(&mut self) -> Result<SpawnId, Illegal> {
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

    pub(super) fn on_replacement_lost(&mut self) -> Result<Replacement, Illegal> {
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
    pub(super) fn on_primary_lost(&mut self) -> Result<(), Illegal> {
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
    pub(super) fn on_unwanted(&mut self) -> Vec<SpawnId> {
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
pub(super) struct SlotEntry {
    pub(super) state: SlotState,
    /// Processes of this slot on their way out, in retirement order.
    pub(super) retiring: Vec<SpawnId>,
    /// Consecutive crashes.
    pub(super) crashes: u32,
    pub(super) last_crash_at: Time,
    /// Processes started for this slot.
    pub(super) spawns: u64,
}

impl SlotEntry {
    pub(super) fn new() -> SlotEntry {
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
pub(super) enum Role {
    Primary,
    Replacement(Handover),
    Retiring,
}
