//! From an app path to the app dir, the entry and how to run it.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::defaults::BUILTIN_HELLO;
use super::{ConfigError, EntryKind};

/// What a directory app path is probed for, in order; the first existing wins.
/// `index` counts only if it is an executable file.
pub const ENTRY_PROBES: &[(&str, EntryKind)] = &[
    ("index.rip", EntryKind::Rip),
    ("index.ts", EntryKind::TypeScript),
    ("index.js", EntryKind::TypeScript),
    ("index", EntryKind::Executable),
];

/// The file extensions Bun runs as JavaScript or TypeScript modules.
pub const BUN_EXTENSIONS: &[&str] = &["ts", "tsx", "js", "mjs"];

/// How a file entry runs, from its extension first: `.rip` and the
/// [`BUN_EXTENSIONS`] run in Bun whatever their mode bits; any other file
/// must be executable. `None`: neither.
pub fn kind_of_file(path: &Path, executable: bool) -> Option<EntryKind> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("rip") => Some(EntryKind::Rip),
        Some(ext) if BUN_EXTENSIONS.contains(&ext) => Some(EntryKind::TypeScript),
        _ if executable => Some(EntryKind::Executable),
        _ => None,
    }
}

/// An app path, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedApp {
    /// Base name of the app dir.
    pub app_name: String,
    /// Absolute, canonical app directory.
    pub app_dir: PathBuf,
    /// Absolute entry path: the canonical app dir joined with the entry's
    /// file name (a symlinked entry keeps its name), or `builtin:hello`.
    pub entry: PathBuf,
    /// How to run the entry.
    pub entry_kind: EntryKind,
}

/// Resolves the app path of `rip-server <app-path>`.
///
/// - `builtin:hello`: the built-in example app, app dir = the current directory.
/// - A directory: the first of `index.rip`, `index.ts`, `index.js`, an
///   executable `index`.
/// - A file: app dir = its directory; its extension decides how it runs
///   (`.rip`, `.ts`, `.tsx`, `.js`, `.mjs` in Bun), else it must be an
///   executable worker program.
pub fn resolve_app(word: &str) -> Result<ResolvedApp, ConfigError> {
    if let Some(name) = word.strip_prefix("builtin:") {
        if word != BUILTIN_HELLO {
            return Err(ConfigError::new(
                word,
                format!("unknown built-in app {name:?}; expected {BUILTIN_HELLO}"),
            ));
        }
        let dir = std::env::current_dir()
            .and_then(fs::canonicalize)
            .map_err(|e| ConfigError::new(word, format!("expected a usable current directory ({e})")))?;
        return Ok(ResolvedApp {
            app_name: "hello".to_string(),
            app_dir: dir,
            entry: PathBuf::from(BUILTIN_HELLO),
            entry_kind: EntryKind::Builtin,
        });
    }
    if word.is_empty() {
        return Err(ConfigError::new("''", "expected an app path"));
    }
    let path = Path::new(word);
    let meta = fs::metadata(path).map_err(|e| not_found(word, &e))?;
    if meta.is_dir() {
        let dir = canonical(word, path)?;
        let app_name = app_name(word, &dir)?;
        let mut index_not_executable = false;
        for (name, kind) in ENTRY_PROBES {
            let candidate = dir.join(name);
            let Ok(m) = fs::metadata(&candidate) else {
                continue;
            };
            if !m.is_file() {
                continue;
            }
            if *kind == EntryKind::Executable && !is_executable(&m) {
                index_not_executable = true;
                continue;
            }
            return Ok(ResolvedApp {
                app_name,
                app_dir: dir,
                entry: candidate,
                entry_kind: *kind,
            });
        }
        let note = if index_not_executable {
            " (index exists but is not executable)"
        } else {
            ""
        };
        return Err(ConfigError::new(
            word,
            format!(
                "no app entry in this directory; expected index.rip, index.ts, index.js or an executable file named index{note}"
            ),
        ));
    }
    if !meta.is_file() {
        return Err(ConfigError::new(word, "expected a directory or a regular file"));
    }
    let Some(file_name) = path.file_name() else {
        return Err(ConfigError::new(word, "expected a file name"));
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = canonical(word, parent)?;
    let app_name = app_name(word, &dir)?;
    let Some(entry_kind) = kind_of_file(path, is_executable(&meta)) else {
        return Err(ConfigError::new(
            word,
            "not executable and not .rip/.ts/.js; expected an executable worker program, a .rip, .ts or .js file, or an app directory",
        ));
    };
    Ok(ResolvedApp {
        app_name,
        entry: dir.join(file_name),
        app_dir: dir,
        entry_kind,
    })
}

/// The app name for a `status`/`restart`/`stop`/`scale` app path: the base
/// name of the app dir (for a file, of its directory). A path that no longer
/// exists is read as a directory name, so a server whose app was moved away
/// can still be stopped.
pub fn target_app_name(word: &str) -> Result<String, ConfigError> {
    if word.starts_with("builtin:") {
        return resolve_app(word).map(|a| a.app_name);
    }
    let path = Path::new(word);
    let dir = match fs::metadata(path) {
        Ok(m) if m.is_file() => {
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            canonical(word, parent)?
        }
        Ok(_) => canonical(word, path)?,
        Err(_) => std::path::absolute(path)
            .map_err(|e| ConfigError::new(word, format!("expected a usable app path ({e})")))?,
    };
    app_name(word, &dir)
}

fn canonical(word: &str, path: &Path) -> Result<PathBuf, ConfigError> {
    fs::canonicalize(path).map_err(|e| not_found(word, &e))
}

fn app_name(word: &str, dir: &Path) -> Result<String, ConfigError> {
    match dir.file_name() {
        Some(name) => Ok(name.to_string_lossy().into_owned()),
        None => Err(ConfigError::new(
            word,
            "expected an app directory with a name (its base name is the app name)",
        )),
    }
}

fn not_found(word: &str, e: &io::Error) -> ConfigError {
    if e.kind() == io::ErrorKind::NotFound {
        ConfigError::new(
            word,
            "no such file or directory; expected an app directory, an entry file or builtin:hello",
        )
    } else {
        ConfigError::new(word, format!("expected a readable app path ({e})"))
    }
}

fn is_executable(meta: &fs::Metadata) -> bool {
    meta.permissions().mode() & 0o111 != 0
}
