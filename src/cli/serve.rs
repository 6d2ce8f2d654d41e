//! `rip-server <app-path> [tokens] [flags]`: the words of the serve command,
//! then its environment, then the [`ServeConfig`].
//!
//! Every mistake is exit status 2, named by its word. The HTTPS words follow
//! the contract: any HTTPS word (a port, a mode, `cert:`/`key:`) without
//! `protocol:` means `https`; the same kind twice is a mistake; `cert:` and
//! `key:` come together and exclude `https:<mode>`. Whether the files and
//! the dev CA exist is checked when the server starts (`server::preflight`).

use std::ffi::OsStr;
use std::path::Path;

use super::CliError;
use super::env::{
    ENV_BIND, ENV_BUN, ENV_BUN_PRELOAD, ENV_CONNECT_TIMEOUT_MS, ENV_HOT_RELOAD, ENV_LB_REPLICAS, ENV_LOG,
    ENV_MAX_QUEUE, ENV_MAX_RELOADS, ENV_PATH, ENV_PORT, ENV_QUEUE_TIMEOUT_MS, ENV_READ_TIMEOUT_MS, ENV_RELOAD_LEGACY,
    ENV_RETRY_SENT, ENV_THREADS, ENV_VARIANT, Env,
};
use super::flags::{self, Takes};
use super::seen::Seen;
use super::words::{
    Words, check_prefix_len, parse_bind, parse_digits, parse_hot_reload, parse_lb_replicas, parse_log_filter,
    parse_max_queue, parse_max_reloads, parse_ms, parse_path, parse_port, parse_protocol, parse_recycle, parse_switch,
    parse_threads, parse_variant, parse_workers, split_flag,
};
use crate::config::bun::find_bun;
use crate::config::defaults::{DEFAULT_ADMIN_BIND, DEFAULT_DRAIN_DELAY};
use crate::config::defaults::{
    DEFAULT_BIND, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_HOT_RELOAD, DEFAULT_HTTP_PORT,
    DEFAULT_HTTPS_MODE, DEFAULT_HTTPS_PORT, DEFAULT_LB_POLICY, DEFAULT_LB_REPLICAS, DEFAULT_LOG_FILTER,
    DEFAULT_MAX_AGE, DEFAULT_MAX_QUEUE, DEFAULT_MAX_RELOADS, DEFAULT_MAX_REQUESTS, DEFAULT_PROTOCOL,
    DEFAULT_QUEUE_TIMEOUT, DEFAULT_READ_TIMEOUT, DEFAULT_RESPONSE_BUFFER_KB, DEFAULT_RETRY_SENT, DEFAULT_STOP_TIMEOUT,
    DEFAULT_STUCK_GRACE, DEFAULT_THREADS, DEFAULT_TLS_HANDSHAKE_TIMEOUT, DEFAULT_UPSTREAM_MAX_CONNS_PER_SOCKET,
    DEFAULT_UPSTREAM_MAX_IDLE, DEFAULT_VARIANT,
};
use crate::config::{HttpsMode, Protocol, ServeConfig, auto_workers, default_socket_prefix, resolve_app};

/// The `name:` prefixes of the serve tokens.
pub(super) const SERVE_TOKENS: &[&str] = &["w", "r", "http", "https", "cert", "key", "protocol"];

const TOKEN_LIST: &str = "w:, r:, http:, https:, cert:, key:, protocol:";

/// The serve command's config as written.
pub(super) fn parse(args: &[String], env: &Env<'_>) -> Result<ServeConfig, CliError> {
    parse_config(args, env)
}

/// The config as written, and the first word asking for HTTPS if any (an
/// HTTPS word, or `protocol:` naming https), for callers that do not serve
/// HTTPS yet (the platform).
pub(super) fn parse_config(args: &[String], env: &Env<'_>) -> Result<ServeConfig, CliError> {
    let mut seen = Seen::default();
    let mut words = Words::new(args);
    while let Some(word) = words.next_word() {
        if words.positional_only {
            set_app(&mut seen, word)?;
            continue;
        }
        if word == "--" {
            words.positional_only = true;
            continue;
        }
        if word.starts_with('-') && word.len() > 1 {
            serve_flag(&mut seen, &mut words, word)?;
            continue;
        }
        if let Some(result) = parse_digits(word) {
            // A bare integer is the HTTPS port.
            let port = result.ok().and_then(|n| u16::try_from(n).ok()).ok_or_else(|| {
                CliError::new(
                    word,
                    "expected a port number 0..=65535 (a bare integer is the HTTPS port)",
                )
            })?;
            seen.set_https_port(port, word).map_err(|m| CliError::new(word, m))?;
            continue;
        }
        if let Some((prefix, value)) = word.split_once(':') {
            if serve_token(&mut seen, word, prefix, value)? {
                continue;
            }
            if prefix != "builtin" && !Path::new(word).exists() {
                return Err(CliError::new(
                    word,
                    format!("unknown token; expected one of {TOKEN_LIST}, or an existing app path"),
                ));
            }
        }
        set_app(&mut seen, word)?;
    }
    finish(seen, env)
}

fn set_app(seen: &mut Seen, word: &str) -> Result<(), CliError> {
    if let Some(first) = &seen.app {
        return Err(CliError::new(
            word,
            format!("expected exactly one app path, already have {first}"),
        ));
    }
    if word.is_empty() {
        return Err(CliError::new(
            "''",
            "expected an app path (a directory, an entry file or builtin:hello)",
        ));
    }
    seen.app = Some(word.to_string());
    Ok(())
}

/// Handles a `name:value` token; `Ok(false)` if `name` is not a token.
fn serve_token(seen: &mut Seen, word: &str, name: &str, value: &str) -> Result<bool, CliError> {
    let err = |m: String| CliError::new(word, m);
    match name {
        "w" => seen.workers = Some(parse_workers(value).map_err(err)?),
        "r" => {
            let r = parse_recycle(value).map_err(err)?;
            if r.requests.is_some() {
                seen.max_requests = r.requests;
            }
            if r.age.is_some() {
                seen.max_age = r.age;
            }
            if r.reloads.is_some() {
                seen.max_reloads = r.reloads;
            }
        }
        "http" => seen.http_port = Some(parse_port(value).map_err(err)?),
        "https" => match HttpsMode::from_name(value) {
            Some(mode) => seen.set_https_mode(mode, word).map_err(err)?,
            None => {
                let port = parse_port(value)
                    .map_err(|_| "expected a port number 0..=65535, or quick, ca or smart".to_string())
                    .map_err(err)?;
                seen.set_https_port(port, word).map_err(err)?;
            }
        },
        "cert" => seen.set_cert(parse_path(value).map_err(err)?, word).map_err(err)?,
        "key" => seen.set_key(parse_path(value).map_err(err)?, word).map_err(err)?,
        "protocol" => seen
            .set_protocol(parse_protocol(value).map_err(err)?, word)
            .map_err(err)?,
        _ => return Ok(false),
    }
    Ok(true)
}

fn serve_flag<'a>(seen: &mut Seen, words: &mut Words<'a>, word: &'a str) -> Result<(), CliError> {
    let (name, inline) = split_flag(word);
    let Some(flag) = flags::find(name) else {
        return Err(CliError::new(
            word,
            "unknown flag; expected one of the flags listed by --help",
        ));
    };
    match flag.takes {
        Takes::Nothing(set) => {
            if inline.is_some() {
                return Err(CliError::new(word, format!("expected {name} without a value")));
            }
            set(seen);
        }
        Takes::Value { set, .. } => {
            let (value, shown) = words.value(name, inline)?;
            set(seen, value, &shown).map_err(|m| CliError::new(shown, m))?;
        }
        Takes::OptionalValue { choices, set, bare, .. } => match words.optional_value(name, inline, choices)? {
            Some((value, shown)) => set(seen, value, &shown).map_err(|m| CliError::new(shown, m))?,
            None => bare(seen),
        },
    }
    Ok(())
}

fn finish(seen: Seen, env: &Env<'_>) -> Result<ServeConfig, CliError> {
    let Some(app_word) = seen.app else {
        return Err(CliError::new(
            "<app-path>",
            "missing; expected rip-server <app-path> [tokens] [flags], where <app-path> is a directory, an entry file or builtin:hello (see --help)",
        ));
    };

    // Environment, read only for what the command line left out.
    let http_from_env = match seen.http_port {
        Some(_) => None,
        None => env.parse(ENV_PORT, parse_port)?,
    };
    let bind = env.or(seen.bind, ENV_BIND, parse_bind, DEFAULT_BIND)?;
    let max_queue = env.or(seen.max_queue, ENV_MAX_QUEUE, parse_max_queue, DEFAULT_MAX_QUEUE)?;
    let queue_timeout = env.or(
        seen.queue_timeout,
        ENV_QUEUE_TIMEOUT_MS,
        parse_ms,
        DEFAULT_QUEUE_TIMEOUT,
    )?;
    let connect_timeout = env.or(
        seen.connect_timeout,
        ENV_CONNECT_TIMEOUT_MS,
        parse_ms,
        DEFAULT_CONNECT_TIMEOUT,
    )?;
    let read_timeout = env.or(seen.read_timeout, ENV_READ_TIMEOUT_MS, parse_ms, DEFAULT_READ_TIMEOUT)?;
    let retry_sent = env.or(
        seen.retry_sent.then_some(true),
        ENV_RETRY_SENT,
        parse_switch,
        DEFAULT_RETRY_SENT,
    )?;
    let hot_reload = match seen.hot_reload {
        Some(v) => v,
        None => match env.parse(ENV_HOT_RELOAD, parse_hot_reload)? {
            Some(v) => v,
            None => env
                .parse(ENV_RELOAD_LEGACY, parse_hot_reload)?
                .unwrap_or(DEFAULT_HOT_RELOAD),
        },
    };
    let max_reloads = env.or(
        seen.max_reloads,
        ENV_MAX_RELOADS,
        parse_max_reloads,
        DEFAULT_MAX_RELOADS,
    )?;
    let variant = env.or(seen.variant, ENV_VARIANT, parse_variant, DEFAULT_VARIANT.to_string())?;
    let bun_preload = match seen.bun_preload {
        Some(p) => Some(p),
        None => env.parse(ENV_BUN_PRELOAD, parse_path)?,
    };
    let bun = find_bun(
        env.get(ENV_BUN).as_deref().map(OsStr::new),
        env.get(ENV_PATH).as_deref().map(OsStr::new),
    );
    // Environment only: no flag sets these.
    let threads = env.or(None, ENV_THREADS, parse_threads, DEFAULT_THREADS)?;
    let (lb_replicas, replicas_word) = match seen.lb_replicas {
        Some((n, word)) => (n, word),
        None => match env.parse(ENV_LB_REPLICAS, parse_lb_replicas)? {
            Some(n) => (
                n,
                format!("{ENV_LB_REPLICAS}={}", env.get(ENV_LB_REPLICAS).unwrap_or_default()),
            ),
            None => (DEFAULT_LB_REPLICAS, String::new()),
        },
    };
    if lb_replicas > 1 && threads > 1 {
        return Err(CliError::new(
            replicas_word,
            format!(
                "expected {ENV_THREADS} unset or 1 with it (it is {threads}): each replica is a single-threaded event loop of its own, {ENV_THREADS} one multi-threaded loop; use one or the other"
            ),
        ));
    }
    let log_filter = env.or(None, ENV_LOG, parse_log_filter, DEFAULT_LOG_FILTER.to_string())?;
    let home = env.home()?;

    // Ports and protocol.
    let http_port = seen.http_port.or(http_from_env).unwrap_or(DEFAULT_HTTP_PORT);
    let protocol = match (&seen.protocol, &seen.https_word) {
        (Some((Protocol::Http, word)), Some(https_word)) => {
            return Err(CliError::new(
                https_word.as_str(),
                format!(
                    "expected no HTTPS word with {word} (it turns HTTPS off); use protocol:https or protocol:http+https"
                ),
            ));
        }
        (Some((p, _)), _) => *p,
        (None, Some(_)) => Protocol::Https,
        (None, None) => DEFAULT_PROTOCOL,
    };
    let https_port = match protocol {
        Protocol::Http => None,
        Protocol::Https | Protocol::HttpAndHttps => {
            Some(seen.https_port.as_ref().map_or(DEFAULT_HTTPS_PORT, |(p, _)| *p))
        }
    };
    let serves_http = protocol == Protocol::HttpAndHttps || !seen.no_redirect_http;
    if let Some(port) = https_port
        && port != 0
        && port == http_port
        && serves_http
    {
        let word = seen.https_port.as_ref().map_or("https", |(_, w)| w.as_str());
        return Err(CliError::new(
            word,
            format!("expected an HTTPS port different from the HTTP port {http_port}"),
        ));
    }
    let (cert, key) = match (seen.cert, seen.key) {
        (Some((cert, cert_word)), Some((key, _))) => {
            if let Some((_, mode_word)) = &seen.https_mode {
                return Err(CliError::new(
                    mode_word.as_str(),
                    format!("expected either a certificate mode or {cert_word} with a key, not both"),
                ));
            }
            (Some(cert), Some(key))
        }
        (Some((_, word)), None) => {
            return Err(CliError::new(word, "expected key:<path> (or --key) with it"));
        }
        (None, Some((_, word))) => {
            return Err(CliError::new(word, "expected cert:<path> (or --cert) with it"));
        }
        (None, None) => (None, None),
    };
    let https_mode = seen.https_mode.map_or(DEFAULT_HTTPS_MODE, |(mode, _)| mode);

    if let Some(port) = seen.metrics_port
        && port != 0
        && port == http_port
    {
        return Err(CliError::new(
            format!("--metrics-port={port}"),
            format!(
                "expected a port other than the app's HTTP port {http_port}: metrics are never served on the app's port"
            ),
        ));
    }

    // The app and its sockets.
    let app = resolve_app(&app_word)?;
    let socket_prefix = match seen.socket_prefix {
        Some(p) => p,
        None => {
            let p = default_socket_prefix(&variant, &app.app_name);
            check_prefix_len(&p).map_err(|m| CliError::new(app_word.as_str(), m))?;
            p
        }
    };

    Ok(ServeConfig {
        app_name: app.app_name,
        app_dir: app.app_dir,
        entry: app.entry,
        entry_kind: app.entry_kind,
        workers: seen.workers.unwrap_or_else(auto_workers),
        max_requests: seen.max_requests.unwrap_or(DEFAULT_MAX_REQUESTS),
        max_age: seen.max_age.unwrap_or(DEFAULT_MAX_AGE),
        max_reloads,
        bind,
        http_port,
        https_port,
        cert,
        key,
        https_mode,
        protocol,
        redirect_http: !seen.no_redirect_http,
        hsts: seen.hsts,
        tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        max_queue,
        queue_timeout,
        connect_timeout,
        read_timeout,
        hot_reload,
        bun,
        bun_preload,
        json_logging: seen.json_logging,
        access_log: !seen.no_access_log,
        variant,
        socket_prefix,
        lb_policy: seen.lb_policy.unwrap_or(DEFAULT_LB_POLICY),
        upstream_max_idle: seen.upstream_max_idle.unwrap_or(DEFAULT_UPSTREAM_MAX_IDLE),
        upstream_max_conns_per_socket: seen
            .upstream_max_conns_per_socket
            .unwrap_or(DEFAULT_UPSTREAM_MAX_CONNS_PER_SOCKET),
        header_timeout: seen.header_timeout.unwrap_or(DEFAULT_HEADER_TIMEOUT),
        response_buffer: seen.response_buffer_kb.unwrap_or(DEFAULT_RESPONSE_BUFFER_KB) as usize * 1024,
        stuck_grace: seen.stuck_grace.unwrap_or(DEFAULT_STUCK_GRACE),
        stop_timeout: seen.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT),
        admin_bind: seen.admin_bind.unwrap_or(DEFAULT_ADMIN_BIND),
        metrics_port: seen.metrics_port,
        drain_delay: seen.drain_delay.unwrap_or(DEFAULT_DRAIN_DELAY),
        retry_sent,
        lb_replicas,
        threads,
        log_filter,
        home,
    })
}
