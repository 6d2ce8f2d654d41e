//! The environment variables the command line reads, and how: an unset or
//! empty variable counts as absent, a malformed one is an error naming
//! `NAME=value`, and a variable is read only when the command line left its
//! setting out (a flag beats its variable).

use super::CliError;
use crate::config::home::NotAbsolute;

/// `PORT`: the HTTP port when there is no `http:` token.
pub const ENV_PORT: &str = "PORT";
/// `RIP_BIND`: the address to listen on when there is no `--bind`.
pub const ENV_BIND: &str = "RIP_BIND";
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
/// `RIP_RETRY_SENT`: `1` is `--retry-sent`.
pub const ENV_RETRY_SENT: &str = "RIP_RETRY_SENT";
/// `RIP_THREADS`: the front door's event-loop threads.
pub const ENV_THREADS: &str = "RIP_THREADS";
/// `RIP_LB_REPLICAS`: `--lb-replicas`.
pub const ENV_LB_REPLICAS: &str = "RIP_LB_REPLICAS";
/// `RIP_LOG`: the log filter.
pub const ENV_LOG: &str = "RIP_LOG";
/// `RIP_BUN`: the Bun program for `.ts`, `.js` and `.rip` apps (else `bun` on `PATH`).
pub const ENV_BUN: &str = "RIP_BUN";
/// `RIP_BUN_PRELOAD`: the preload script registering the `.rip` loader.
pub const ENV_BUN_PRELOAD: &str = "RIP_BUN_PRELOAD";
/// `PATH`: where `bun` is looked for when `RIP_BUN` is unset.
pub const ENV_PATH: &str = "PATH";
/// `RIP_HOME`: where rip-server keeps state (run files).
pub const ENV_HOME: &str = "RIP_HOME";
/// `HOME`: the default `RIP_HOME` is `$HOME/.rip-server`.
pub const ENV_USER_HOME: &str = "HOME";

/// Every variable the command line reads (the tests check each one).
pub const ALL: &[&str] = &[
    ENV_PORT,
    ENV_BIND,
    ENV_MAX_QUEUE,
    ENV_QUEUE_TIMEOUT_MS,
    ENV_CONNECT_TIMEOUT_MS,
    ENV_READ_TIMEOUT_MS,
    ENV_HOT_RELOAD,
    ENV_RELOAD_LEGACY,
    ENV_MAX_RELOADS,
    ENV_VARIANT,
    ENV_RETRY_SENT,
    ENV_THREADS,
    ENV_LB_REPLICAS,
    ENV_LOG,
    ENV_BUN,
    ENV_BUN_PRELOAD,
    ENV_PATH,
    ENV_HOME,
    ENV_USER_HOME,
];

/// The environment, with empty values read as unset.
pub(super) struct Env<'a>(pub(super) &'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    pub(super) fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.is_empty())
    }

    /// Reads and parses a variable; a malformed value is an error naming `NAME=value`.
    pub(super) fn parse<T>(
        &self,
        name: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, CliError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => parse(&v).map(Some).map_err(|m| CliError::new(format!("{name}={v}"), m)),
        }
    }

    /// `given` if the command line set it, else the variable, else `default`.
    pub(super) fn or<T>(
        &self,
        given: Option<T>,
        name: &str,
        parse: impl Fn(&str) -> Result<T, String>,
        default: T,
    ) -> Result<T, CliError> {
        match given {
            Some(v) => Ok(v),
            None => Ok(self.parse(name, parse)?.unwrap_or(default)),
        }
    }

    /// `$RIP_HOME`, else `$HOME/.rip-server`; `None` when neither is set.
    pub(super) fn home(&self) -> Result<Option<std::path::PathBuf>, CliError> {
        let rip_home = self.get(ENV_HOME);
        let user_home = self.get(ENV_USER_HOME);
        crate::config::home::resolve(rip_home.as_deref(), user_home.as_deref()).map_err(|bad| match bad {
            NotAbsolute::Home => CliError::new(
                format!("{ENV_HOME}={}", rip_home.unwrap_or_default()),
                "expected an absolute directory path",
            ),
            NotAbsolute::UserHome => CliError::new(
                format!("{ENV_USER_HOME}={}", user_home.unwrap_or_default()),
                "expected an absolute directory path (or set RIP_HOME to one)",
            ),
        })
    }
}
