//! The rules an app must meet before the platform keeps it (the contract's
//! "Platform controller"), each a pure check, and [`AppError`], the one-line
//! reason an API answer or a log line gives.
//!
//! The directory check takes the directory's facts as input
//! ([`check_directory_facts`]) so that every case is tested without other
//! users' files; [`check_directory`] reads the real ones.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use crate::config::defaults::{MAX_WORKERS, MIN_WORKERS};

/// The longest app name (the contract's `^[a-z0-9][a-z0-9-]{0,62}$`).
pub const MAX_NAME_LEN: usize = 63;
/// The longest host name (DNS).
pub const MAX_HOST_LEN: usize = 253;

/// Why an app (or a change to one) is refused. `Display` is one line for
/// `{"error": ...}` and never holds an environment value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppError {
    /// The name does not match `^[a-z0-9][a-z0-9-]{0,62}$`.
    InvalidName(String),
    /// A worker count outside 1..=1024.
    WorkersOutOfRange(u32),
    /// An environment key that would change how the worker's runtime or
    /// rip-server itself behaves (`LD_*`, `NODE_OPTIONS`, `BUN_OPTIONS`, `RIP_*`).
    EnvKeyRefused(String),
    /// An environment key that cannot be one: empty, or holding `=` or NUL.
    EnvKeyMalformed(String),
    /// The value of this key holds a NUL byte (the key is named, never the value).
    EnvValueMalformed(String),
    /// A host name that cannot be one (empty, too long, a port, a space...).
    InvalidHost(String),
    /// The same host twice in one app.
    DuplicateHost(String),
    /// The directory is not an absolute path.
    DirectoryNotAbsolute(PathBuf),
    /// The directory does not exist.
    DirectoryMissing(PathBuf),
    /// The path exists but is not a directory.
    NotADirectory(PathBuf),
    /// The directory belongs to another user.
    DirectoryNotOwned {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        uid: u32,
    },
    /// The directory's group or other users may write it.
    DirectoryWritableByOthers {
        /// The directory.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// The directory could not be examined.
    DirectoryUnreadable {
        /// The directory.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// Another app has this name.
    NameTaken(String),
    /// Another app serves this host.
    HostTaken {
        /// The host.
        host: String,
        /// The app that has it.
        app: String,
    },
    /// No app has this name.
    NotFound(String),
}

impl AppError {
    /// The API's status for it: 404 for a missing app, 409 for a name or
    /// host that exists, 400 for everything else (a bad body).
    pub fn status(&self) -> u16 {
        match self {
            AppError::NotFound(_) => 404,
            AppError::NameTaken(_) | AppError::HostTaken { .. } => 409,
            _ => 400,
        }
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::InvalidName(name) => write!(
                f,
                "app name {name:?}: expected 1 to {MAX_NAME_LEN} characters of a-z, 0-9 and -, not starting with -"
            ),
            AppError::WorkersOutOfRange(n) => write!(f, "workers {n}: expected {MIN_WORKERS} to {MAX_WORKERS}"),
            AppError::EnvKeyRefused(key) => write!(
                f,
                "env key {key:?} is refused (LD_*, NODE_OPTIONS, BUN_OPTIONS and RIP_* keys change the runtime)"
            ),
            AppError::EnvKeyMalformed(key) => write!(f, "env key {key:?}: expected a non-empty key without = or NUL"),
            AppError::EnvValueMalformed(key) => write!(f, "env value of {key:?} holds a NUL byte"),
            AppError::InvalidHost(host) => {
                write!(f, "host {host:?}: expected a host name without port, path or spaces")
            }
            AppError::DuplicateHost(host) => write!(f, "host {host:?} is listed twice"),
            AppError::DirectoryNotAbsolute(path) => {
                write!(f, "directory {}: expected an absolute path", path.display())
            }
            AppError::DirectoryMissing(path) => write!(f, "directory {}: does not exist", path.display()),
            AppError::NotADirectory(path) => write!(f, "directory {}: not a directory", path.display()),
            AppError::DirectoryNotOwned { path, uid } => write!(
                f,
                "directory {}: owned by uid {uid}, not by the user running the platform",
                path.display()
            ),
            AppError::DirectoryWritableByOthers { path, mode } => write!(
                f,
                "directory {}: other users can write it (mode {:04o}); run `chmod go-w` on it",
                path.display(),
                mode & 0o7777
            ),
            AppError::DirectoryUnreadable { path, reason } => write!(f, "directory {}: {reason}", path.display()),
            AppError::NameTaken(name) => write!(f, "an app named {name:?} exists"),
            AppError::HostTaken { host, app } => write!(f, "host {host:?} is served by app {app:?}"),
            AppError::NotFound(_) => f.write_str("App not found"),
        }
    }
}

impl std::error::Error for AppError {}

/// `name` matches `^[a-z0-9][a-z0-9-]{0,62}$`.
pub fn check_name(name: &str) -> Result<(), AppError> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes[0] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(AppError::InvalidName(name.to_owned()))
    }
}

/// `workers` is within the worker limits of the command line (1..=1024).
pub fn check_workers(workers: u32) -> Result<(), AppError> {
    if (MIN_WORKERS..=MAX_WORKERS).contains(&workers) {
        Ok(())
    } else {
        Err(AppError::WorkersOutOfRange(workers))
    }
}

/// An environment entry the platform may pass to an app's workers.
///
/// Refused keys (in any letter case: only the exact case is dangerous to
/// glibc or Node, but a lowercase twin has no use and refusing it ends the
/// argument about which tools fold case): `LD_*` (the dynamic loader:
/// `LD_PRELOAD` runs any code in the worker), `NODE_OPTIONS` and
/// `BUN_OPTIONS` (flags, preloads and inspectors for the JavaScript
/// runtime), `RIP_*` (rip-server's own settings, which the platform sets per
/// worker). A key must also be a key: not empty, without `=` (it would end
/// the key early) or NUL (it would end the string); a value must not hold
/// NUL.
pub fn check_env_entry(key: &str, value: &str) -> Result<(), AppError> {
    if key.is_empty() || key.contains(['=', '\0']) {
        return Err(AppError::EnvKeyMalformed(key.to_owned()));
    }
    let upper = key.to_ascii_uppercase();
    if upper.starts_with("LD_") || upper.starts_with("RIP_") || upper == "NODE_OPTIONS" || upper == "BUN_OPTIONS" {
        return Err(AppError::EnvKeyRefused(key.to_owned()));
    }
    if value.contains('\0') {
        return Err(AppError::EnvValueMalformed(key.to_owned()));
    }
    Ok(())
}

/// A host as an app may list it: 1 to 253 characters, no whitespace or
/// control character, no port (`:`), path (`/`) or user (`@`). The full
/// rules (IDNA, lowercase) are the host registry's; the wiring normalises a
/// host with them before it reaches a record, and this check keeps a
/// hand-edited `apps.json` from smuggling in something else.
pub fn check_host(host: &str) -> Result<(), AppError> {
    let ok = !host.is_empty()
        && host.len() <= MAX_HOST_LEN
        && !host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ':' | '/' | '@'));
    if ok {
        Ok(())
    } else {
        Err(AppError::InvalidHost(host.to_owned()))
    }
}

/// What the directory check needs to know, apart from the file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirFacts {
    /// It is a directory (after following symbolic links).
    pub is_dir: bool,
    /// Its owner's uid.
    pub uid: u32,
    /// Its `st_mode`.
    pub mode: u32,
}

impl DirFacts {
    /// The facts of real metadata.
    pub fn of(meta: &fs::Metadata) -> DirFacts {
        DirFacts {
            is_dir: meta.is_dir(),
            uid: meta.uid(),
            mode: meta.mode(),
        }
    }
}

/// Whether a directory with these facts may hold an app run by user
/// `euid`: a directory, owned by `euid`, that neither its group nor other
/// users can write (they could change the code the platform runs).
pub fn check_directory_facts(path: &Path, facts: &DirFacts, euid: u32) -> Result<(), AppError> {
    if !facts.is_dir {
        Err(AppError::NotADirectory(path.to_owned()))
    } else if facts.uid != euid {
        Err(AppError::DirectoryNotOwned {
            path: path.to_owned(),
            uid: facts.uid,
        })
    } else if facts.mode & 0o022 != 0 {
        Err(AppError::DirectoryWritableByOthers {
            path: path.to_owned(),
            mode: facts.mode,
        })
    } else {
        Ok(())
    }
}

/// `path` is absolute and a directory the platform's user owns that no one
/// else can write. A symbolic link is followed (a `current -> releases/v2`
/// link is how many deploy), and the directory it leads to is checked.
pub fn check_directory(path: &Path) -> Result<(), AppError> {
    if !path.is_absolute() {
        return Err(AppError::DirectoryNotAbsolute(path.to_owned()));
    }
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(AppError::DirectoryMissing(path.to_owned())),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Err(AppError::NotADirectory(path.to_owned())),
        Err(e) => {
            return Err(AppError::DirectoryUnreadable {
                path: path.to_owned(),
                reason: e.to_string(),
            });
        }
    };
    check_directory_facts(path, &DirFacts::of(&meta), rustix::process::geteuid().as_raw())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn names_follow_the_contracts_pattern() {
        for good in ["a", "0", "blog", "my-app-2", "a-", &"a".repeat(63)] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "-a",
            "Blog",
            "my_app",
            "my.app",
            "a b",
            "é",
            "../x",
            "a/b",
            &"a".repeat(64),
        ] {
            assert_eq!(check_name(bad), Err(AppError::InvalidName(bad.to_owned())), "{bad}");
        }
    }

    #[test]
    fn workers_are_one_to_1024() {
        assert!(check_workers(1).is_ok());
        assert!(check_workers(1024).is_ok());
        assert_eq!(check_workers(0), Err(AppError::WorkersOutOfRange(0)));
        assert_eq!(check_workers(1025), Err(AppError::WorkersOutOfRange(1025)));
    }

    #[test]
    fn dangerous_env_keys_are_refused_in_any_case() {
        for key in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "LD_",
            "ld_preload",
            "NODE_OPTIONS",
            "node_options",
            "BUN_OPTIONS",
            "RIP_HOME",
            "RIP_WORKER_ID",
            "Rip_App",
        ] {
            assert_eq!(
                check_env_entry(key, "x"),
                Err(AppError::EnvKeyRefused(key.to_owned())),
                "{key}"
            );
        }
        for key in [
            "DATABASE_URL",
            "NODE_ENV",
            "BUN_ENV",
            "OLD_PATH",
            "PATH",
            "LDAP_URL",
            "RIPE",
        ] {
            assert_eq!(check_env_entry(key, "value"), Ok(()), "{key}");
        }
    }

    #[test]
    fn env_keys_and_values_must_be_passable() {
        for key in ["", "A=B", "=", "A\0B"] {
            assert_eq!(
                check_env_entry(key, "x"),
                Err(AppError::EnvKeyMalformed(key.to_owned())),
                "{key:?}"
            );
        }
        assert_eq!(check_env_entry("SECRET", ""), Ok(()));
        assert_eq!(check_env_entry("SECRET", "a=b; c\nd"), Ok(()));
        let err = check_env_entry("SECRET", "hunter2\0more").unwrap_err();
        assert_eq!(err, AppError::EnvValueMalformed("SECRET".to_owned()));
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn hosts_without_ports_paths_or_spaces() {
        for good in ["example.com", "*.example.com", "localhost", "xn--bcher-kva.example"] {
            assert_eq!(check_host(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "example.com:80",
            "example.com/x",
            "a b",
            "user@example.com",
            "tab\there",
            &"a".repeat(254),
        ] {
            assert_eq!(check_host(bad), Err(AppError::InvalidHost(bad.to_owned())), "{bad:?}");
        }
    }

    #[test]
    fn the_directory_facts_checks() {
        let me = 1000;
        let path = Path::new("/srv/app");
        let dir = |uid: u32, mode: u32| DirFacts {
            is_dir: true,
            uid,
            mode: 0o040_000 | mode,
        };
        for mode in [0o700, 0o755, 0o750, 0o705, 0o555, 0o1755] {
            assert_eq!(check_directory_facts(path, &dir(me, mode), me), Ok(()), "{mode:o}");
        }
        for mode in [0o775, 0o757, 0o777, 0o720, 0o702, 0o1777] {
            assert!(
                matches!(
                    check_directory_facts(path, &dir(me, mode), me),
                    Err(AppError::DirectoryWritableByOthers { .. })
                ),
                "{mode:o}"
            );
        }
        assert_eq!(
            check_directory_facts(path, &dir(0, 0o755), me),
            Err(AppError::DirectoryNotOwned {
                path: path.to_owned(),
                uid: 0
            })
        );
        let file = DirFacts {
            is_dir: false,
            uid: me,
            mode: 0o100_644,
        };
        assert_eq!(
            check_directory_facts(path, &file, me),
            Err(AppError::NotADirectory(path.to_owned()))
        );
    }

    #[test]
    fn the_directory_check_on_the_real_file_system() {
        let tmp = tempfile::tempdir().unwrap();
        let app = tmp.path().join("app");
        fs::create_dir(&app).unwrap();
        fs::set_permissions(&app, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(check_directory(&app), Ok(()));
        // Through a symbolic link, as a `current -> releases/v2` deploy does.
        let current = tmp.path().join("current");
        std::os::unix::fs::symlink(&app, &current).unwrap();
        assert_eq!(check_directory(&current), Ok(()));
        fs::set_permissions(&app, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            check_directory(&current),
            Err(AppError::DirectoryWritableByOthers { .. })
        ));
        let missing = tmp.path().join("missing");
        assert_eq!(check_directory(&missing), Err(AppError::DirectoryMissing(missing)));
        let file = tmp.path().join("file");
        fs::write(&file, "x").unwrap();
        assert_eq!(check_directory(&file), Err(AppError::NotADirectory(file.clone())));
        let under_file = file.join("sub");
        assert_eq!(check_directory(&under_file), Err(AppError::NotADirectory(under_file)));
        assert_eq!(
            check_directory(Path::new("relative/app")),
            Err(AppError::DirectoryNotAbsolute(PathBuf::from("relative/app")))
        );
    }

    #[test]
    fn statuses_and_one_line_messages() {
        assert_eq!(AppError::NotFound("x".into()).status(), 404);
        assert_eq!(AppError::NotFound("x".into()).to_string(), "App not found");
        assert_eq!(AppError::NameTaken("x".into()).status(), 409);
        let taken = AppError::HostTaken {
            host: "a.test".into(),
            app: "blog".into(),
        };
        assert_eq!(taken.status(), 409);
        assert_eq!(AppError::InvalidName("X".into()).status(), 400);
        assert_eq!(AppError::DirectoryMissing("/x".into()).status(), 400);
        for err in [
            taken,
            AppError::EnvKeyRefused("LD_PRELOAD".into()),
            AppError::InvalidName("a\nb".into()),
        ] {
            assert!(!err.to_string().contains('\n'), "{err}");
        }
    }
}
