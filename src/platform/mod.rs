//! The platform: many apps on one machine, driven over an HTTP API and a
//! dashboard (`rip-server platform`, the contract's "Platform controller").
//!
//! What the finished feature is: a controller that serves its API and
//! dashboard on the admin address (`127.0.0.1:3000` by default) and the
//! apps' traffic, routed by host, on the HTTP port; each app with its own
//! pool, queue and guarantees. Apps and their desired state (running or
//! stopped, workers, hosts, environment) live in `$RIP_HOME/apps.json` and
//! come back after a restart or a crash of the platform. Every `/api/*`
//! request, reads included, needs the token of `$RIP_HOME/platform.token`
//! (or the dashboard's cookie); `Origin` and `Host` are checked against
//! cross-site requests and DNS rebinding; environment values are never
//! shown, dangerous environment keys and directories other users can write
//! are refused.
//!
//! **Built so far: the foundations only**, each a module with one job and
//! its tests, none of it running yet:
//!
//! - [`token`]: the API token: created on first use (32 random bytes from
//!   the OS, hex, 0600 in a 0700 home), read back later, refused when
//!   others can read it or it is not a regular file; the constant-time
//!   comparison.
//! - [`auth`]: the sans-IO decision for one request (allow, 401, 403 and
//!   why, or the login redirect that sets the cookie): token or cookie,
//!   `/?token=` login, open `/health`, `Origin` and `Host` checks.
//! - [`apps`]: the app records and their rules (names, environment keys,
//!   workers, directory ownership and mode, one app per name and per
//!   host), the API's view (environment keys, never values), the API's
//!   request bodies, and `apps.json` (atomic 0600 saves; a corrupt file is
//!   reported with one line and never overwritten).
//!
//! **Not built yet** (the next steps of issue 15; do not mistake these
//! foundations for the feature): the HTTP API server and its routes, the
//! dashboard page, routing the apps' traffic by host to one pool per app,
//! the per-app log ring buffer, applying `hosts.json`, and the
//! `rip-server platform` command itself.
//!
//! May import: everything but `cli` and `worker` (`config`, `control`,
//! `core`, `frontdoor`, `http`, `manager`, `net`, `observe`, `os`,
//! `protocol`, `runtime`, `server`, `upstream`); `cli` may import it.

pub mod apps;
pub mod auth;
pub mod token;
