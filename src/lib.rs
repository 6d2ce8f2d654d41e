//! rip-server: one HTTP front door, N worker processes, one request per worker at a time.
//!
//! The crate is split into a sans-IO [`core`] (pure state machines that decide
//! everything) and thin adapters that carry out its decisions with tokio and
//! hyper. See `docs/ARCHITECTURE.md`.

pub mod core;
pub mod proto;
pub mod cli;
pub mod worker;
