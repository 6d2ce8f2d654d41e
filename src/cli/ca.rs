//! `ca init|trust|untrust|export|info|list|clean` (also spelled `ca:init`,
//! as the original did): [`parse`] checks the words (a mistake is exit
//! status 2, naming the word); [`run`] carries the command out through
//! `tls::ca` and returns what to print (a failure is exit status 1: no CA,
//! a corrupt one, a store that failed).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::env::Env;
use super::words::{Words, split_flag};
use super::{CliError, Command};
use crate::config::hosts::HostName;
use crate::tls::ca::trust::{self, StoreReport, TrustEnv};
use crate::tls::ca::{CaError, DevCa, Initialized, info, store};

/// The subcommands, for messages and help.
pub const SUBCOMMANDS: &str = "init, trust, untrust, export, info, list, clean";
/// Where `ca export` writes without a path (in the current directory).
pub const DEFAULT_EXPORT_FILE: &str = "rip-server-ca.crt";
/// For tests only: a directory prefixed to every system trust-store path.
pub const ENV_TRUST_ROOT: &str = "RIP_TRUST_ROOT";

/// A `ca` subcommand, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaCommand {
    /// `$RIP_HOME`, where `ca/` and `certs/` are.
    pub home: PathBuf,
    /// What to do.
    pub action: CaAction,
    /// Where the trust stores are (`trust`, `untrust`, `info`, `clean --all`).
    pub stores: TrustEnv,
    /// `user@host`, for a new root's subject.
    pub owner: String,
}

/// What a `ca` subcommand does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaAction {
    /// `init [--name DOMAIN]...`: make the root (or keep the one there).
    Init {
        /// DNS names added to the default constraints.
        names: Vec<String>,
    },
    /// `trust [--dry-run]`.
    Trust {
        /// Print the commands instead of running them.
        dry_run: bool,
    },
    /// `untrust [--dry-run]`.
    Untrust {
        /// Print the commands instead of running them.
        dry_run: bool,
    },
    /// `export [PATH]`: the root certificate to PATH (`-`: standard output).
    Export {
        /// Where; `None`: `./rip-server-ca.crt`.
        path: Option<PathBuf>,
    },
    /// `info`.
    Info,
    /// `list`.
    List,
    /// `clean [--all]`.
    Clean {
        /// Also untrust and remove the CA.
        all: bool,
    },
}

/// Parses `ca <sub> ...` or `ca:<sub> ...`; `first` is `ca` or `ca:<sub>`.
pub(super) fn parse(first: &str, rest: &[String], env: &Env<'_>) -> Result<Command, CliError> {
    let (sub, args): (&str, &[String]) = match first.strip_prefix("ca:") {
        Some(sub) => (sub, rest),
        None => match rest.split_first() {
            Some((sub, args)) => (sub.as_str(), args),
            None => return Err(CliError::new("ca", format!("expected a subcommand: {SUBCOMMANDS}"))),
        },
    };
    let shown = if first == "ca" {
        sub.to_string()
    } else {
        first.to_string()
    };
    let mut names: Vec<String> = Vec::new();
    let mut dry_run = false;
    let mut all = false;
    let mut path: Option<PathBuf> = None;
    let usage = match sub {
        "init" => "ca init [--name DOMAIN]...",
        "trust" => "ca trust [--dry-run]",
        "untrust" => "ca untrust [--dry-run]",
        "export" => "ca export [PATH]",
        "info" => "ca info",
        "list" => "ca list",
        "clean" => "ca clean [--all]",
        _ => {
            return Err(CliError::new(
                shown,
                format!("unknown ca subcommand; expected one of {SUBCOMMANDS}"),
            ));
        }
    };
    let mut words = Words::new(args);
    while let Some(word) = words.next_word() {
        let flag = !words.positional_only && word.starts_with('-') && word.len() > 1;
        if !words.positional_only && word == "--" {
            words.positional_only = true;
            continue;
        }
        let (name, inline) = split_flag(word);
        match (sub, flag, name) {
            ("init", true, "--name") => {
                let (value, shown) = words.value(name, inline)?;
                names.push(parse_constraint_name(value).map_err(|m| CliError::new(shown, m))?);
            }
            ("trust" | "untrust", true, "--dry-run") if inline.is_none() => dry_run = true,
            ("clean", true, "--all") if inline.is_none() => all = true,
            ("export", false, _) if path.is_none() => path = Some(PathBuf::from(word)),
            (_, true, _) => return Err(CliError::new(word, format!("unknown flag; expected {usage}"))),
            (_, false, _) => return Err(CliError::new(word, format!("one word too many; expected {usage}"))),
        }
    }
    if path.as_deref().is_some_and(|p| p.as_os_str().is_empty()) {
        return Err(CliError::new("''", format!("expected a file path; {usage}")));
    }
    let action = match sub {
        "init" => CaAction::Init { names },
        "trust" => CaAction::Trust { dry_run },
        "untrust" => CaAction::Untrust { dry_run },
        "export" => CaAction::Export { path },
        "info" => CaAction::Info,
        "list" => CaAction::List,
        _ => CaAction::Clean { all },
    };
    let home = env.home()?.ok_or_else(|| {
        CliError::new(
            first,
            "expected RIP_HOME or HOME to be set: the dev CA lives in $RIP_HOME/ca",
        )
    })?;
    let system_root = match env.get(ENV_TRUST_ROOT) {
        Some(v) if Path::new(&v).is_absolute() => Some(PathBuf::from(v)),
        Some(v) => {
            return Err(CliError::new(
                format!("{ENV_TRUST_ROOT}={v}"),
                "expected an absolute directory path",
            ));
        }
        None => None,
    };
    let user_home = env
        .get(super::env::ENV_USER_HOME)
        .filter(|h| Path::new(h).is_absolute())
        .map(PathBuf::from);
    let user = env.get("USER").or_else(|| env.get("LOGNAME"));
    Ok(Command::Ca(CaCommand {
        home,
        action,
        stores: TrustEnv { user_home, system_root },
        owner: crate::tls::ca::root::owner_label(user.as_deref()),
    }))
}

/// A `--name` value: a DNS name (normalised as `add` does: lowercase,
/// IDNA); not an IP address or a wildcard, which a name constraint cannot
/// say (a name already covers every name under it).
fn parse_constraint_name(value: &str) -> Result<String, String> {
    let name = HostName::parse(value).map_err(|e| e.message)?;
    if name.is_wildcard() {
        return Err(format!(
            "expected a domain without *. ({} already covers every name under it)",
            name.wildcard_parent().unwrap_or_default()
        ));
    }
    if name.as_str().parse::<std::net::Ipv4Addr>().is_ok() || name.as_str().starts_with('[') {
        return Err("expected a DNS name; the loopback addresses are always permitted, others cannot be added".into());
    }
    Ok(name.as_str().to_string())
}

/// What a `ca` subcommand printed, and whether it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaOutcome {
    /// For standard output.
    pub stdout: String,
    /// The error line for standard error; exit status 1 when set.
    pub error: Option<String>,
}

impl CaOutcome {
    fn ok(stdout: String) -> CaOutcome {
        CaOutcome { stdout, error: None }
    }

    fn failed(stdout: String, error: impl ToString) -> CaOutcome {
        CaOutcome {
            stdout,
            error: Some(error.to_string()),
        }
    }
}

/// Carries out `command` at `now`.
pub fn run(command: &CaCommand, now: SystemTime) -> CaOutcome {
    let home = &command.home;
    if let CaAction::Init { names } = &command.action {
        return init(home, names, &command.owner, now);
    }
    let ca = match DevCa::load(home) {
        Ok(Some(ca)) => ca,
        Ok(None) => return CaOutcome::failed(String::new(), CaError::no_ca()),
        Err(e) => return CaOutcome::failed(String::new(), e),
    };
    match &command.action {
        CaAction::Init { .. } => unreachable!("handled above"),
        CaAction::Trust { dry_run } => stores("trust", trust::trust(&ca, &command.stores, *dry_run)),
        CaAction::Untrust { dry_run } => stores("untrust", trust::untrust(&ca, &command.stores, *dry_run)),
        CaAction::Export { path } => export(&ca, path.as_deref()),
        CaAction::Info => {
            let leaves = store::list(home).map(|l| l.len()).unwrap_or(0);
            let trusted = trust::status(&ca, &command.stores);
            CaOutcome::ok(info::info_text(&ca, home, &trusted, leaves))
        }
        CaAction::List => match store::list(home) {
            Ok(listed) => CaOutcome::ok(info::list_text(&listed, home, now)),
            Err(e) => CaOutcome::failed(String::new(), e),
        },
        CaAction::Clean { all } => clean(&ca, home, &command.stores, *all),
    }
}

fn init(home: &Path, names: &[String], owner: &str, now: SystemTime) -> CaOutcome {
    match DevCa::init(home, names, owner, now) {
        Ok(Initialized::Created(ca)) => CaOutcome::ok(format!(
            "created the dev CA in {} (permits {}; SHA-256 {})\nnext: \"rip-server ca trust\" installs it in this machine's trust stores\n",
            ca.files().dir.display(),
            ca.constraints(),
            ca.fingerprint_sha256()
        )),
        Ok(Initialized::Existing(ca)) => {
            let note = if names.is_empty() {
                String::new()
            } else {
                "; --name changes nothing: a CA's names are fixed when it is made (\"ca clean --all\", then \"ca init --name ...\")".to_string()
            };
            CaOutcome::ok(format!(
                "a CA already exists in {}; kept it (permits {}){note}\n",
                ca.files().dir.display(),
                ca.constraints()
            ))
        }
        Err(e) => CaOutcome::failed(String::new(), e),
    }
}

fn stores(sub: &str, reports: Vec<StoreReport>) -> CaOutcome {
    let mut out = String::new();
    for report in &reports {
        let _ = writeln!(out, "{report}");
    }
    let failed = reports.iter().filter(|r| r.failed()).count();
    if failed == 0 {
        return CaOutcome::ok(out);
    }
    CaOutcome::failed(
        out,
        CaError::name(
            &format!("ca {sub}"),
            format!("{failed} of {} stores failed (see above)", reports.len()),
        ),
    )
}

/// The root certificate to `path` (0644: it is public): a directory gets
/// `rip-server-ca.crt` inside; `-` is standard output. An existing file
/// with the same certificate is left as it is; another file is never
/// overwritten.
fn export(ca: &DevCa, path: Option<&Path>) -> CaOutcome {
    use std::os::unix::fs::PermissionsExt as _;
    let path = path.unwrap_or(Path::new(DEFAULT_EXPORT_FILE));
    if path == Path::new("-") {
        return CaOutcome::ok(ca.root_pem().to_string());
    }
    let path = if path.is_dir() {
        path.join(DEFAULT_EXPORT_FILE)
    } else {
        path.to_path_buf()
    };
    match std::fs::read(&path) {
        Ok(bytes) if bytes == ca.root_pem().as_bytes() => {
            return CaOutcome::ok(format!("{} already holds the root certificate\n", path.display()));
        }
        Ok(_) => {
            return CaOutcome::failed(
                String::new(),
                CaError::file(
                    &path,
                    "exists and is not this CA's certificate; left as it is (remove it or give another path)",
                ),
            );
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return CaOutcome::failed(String::new(), CaError::file(&path, format!("cannot read it ({e})"))),
    }
    let written = crate::config::home::write_private_atomically(&path, ca.root_pem().as_bytes())
        .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)));
    match written {
        Ok(()) => CaOutcome::ok(format!(
            "exported the root certificate to {} (SHA-256 {})\n",
            path.display(),
            ca.fingerprint_sha256()
        )),
        Err(e) => CaOutcome::failed(String::new(), CaError::file(&path, format!("cannot write it ({e})"))),
    }
}

/// Removes the issued leaves; with `all`, untrusts the root everywhere and
/// removes the CA too, but keeps it when a store could not be cleaned (so
/// that running it again can finish the job).
fn clean(ca: &DevCa, home: &Path, env: &TrustEnv, all: bool) -> CaOutcome {
    let mut out = String::new();
    if all {
        let reports = trust::untrust(ca, env, false);
        for report in &reports {
            let _ = writeln!(out, "{report}");
        }
        let failed = reports.iter().filter(|r| r.failed()).count();
        if failed > 0 {
            return CaOutcome::failed(
                out,
                CaError::file(
                    &ca.files().dir,
                    format!(
                        "kept: {failed} trust store(s) could not be cleaned (see above); fix that and run \"rip-server ca clean --all\" again"
                    ),
                ),
            );
        }
    }
    match store::remove_all(home) {
        Ok(n) => {
            let _ = writeln!(
                out,
                "removed {n} issued certificate(s) from {}",
                store::certs_dir(home).display()
            );
        }
        Err(e) => return CaOutcome::failed(out, e),
    }
    if all {
        let dir = &ca.files().dir;
        if let Err(e) = std::fs::remove_dir_all(dir) {
            return CaOutcome::failed(out, CaError::file(dir, format!("cannot remove it ({e})")));
        }
        let _ = writeln!(out, "removed the dev CA ({})", dir.display());
    }
    CaOutcome::ok(out)
}
