//! The command line: `rip-server <app-path> [tokens] [flags]` and the
//! `status` / `restart` / `stop` / `scale` subcommands.
//!
//! [`parse`] is pure in the sense that matters to `main`: it never prints,
//! never exits and reads the environment only through the function it is
//! given. It does look at the filesystem (to resolve the app entry), at the
//! current directory and at the number of CPUs (`w:auto`).
//!
//! Every mistake is a [`CliError`] naming the offending word and what was
//! expected; its `Display` is exactly one line,
//! `rip-server: <word>: <what was expected>`.

mod help;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::config::*;
pub use help::{help_text, version_text};

// ---------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------

/// A command-line mistake: the offending word and what was expected.
///
/// `Display` is one line: `rip-server: <word>: <message>`. Control characters
/// in either part are escaped, so the line stays one line whatever the user typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// The offending word, as typed (or `NAME=value` for an environment variable).
    pub word: String,
    /// What was expected instead.
    pub message: String,
}

impl CliError {
    /// Builds an error about `word`.
    pub fn new(word: impl Into<String>, message: impl Into<String>) -> CliError {
        CliError {
            word: word.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rip-server: {}: {}", one_line(&self.word), one_line(&self.message))
    }
}

impl std::error::Error for CliError {}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> CliError {
        CliError::new(e.word, e.message)
    }
}

/// Escapes control characters so that the text prints on one line.
fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run an app: the front door plus its workers.
    Serve(Box<ServeConfig>),
    /// Print the running server's status (through its control socket).
    Status(Target),
    /// Rolling restart of the running server's workers.
    Restart(Target),
    /// Graceful stop of the running server.
    Stop(Target),
    /// Change the running server's worker count.
    Scale {
        /// Which server.
        target: Target,
        /// By how much, or to what.
        change: ScaleChange,
    },
    /// Hidden: run the built-in example worker (`worker --builtin`).
    Worker(WorkerArgs),
    /// `-h` / `--help` / `help`: the full help text.
    Help(String),
    /// `-V` / `--version`: one line, `rip-server <version>`.
    Version(String),
}

/// The argument of `scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleChange {
    /// `+N` / `-N`: add or remove N workers (never zero).
    By(i32),
    /// `N`: set the worker count to N (`MIN_WORKERS..=MAX_WORKERS`).
    To(u32),
}

/// A running server, found through its control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The socket prefix; the control socket is `<prefix>.ctl.sock`.
    pub socket_prefix: PathBuf,
}

impl Target {
    /// `<prefix>.ctl.sock`.
    pub fn control_socket(&self) -> PathBuf {
        control_socket_path(&self.socket_prefix)
    }
}

/// Arguments of the hidden `worker` subcommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerArgs {
    /// `--socket PATH`; `None` means: use `RIP_SOCKET` from the worker protocol.
    pub socket: Option<PathBuf>,
}

// ---------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------

/// Parses the arguments (without `argv[0]`). `env` reads an environment
/// variable; an unset or empty variable counts as absent.
pub fn parse(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<Command, CliError> {
    // Help and version win wherever they appear (before a `--`).
    for arg in args {
        match arg.as_str() {
            "--" => break,
            "-h" | "--help" => return Ok(Command::Help(help_text())),
            "-V" | "--version" => return Ok(Command::Version(version_text())),
            _ => {}
        }
    }
    let env = Env(env);
    match args.first().map(String::as_str) {
        Some("help") => Ok(Command::Help(help_text())),
        Some("status") => Ok(Command::Status(parse_target("status", &args[1..], &env)?)),
        Some("restart") => Ok(Command::Restart(parse_target("restart", &args[1..], &env)?)),
        Some("stop") => Ok(Command::Stop(parse_target("stop", &args[1..], &env)?)),
        Some("scale") => parse_scale(&args[1..], &env),
        Some("worker") => parse_worker(&args[1..]).map(Command::Worker),
        _ => parse_serve(args, &env).map(|c| Command::Serve(Box::new(c))),
    }
}

/// The environment, with empty values read as unset.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.is_empty())
    }

    /// Reads and parses a variable; a malformed value is an error naming `NAME=value`.
    fn parse<T>(&self, name: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Option<T>, CliError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => parse(&v).map(Some).map_err(|m| CliError::new(format!("{name}={v}"), m)),
        }
    }
}

// ---------------------------------------------------------------------------
// Flags
// ---------------------------------------------------------------------------

/// The flags of the serve command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlagId {
    MaxQueue,
    QueueTimeoutMs,
    ConnectTimeoutMs,
    ReadTimeoutMs,
    HotReload,
    NoHotReload,
    MaxReloads,
    JsonLogging,
    NoAccessLog,
    Variant,
    SocketPrefix,
    LbPolicy,
    UpstreamMaxIdle,
    UpstreamMaxConnsPerSocket,
    HttpsPort,
    Cert,
    Key,
    HeaderTimeoutMs,
    ResponseBufferKb,
    StuckGraceMs,
    StopTimeoutMs,
    Bind,
}

/// One flag: its spelling, its value (if it takes one), its variable and help.
struct FlagSpec {
    name: &'static str,
    id: FlagId,
    /// The value's name in the help (`N`, `PATH`, ...); `None` for a boolean flag.
    value: Option<&'static str>,
    env: Option<&'static str>,
    default: &'static str,
    help: &'static str,
}

const fn flag(
    name: &'static str,
    id: FlagId,
    value: Option<&'static str>,
    env: Option<&'static str>,
    default: &'static str,
    help: &'static str,
) -> FlagSpec {
    FlagSpec {
        name,
        id,
        value,
        env,
        default,
        help,
    }
}

/// Every flag of the serve command, in help order.
const FLAGS: &[FlagSpec] = &[
    flag(
        "--bind",
        FlagId::Bind,
        Some("ADDR"),
        Some(ENV_BIND),
        "0.0.0.0",
        "listen on this IP address only (127.0.0.1, ::1, ::, ...); default every IPv4 interface",
    ),
    flag(
        "--max-queue",
        FlagId::MaxQueue,
        Some("N"),
        Some(ENV_MAX_QUEUE),
        "8192",
        "requests waiting for a free worker, 0..=1000000 (0 = never queue; 503 when full)",
    ),
    flag(
        "--queue-timeout-ms",
        FlagId::QueueTimeoutMs,
        Some("MS"),
        Some(ENV_QUEUE_TIMEOUT_MS),
        "2000",
        "longest wait in the queue before a 504",
    ),
    flag(
        "--connect-timeout-ms",
        FlagId::ConnectTimeoutMs,
        Some("MS"),
        Some(ENV_CONNECT_TIMEOUT_MS),
        "200",
        "upstream (worker socket) connect timeout",
    ),
    flag(
        "--read-timeout-ms",
        FlagId::ReadTimeoutMs,
        Some("MS"),
        Some(ENV_READ_TIMEOUT_MS),
        "5000",
        "upstream read timeout before a 504",
    ),
    flag(
        "--hot-reload",
        FlagId::HotReload,
        Some("MODE"),
        Some(ENV_HOT_RELOAD),
        "none",
        "none | process (rolling restart when the entry changes) | module (reload in the worker)",
    ),
    flag(
        "--reload",
        FlagId::HotReload,
        Some("MODE"),
        None,
        "none",
        "same as --hot-reload",
    ),
    flag(
        "--no-hot-reload",
        FlagId::NoHotReload,
        None,
        None,
        "",
        "same as --hot-reload=none",
    ),
    flag(
        "--max-reloads",
        FlagId::MaxReloads,
        Some("N"),
        Some(ENV_MAX_RELOADS),
        "10",
        "recycle a worker after N module reloads (also r:..,<R>r)",
    ),
    flag(
        "--json-logging",
        FlagId::JsonLogging,
        None,
        None,
        "off",
        "JSON access log (t, app, method, path, status, totalSeconds, workerSeconds, length)",
    ),
    flag(
        "--no-access-log",
        FlagId::NoAccessLog,
        None,
        None,
        "access log on",
        "turn the access log off",
    ),
    flag(
        "--variant",
        FlagId::Variant,
        Some("NAME"),
        Some(ENV_VARIANT),
        "server",
        "variant name (letters, digits, '.', '_', '-'), part of the default socket prefix",
    ),
    flag(
        "--socket-prefix",
        FlagId::SocketPrefix,
        Some("PATH"),
        None,
        "/tmp/rip_<variant>_<app>",
        "socket prefix: workers on <prefix>.<id>.sock, control on <prefix>.ctl.sock",
    ),
    flag(
        "--lb-policy",
        FlagId::LbPolicy,
        Some("POLICY"),
        None,
        "lifo",
        "lifo | rr (round robin) | lc (least connections)",
    ),
    flag(
        "--upstream-max-idle",
        FlagId::UpstreamMaxIdle,
        Some("N"),
        None,
        "8",
        "idle keep-alive connections kept per worker socket, 0..=1024",
    ),
    flag(
        "--upstream-max-conns-per-socket",
        FlagId::UpstreamMaxConnsPerSocket,
        Some("N"),
        None,
        "1",
        "accepted, 1..=1024; one request per worker is in flight regardless",
    ),
    flag(
        "--https-port",
        FlagId::HttpsPort,
        Some("PORT"),
        None,
        "none",
        "HTTPS port, same as https:<port>",
    ),
    flag(
        "--cert",
        FlagId::Cert,
        Some("PATH"),
        None,
        "none",
        "TLS certificate (PEM), same as cert:<path>",
    ),
    flag(
        "--key",
        FlagId::Key,
        Some("PATH"),
        None,
        "none",
        "TLS private key (PEM), same as key:<path>",
    ),
    flag(
        "--header-timeout-ms",
        FlagId::HeaderTimeoutMs,
        Some("MS"),
        None,
        "10000",
        "a client must send its request head within this",
    ),
    flag(
        "--response-buffer-kb",
        FlagId::ResponseBufferKb,
        Some("KB"),
        None,
        "1024",
        "read this much of a response ahead of a slow client, freeing the worker sooner (0: none)",
    ),
    flag(
        "--stuck-grace-ms",
        FlagId::StuckGraceMs,
        Some("MS"),
        None,
        "5000",
        "a worker still busy this long after a read timeout is killed and replaced",
    ),
    flag(
        "--stop-timeout-ms",
        FlagId::StopTimeoutMs,
        Some("MS"),
        None,
        "10000",
        "a graceful stop kills the workers still running after this",
    ),
];

fn find_flag(name: &str) -> Option<&'static FlagSpec> {
    FLAGS.iter().find(|f| f.name == name)
}

/// Walks the words, handing out flag values.
struct Words<'a> {
    words: &'a [String],
    next: usize,
    /// After `--`, every word is an app path.
    positional_only: bool,
}

impl<'a> Words<'a> {
    fn new(words: &'a [String]) -> Words<'a> {
        Words {
            words,
            next: 0,
            positional_only: false,
        }
    }

    fn next_word(&mut self) -> Option<&'a str> {
        let w = self.words.get(self.next)?;
        self.next += 1;
        Some(w.as_str())
    }

    /// The value of a flag: after `=`, or the next word.
    /// Returns the value and the word(s) to name in an error.
    fn value(&mut self, name: &str, inline: Option<&'a str>) -> Result<(&'a str, String), CliError> {
        let missing = || CliError::new(name, format!("expected a value: {name}=<value> or {name} <value>"));
        match inline {
            Some("") => Err(CliError::new(format!("{name}="), "expected a value after '='")),
            Some(v) => Ok((v, format!("{name}={v}"))),
            None => match self.words.get(self.next) {
                Some(v) if !v.is_empty() && !v.starts_with("--") => {
                    self.next += 1;
                    Ok((v.as_str(), format!("{name} {v}")))
                }
                _ => Err(missing()),
            },
        }
    }
}

/// Splits `--name=value` into `("--name", Some("value"))`.
fn split_flag(word: &str) -> (&str, Option<&str>) {
    match word.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (word, None),
    }
}

// ---------------------------------------------------------------------------
// Value parsers: each returns what was expected on failure.
// ---------------------------------------------------------------------------

/// A decimal integer of ASCII digits only (no sign, no spaces).
fn parse_digits(s: &str) -> Option<Result<u64, ()>> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u64>().map_err(|_| ()))
}

fn parse_uint_in(s: &str, min: u64, max: u64, what: &str) -> Result<u64, String> {
    let expected = || format!("expected {what} in {min}..={max}");
    match parse_digits(s) {
        Some(Ok(n)) if (min..=max).contains(&n) => Ok(n),
        _ => Err(expected()),
    }
}

fn parse_port(s: &str) -> Result<u16, String> {
    parse_uint_in(s, 0, u64::from(u16::MAX), "a port number").map(|n| n as u16)
}

/// An IP address to listen on; `[::1]` is taken as `::1`.
fn parse_bind(s: &str) -> Result<IpAddr, String> {
    let bare = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(s);
    bare.parse().map_err(|_| {
        "expected an IP address to listen on, such as 127.0.0.1, 0.0.0.0, ::1 or :: (not a host name or a port)"
            .to_string()
    })
}

fn parse_max_queue(s: &str) -> Result<usize, String> {
    parse_uint_in(s, 0, MAX_QUEUE_LIMIT as u64, "a non-negative integer").map(|n| n as usize)
}

fn parse_ms(s: &str) -> Result<Duration, String> {
    parse_uint_in(s, 1, MAX_DURATION_MS, "a whole number of milliseconds").map(Duration::from_millis)
}

fn parse_ms_or_zero(s: &str) -> Result<Duration, String> {
    parse_uint_in(s, 0, MAX_DURATION_MS, "a whole number of milliseconds").map(Duration::from_millis)
}

fn parse_u32_in(s: &str, min: u32, max: u32, what: &str) -> Result<u32, String> {
    parse_uint_in(s, u64::from(min), u64::from(max), what).map(|n| n as u32)
}

fn parse_max_reloads(s: &str) -> Result<u32, String> {
    parse_u32_in(s, 0, u32::MAX, "a non-negative integer")
}

fn parse_hot_reload(s: &str) -> Result<HotReload, String> {
    HotReload::from_name(s).ok_or_else(|| "expected none, process or module".to_string())
}

fn parse_lb_policy(s: &str) -> Result<LbPolicy, String> {
    LbPolicy::from_name(s).ok_or_else(|| "expected lifo, rr or lc".to_string())
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    Protocol::from_name(s).ok_or_else(|| "expected http, https or http+https".to_string())
}

fn parse_variant(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        && s != "."
        && s != "..";
    if ok {
        Ok(s.to_string())
    } else {
        Err("expected a variant name of 1..=64 letters, digits, '.', '_' or '-'".to_string())
    }
}

fn parse_workers(s: &str) -> Result<u32, String> {
    if s == "auto" {
        return Ok(auto_workers());
    }
    parse_u32_in(s, MIN_WORKERS, MAX_WORKERS, "a worker count")
        .map_err(|_| format!("expected a worker count {MIN_WORKERS}..={MAX_WORKERS} or auto"))
}

/// A path value made absolute (it need not exist).
fn parse_path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("expected a path".to_string());
    }
    std::path::absolute(s).map_err(|e| format!("expected a usable path ({e})"))
}

/// A socket prefix: absolute, not a directory, short enough for socket names.
fn parse_socket_prefix(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() || s.ends_with('/') {
        return Err("expected a path prefix such as /tmp/rip_server_myapp (not a directory)".to_string());
    }
    let p = parse_path(s)?;
    check_prefix_len(&p)?;
    Ok(p)
}

fn check_prefix_len(p: &Path) -> Result<(), String> {
    let len = p.as_os_str().len();
    if len > MAX_SOCKET_PREFIX_LEN {
        return Err(format!(
            "expected a socket prefix of at most {MAX_SOCKET_PREFIX_LEN} bytes (Unix socket paths are short), got {len}: {}; use a shorter --socket-prefix",
            p.display()
        ));
    }
    Ok(())
}

/// The parts of an `r:` token.
#[derive(Debug, Default, PartialEq, Eq)]
struct Recycle {
    requests: Option<Option<u64>>,
    age: Option<Option<Duration>>,
    reloads: Option<u32>,
}

/// `r:<N>[,<S>s][,<R>r]`: parts in any order, each at most once; `N` and `S`
/// of 0 mean "never". `S` also takes `m` and `h` suffixes.
fn parse_recycle(s: &str) -> Result<Recycle, String> {
    let expected = || {
        format!(
            "expected r:<requests>[,<seconds>s][,<reloads>r] (e.g. r:10000,3600s,10r; 0 = never; seconds up to {})",
            MAX_DURATION_MS / 1000
        )
    };
    let mut out = Recycle::default();
    for part in s.split(',') {
        let (digits, unit) = match part.as_bytes().last() {
            Some(b) if b.is_ascii_alphabetic() => (&part[..part.len() - 1], Some(*b)),
            _ => (part, None),
        };
        let n = match parse_digits(digits) {
            Some(Ok(n)) => n,
            _ => return Err(expected()),
        };
        match unit {
            None if out.requests.is_none() => out.requests = Some((n > 0).then_some(n)),
            Some(u @ (b's' | b'm' | b'h')) if out.age.is_none() => {
                let mult = match u {
                    b's' => 1,
                    b'm' => 60,
                    _ => 3600,
                };
                let secs = n.checked_mul(mult).filter(|s| *s <= MAX_DURATION_MS / 1000);
                let Some(secs) = secs else {
                    return Err(expected());
                };
                out.age = Some((secs > 0).then(|| Duration::from_secs(secs)));
            }
            Some(b'r') if out.reloads.is_none() => {
                out.reloads = Some(u32::try_from(n).map_err(|_| expected())?);
            }
            _ => return Err(expected()),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Serve
// ---------------------------------------------------------------------------

/// Settings seen on the command line; `None` = not given.
#[derive(Default)]
struct Seen {
    app: Option<String>,
    workers: Option<u32>,
    max_requests: Option<Option<u64>>,
    max_age: Option<Option<Duration>>,
    max_reloads: Option<u32>,
    http_port: Option<u16>,
    bind: Option<IpAddr>,
    /// The port and the word that gave it.
    https_port: Option<(u16, String)>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    protocol: Option<(Protocol, String)>,
    max_queue: Option<usize>,
    queue_timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    hot_reload: Option<HotReload>,
    json_logging: bool,
    no_access_log: bool,
    variant: Option<String>,
    socket_prefix: Option<PathBuf>,
    lb_policy: Option<LbPolicy>,
    upstream_max_idle: Option<u32>,
    upstream_max_conns_per_socket: Option<u32>,
    header_timeout: Option<Duration>,
    response_buffer_kb: Option<u32>,
    stuck_grace: Option<Duration>,
    stop_timeout: Option<Duration>,
}

/// The `name:` prefixes of the serve tokens.
const SERVE_TOKENS: &[&str] = &["w", "r", "http", "https", "cert", "key", "protocol"];

const TOKEN_LIST: &str = "w:, r:, http:, https:, cert:, key:, protocol:";

fn parse_serve(args: &[String], env: &Env<'_>) -> Result<ServeConfig, CliError> {
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
            seen.https_port = Some((port, word.to_string()));
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
    finish_serve(seen, env)
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
        "https" => seen.https_port = Some((parse_port(value).map_err(err)?, word.to_string())),
        "cert" => seen.cert = Some(parse_path(value).map_err(err)?),
        "key" => seen.key = Some(parse_path(value).map_err(err)?),
        "protocol" => seen.protocol = Some((parse_protocol(value).map_err(err)?, word.to_string())),
        _ => return Ok(false),
    }
    Ok(true)
}

fn serve_flag<'a>(seen: &mut Seen, words: &mut Words<'a>, word: &'a str) -> Result<(), CliError> {
    let (name, inline) = split_flag(word);
    let Some(spec) = find_flag(name) else {
        return Err(CliError::new(
            word,
            "unknown flag; expected one of the flags listed by --help",
        ));
    };
    if spec.value.is_none() {
        if inline.is_some() {
            return Err(CliError::new(word, format!("expected {name} without a value")));
        }
        match spec.id {
            FlagId::JsonLogging => seen.json_logging = true,
            FlagId::NoAccessLog => seen.no_access_log = true,
            FlagId::NoHotReload => seen.hot_reload = Some(HotReload::None),
            _ => unreachable!("boolean flag table and match disagree"),
        }
        return Ok(());
    }
    let (value, shown) = words.value(name, inline)?;
    let err = |m: String| CliError::new(shown.clone(), m);
    match spec.id {
        FlagId::MaxQueue => seen.max_queue = Some(parse_max_queue(value).map_err(err)?),
        FlagId::QueueTimeoutMs => seen.queue_timeout = Some(parse_ms(value).map_err(err)?),
        FlagId::ConnectTimeoutMs => seen.connect_timeout = Some(parse_ms(value).map_err(err)?),
        FlagId::ReadTimeoutMs => seen.read_timeout = Some(parse_ms(value).map_err(err)?),
        FlagId::HotReload => seen.hot_reload = Some(parse_hot_reload(value).map_err(err)?),
        FlagId::MaxReloads => seen.max_reloads = Some(parse_max_reloads(value).map_err(err)?),
        FlagId::Variant => seen.variant = Some(parse_variant(value).map_err(err)?),
        FlagId::SocketPrefix => {
            seen.socket_prefix = Some(parse_socket_prefix(value).map_err(err)?);
        }
        FlagId::LbPolicy => seen.lb_policy = Some(parse_lb_policy(value).map_err(err)?),
        FlagId::UpstreamMaxIdle => {
            seen.upstream_max_idle =
                Some(parse_u32_in(value, 0, MAX_UPSTREAM_CONNS, "a non-negative integer").map_err(err)?);
        }
        FlagId::UpstreamMaxConnsPerSocket => {
            seen.upstream_max_conns_per_socket =
                Some(parse_u32_in(value, 1, MAX_UPSTREAM_CONNS, "a non-negative integer").map_err(err)?);
        }
        FlagId::HttpsPort => seen.https_port = Some((parse_port(value).map_err(err)?, shown.clone())),
        FlagId::Cert => seen.cert = Some(parse_path(value).map_err(err)?),
        FlagId::Key => seen.key = Some(parse_path(value).map_err(err)?),
        FlagId::HeaderTimeoutMs => seen.header_timeout = Some(parse_ms(value).map_err(err)?),
        FlagId::ResponseBufferKb => {
            seen.response_buffer_kb = Some(
                parse_u32_in(value, 0, MAX_RESPONSE_BUFFER_KB, "a whole number of KiB up to 1048576").map_err(err)?,
            )
        }
        FlagId::Bind => seen.bind = Some(parse_bind(value).map_err(err)?),
        FlagId::StuckGraceMs => seen.stuck_grace = Some(parse_ms_or_zero(value).map_err(err)?),
        FlagId::StopTimeoutMs => seen.stop_timeout = Some(parse_ms_or_zero(value).map_err(err)?),
        FlagId::JsonLogging | FlagId::NoAccessLog | FlagId::NoHotReload => {
            unreachable!("value flag table and match disagree")
        }
    }
    Ok(())
}

fn finish_serve(seen: Seen, env: &Env<'_>) -> Result<ServeConfig, CliError> {
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
    let bind = or_env(seen.bind, env, ENV_BIND, parse_bind, DEFAULT_BIND)?;
    let max_queue = match seen.max_queue {
        Some(v) => v,
        None => env.parse(ENV_MAX_QUEUE, parse_max_queue)?.unwrap_or(DEFAULT_MAX_QUEUE),
    };
    let queue_timeout = or_env(
        seen.queue_timeout,
        env,
        ENV_QUEUE_TIMEOUT_MS,
        parse_ms,
        DEFAULT_QUEUE_TIMEOUT,
    )?;
    let connect_timeout = or_env(
        seen.connect_timeout,
        env,
        ENV_CONNECT_TIMEOUT_MS,
        parse_ms,
        DEFAULT_CONNECT_TIMEOUT,
    )?;
    let read_timeout = or_env(
        seen.read_timeout,
        env,
        ENV_READ_TIMEOUT_MS,
        parse_ms,
        DEFAULT_READ_TIMEOUT,
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
    let max_reloads = or_env(
        seen.max_reloads,
        env,
        ENV_MAX_RELOADS,
        parse_max_reloads,
        DEFAULT_MAX_RELOADS,
    )?;
    let variant = match seen.variant {
        Some(v) => v,
        None => env
            .parse(ENV_VARIANT, parse_variant)?
            .unwrap_or_else(|| DEFAULT_VARIANT.to_string()),
    };

    // Ports and protocol.
    let http_explicit = seen.http_port.is_some() || http_from_env.is_some();
    let http_port = seen.http_port.or(http_from_env).unwrap_or(DEFAULT_HTTP_PORT);
    let https_port = seen.https_port.as_ref().map(|(p, _)| *p);
    let protocol = match &seen.protocol {
        Some((p, word)) => {
            if *p != Protocol::Http && https_port.is_none() {
                return Err(CliError::new(
                    word.as_str(),
                    "expected an HTTPS port too (https:<port>, a bare integer or --https-port)",
                ));
            }
            *p
        }
        None => match (https_port.is_some(), http_explicit) {
            (false, _) => DEFAULT_PROTOCOL,
            (true, false) => Protocol::Https,
            (true, true) => Protocol::HttpAndHttps,
        },
    };
    if let (Protocol::HttpAndHttps, Some((port, word))) = (protocol, &seen.https_port)
        && *port != 0
        && *port == http_port
    {
        return Err(CliError::new(
            word.as_str(),
            format!("expected an HTTPS port different from the HTTP port {http_port}"),
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
        cert: seen.cert,
        key: seen.key,
        protocol,
        max_queue,
        queue_timeout,
        connect_timeout,
        read_timeout,
        hot_reload,
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
    })
}

fn or_env<T>(
    given: Option<T>,
    env: &Env<'_>,
    name: &str,
    parse: impl Fn(&str) -> Result<T, String>,
    default: T,
) -> Result<T, CliError> {
    match given {
        Some(v) => Ok(v),
        None => Ok(env.parse(name, parse)?.unwrap_or(default)),
    }
}

// ---------------------------------------------------------------------------
// status / restart / stop / scale
// ---------------------------------------------------------------------------

/// `[app-path] [--socket-prefix=PATH] [--variant=NAME]`, plus the `scale` argument.
fn parse_target_words(
    sub: &str,
    args: &[String],
    env: &Env<'_>,
    mut extra: impl FnMut(&str) -> Result<bool, CliError>,
) -> Result<Target, CliError> {
    let mut app: Option<&str> = None;
    let mut prefix: Option<PathBuf> = None;
    let mut variant: Option<String> = None;
    let mut words = Words::new(args);
    while let Some(word) = words.next_word() {
        if !words.positional_only {
            if word == "--" {
                words.positional_only = true;
                continue;
            }
            if extra(word)? {
                continue;
            }
            if let Some((token, _)) = word.split_once(':')
                && SERVE_TOKENS.contains(&token)
            {
                return Err(CliError::new(
                    word,
                    format!("not accepted by {sub}; expected an app path, --socket-prefix=PATH or --variant=NAME"),
                ));
            }
            if word.starts_with('-') && word.len() > 1 {
                let (name, inline) = split_flag(word);
                match name {
                    "--socket-prefix" => {
                        let (v, shown) = words.value(name, inline)?;
                        prefix = Some(parse_socket_prefix(v).map_err(|m| CliError::new(shown, m))?);
                    }
                    "--variant" => {
                        let (v, shown) = words.value(name, inline)?;
                        variant = Some(parse_variant(v).map_err(|m| CliError::new(shown, m))?);
                    }
                    _ => {
                        return Err(CliError::new(
                            word,
                            format!("unknown flag for {sub}; expected --socket-prefix=PATH or --variant=NAME"),
                        ));
                    }
                }
                continue;
            }
        }
        if let Some(first) = app {
            return Err(CliError::new(
                word,
                format!("expected at most one app path for {sub}, already have {first}"),
            ));
        }
        if word.is_empty() {
            return Err(CliError::new("''", format!("expected an app path for {sub}")));
        }
        app = Some(word);
    }
    if let Some(p) = prefix {
        return Ok(Target { socket_prefix: p });
    }
    let Some(app) = app else {
        return Err(CliError::new(sub, "expected an app path or --socket-prefix"));
    };
    let variant = match variant {
        Some(v) => v,
        None => env
            .parse(ENV_VARIANT, parse_variant)?
            .unwrap_or_else(|| DEFAULT_VARIANT.to_string()),
    };
    let name = target_app_name(app)?;
    let p = default_socket_prefix(&variant, &name);
    check_prefix_len(&p).map_err(|m| CliError::new(app, m))?;
    Ok(Target { socket_prefix: p })
}

fn parse_target(sub: &str, args: &[String], env: &Env<'_>) -> Result<Target, CliError> {
    parse_target_words(sub, args, env, |_| Ok(false))
}

fn parse_scale(args: &[String], env: &Env<'_>) -> Result<Command, CliError> {
    let mut change: Option<ScaleChange> = None;
    let target = parse_target_words("scale", args, env, |word| {
        let Some(parsed) = parse_scale_change(word) else {
            return Ok(false);
        };
        let parsed = parsed.map_err(|m| CliError::new(word, m))?;
        if change.is_some() {
            return Err(CliError::new(
                word,
                "expected one scale change (+N, -N or N), already have one",
            ));
        }
        change = Some(parsed);
        Ok(true)
    })?;
    let change = change.ok_or_else(|| {
        CliError::new(
            "scale",
            format!("expected +N, -N (add or remove N workers) or N (1..={MAX_WORKERS} workers)"),
        )
    })?;
    Ok(Command::Scale { target, change })
}

/// `None` if `word` is not shaped like a scale change.
fn parse_scale_change(word: &str) -> Option<Result<ScaleChange, String>> {
    let (sign, digits) = match word.as_bytes().first()? {
        b'+' => (1i64, &word[1..]),
        b'-' => (-1i64, &word[1..]),
        _ => (0, word),
    };
    let n = parse_digits(digits)?;
    let max = u64::from(MAX_WORKERS);
    Some(match (sign, n) {
        (0, Ok(n)) if (1..=max).contains(&n) => Ok(ScaleChange::To(n as u32)),
        (0, _) => Err(format!("expected a worker count 1..={MAX_WORKERS}")),
        (s, Ok(n)) if (1..=max).contains(&n) => Ok(ScaleChange::By((s * n as i64) as i32)),
        _ => Err(format!("expected a change of 1..={MAX_WORKERS} workers (+N or -N)")),
    })
}

// ---------------------------------------------------------------------------
// worker (hidden)
// ---------------------------------------------------------------------------

fn parse_worker(args: &[String]) -> Result<WorkerArgs, CliError> {
    let mut builtin = false;
    let mut socket = None;
    let mut words = Words::new(args);
    while let Some(word) = words.next_word() {
        let (name, inline) = split_flag(word);
        match name {
            "--builtin" if inline.is_none() => builtin = true,
            "--socket" => {
                let (v, shown) = words.value(name, inline)?;
                socket = Some(parse_path(v).map_err(|m| CliError::new(shown, m))?);
            }
            _ => {
                return Err(CliError::new(word, "expected worker --builtin [--socket PATH]"));
            }
        }
    }
    if !builtin {
        return Err(CliError::new(
            "worker",
            "expected --builtin (the only worker this binary provides)",
        ));
    }
    Ok(WorkerArgs { socket })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycle_forms() {
        let r = parse_recycle("20000,1800s,20r").unwrap();
        assert_eq!(r.requests, Some(Some(20000)));
        assert_eq!(r.age, Some(Some(Duration::from_secs(1800))));
        assert_eq!(r.reloads, Some(20));

        let r = parse_recycle("5").unwrap();
        assert_eq!(
            r,
            Recycle {
                requests: Some(Some(5)),
                age: None,
                reloads: None
            }
        );
        assert_eq!(parse_recycle("0").unwrap().requests, Some(None));
        assert_eq!(parse_recycle("0s").unwrap().age, Some(None));
        assert_eq!(parse_recycle("15m").unwrap().age, Some(Some(Duration::from_secs(900))));
        assert_eq!(parse_recycle("2h").unwrap().age, Some(Some(Duration::from_secs(7200))));
        assert_eq!(parse_recycle("3r,100").unwrap().requests, Some(Some(100)));
        for bad in [
            "",
            ",",
            "1,",
            "1,2",
            "1s,2s",
            "1r,2r",
            "x",
            "10x",
            "-1",
            "+1",
            "1 s",
            "99999999999r",
            "99999999999999999999",
            "999999999h",
        ] {
            assert!(parse_recycle(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn scale_change_shapes() {
        assert_eq!(parse_scale_change("+1"), Some(Ok(ScaleChange::By(1))));
        assert_eq!(parse_scale_change("-3"), Some(Ok(ScaleChange::By(-3))));
        assert_eq!(parse_scale_change("4"), Some(Ok(ScaleChange::To(4))));
        assert!(matches!(parse_scale_change("0"), Some(Err(_))));
        assert!(matches!(parse_scale_change("+0"), Some(Err(_))));
        assert!(matches!(parse_scale_change("1025"), Some(Err(_))));
        assert!(matches!(parse_scale_change("-99999999999999999999"), Some(Err(_))));
        assert_eq!(parse_scale_change("apps/x"), None);
        assert_eq!(parse_scale_change("--variant"), None);
        assert_eq!(parse_scale_change("+"), None);
        assert_eq!(parse_scale_change(""), None);
    }

    #[test]
    fn digits_are_strict() {
        assert_eq!(parse_digits("12"), Some(Ok(12)));
        assert_eq!(parse_digits("+12"), None);
        assert_eq!(parse_digits(" 12"), None);
        assert_eq!(parse_digits(""), None);
        assert_eq!(parse_digits("99999999999999999999"), Some(Err(())));
    }

    #[test]
    fn socket_names() {
        let p = Path::new("/tmp/rip_server_x");
        assert_eq!(control_socket_path(p), Path::new("/tmp/rip_server_x.ctl.sock"));
        assert_eq!(worker_socket_path(p, 3), Path::new("/tmp/rip_server_x.3.sock"));
        assert_eq!(default_socket_prefix("dev", "api"), Path::new("/tmp/rip_dev_api"));
    }

    #[test]
    fn every_flag_is_unique_and_long() {
        for (i, f) in FLAGS.iter().enumerate() {
            assert!(f.name.starts_with("--") && !f.name.contains('='));
            assert!(FLAGS[i + 1..].iter().all(|g| g.name != f.name), "{}", f.name);
        }
    }

    #[test]
    fn help_defaults_match_constants() {
        let default_of = |name: &str| find_flag(name).unwrap().default;
        let ms = |d: Duration| d.as_millis().to_string();
        assert_eq!(default_of("--max-queue"), DEFAULT_MAX_QUEUE.to_string());
        assert_eq!(default_of("--queue-timeout-ms"), ms(DEFAULT_QUEUE_TIMEOUT));
        assert_eq!(default_of("--connect-timeout-ms"), ms(DEFAULT_CONNECT_TIMEOUT));
        assert_eq!(default_of("--read-timeout-ms"), ms(DEFAULT_READ_TIMEOUT));
        assert_eq!(default_of("--header-timeout-ms"), ms(DEFAULT_HEADER_TIMEOUT));
        assert_eq!(
            default_of("--response-buffer-kb"),
            DEFAULT_RESPONSE_BUFFER_KB.to_string()
        );
        assert_eq!(default_of("--stuck-grace-ms"), ms(DEFAULT_STUCK_GRACE));
        assert_eq!(default_of("--stop-timeout-ms"), ms(DEFAULT_STOP_TIMEOUT));
        assert_eq!(default_of("--hot-reload"), DEFAULT_HOT_RELOAD.as_str());
        assert_eq!(default_of("--reload"), DEFAULT_HOT_RELOAD.as_str());
        assert_eq!(default_of("--max-reloads"), DEFAULT_MAX_RELOADS.to_string());
        assert_eq!(default_of("--variant"), DEFAULT_VARIANT);
        assert_eq!(default_of("--lb-policy"), DEFAULT_LB_POLICY.as_str());
        assert_eq!(default_of("--upstream-max-idle"), DEFAULT_UPSTREAM_MAX_IDLE.to_string());
        assert_eq!(
            default_of("--upstream-max-conns-per-socket"),
            DEFAULT_UPSTREAM_MAX_CONNS_PER_SOCKET.to_string()
        );
        let help = help_text();
        assert!(help.contains(&format!("else {DEFAULT_HTTP_PORT}")));
        assert!(help.contains(&format!("r:{}", DEFAULT_MAX_REQUESTS.unwrap())));
        assert!(help.contains(&format!("{DEFAULT_MAX_RELOADS} reloads")));
        for token in SERVE_TOKENS {
            assert!(help.contains(&format!("{token}:<")), "{token}");
        }
    }

    #[test]
    fn one_line_escapes_controls() {
        let e = CliError::new("a\nb", "c\r\nd\te");
        let s = e.to_string();
        assert!(!s.contains('\n') && !s.contains('\r'), "{s}");
        assert_eq!(s, "rip-server: a\\nb: c\\r\\nd\\te");
    }

    #[test]
    fn variant_names() {
        assert!(parse_variant("dev-1.a_b").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "ä"] {
            assert!(parse_variant(bad).is_err(), "{bad:?}");
        }
    }
}
