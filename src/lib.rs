//! rip-server: one HTTP front door, N worker processes, one request per worker at a time.
//!
//! The crate is split into a sans-IO [`core`] (pure state machines that decide
//! everything) and thin adapters that carry out its decisions with tokio and
//! hyper. See `docs/ARCHITECTURE.md`.

pub mod access_log;
pub mod cli;
pub mod clock;
pub mod control;
pub mod core;
pub mod decision;
pub mod driver;
pub mod frontdoor;
#[doc(hidden)]
pub mod fuzzing;
pub mod manager;
pub mod proto;
pub mod server;
pub mod sys;
pub mod transport;
pub mod unix_socket;
pub mod upstream;
pub mod worker;
