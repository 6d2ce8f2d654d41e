//! The operating system's facts the adapters need, each read in one place:
//! the clock ([`clock`]: clippy refuses a clock read anywhere else) and the
//! crate's only `unsafe` code ([`sys`]).
//!
//! May import: `core` (for its `Time`). Everything else may import this.

pub mod clock;
pub mod sys;
