//! Running apps in Bun: checking the Bun program, and the worker runtime
//! file it runs.
//!
//! The runtime (`bun_runtime.js`) is compiled into this binary, so nothing
//! beside Bun needs installing. At start it is written into a fresh
//! directory that only the server's user can enter (mode 0700, created
//! exclusively under a random name by `tempfile`), never at a predictable
//! shared path another user could have planted a file at. The directory is
//! removed when the server stops.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::BunLocation;
use crate::config::bun::{HOW_TO_GET_BUN, MIN_BUN_VERSION, parse_bun_version};

/// The worker runtime every Bun worker runs (see the file's own header for
/// the protocol it speaks).
pub const RUNTIME_SOURCE: &str = include_str!("bun_runtime.js");

/// How long `bun --version` may take before Bun counts as unusable.
const VERSION_PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// A Bun that is new enough, by path and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BunProgram {
    pub path: PathBuf,
    /// What `bun --version` printed (`1.4.5`).
    pub version: String,
}

/// Asks `location`'s Bun for its version. Errors are one line for the
/// user: Bun missing, not runnable, or older than [`MIN_BUN_VERSION`].
pub async fn probe(location: &BunLocation, entry: &Path) -> Result<BunProgram, String> {
    let path = match location {
        BunLocation::Missing => {
            return Err(format!(
                "rip-server: {}: Bun runs .ts, .js and .rip apps and none was found (RIP_BUN is unset, no bun on PATH); {HOW_TO_GET_BUN}",
                entry.display()
            ));
        }
        BunLocation::FromVariable(p) | BunLocation::OnPath(p) => p.clone(),
    };
    let named = match location {
        BunLocation::FromVariable(_) => format!("RIP_BUN={}", path.display()),
        _ => path.display().to_string(),
    };
    let output = tokio::process::Command::new(&path)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(VERSION_PROBE_TIMEOUT, output).await {
        Err(_) => {
            return Err(format!(
                "rip-server: {named}: `bun --version` did not answer; {HOW_TO_GET_BUN}"
            ));
        }
        Ok(Err(e)) => return Err(format!("rip-server: {named}: cannot run Bun ({e}); {HOW_TO_GET_BUN}")),
        Ok(Ok(o)) => o,
    };
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let (min_major, min_minor, min_patch) = MIN_BUN_VERSION;
    match parse_bun_version(&text) {
        Some(v) if output.status.success() && v >= MIN_BUN_VERSION => Ok(BunProgram { path, version: text }),
        Some(_) if output.status.success() => Err(format!(
            "rip-server: {named}: Bun {text} is too old; rip-server needs Bun {min_major}.{min_minor}.{min_patch} or newer ({HOW_TO_GET_BUN})"
        )),
        _ => Err(format!(
            "rip-server: {named}: not a working Bun (`bun --version` said {:?}); {HOW_TO_GET_BUN}",
            text.lines().next().unwrap_or("")
        )),
    }
}

/// Runtime directories are named `<prefix><pid>-<random>`.
const RUNTIME_DIR_PREFIX: &str = "rip-server-bun-";

/// Removes runtime directories under `parent` left by servers that were
/// killed: ours (same owner), named with a pid that is no longer running.
/// Best effort: anything unexpected is left alone.
fn remove_stale_runtime_dirs(parent: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    let me = rustix::process::geteuid().as_raw();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(RUNTIME_DIR_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<i32>().ok())
        else {
            continue;
        };
        let ours = entry
            .path()
            .symlink_metadata()
            .is_ok_and(|m| m.is_dir() && m.uid() == me);
        if ours && !process_alive(pid) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn process_alive(pid: i32) -> bool {
    rustix::process::Pid::from_raw(pid).is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
}

/// The runtime file on disk, in its private directory; removed on drop.
#[derive(Debug)]
pub struct RuntimeFile {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl RuntimeFile {
    /// Writes [`RUNTIME_SOURCE`] into a fresh private directory under the
    /// system's temporary directory.
    pub fn write() -> std::io::Result<RuntimeFile> {
        RuntimeFile::write_in(&std::env::temp_dir())
    }

    /// Writes [`RUNTIME_SOURCE`] into a fresh private directory under `parent`.
    pub fn write_in(parent: &Path) -> std::io::Result<RuntimeFile> {
        remove_stale_runtime_dirs(parent);
        // tempfile creates the directory with mkdir(2) under a random name
        // (failing rather than reusing an existing one) and mode 0700. The
        // name carries our pid so a later start can tell a directory whose
        // server was killed (SIGKILL skips the clean-up) from a live one.
        let prefix = format!("{RUNTIME_DIR_PREFIX}{}-", std::process::id());
        let dir = tempfile::Builder::new().prefix(&prefix).tempdir_in(parent)?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        let path = dir.path().join("rip-worker-runtime.js");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        file.write_all(RUNTIME_SOURCE.as_bytes())?;
        file.sync_all()?;
        Ok(RuntimeFile { dir, path })
    }

    /// The runtime's path, given to `bun`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The private directory holding it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_runtime_is_written_privately_under_a_fresh_name_and_removed_on_drop() {
        let parent = tempfile::tempdir().unwrap();
        let a = RuntimeFile::write_in(parent.path()).unwrap();
        let b = RuntimeFile::write_in(parent.path()).unwrap();
        assert_ne!(a.dir(), b.dir(), "each server gets its own directory");
        let dir_meta = std::fs::metadata(a.dir()).unwrap();
        assert_eq!(dir_meta.mode() & 0o777, 0o700);
        let file_meta = std::fs::metadata(a.path()).unwrap();
        assert_eq!(file_meta.mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(a.path()).unwrap(), RUNTIME_SOURCE);
        let dir = a.dir().to_path_buf();
        drop(a);
        assert!(!dir.exists());
    }

    #[test]
    fn directories_of_killed_servers_are_removed_and_live_ones_kept() {
        let parent = tempfile::tempdir().unwrap();
        // A pid that cannot be running (above the kernel's pid_max limit).
        let dead = parent.path().join(format!("{RUNTIME_DIR_PREFIX}2147483000-abc"));
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join("rip-worker-runtime.js"), "x").unwrap();
        let live = parent
            .path()
            .join(format!("{RUNTIME_DIR_PREFIX}{}-def", std::process::id()));
        std::fs::create_dir(&live).unwrap();
        let unrelated = parent.path().join("rip-server-bun-notapid");
        std::fs::create_dir(&unrelated).unwrap();
        let fresh = RuntimeFile::write_in(parent.path()).unwrap();
        assert!(!dead.exists(), "a killed server's directory is removed");
        assert!(live.exists() && unrelated.exists());
        assert!(fresh.dir().exists());
    }

    #[tokio::test]
    async fn a_missing_or_broken_bun_is_one_line_saying_how_to_get_one() {
        let entry = Path::new("/apps/api/index.ts");
        let missing = probe(&BunLocation::Missing, entry).await.unwrap_err();
        assert!(
            missing.contains("RIP_BUN") && missing.contains("npm install -g bun"),
            "{missing}"
        );
        assert!(!missing.contains('\n'));

        let dir = tempfile::tempdir().unwrap();
        let fake = |name: &str, script: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, script).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            BunLocation::FromVariable(p)
        };
        let old = probe(&fake("old", "#!/bin/sh\necho 1.0.30\n"), entry)
            .await
            .unwrap_err();
        assert!(old.contains("1.0.30 is too old") && old.contains("1.1.0"), "{old}");
        let not_bun = probe(&fake("other", "#!/bin/sh\necho hello\n"), entry)
            .await
            .unwrap_err();
        assert!(not_bun.contains("not a working Bun"), "{not_bun}");
        let gone = probe(&BunLocation::FromVariable(dir.path().join("nope")), entry)
            .await
            .unwrap_err();
        assert!(gone.contains("RIP_BUN=") && gone.contains("cannot run Bun"), "{gone}");
        let good = probe(&fake("good", "#!/bin/sh\necho 1.4.5\n"), entry).await.unwrap();
        assert_eq!(good.version, "1.4.5");
    }
}
