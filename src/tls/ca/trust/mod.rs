//! `ca trust` / `ca untrust`: the root in the machine's trust stores, so
//! that browsers and command-line clients accept the leaves it signs.
//!
//! Two kinds of store, each tried on its own and reported on its own line
//! (one failing does not stop the others):
//! - [`system`]: the operating system's store (Debian, Fedora or Arch
//!   layout: a file in an anchors directory, then its update command);
//! - [`nss`]: the NSS databases of Chromium and Firefox under `$HOME`,
//!   through `certutil`.
//!
//! Both are idempotent: a store that already holds this root says so and is
//! not touched. With `dry_run` nothing is written or run but read-only
//! checks; the report gives the exact commands instead.
//!
//! Tests never touch the machine's stores: [`TrustEnv::system_root`] (set
//! from `RIP_TRUST_ROOT`, for tests only) is prefixed to every system path,
//! the update commands and `certutil` are found through `PATH` (a test puts
//! recording fakes first), and NSS databases are looked for under the
//! `HOME` given.

pub mod nss;
mod run;
pub mod system;

use std::fmt;
use std::path::PathBuf;

use super::DevCa;

/// Where the stores are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustEnv {
    /// The user's home directory (`$HOME`), under which NSS databases are
    /// looked for; `None`: NSS is skipped.
    pub user_home: Option<PathBuf>,
    /// For tests only (`RIP_TRUST_ROOT`): a directory prefixed to every
    /// system store path (`<root>/usr/local/share/ca-certificates`).
    pub system_root: Option<PathBuf>,
}

/// What happened to one store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The root was added.
    Trusted,
    /// The root was there already; nothing was changed.
    AlreadyTrusted,
    /// The root was removed.
    Untrusted,
    /// The root was not there; nothing was changed.
    NotTrusted,
    /// The store does not apply here (why).
    Skipped(String),
    /// The store was tried and failed (why).
    Failed(String),
    /// `--dry-run`: these commands would run, in order.
    WouldRun(Vec<String>),
}

/// One store's line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreReport {
    /// Which store, e.g. `system store (Debian: /usr/local/share/ca-certificates)`.
    pub store: String,
    /// What happened.
    pub outcome: Outcome,
}

impl StoreReport {
    /// Whether it failed (the command then exits 1).
    pub fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed(_))
    }
}

impl fmt::Display for StoreReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let store = &self.store;
        match &self.outcome {
            Outcome::Trusted => write!(f, "{store}: trusted"),
            Outcome::AlreadyTrusted => write!(f, "{store}: already trusted"),
            Outcome::Untrusted => write!(f, "{store}: untrusted (removed)"),
            Outcome::NotTrusted => write!(f, "{store}: not trusted (nothing to remove)"),
            Outcome::Skipped(why) => write!(f, "{store}: skipped because {why}"),
            Outcome::Failed(why) => write!(f, "{store}: failed: {why}"),
            Outcome::WouldRun(commands) => write!(f, "{store}: would run: {}", commands.join(" && ")),
        }
    }
}

/// The nickname of the root in NSS databases and the file name stem in the
/// system store: the serial tells two roots apart (`ca clean --all` then
/// `ca init` makes another).
pub fn trust_name(ca: &DevCa) -> String {
    format!("rip-server development CA {}", ca.serial_hex())
}

/// Adds the root to every store that applies.
pub fn trust(ca: &DevCa, env: &TrustEnv, dry_run: bool) -> Vec<StoreReport> {
    let mut reports = vec![system::trust(ca, env, dry_run)];
    reports.extend(nss::trust(ca, env, dry_run));
    reports
}

/// Removes the root from every store that applies.
pub fn untrust(ca: &DevCa, env: &TrustEnv, dry_run: bool) -> Vec<StoreReport> {
    let mut reports = vec![system::untrust(ca, env, dry_run)];
    reports.extend(nss::untrust(ca, env, dry_run));
    reports
}

/// Where the root is trusted now, as far as read-only checks can tell
/// (for `ca info`): one report per store, `AlreadyTrusted`, `NotTrusted`,
/// `Skipped` or `Failed` (could not tell).
pub fn status(ca: &DevCa, env: &TrustEnv) -> Vec<StoreReport> {
    let mut reports = vec![system::status(ca, env)];
    reports.extend(nss::status(ca, env));
    reports
}
