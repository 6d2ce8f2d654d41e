//! rip-server: one HTTP front door, N worker processes, one request per worker at a time.
//!
//! The crate is split into a sans-IO [`core`] (pure state machines that decide
//! everything) and thin adapters that carry out its decisions with tokio and
//! hyper. Each folder is one role; `docs/ARCHITECTURE.md` draws the map and
//! says what each may import. From the bottom up:
//!
//! - [`core`]: the sans-IO decisions (balancer, supervisor), no I/O at all.
//! - [`os`], [`http`], [`protocol`], [`config`]: leaves the adapters share
//!   (the clock and the one `unsafe` module; header rules; the worker
//!   protocol's wire format; the runtime configuration).
//! - [`tls`]: the dev CA and the certificates HTTPS serves.
//! - [`net`]: listeners, the one accept loop, Unix sockets, transports.
//! - [`upstream`]: the HTTP/1.1 client to a worker.
//! - [`observe`]: the access log.
//! - [`runtime`]: the driver task that owns the core and carries out its decisions.
//! - [`frontdoor`], [`control`], [`manager`]: the client edge, the control
//!   socket, the worker processes; each talks to the core only through the driver.
//! - [`server`]: wires one app's server together (listeners, signals, stop).
//! - [`platform`]: many apps driven over an HTTP API (foundations so far:
//!   the token, request authorisation, the app records and `apps.json`).
//! - [`cli`]: argv to a command; [`worker`]: the built-in worker runtime.

pub mod cli;
pub mod config;
pub mod control;
pub mod core;
pub mod frontdoor;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod manager;
pub mod net;
pub mod observe;
pub mod os;
pub mod platform;
pub mod protocol;
pub mod runtime;
pub mod server;
pub mod tls;
pub mod upstream;
pub mod worker;
