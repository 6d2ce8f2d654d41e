//! Where Bun is, and which Bun is new enough.
//!
//! Bun runs the `.ts`, `.js` and `.rip` apps. The contract's order: the
//! `RIP_BUN` variable, else `bun` on `PATH`. This module only looks at the
//! values it is given (the CLI or the platform reads the environment) and
//! at the file system; asking the program for its version is the manager's
//! job (`manager::bun`), since it runs a process.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The oldest Bun the worker runtime is written for (`Bun.serve({unix})`,
/// `fetch(…, {unix})`, `require.cache` for ES modules).
pub const MIN_BUN_VERSION: (u32, u32, u32) = (1, 1, 0);

/// How to get Bun, for the one line printed when it is missing.
pub const HOW_TO_GET_BUN: &str =
    "install it with `npm install -g bun` (or see https://bun.sh), or set RIP_BUN=/path/to/bun";

/// Where Bun was looked for and found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BunLocation {
    /// `RIP_BUN` names it (not checked yet: the manager runs it).
    FromVariable(PathBuf),
    /// Found as `bun` on `PATH`.
    OnPath(PathBuf),
    /// Neither `RIP_BUN` nor `bun` on `PATH`.
    Missing,
}

impl BunLocation {
    /// The program to run, if any.
    pub fn program(&self) -> Option<&Path> {
        match self {
            BunLocation::FromVariable(p) | BunLocation::OnPath(p) => Some(p),
            BunLocation::Missing => None,
        }
    }
}

/// Finds Bun from the values of `RIP_BUN` and `PATH`. An empty `RIP_BUN`
/// counts as unset.
pub fn find_bun(rip_bun: Option<&OsStr>, path: Option<&OsStr>) -> BunLocation {
    if let Some(explicit) = rip_bun.filter(|v| !v.is_empty()) {
        return BunLocation::FromVariable(PathBuf::from(explicit));
    }
    let Some(path) = path else {
        return BunLocation::Missing;
    };
    std::env::split_paths(path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join("bun"))
        .find(|candidate| is_executable_file(candidate))
        .map_or(BunLocation::Missing, BunLocation::OnPath)
}

fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Parses `bun --version` output (`1.4.5`, maybe with a `-canary…` or
/// `+build` suffix) into its three numbers.
pub fn parse_bun_version(text: &str) -> Option<(u32, u32, u32)> {
    let core = text.trim().split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn rip_bun_wins_over_path_and_an_empty_one_is_unset() {
        let dir = tempfile::tempdir().unwrap();
        let bun = dir.path().join("bun");
        std::fs::write(&bun, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&bun, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().as_os_str();
        assert_eq!(
            find_bun(Some(OsStr::new("/opt/bun")), Some(path)),
            BunLocation::FromVariable("/opt/bun".into())
        );
        assert_eq!(find_bun(Some(OsStr::new("")), Some(path)), BunLocation::OnPath(bun));
    }

    #[test]
    fn path_entries_that_are_not_executable_files_do_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::create_dir(&plain).unwrap();
        std::fs::write(plain.join("bun"), "not executable").unwrap();
        let as_dir = dir.path().join("as_dir");
        std::fs::create_dir_all(as_dir.join("bun")).unwrap();
        let path = std::env::join_paths([&plain, &as_dir]).unwrap();
        assert_eq!(find_bun(None, Some(&path)), BunLocation::Missing);
        assert_eq!(find_bun(None, None), BunLocation::Missing);
    }

    #[test]
    fn versions_parse_with_suffixes_and_compare_as_numbers() {
        assert_eq!(parse_bun_version("1.4.5\n"), Some((1, 4, 5)));
        assert_eq!(parse_bun_version("1.2.0-canary.20250101+abc"), Some((1, 2, 0)));
        assert_eq!(parse_bun_version("1.10.0"), Some((1, 10, 0)));
        assert!(parse_bun_version("1.10.0") > Some(MIN_BUN_VERSION));
        assert!(parse_bun_version("1.0.36") < Some(MIN_BUN_VERSION));
        for bad in ["", "bun", "1.4", "1.4.5.6", "v1.4.5"] {
            assert_eq!(parse_bun_version(bad), None, "{bad}");
        }
    }
}
