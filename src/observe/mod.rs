//! Observation: the access log ([`access_log`]) and the typed status
//! snapshot every reader of the server's state renders from ([`status`]):
//! `/status` and `rip-server status` today, `/metrics` and the dashboard later.
//!
//! May import: `core`, `os`.

pub mod access_log;
pub mod build;
pub mod status;
