//! Deterministic simulation of rip-server on turmoil.
//!
//! The core's proptests prove the state machines; this crate runs the real
//! adapters around them (the front door, upstream connections, the control
//! plane and the driver) on a simulated network, with simulated worker
//! processes that hang, crash, refuse or boot slowly, and checks end to end
//! what the clients saw. A seed fixes everything (network latencies, host
//! polling order, service times, faults), so a failing seed replays exactly:
//! `SIM_SEED=<seed> cargo test -p rip-sim --test scenarios <scenario>`.
//!
//! - `lb`: the real `Driver`, `frontdoor::run` on port 80 and `control::run`
//!   on port 9999, wired as `server::serve` wires them, with [`SimTransport`],
//!   the turmoil listeners of [`net`] and [`SimSpawner`].
//! - `p0..pK`: pool hosts; each runs the simulated worker process the spawner
//!   assigns it ([`worker`]).
//! - clients ([`client`]): bursts, steady load, disconnects.
//!
//! See `docs/simulation.md`.

pub mod client;
pub mod harness;
pub mod net;
pub mod report;
pub mod rng;
pub mod spawner;
pub mod state;
pub mod worker;

pub use client::{ClientPlan, Req};
pub use harness::{AdminCmd, Config, Fault, Harness};
pub use net::SimTransport;
pub use report::{Expect, Report, seeds, sweep};
pub use rng::Rng;
pub use spawner::SimSpawner;
pub use state::{Incarnation, Outcome, Service, WorkerBehavior};
