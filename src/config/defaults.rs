//! The defaults and limits of [`ServeConfig`](super::ServeConfig): the
//! contract's numbers (`../shared/CONTRACT.md`), whoever builds the config.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::{HotReload, HttpsMode, LbPolicy, Protocol};

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
/// The listening address when neither `--bind` nor `RIP_BIND` is given:
/// every IPv4 interface.
pub const DEFAULT_BIND: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
/// The protocol when there is no `protocol:` token and no HTTPS word.
pub const DEFAULT_PROTOCOL: Protocol = Protocol::Http;
/// The HTTPS port when HTTPS is on and no word gives one.
pub const DEFAULT_HTTPS_PORT: u16 = 5700;
/// The certificate source when there is no `cert:`/`key:` pair and no `https:<mode>`.
pub const DEFAULT_HTTPS_MODE: HttpsMode = HttpsMode::Smart;
/// How long a TLS client may take to finish its handshake.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
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
/// `--upstream-max-idle` (accepted for compatibility, no effect).
pub const DEFAULT_UPSTREAM_MAX_IDLE: u32 = 8;
/// `--upstream-max-conns-per-socket` (accepted for compatibility, no effect).
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
/// `--admin-bind`: where the metrics port (and the platform's API) listens:
/// loopback, so nothing is reachable from outside unless asked for.
pub const DEFAULT_ADMIN_BIND: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// `--drain-delay-ms`: after SIGTERM, how long `/ready` answers 503 while
/// the server still serves, before the graceful stop begins.
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::ZERO;
/// `--response-buffer-kb` (our extension): how much of a worker's response
/// the front door reads ahead of a slow client, in KiB, so that the worker
/// is free once its answer fits; 0 paces the worker by the client.
pub const DEFAULT_RESPONSE_BUFFER_KB: u32 = 1024;
/// The largest `--response-buffer-kb`: 1 GiB.
pub const MAX_RESPONSE_BUFFER_KB: u32 = 1024 * 1024;
/// `--retry-sent` / `RIP_RETRY_SENT`: off, because a request that crashed
/// its worker would crash a second one.
pub const DEFAULT_RETRY_SENT: bool = false;
/// `RIP_THREADS`: one event loop (like HAProxy's `nbthread 1`: on small
/// machines cross-thread wake-ups cost more than a second core gains; see
/// docs/benchmarking.md).
pub const DEFAULT_THREADS: usize = 1;
/// The largest `RIP_THREADS`.
pub const MAX_THREADS: usize = 1024;
/// `--lb-replicas` / `RIP_LB_REPLICAS`: one front-door event loop, today's
/// server exactly (see docs/operations.md, "Front-door replicas", for the
/// measurement that chose it).
pub const DEFAULT_LB_REPLICAS: usize = 1;
/// The largest `--lb-replicas`: each replica is one thread with its own
/// event loop and its own listening socket, so more than a machine has
/// cores only adds contention.
pub const MAX_LB_REPLICAS: usize = 64;
/// `RIP_LOG`: the log filter (tracing's `EnvFilter` syntax).
pub const DEFAULT_LOG_FILTER: &str = "info";
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
