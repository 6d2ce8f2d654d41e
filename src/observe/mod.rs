//! Observation: the access log ([`access_log`]), the typed status snapshot
//! every reader of the server's state renders from ([`status`]): `/status`,
//! `rip-server status`, the dashboard, and the Prometheus exposition built
//! from those snapshots at scrape time ([`metrics`]).
//!
//! May import: `core`, `os`.

pub mod access_log;
pub mod build;
pub mod metrics;
pub mod status;
