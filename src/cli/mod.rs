//! The command line: `rip-server <app-path> [tokens] [flags]`, the `status` /
//! `restart` / `stop` / `scale` subcommands and what `status` prints, and
//! the host registry's `add` / `remove` / `list`.
//!
//! [`parse`] is pure in the sense that matters to `main`: it never prints,
//! never exits and reads the environment only through the function it is
//! given. It does look at the filesystem (to resolve the app entry), at the
//! current directory and at the number of CPUs (`w:auto`).
//!
//! Every mistake is a [`CliError`] naming the offending word and what was
//! expected; its `Display` is exactly one line,
//! `rip-server: <word>: <what was expected>`, and its [`ErrorKind`] gives the
//! exit status (the contract's table, also in `--help`).
//!
//! The parts: `words` (the word scanner and value parsers), `env` (the
//! variables read), `flags` (the serve flags' table), `serve` (the serve
//! command), `admin` (subcommand targets, reserved words), `help`;
//! [`running`] finds the running server a subcommand without an app path
//! acts on; [`status_table`] renders `/status` for people; [`hosts`] parses
//! and runs `add`, `remove` and `list` (the only part here that touches
//! `$RIP_HOME/hosts.json`, and only in [`hosts::run`]); `platform` parses
//! `rip-server platform` into a `platform::command::PlatformConfig`; [`ca`]
//! parses and runs the `ca` subcommands (the dev CA of `tls::ca`).
//!
//! May import: `config` (what it builds, no argv there), `platform` (the
//! platform's configuration), `tls` (the dev CA).

pub mod admin;
pub mod ca;
mod env;
mod flags;
mod help;
pub mod hosts;
mod platform;
pub mod platform_table;
pub mod running;
mod seen;
mod serve;
pub mod status_table;
#[cfg(test)]
mod tests;
mod words;

/// `rip-server status` for people: a platform's summary or a server's.
pub fn render_status(status: &serde_json::Value) -> String {
    if status.get("mode").and_then(serde_json::Value::as_str) == Some("platform") {
        platform_table::render(status)
    } else {
        status_table::render(status)
    }
}

use std::fmt;
use std::path::PathBuf;

use crate::config::{ConfigError, ServeConfig, control_socket_path};
pub use admin::reserved_words;
pub use env::ALL as ENV_VARIABLES;
pub use help::{help_text, version_text};
pub use hosts::{HostsAction, HostsCommand};

/// Exit status 0: success.
pub const EXIT_OK: u8 = 0;
/// Exit status 1: an operation failed, or asked for what this version lacks.
pub const EXIT_FAILED: u8 = 1;
/// Exit status 2: the command cannot be carried out as written.
pub const EXIT_USAGE: u8 = 2;

/// What kind of mistake, which decides the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The command cannot be carried out as written: an unknown or malformed
    /// word or variable, a bad number or port, a missing path or entry.
    /// Exit status 2.
    Usage,
    /// A feature not in this version (HTTPS, a reserved subcommand). Exit status 1.
    NotAvailable,
    /// An operation failed (no running server found). Exit status 1.
    Failed,
}

impl ErrorKind {
    /// The exit status.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Usage => EXIT_USAGE,
            ErrorKind::NotAvailable | ErrorKind::Failed => EXIT_FAILED,
        }
    }
}

/// A command-line mistake: the offending word and what was expected.
///
/// `Display` is one line: `rip-server: <word>: <message>`. Control characters
/// in either part are escaped, so the line stays one line whatever the user typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// Which kind of mistake (the exit status).
    pub kind: ErrorKind,
    /// The offending word, as typed (or `NAME=value` for an environment variable).
    pub word: String,
    /// What was expected instead.
    pub message: String,
}

impl CliError {
    /// A usage mistake about `word` (exit status 2).
    pub fn new(word: impl Into<String>, message: impl Into<String>) -> CliError {
        CliError {
            kind: ErrorKind::Usage,
            word: word.into(),
            message: message.into(),
        }
    }

    /// `word` asks for something this version does not have (exit status 1).
    pub fn not_available(word: impl Into<String>, message: impl Into<String>) -> CliError {
        CliError {
            kind: ErrorKind::NotAvailable,
            ..CliError::new(word, message)
        }
    }

    /// An operation about `word` failed (exit status 1).
    pub fn failed(word: impl Into<String>, message: impl Into<String>) -> CliError {
        CliError {
            kind: ErrorKind::Failed,
            ..CliError::new(word, message)
        }
    }

    /// The exit status.
    pub fn exit_code(&self) -> u8 {
        self.kind.exit_code()
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
pub(crate) fn one_line(s: &str) -> String {
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
    Status {
        /// Which server.
        target: Target,
        /// `--json`: the `/status` JSON as it is, instead of the table.
        json: bool,
    },
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
    /// `platform`: the platform controller (API, dashboard, many apps
    /// routed by host); carried out by `platform::command::run`.
    Platform(Box<crate::platform::command::PlatformConfig>),
    /// `add`, `remove` or `list`: edit or show the host registry
    /// (`$RIP_HOME/hosts.json`); carried out by [`hosts::run`].
    Hosts(HostsCommand),
    /// `ca init|trust|untrust|export|info|list|clean`: the dev CA; carried
    /// out by [`ca::run`].
    Ca(ca::CaCommand),
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

/// The running server a subcommand talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The server on this socket prefix (given, or derived from the app
    /// path): its control socket is `<prefix>.ctl.sock`.
    Prefix(PathBuf),
    /// No app path: the one server whose run file is in this home
    /// (`$RIP_HOME`); see [`running::locate`].
    Running {
        /// `$RIP_HOME`.
        home: PathBuf,
    },
}

impl Target {
    /// `<prefix>.ctl.sock` for a prefix; `None` until a running server is located.
    pub fn control_socket(&self) -> Option<PathBuf> {
        match self {
            Target::Prefix(prefix) => Some(control_socket_path(prefix)),
            Target::Running { .. } => None,
        }
    }
}

/// Arguments of the hidden `worker` subcommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerArgs {
    /// `--socket PATH`; `None` means: use `RIP_SOCKET` from the worker protocol.
    pub socket: Option<PathBuf>,
}

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
    let env = env::Env(env);
    let Some(first) = args.first().map(String::as_str) else {
        return serve::parse(args, &env).map(|c| Command::Serve(Box::new(c)));
    };
    if first == "ca" || first.starts_with("ca:") {
        return ca::parse(first, &args[1..], &env);
    }
    if let Some(refusal) = admin::reserved(first) {
        return Err(refusal);
    }
    let rest = &args[1..];
    match first {
        "help" => Ok(Command::Help(help_text())),
        "status" => admin::parse_status(rest, &env),
        "restart" => Ok(Command::Restart(admin::parse_target("restart", rest, &env)?)),
        "stop" => Ok(Command::Stop(admin::parse_target("stop", rest, &env)?)),
        "scale" => admin::parse_scale(rest, &env),
        "add" | "remove" | "list" => hosts::parse(first, rest, &env),
        "platform" => platform::parse(rest, &env),
        "worker" => parse_worker(rest).map(Command::Worker),
        _ => serve::parse(args, &env).map(|c| Command::Serve(Box::new(c))),
    }
}

/// `worker --builtin [--socket PATH]` (hidden).
fn parse_worker(args: &[String]) -> Result<WorkerArgs, CliError> {
    let mut builtin = false;
    let mut socket = None;
    let mut words = words::Words::new(args);
    while let Some(word) = words.next_word() {
        let (name, inline) = words::split_flag(word);
        match name {
            "--builtin" if inline.is_none() => builtin = true,
            "--socket" => {
                let (v, shown) = words.value(name, inline)?;
                socket = Some(words::parse_path(v).map_err(|m| CliError::new(shown, m))?);
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
