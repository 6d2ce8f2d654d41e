//! Observation: the access log ([`access_log`]); later, metrics.
//!
//! May import: `core`, `os`.

pub mod access_log;
