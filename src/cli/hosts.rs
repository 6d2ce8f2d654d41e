//! `add <host> <app-path>`, `remove <host>`, `list [--json]`: the host
//! registry subcommands. [`parse`] checks the words (a bad host name or app
//! path is a usage mistake, exit status 2); [`run`] edits or reads
//! `$RIP_HOME/hosts.json` through `config::hosts` and returns what to print
//! (a conflict, an unknown host or a corrupt file: exit status 1).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::env::Env;
use super::words::Words;
use super::{CliError, Command};
use crate::config::hosts::{self, Added, HostName, HostRegistry, RegistryError};
use crate::config::{EntryKind, resolve_app};

/// A host registry subcommand, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsCommand {
    /// `$RIP_HOME`, where `hosts.json` is.
    pub home: PathBuf,
    /// What to do.
    pub action: HostsAction,
}

/// What a host registry subcommand does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostsAction {
    /// `add <host> <app-path>`: map the name to the app's directory.
    Add {
        /// The name, normalised.
        host: HostName,
        /// The app's canonical directory.
        app_dir: PathBuf,
    },
    /// `remove <host>`.
    Remove {
        /// The name, normalised.
        host: HostName,
    },
    /// `list [--json]`.
    List {
        /// `--json`: the registry's JSON instead of the table.
        json: bool,
    },
}

/// Parses the words after `add`, `remove` or `list` (`sub`).
pub(super) fn parse(sub: &str, args: &[String], env: &Env<'_>) -> Result<Command, CliError> {
    let usage = match sub {
        "add" => "add <host> <app-path>",
        "remove" => "remove <host>",
        _ => "list [--json]",
    };
    let mut json = false;
    let mut positional: Vec<&str> = Vec::new();
    let mut words = Words::new(args);
    while let Some(word) = words.next_word() {
        if !words.positional_only && word == "--" {
            words.positional_only = true;
        } else if !words.positional_only && sub == "list" && word == "--json" {
            json = true;
        } else if !words.positional_only && word.starts_with('-') && word.len() > 1 {
            return Err(CliError::new(word, format!("unknown flag for {sub}; expected {usage}")));
        } else {
            positional.push(word);
        }
    }
    let wanted = match sub {
        "add" => 2,
        "remove" => 1,
        _ => 0,
    };
    if let Some(extra) = positional.get(wanted) {
        return Err(CliError::new(*extra, format!("one word too many; expected {usage}")));
    }
    if positional.len() < wanted {
        return Err(CliError::new(sub, format!("expected {usage}")));
    }
    let action = match sub {
        "add" => HostsAction::Add {
            host: HostName::parse(positional[0])?,
            app_dir: app_dir(positional[1])?,
        },
        "remove" => HostsAction::Remove {
            host: HostName::parse(positional[0])?,
        },
        _ => HostsAction::List { json },
    };
    let home = env.home()?.ok_or_else(|| {
        CliError::new(
            sub,
            "expected RIP_HOME or HOME to be set: the host registry is $RIP_HOME/hosts.json",
        )
    })?;
    Ok(Command::Hosts(HostsCommand { home, action }))
}

/// The directory `add` registers: the app path resolved as `rip-server
/// <app-path>` would resolve it. The registry keeps directories, so a file
/// path is taken only when it is its directory's entry (else running the
/// directory would run another file).
fn app_dir(word: &str) -> Result<PathBuf, CliError> {
    let app = resolve_app(word)?;
    if app.entry_kind == EntryKind::Builtin {
        return Err(CliError::new(
            word,
            "expected an app directory or entry file (a built-in app has no directory to register)",
        ));
    }
    let Some(dir_text) = app.app_dir.to_str() else {
        return Err(CliError::new(
            word,
            "expected an app directory whose path is UTF-8 text (hosts.json is JSON)",
        ));
    };
    let as_dir = resolve_app(dir_text).ok();
    if as_dir.is_none_or(|dir_app| dir_app.entry != app.entry) {
        return Err(CliError::new(
            word,
            format!(
                "expected an app directory, or its entry file: the registry keeps the directory ({}), whose entry is the first of index.rip, index.ts, index.js or an executable index",
                app.app_dir.display()
            ),
        ));
    }
    Ok(app.app_dir)
}

/// Carries out `command`; returns what to print on stdout, or the one-line
/// error (exit status 1: the registry refused or could not be used).
pub fn run(command: &HostsCommand) -> Result<String, CliError> {
    let home = &command.home;
    match &command.action {
        HostsAction::Add { host, app_dir } => {
            refuse_platform_claim(home, host, app_dir)?;
            let note = match hosts::add_host(home, host, app_dir).map_err(failed)? {
                Added::New => "",
                Added::AlreadyThere => " (already registered)",
            };
            Ok(format!("added {host} -> {}{note}\n", app_dir.display()))
        }
        HostsAction::Remove { host } => {
            hosts::remove_host(home, host).map_err(failed)?;
            Ok(format!("removed {host}\n"))
        }
        HostsAction::List { json } => {
            let registry = hosts::read_registry(home).map_err(failed)?;
            Ok(if *json { registry.to_json() } else { table(&registry) })
        }
    }
}

/// A host belongs to one app: refuses `host` when a platform app
/// (`$RIP_HOME/apps.json`) lists it for another directory. An `apps.json`
/// that cannot be read is reported (claims could not be checked) and left
/// as it is. (Checked before the registry's lock: a deploy racing this
/// `add` is caught by the API's own check of `hosts.json`.)
fn refuse_platform_claim(home: &Path, host: &HostName, app_dir: &Path) -> Result<(), CliError> {
    let path = home.join(crate::platform::apps::APPS_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(CliError::failed(display(&path), format!("cannot read it ({e})"))),
    };
    let apps = crate::platform::apps::store::parse_apps(&bytes).map_err(|e| {
        CliError::failed(
            display(&path),
            format!("not usable ({e}); fix it so host claims can be checked, it was not changed"),
        )
    })?;
    let Some(owner) = apps.host_owner(host.as_str()).and_then(|name| apps.get(name)) else {
        return Ok(());
    };
    let same = |dir: &Path| dir == app_dir || std::fs::canonicalize(dir).is_ok_and(|c| c == app_dir);
    if same(&owner.directory) {
        return Ok(());
    }
    Err(CliError::failed(
        host.as_str(),
        format!(
            "claimed by platform app {} ({}); a host belongs to one app",
            owner.name,
            display(&owner.directory)
        ),
    ))
}

fn failed(e: RegistryError) -> CliError {
    CliError::failed(e.subject(), e.reason())
}

/// The registry for people: a `HOST  APP DIR` table, or `no hosts registered`.
pub fn table(registry: &HostRegistry) -> String {
    if registry.is_empty() {
        return "no hosts registered\n".to_string();
    }
    let width = registry
        .iter()
        .map(|(host, _)| host.as_str().len())
        .max()
        .unwrap_or(0)
        .max("HOST".len());
    let mut out = format!("{:<width$}  APP DIR\n", "HOST");
    for (host, dir) in registry.iter() {
        let _ = writeln!(out, "{:<width$}  {}", host.as_str(), display(dir));
    }
    out
}

fn display(dir: &Path) -> String {
    super::one_line(&dir.display().to_string())
}
