//! The sans-IO core: every decision about requests and workers, no IO.
//!
//! Nothing in this module touches a socket, a file, a process, a thread or a
//! clock (`tests/core_is_sans_io.rs` fails the build if it does). Time comes
//! in as [`Time`] values; outputs leave through `poll_*` methods that the
//! caller drains until they return `None`.
//!
//! - [`balancer::Balancer`]: one per app; pool selection, the bounded queue,
//!   retry budgets and version routing.
//! - [`supervisor::Supervisor`]: the manager's brain; desired worker count,
//!   crash-loop backoff, recycling, rolling restarts, graceful stop.
//! - [`node::Node`]: the two wired together, as the driver task runs them.
//! - [`reload`]: hot reload's mode ([`reload::ReloadMode`]) and the debouncer
//!   that turns a burst of file changes into one reload.
//! - [`stats`]: the histogram and counters the two keep for `/status`,
//!   `/metrics` and the dashboard.
//! - [`slab`] and [`id_map`]: the containers behind the balancer's hot
//!   path (values by index with generation-checked keys; a map by id).

pub mod answer;
pub mod balancer;
pub mod id_map;
pub mod ids;
pub mod invariants;
pub mod node;
pub mod reload;
pub mod slab;
pub mod stats;
pub mod supervisor;
pub mod time;

pub use answer::Answer;
pub use ids::{Pid, RequestId, Slot, Version};
pub use time::Time;
