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
//! The modules, each with one job and its tests:
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
//! - [`control`]: [`control::AppControl`], what the API asks of the running
//!   apps (deploy, start, stop, rolling restart, scale, reconfigure,
//!   undeploy) and what it reads back ([`control::LiveApp`]: status, pool,
//!   queue, counters); [`control::FakeControl`], an in-memory one for tests.
//! - [`logs`]: the last lines (500 by default, each at most 4 KiB) of each
//!   app's worker output, in memory only.
//! - [`dashboard`]: the live dashboard a logged-in browser gets at `/`
//!   (HTML, script and style sheet embedded in the binary, no CDN): apps,
//!   workers, queue, rates, restarts, log tail, the buttons, a stale
//!   banner when the API stops answering; it polls `/api/*` with the
//!   cookie (`/?poll=<ms>` changes the 5 s period).
//! - [`api`]: the HTTP API and the dashboard's files, one hyper service
//!   ([`api::Api::handle`], served by [`api::run`]) over the pieces
//!   above: every request authorised first, every change saved to
//!   `apps.json` before it is carried out and undone if it fails.
//! - [`live`]: [`live::RealControl`], the `AppControl` over real apps: one
//!   `server::AppServer` per app behind the platform's one front door,
//!   routed by host (the record's hosts and the `hosts.json` entries
//!   naming its directory); restart is rolling, a changed environment is
//!   applied to the new generation; the workers' output feeds the log
//!   rings.
//! - [`listeners`]: the apps' HTTP and HTTPS listeners (certificates by
//!   SNI for the hosts it routes) and the metrics port, and the front
//!   doors that share one route table.
//! - [`socket`]: the platform's own control socket (`/status`, `/restart`,
//!   `/stop`), named in its run file so `rip-server status|restart|stop`
//!   find the platform as they find a server.
//! - [`command`]: `rip-server platform` itself ([`command::run`]): token,
//!   listeners, `apps.json`, restoring the apps, following `hosts.json`
//!   (routes, and an app deployed for a directory no app serves yet), the
//!   run file, the start lines, the rolling restart of every app on
//!   SIGHUP, the graceful stop on SIGTERM / SIGINT.
//!
//! May import: everything but `cli` and `worker` (`config`, `control`,
//! `core`, `frontdoor`, `http`, `manager`, `net`, `observe`, `os`,
//! `protocol`, `runtime`, `server`, `upstream`); `cli` may import it.

pub mod api;
pub mod apps;
pub mod auth;
pub mod command;
pub mod control;
pub mod dashboard;
pub mod listeners;
pub mod live;
pub mod logs;
pub mod socket;
pub mod token;
