//! The dev CA, written in Rust with rcgen (no openssl or mkcert process):
//! a name-constrained root in `$RIP_HOME/ca/`, the 7-day leaves it signs
//! (cached in `$RIP_HOME/certs/`), self-signed leaves for `https:quick`,
//! and the work of the `ca` subcommands, trust stores included.
//!
//! The parts, one job each:
//! - [`root`]: the root's files, [`DevCa`] (load, `ca init`, name checks,
//!   [`DevCa::leaf_for`]);
//! - [`constraints`]: the name constraints and the rules clients apply;
//! - [`leaf`]: [`Leaf`], issuing (CA-signed or [`self_signed`]), parsing;
//! - [`names`]: host names as certificates hold them;
//! - [`store`]: `certs/` (file names, reading, writing, listing, cleaning);
//! - [`validity`]: times to and from certificates, the wall clock;
//! - [`info`]: what `ca info` and `ca list` print;
//! - [`trust`]: installing the root in the system store and NSS databases.
//!
//! Everything that depends on the time takes `now` as a value (only
//! [`validity::wall_clock_now`] reads the clock), so tests choose it.

mod error;

pub mod constraints;
pub mod info;
pub mod leaf;
mod names;
pub mod root;
pub mod store;
pub mod trust;
pub mod validity;

#[cfg(test)]
mod tests;

pub use error::CaError;
pub use leaf::{Leaf, self_signed};
pub use root::{DevCa, Initialized};

/// The exact line of the contract, for every `ca` subcommand but `init`
/// without a CA and for `https:ca` without one.
pub const NO_CA: &str = "No CA found. Run \"rip-server ca init\" first.";
