//! The flags of the serve command: one table whose entries carry their
//! spelling, their value, their variable, default and help, and the function
//! that stores them. The parser ([`super::serve`]) and the help
//! ([`super::help`]) both read it, so a flag cannot be listed without
//! working or work without being listed.

use super::env::{
    ENV_BIND, ENV_BUN_PRELOAD, ENV_CONNECT_TIMEOUT_MS, ENV_HOT_RELOAD, ENV_LB_REPLICAS, ENV_MAX_QUEUE, ENV_MAX_RELOADS,
    ENV_QUEUE_TIMEOUT_MS, ENV_READ_TIMEOUT_MS, ENV_RETRY_SENT, ENV_VARIANT,
};
use super::seen::Seen;
use super::words::{
    parse_bind, parse_hot_reload, parse_lb_policy, parse_lb_replicas, parse_max_queue, parse_max_reloads, parse_ms,
    parse_ms_or_zero, parse_path, parse_port, parse_protocol, parse_socket_prefix, parse_u32_in, parse_variant,
};
use crate::config::HotReload;
use crate::config::defaults::{MAX_DURATION_MS, MAX_LB_REPLICAS, MAX_RESPONSE_BUFFER_KB, MAX_UPSTREAM_CONNS};

/// Parses `value` and stores it; `shown` is the flag and value as typed
/// (`--max-queue=5`, `--max-queue 5`), for settings that remember their word.
/// Returns what was expected on failure.
pub(super) type SetValue = fn(seen: &mut Seen, value: &str, shown: &str) -> Result<(), String>;

/// What a flag takes.
pub(super) enum Takes {
    /// Nothing: the flag alone is the setting.
    Nothing(fn(&mut Seen)),
    /// A value, called `name` in the help.
    Value { name: &'static str, set: SetValue },
    /// A value that may be left out: `--flag=v`, `--flag v` when `v` is one
    /// of `choices`, else the flag alone calls `bare`.
    OptionalValue {
        name: &'static str,
        choices: &'static [&'static str],
        set: SetValue,
        bare: fn(&mut Seen),
    },
}

/// One flag of the serve command.
pub(super) struct Flag {
    /// `--name`.
    pub(super) name: &'static str,
    pub(super) takes: Takes,
    /// The variable read when the flag is absent.
    pub(super) env: Option<&'static str>,
    /// The default, as the help shows it (a test compares it with the constants).
    pub(super) default: &'static str,
    pub(super) help: &'static str,
    /// The accepted range, shown after the help (the millisecond flags).
    pub(super) range: Option<(u64, u64)>,
}

impl Flag {
    const fn with_env(mut self, env: &'static str) -> Flag {
        self.env = Some(env);
        self
    }

    const fn with_range(mut self, min: u64, max: u64) -> Flag {
        self.range = Some((min, max));
        self
    }
}

const fn value(
    name: &'static str,
    value: &'static str,
    set: SetValue,
    default: &'static str,
    help: &'static str,
) -> Flag {
    Flag {
        name,
        takes: Takes::Value { name: value, set },
        env: None,
        default,
        help,
        range: None,
    }
}

const fn switch(name: &'static str, set: fn(&mut Seen), default: &'static str, help: &'static str) -> Flag {
    Flag {
        name,
        takes: Takes::Nothing(set),
        env: None,
        default,
        help,
        range: None,
    }
}

/// Every flag of the serve command, in help order.
pub(super) const FLAGS: &[Flag] = &[
    value(
        "--bind",
        "ADDR",
        |s, v, _| {
            s.bind = Some(parse_bind(v)?);
            Ok(())
        },
        "0.0.0.0",
        "listen on this IP address only (127.0.0.1, ::1, ::, ...); default every IPv4 interface",
    )
    .with_env(ENV_BIND),
    value(
        "--max-queue",
        "N",
        |s, v, _| {
            s.max_queue = Some(parse_max_queue(v)?);
            Ok(())
        },
        "8192",
        "requests waiting for a free worker, 0..=1000000 (0 = never queue; 503 when full)",
    )
    .with_env(ENV_MAX_QUEUE),
    value(
        "--queue-timeout-ms",
        "MS",
        |s, v, _| {
            s.queue_timeout = Some(parse_ms(v)?);
            Ok(())
        },
        "2000",
        "longest wait in the queue before a 504",
    )
    .with_env(ENV_QUEUE_TIMEOUT_MS)
    .with_range(1, MAX_DURATION_MS),
    value(
        "--connect-timeout-ms",
        "MS",
        |s, v, _| {
            s.connect_timeout = Some(parse_ms(v)?);
            Ok(())
        },
        "200",
        "upstream (worker socket) connect timeout",
    )
    .with_env(ENV_CONNECT_TIMEOUT_MS)
    .with_range(1, MAX_DURATION_MS),
    value(
        "--read-timeout-ms",
        "MS",
        |s, v, _| {
            s.read_timeout = Some(parse_ms(v)?);
            Ok(())
        },
        "5000",
        "upstream read timeout before a 504",
    )
    .with_env(ENV_READ_TIMEOUT_MS)
    .with_range(1, MAX_DURATION_MS),
    switch(
        "--retry-sent",
        |s| s.retry_sent = true,
        "off",
        "also retry once an idempotent request with a replayable body whose worker failed after receiving it; off by default, because a request that crashed its worker would crash a second one",
    )
    .with_env(ENV_RETRY_SENT),
    Flag {
        name: "--hot-reload",
        takes: Takes::OptionalValue {
            name: "MODE",
            choices: &["none", "process", "module"],
            set: |s, v, _| {
                s.hot_reload = Some(parse_hot_reload(v)?);
                Ok(())
            },
            bare: |s| s.hot_reload = Some(HotReload::Module),
        },
        env: None,
        default: "none",
        help: "none | process (one rolling restart per burst of file changes under the app dir) | module (the workers reload the changed code in place, replaced after --max-reloads); a bare --hot-reload means module",
        range: None,
    }
    .with_env(ENV_HOT_RELOAD),
    value(
        "--reload",
        "MODE",
        |s, v, _| {
            s.hot_reload = Some(parse_hot_reload(v)?);
            Ok(())
        },
        "none",
        "same as --hot-reload",
    ),
    switch(
        "--no-hot-reload",
        |s| s.hot_reload = Some(HotReload::None),
        "",
        "same as --hot-reload=none",
    ),
    value(
        "--max-reloads",
        "N",
        |s, v, _| {
            s.max_reloads = Some(parse_max_reloads(v)?);
            Ok(())
        },
        "10",
        "also r:..,<R>r: in module mode a worker is replaced (replacement first) instead of reloaded for the Nth time; 0 = never",
    )
    .with_env(ENV_MAX_RELOADS),
    value(
        "--bun-preload",
        "PATH",
        |s, v, _| {
            s.bun_preload = Some(parse_path(v)?);
            Ok(())
        },
        "",
        "a Bun preload script (Bun.plugin) that registers the .rip loader; required for .rip entries",
    )
    .with_env(ENV_BUN_PRELOAD),
    switch(
        "--json-logging",
        |s| s.json_logging = true,
        "off",
        "JSON logs: the access log (t, app, method, path, status, totalSeconds, workerSeconds, length) and the server's own lines, one object a line",
    ),
    switch(
        "--json",
        |s| s.json_logging = true,
        "off",
        "same as --json-logging",
    ),
    switch(
        "--no-access-log",
        |s| s.no_access_log = true,
        "access log on",
        "turn the access log off",
    ),
    value(
        "--metrics-port",
        "PORT",
        |s, v, _| {
            s.metrics_port = Some(parse_port(v)?);
            Ok(())
        },
        "off",
        "serve GET /metrics (Prometheus; OpenMetrics when asked), /ready and /live on this port of --admin-bind, never on the app's port (0 = any free port)",
    ),
    value(
        "--admin-bind",
        "ADDR",
        |s, v, _| {
            s.admin_bind = Some(parse_bind(v)?);
            Ok(())
        },
        "127.0.0.1",
        "the address of the metrics port (0.0.0.0 to let a kubelet or Prometheus on another host reach it)",
    ),
    value(
        "--drain-delay-ms",
        "MS",
        |s, v, _| {
            s.drain_delay = Some(parse_ms_or_zero(v)?);
            Ok(())
        },
        "0",
        "after SIGTERM, /ready answers 503 at once and the server keeps serving this long before the graceful stop (a second SIGTERM or SIGINT stops at once)",
    )
    .with_range(0, MAX_DURATION_MS),
    value(
        "--variant",
        "NAME",
        |s, v, _| {
            s.variant = Some(parse_variant(v)?);
            Ok(())
        },
        "server",
        "variant name (letters, digits, '.', '_', '-'), part of the default socket prefix",
    )
    .with_env(ENV_VARIANT),
    value(
        "--socket-prefix",
        "PATH",
        |s, v, _| {
            s.socket_prefix = Some(parse_socket_prefix(v)?);
            Ok(())
        },
        "/tmp/rip_<variant>_<app>",
        "socket prefix: workers on <prefix>.<id>.sock, control on <prefix>.ctl.sock",
    ),
    value(
        "--lb-policy",
        "POLICY",
        |s, v, _| {
            s.lb_policy = Some(parse_lb_policy(v)?);
            Ok(())
        },
        "lifo",
        "lifo | rr (round robin) | lc (least connections)",
    ),
    value(
        "--lb-replicas",
        "N",
        |s, v, shown| {
            s.lb_replicas = Some((parse_lb_replicas(v)?, shown.to_owned()));
            Ok(())
        },
        "1",
        "front-door accept loops on the HTTP and HTTPS ports, each an event loop of its own (the first is the main one, every other a thread) with a SO_REUSEPORT socket of its own, the kernel spreading new connections among them; still one request per worker at a time; not with RIP_THREADS above 1, not for platform (docs/operations.md: when to use it)",
    )
    .with_env(ENV_LB_REPLICAS)
    .with_range(1, MAX_LB_REPLICAS as u64),
    value(
        "--upstream-max-idle",
        "N",
        |s, v, _| {
            s.upstream_max_idle = Some(parse_u32_in(v, 0, MAX_UPSTREAM_CONNS, "a non-negative integer")?);
            Ok(())
        },
        "8",
        "0..=1024, accepted for compatibility and has no effect (0 included): the front door keeps one keep-alive connection per worker and reuses it for that worker's next request",
    ),
    value(
        "--upstream-max-conns-per-socket",
        "N",
        |s, v, _| {
            s.upstream_max_conns_per_socket = Some(parse_u32_in(v, 1, MAX_UPSTREAM_CONNS, "a non-negative integer")?);
            Ok(())
        },
        "1",
        "1..=1024, accepted for compatibility and has no effect: one request per worker is in flight regardless, on one connection",
    ),
    value(
        "--https-port",
        "PORT",
        |s, v, shown| s.set_https_port(parse_port(v)?, shown),
        "5700",
        "HTTPS port, same as https:<port> or a bare integer (0 = any free port)",
    ),
    value(
        "--protocol",
        "P",
        |s, v, shown| s.set_protocol(parse_protocol(v)?, shown),
        "http",
        "same as protocol:<P>: http | https | http+https; any HTTPS word without it means https",
    ),
    value(
        "--cert",
        "PATH",
        |s, v, shown| s.set_cert(parse_path(v)?, shown),
        "",
        "TLS certificate chain (PEM), same as cert:<path>; needs --key; reloaded when the file changes",
    ),
    value(
        "--key",
        "PATH",
        |s, v, shown| s.set_key(parse_path(v)?, shown),
        "",
        "TLS private key (PEM), same as key:<path>; needs --cert",
    ),
    switch(
        "--no-redirect-http",
        |s| s.no_redirect_http = true,
        "redirect",
        "with protocol https, turn the HTTP port off instead of redirecting it to HTTPS",
    ),
    switch(
        "--hsts",
        |s| s.hsts = true,
        "off",
        "add Strict-Transport-Security (max-age=31536000; includeSubDomains) to HTTPS answers that lack it; never for localhost, *.localhost or an IP address",
    ),
    value(
        "--header-timeout-ms",
        "MS",
        |s, v, _| {
            s.header_timeout = Some(parse_ms(v)?);
            Ok(())
        },
        "10000",
        "a client must send its request head within this",
    )
    .with_range(1, MAX_DURATION_MS),
    value(
        "--response-buffer-kb",
        "KB",
        |s, v, _| {
            s.response_buffer_kb =
                Some(parse_u32_in(v, 0, MAX_RESPONSE_BUFFER_KB, "a whole number of KiB up to 1048576")?);
            Ok(())
        },
        "1024",
        "read this much of a response ahead of a slow client, freeing the worker sooner (0: none)",
    ),
    value(
        "--stuck-grace-ms",
        "MS",
        |s, v, _| {
            s.stuck_grace = Some(parse_ms_or_zero(v)?);
            Ok(())
        },
        "5000",
        "a worker still busy this long after a read timeout is killed and replaced",
    )
    .with_range(0, MAX_DURATION_MS),
    value(
        "--stop-timeout-ms",
        "MS",
        |s, v, _| {
            s.stop_timeout = Some(parse_ms_or_zero(v)?);
            Ok(())
        },
        "10000",
        "a graceful stop kills the workers still running after this",
    )
    .with_range(0, MAX_DURATION_MS),
];

/// The flag spelled `name` (without `=value`).
pub(super) fn find(name: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.name == name)
}
