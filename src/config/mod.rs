//! The runtime configuration: what one app needs to run, whoever builds it.
//!
//! [`ServeConfig`] is built by the command line today (`crate::cli`) and by the
//! platform API from JSON later, so nothing here knows about argv. The
//! defaults are the contract's (`../shared/CONTRACT.md`); the entry probing
//! is in [`entry`].

pub mod entry;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

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

// ---------------------------------------------------------------------------
// Defaults and limits
// ---------------------------------------------------------------------------

/// `w:` when absent: one worker per available CPU core.
pub const DEFAULT_WORKERS_SPEC: &str = "auto";
/// The smallest worker count `w:` accepts.
pub const MIN_WORKERS: u32 = 1;
/// The largest worker count `w:` (and `w:auto`, after clamping) yields.
pub const MAX_WORKERS: u32 = 1024;
/// `r:<N>`: recycle a worker after this many requests.
pub const DEFAULT_MAX_REQUESTS: Option<u64> = Some(10_000);
/// `r:..,<S>s`: recycle a worker after this age (none by default).
pub const DEFAULT_MAX_AGE: Option<Duration> = None;
/// `r:..,<R>r` / `--max-reloads` / `RIP_MAX_RELOADS`.
pub const DEFAULT_MAX_RELOADS: u32 = 10;
/// The HTTP port when there is neither an `http:` token nor `PORT`.
pub const DEFAULT_HTTP_PORT: u16 = 5002;
/// The protocol when there is no `protocol:` token and no HTTPS port.
pub const DEFAULT_PROTOCOL: Protocol = Protocol::Http;
/// `--max-queue` / `RIP_MAX_QUEUE`.
pub const DEFAULT_MAX_QUEUE: usize = 8192;
/// The largest `--max-queue` accepted.
pub const MAX_QUEUE_LIMIT: usize = 1_000_000;
/// `--queue-timeout-ms` / `RIP_QUEUE_TIMEOUT_MS`.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_millis(2000);
/// `--connect-timeout-ms` / `RIP_CONNECT_TIMEOUT_MS`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
/// `--read-timeout-ms` / `RIP_READ_TIMEOUT_MS`.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_millis(5000);
/// `--hot-reload` / `--reload` / `RIP_HOT_RELOAD`.
pub const DEFAULT_HOT_RELOAD: HotReload = HotReload::None;
/// `--variant` / `RIP_VARIANT`.
pub const DEFAULT_VARIANT: &str = "server";
/// `--lb-policy`.
pub const DEFAULT_LB_POLICY: LbPolicy = LbPolicy::Lifo;
/// `--upstream-max-idle`: idle keep-alive connections kept per worker socket.
pub const DEFAULT_UPSTREAM_MAX_IDLE: u32 = 8;
/// `--upstream-max-conns-per-socket`.
pub const DEFAULT_UPSTREAM_MAX_CONNS_PER_SOCKET: u32 = 1;
/// The largest `--upstream-max-idle` / `--upstream-max-conns-per-socket`.
pub const MAX_UPSTREAM_CONNS: u32 = 1024;
/// `--header-timeout-ms` (our extension): a client must send its request head within this.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_millis(10_000);
/// `--stuck-grace-ms` (our extension): how long a worker that timed out may
/// keep working before the manager kills it.
pub const DEFAULT_STUCK_GRACE: Duration = Duration::from_millis(5000);
/// `--stop-timeout-ms` (our extension): how long a graceful stop may take
/// before the remaining workers are killed.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_millis(10_000);
/// `--response-buffer-kb` (our extension): how much of a worker's response
/// the front door reads ahead of a slow client, in KiB, so that the worker
/// is free once its answer fits; 0 paces the worker by the client.
pub const DEFAULT_RESPONSE_BUFFER_KB: u32 = 1024;
/// The largest `--response-buffer-kb`: 1 GiB.
pub const MAX_RESPONSE_BUFFER_KB: u32 = 1024 * 1024;
/// The longest duration any flag or token accepts: 365 days, in milliseconds.
pub const MAX_DURATION_MS: u64 = 365 * 24 * 60 * 60 * 1000;
/// The directory of default socket prefixes: `/tmp/rip_<variant>_<app>`.
pub const SOCKET_DIR: &str = "/tmp";
/// The longest socket prefix, in bytes: a Unix socket path holds at most 107
/// bytes, and the longest name we derive from the prefix is a handover
/// socket `<prefix>.1023.r99.sock` (14 bytes more).
pub const MAX_SOCKET_PREFIX_LEN: usize = 93;
/// The built-in example app's app path.
pub const BUILTIN_HELLO: &str = "builtin:hello";

/// `PORT`: the HTTP port when there is no `http:` token.
pub const ENV_PORT: &str = "PORT";
/// `RIP_BIND`: the address to listen on when there is no `--bind`.
pub const ENV_BIND: &str = "RIP_BIND";
/// The listening address when neither `--bind` nor `RIP_BIND` is given:
/// every IPv4 interface.
pub const DEFAULT_BIND: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
/// `RIP_MAX_QUEUE`.
pub const ENV_MAX_QUEUE: &str = "RIP_MAX_QUEUE";
/// `RIP_QUEUE_TIMEOUT_MS`.
pub const ENV_QUEUE_TIMEOUT_MS: &str = "RIP_QUEUE_TIMEOUT_MS";
/// `RIP_CONNECT_TIMEOUT_MS`.
pub const ENV_CONNECT_TIMEOUT_MS: &str = "RIP_CONNECT_TIMEOUT_MS";
/// `RIP_READ_TIMEOUT_MS`.
pub const ENV_READ_TIMEOUT_MS: &str = "RIP_READ_TIMEOUT_MS";
/// `RIP_HOT_RELOAD`.
pub const ENV_HOT_RELOAD: &str = "RIP_HOT_RELOAD";
/// `RIP_RELOAD`: the older name of `RIP_HOT_RELOAD`, read only when that is unset.
pub const ENV_RELOAD_LEGACY: &str = "RIP_RELOAD";
/// `RIP_MAX_RELOADS`.
pub const ENV_MAX_RELOADS: &str = "RIP_MAX_RELOADS";
/// `RIP_VARIANT`.
pub const ENV_VARIANT: &str = "RIP_VARIANT";

/// How the manager runs the app's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A program run directly; it follows the worker protocol.
    Executable,
    /// A `.rip` module.
    Rip,
    /// A `.ts` module.
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

/// How the front door picks among free workers (`--lb-policy=lifo|rr|lc`):
/// the core's own selection policy.
pub use crate::core::balancer::Policy as LbPolicy;

/// Hot reload mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HotReload {
    /// `none`: no automatic reloads.
    None,
    /// `process`: rolling restart when the entry changes.
    Process,
    /// `module`: the worker reloads its module in place.
    Module,
}

impl HotReload {
    /// The flag value (also the value of `RIP_HOT_RELOAD` given to workers).
    pub fn as_str(self) -> &'static str {
        match self {
            HotReload::None => "none",
            HotReload::Process => "process",
            HotReload::Module => "module",
        }
    }

    /// Parses a flag value.
    pub fn from_name(name: &str) -> Option<HotReload> {
        match name {
            "none" => Some(HotReload::None),
            "process" => Some(HotReload::Process),
            "module" => Some(HotReload::Module),
            _ => None,
        }
    }
}

impl fmt::Display for HotReload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// HTTPS port, if one was given.
    pub https_port: Option<u16>,
    /// TLS certificate (absolute).
    pub cert: Option<PathBuf>,
    /// TLS private key (absolute).
    pub key: Option<PathBuf>,
    /// Which listeners to open.
    pub protocol: Protocol,
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
    /// Idle keep-alive connections kept per worker socket.
    pub upstream_max_idle: u32,
    /// Accepted for compatibility; the front door keeps one request in flight per worker regardless.
    pub upstream_max_conns_per_socket: u32,
    /// A client must send its request head within this.
    pub header_timeout: Duration,
    /// Bytes of a worker's response read ahead of a slow client.
    pub response_buffer: usize,
    /// A worker still busy this long after a read timeout is killed and replaced.
    pub stuck_grace: Duration,
    /// A graceful stop kills what is left after this.
    pub stop_timeout: Duration,
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
