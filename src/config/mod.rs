//! The runtime configuration: what one app needs to run, whoever builds it,
//! and the home where rip-server keeps state between runs.
//!
//! [`ServeConfig`] is built by the command line today (`crate::cli`) and by the
//! platform API from JSON later, so nothing here knows about argv or reads
//! the environment. The defaults are the contract's (`../shared/CONTRACT.md`)
//! and live in [`defaults`]; the entry probing is in [`entry`]; `$RIP_HOME`
//! (directories, atomic private files, file locks) in [`home`]; the file by
//! which a running server can be found in [`run_file`]; the host registry
//! (`$RIP_HOME/hosts.json`, host names, host matching) in [`hosts`].
//!
//! May import: `core` (the balancer's policy type), `os` (the wall clock).

pub mod bun;
pub mod defaults;
pub mod entry;
pub mod home;
pub mod hosts;
pub mod run_file;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use bun::BunLocation;
use defaults::{MAX_WORKERS, MIN_WORKERS, SOCKET_DIR};
pub use entry::{ENTRY_PROBES, ResolvedApp, resolve_app, target_app_name};

/// A configuration word that cannot be used: the word and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The offending word, as given.
    pub word: String,
    /// What was expected instead.
    pub message: String,
}

impl ConfigError {
    /// Builds an error about `word`.
    pub fn new(word: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            word: word.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.word, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// How the manager runs the app's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A program run directly; it follows the worker protocol.
    Executable,
    /// A `.rip` module, run by Bun through the `--bun-preload` plugin.
    Rip,
    /// A `.ts`, `.tsx`, `.js` or `.mjs` module, run by Bun.
    TypeScript,
    /// The built-in example app (`builtin:hello`).
    Builtin,
}

/// Which listeners the front door opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP only.
    Http,
    /// HTTPS only.
    Https,
    /// Both.
    HttpAndHttps,
}

impl Protocol {
    /// The token value: `http`, `https` or `http+https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::HttpAndHttps => "http+https",
        }
    }

    /// Parses a token value.
    pub fn from_name(name: &str) -> Option<Protocol> {
        match name {
            "http" => Some(Protocol::Http),
            "https" => Some(Protocol::Https),
            "http+https" => Some(Protocol::HttpAndHttps),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the HTTPS certificate comes from when no `cert:`/`key:` pair is
/// given (`https:quick|ca|smart`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpsMode {
    /// A self-signed certificate, made at start and renewed before it expires.
    Quick,
    /// Leaves signed by the dev CA in `$RIP_HOME/ca/`; an error when there is none.
    Ca,
    /// The dev CA when it exists, else quick (the default).
    Smart,
}

impl HttpsMode {
    /// The token value: `quick`, `ca` or `smart`.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpsMode::Quick => "quick",
            HttpsMode::Ca => "ca",
            HttpsMode::Smart => "smart",
        }
    }

    /// Parses a token value.
    pub fn from_name(name: &str) -> Option<HttpsMode> {
        match name {
            "quick" => Some(HttpsMode::Quick),
            "ca" => Some(HttpsMode::Ca),
            "smart" => Some(HttpsMode::Smart),
            _ => None,
        }
    }
}

/// How the front door picks among free workers (`--lb-policy=lifo|rr|lc`):
/// the core's own selection policy.
pub use crate::core::balancer::Policy as LbPolicy;

/// Hot reload mode (`--hot-reload`): the core's own mode, since the core
/// decides what a change leads to.
pub use crate::core::reload::ReloadMode as HotReload;

/// Everything `rip-server <app-path> ...` needs to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// Base name of the app dir (`hello` for `builtin:hello`).
    pub app_name: String,
    /// Absolute, canonical app directory.
    pub app_dir: PathBuf,
    /// Absolute entry path (`builtin:hello` for the built-in app).
    pub entry: PathBuf,
    /// How to run the entry.
    pub entry_kind: EntryKind,
    /// Worker count, `MIN_WORKERS..=MAX_WORKERS`.
    pub workers: u32,
    /// Recycle a worker after this many requests; `None` = never (`r:0`).
    pub max_requests: Option<u64>,
    /// Recycle a worker after this age; `None` = never.
    pub max_age: Option<Duration>,
    /// Recycle a worker after this many module reloads.
    pub max_reloads: u32,
    /// The address the HTTP port listens on (`--bind`; all IPv4 interfaces by default).
    pub bind: IpAddr,
    /// HTTP port (0 = any free port).
    pub http_port: u16,
    /// The HTTPS port (0 = any free port): `Some` exactly when `protocol`
    /// is `https` or `http+https` (then 5700 unless a word gave one).
    pub https_port: Option<u16>,
    /// TLS certificate (absolute); given together with `key`, or not at all.
    pub cert: Option<PathBuf>,
    /// TLS private key (absolute).
    pub key: Option<PathBuf>,
    /// Where the certificate comes from when there is no `cert`/`key` pair.
    pub https_mode: HttpsMode,
    /// Which listeners to open.
    pub protocol: Protocol,
    /// With `protocol: https`, the HTTP port answers every request with a
    /// redirect to HTTPS; `false` (`--no-redirect-http`): HTTP is off.
    pub redirect_http: bool,
    /// `--hsts`: `Strict-Transport-Security` on HTTPS answers that lack it
    /// (never for `localhost`, `*.localhost` or an IP address).
    pub hsts: bool,
    /// A TLS client must finish its handshake within this.
    pub tls_handshake_timeout: Duration,
    /// Queue capacity (0 = never queue).
    pub max_queue: usize,
    /// How long a request may wait in the queue.
    pub queue_timeout: Duration,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Upstream read timeout.
    pub read_timeout: Duration,
    /// Hot reload mode.
    pub hot_reload: HotReload,
    /// Where Bun is, for `.ts`, `.js` and `.rip` entries.
    pub bun: BunLocation,
    /// The Bun preload script that registers the `.rip` loader (`--bun-preload`), absolute.
    pub bun_preload: Option<PathBuf>,
    /// JSON access log instead of the human one.
    pub json_logging: bool,
    /// Access log on (default) or off (`--no-access-log`).
    pub access_log: bool,
    /// Variant name, part of the default socket prefix.
    pub variant: String,
    /// Socket prefix (absolute): `<prefix>.<id>.sock`, `<prefix>.ctl.sock`.
    pub socket_prefix: PathBuf,
    /// Worker selection policy.
    pub lb_policy: LbPolicy,
    /// Accepted for compatibility, no effect: the front door keeps one
    /// keep-alive connection per worker, reused for its next request.
    pub upstream_max_idle: u32,
    /// Accepted for compatibility, no effect: one request per worker is in
    /// flight regardless, on one connection.
    pub upstream_max_conns_per_socket: u32,
    /// A client must send its request head within this.
    pub header_timeout: Duration,
    /// Bytes of a worker's response read ahead of a slow client.
    pub response_buffer: usize,
    /// A worker still busy this long after a read timeout is killed and replaced.
    pub stuck_grace: Duration,
    /// A graceful stop kills what is left after this.
    pub stop_timeout: Duration,
    /// The address of the metrics port (`--admin-bind`, loopback by default).
    pub admin_bind: IpAddr,
    /// `--metrics-port`: `GET /metrics`, `/ready` and `/live` on this port
    /// of `admin_bind` (0 = any free port); `None`: no metrics port.
    pub metrics_port: Option<u16>,
    /// `--drain-delay-ms`: after SIGTERM, `/ready` answers 503 at once and
    /// the server keeps serving this long before the graceful stop begins.
    pub drain_delay: Duration,
    /// Also retry once an idempotent request with a replayable body whose
    /// worker failed after receiving it. Off by default, because a request
    /// that crashed its worker would crash a second one.
    pub retry_sent: bool,
    /// `--lb-replicas`: front-door accept loops, each with an event loop
    /// and a `SO_REUSEPORT` socket on the same port of its own: the
    /// runtime's own loop, and a thread for each other one (1: the
    /// runtime's loop alone, no extra thread).
    pub lb_replicas: usize,
    /// Event-loop threads of the process that runs this config (1: one
    /// current-thread runtime).
    pub threads: usize,
    /// The log filter of the process that runs this config, in tracing's
    /// `EnvFilter` syntax; checked when the config is built.
    pub log_filter: String,
    /// `$RIP_HOME`, where the run file goes; `None` when there is no home
    /// (neither `RIP_HOME` nor `HOME`): the server runs but cannot be found
    /// without its app path.
    pub home: Option<PathBuf>,
}

impl ServeConfig {
    /// `<prefix>.ctl.sock`.
    pub fn control_socket(&self) -> PathBuf {
        control_socket_path(&self.socket_prefix)
    }

    /// `<prefix>.<id>.sock`.
    pub fn worker_socket(&self, id: u32) -> PathBuf {
        worker_socket_path(&self.socket_prefix, id)
    }
}

/// `/tmp/rip_<variant>_<app>`.
pub fn default_socket_prefix(variant: &str, app_name: &str) -> PathBuf {
    PathBuf::from(format!("{SOCKET_DIR}/rip_{variant}_{app_name}"))
}

/// `<prefix>.ctl.sock`.
pub fn control_socket_path(prefix: &Path) -> PathBuf {
    with_suffix(prefix, ".ctl.sock")
}

/// `<prefix>.<id>.sock`.
pub fn worker_socket_path(prefix: &Path, id: u32) -> PathBuf {
    with_suffix(prefix, &format!(".{id}.sock"))
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// `w:auto`: the number of available CPU cores, clamped to `MIN_WORKERS..=MAX_WORKERS`.
pub fn auto_workers() -> u32 {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    u32::try_from(n).unwrap_or(MAX_WORKERS).clamp(MIN_WORKERS, MAX_WORKERS)
}
