//! The operating system's facts the adapters need, each read in one place:
//! the clock ([`clock`]: clippy refuses a clock read anywhere else), the
//! crate's only `unsafe` code ([`sys`]), where log lines go and how they
//! must look there ([`log_style`], for the server and its built-in workers
//! alike), and where a replacement worker starts ([`placement`]).
//!
//! May import: `core` (for its `Time`). Everything else may import this.

pub mod clock;
pub mod log_style;
pub mod placement;
pub mod sys;
