//! `$RIP_HOME/run/<app>.json`: how `rip-server status|restart|scale|stop`
//! without an app path find the running server.
//!
//! A server writes its run file once its listeners are bound (so the ports
//! are the real ones) and removes it when it exits; the [`Announcement`]
//! guard does both. A file whose pid is gone is stale: [`list_live`] skips
//! it (and a new server of the same app replaces it). A file that does not
//! parse is reported with one line naming it and is never overwritten.
//!
//! Two live servers of the same app in one home (two variants, say) cannot
//! share `<app>.json`: the second writes `<app>.<pid>.json`, so both can be
//! found.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::home::{ensure_private_dir, run_dir, write_private_atomically};
use super::{ConfigError, ServeConfig};

/// What a running server says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunFile {
    /// The server process.
    pub pid: u32,
    /// The app name.
    pub app: String,
    /// The real port of each listener, by kind (`http`, `https`).
    pub ports: BTreeMap<String, u16>,
    /// Where `status`, `restart`, `scale` and `stop` talk to it.
    pub control_socket: PathBuf,
    /// When it started, RFC 3339 UTC.
    pub started: String,
}

/// A live server's run file and where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The file.
    pub path: PathBuf,
    /// What it says.
    pub run: RunFile,
}

/// What [`list_live`] found.
#[derive(Debug, Default)]
pub struct Listing {
    /// Servers whose process is alive, by app name then pid.
    pub live: Vec<Found>,
    /// Files that could not be read or parsed, one error each naming the
    /// file; they are left as they are.
    pub problems: Vec<ConfigError>,
}

impl RunFile {
    /// Writes the run file into `home`'s run directory (created 0700 if
    /// needed), atomically and 0600. The name is `<app>.json`, unless that
    /// file belongs to another live server or does not parse (it is never
    /// overwritten): then `<app>.<pid>.json`. Returns the path written.
    pub fn write(&self, home: &Path) -> io::Result<PathBuf> {
        let dir = run_dir(home);
        ensure_private_dir(&dir)?;
        let plain = dir.join(format!("{}.json", self.app));
        let taken = match read(&plain) {
            Ok(None) => false,
            Ok(Some(other)) => other.pid != self.pid && pid_is_alive(other.pid),
            Err(_) => true,
        };
        let path = if taken {
            dir.join(format!("{}.{}.json", self.app, self.pid))
        } else {
            plain
        };
        let mut text = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        text.push(b'\n');
        write_private_atomically(&path, &text)?;
        Ok(path)
    }
}

/// Reads one run file: `Ok(None)` if there is none, `Err` if it cannot be
/// read or parsed (naming the file).
pub fn read(path: &Path) -> Result<Option<RunFile>, ConfigError> {
    let problem = |what: String| ConfigError::new(path.display().to_string(), what);
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(problem(format!("cannot read this run file ({e}); left as it is"))),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| problem(format!("not a valid run file ({e}); left as it is")))
}

/// Removes `path` if it is `pid`'s run file; a file of another process, or
/// one that does not parse, stays. Returns whether it removed the file.
pub fn remove_if_ours(path: &Path, pid: u32) -> io::Result<bool> {
    match read(path) {
        Ok(Some(run)) if run.pid == pid => match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        },
        _ => Ok(false),
    }
}

/// The live servers with a run file in `home`. Stale files (pid gone) are
/// skipped and left in place; files that do not parse are reported.
pub fn list_live(home: &Path) -> Listing {
    let dir = run_dir(home);
    let mut listing = Listing::default();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return listing,
        Err(e) => {
            listing.problems.push(ConfigError::new(
                dir.display().to_string(),
                format!("cannot list run files ({e})"),
            ));
            return listing;
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            // Dotfiles are temporary files of a write in progress.
            !name.starts_with('.') && name.ends_with(".json")
        })
        .collect();
    paths.sort();
    for path in paths {
        match read(&path) {
            Ok(Some(run)) if pid_is_alive(run.pid) => listing.live.push(Found { path, run }),
            Ok(_) => {}
            Err(problem) => listing.problems.push(problem),
        }
    }
    listing
        .live
        .sort_by(|a, b| (&a.run.app, a.run.pid).cmp(&(&b.run.app, b.run.pid)));
    listing
}

/// Whether process `pid` exists (a zombie counts as gone). A process of
/// another user counts as alive.
pub fn pid_is_alive(pid: u32) -> bool {
    let Some(p) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) else {
        return false;
    };
    match rustix::process::test_kill_process(p) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::PERM => {}
        Err(_) => return false,
    }
    // kill(pid, 0) succeeds on a zombie: a server that exited but was not
    // reaped yet. Where /proc says so, it is gone.
    let zombie = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = stat.get(stat.rfind(')')? + 2..)?;
            rest.chars().next()
        })
        .is_some_and(|state| state == 'Z' || state == 'X');
    !zombie
}

/// A server's run file, removed when this is dropped (a clean stop, or an
/// error after the start).
#[derive(Debug)]
pub struct Announcement {
    path: PathBuf,
    pid: u32,
}

impl Announcement {
    /// Writes the run file of the server running `config` in this process,
    /// listening on `ports` (`("http", 5002)`, `("https", 5700)`). A server without a home, or whose
    /// run file cannot be written, runs anyway: it logs one warning and
    /// returns `None` (it can then only be found through its app path).
    pub fn announce(config: &ServeConfig, ports: &[(&str, u16)]) -> Option<Announcement> {
        let Some(home) = &config.home else {
            tracing::warn!(
                "neither RIP_HOME nor HOME is set: no run file, so `rip-server status` needs this app's path"
            );
            return None;
        };
        let run = RunFile {
            pid: std::process::id(),
            app: config.app_name.clone(),
            ports: ports.iter().map(|(kind, port)| (kind.to_string(), *port)).collect(),
            control_socket: config.control_socket(),
            started: crate::os::clock::rfc3339_millis(crate::os::clock::wall_micros()),
        };
        Announcement::publish(home, run)
    }

    /// Writes `run` into `home`'s run directory; `None` (after one
    /// warning) when it cannot be written: the process runs anyway.
    pub fn publish(home: &Path, run: RunFile) -> Option<Announcement> {
        match run.write(home) {
            Ok(path) => Some(Announcement { path, pid: run.pid }),
            Err(e) => {
                tracing::warn!(
                    "{}: cannot write the run file ({e}); `rip-server status` needs the socket prefix",
                    run_dir(home).display()
                );
                None
            }
        }
    }

    /// The run file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Announcement {
    fn drop(&mut self) {
        if let Err(e) = remove_if_ours(&self.path, self.pid) {
            tracing::warn!("{}: cannot remove the run file: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pid: u32, app: &str) -> RunFile {
        RunFile {
            pid,
            app: app.to_string(),
            ports: BTreeMap::from([("http".to_string(), 5002)]),
            control_socket: PathBuf::from(format!("/tmp/rip_server_{app}.ctl.sock")),
            started: "2026-01-01T00:00:00.000Z".to_string(),
        }
    }

    /// A pid that is surely gone: a child we started and reaped.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn the_json_shape() {
        let v = serde_json::to_value(sample(7, "api")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "pid": 7, "app": "api", "ports": {"http": 5002},
                "controlSocket": "/tmp/rip_server_api.ctl.sock",
                "started": "2026-01-01T00:00:00.000Z",
            })
        );
    }

    #[test]
    fn write_list_and_remove() {
        let home = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let path = sample(me, "api").write(home.path()).unwrap();
        assert_eq!(path, home.path().join("run/api.json"));
        let listing = list_live(home.path());
        assert!(listing.problems.is_empty(), "{:?}", listing.problems);
        assert_eq!(
            listing.live,
            vec![Found {
                path: path.clone(),
                run: sample(me, "api")
            }]
        );
        // Only its own process removes it.
        assert!(!remove_if_ours(&path, me + 1).unwrap());
        assert!(path.exists());
        assert!(remove_if_ours(&path, me).unwrap());
        assert!(!path.exists());
        assert!(list_live(home.path()).live.is_empty());
    }

    #[test]
    fn stale_files_are_skipped_and_replaced() {
        let home = tempfile::tempdir().unwrap();
        let dead = dead_pid();
        let stale = sample(dead, "api").write(home.path()).unwrap();
        let listing = list_live(home.path());
        assert!(listing.live.is_empty() && listing.problems.is_empty());
        assert!(stale.exists(), "a stale file is left in place");
        // A new server of the same app takes the name over.
        let me = std::process::id();
        assert_eq!(sample(me, "api").write(home.path()).unwrap(), stale);
        assert_eq!(read(&stale).unwrap().unwrap().pid, me);
    }

    #[test]
    fn a_live_namesake_keeps_its_file() {
        let home = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let parent = std::os::unix::process::parent_id();
        let first = sample(parent, "api").write(home.path()).unwrap();
        let second = sample(me, "api").write(home.path()).unwrap();
        assert_ne!(first, second);
        assert_eq!(second, home.path().join(format!("run/api.{me}.json")));
        let pids: Vec<u32> = list_live(home.path()).live.iter().map(|f| f.run.pid).collect();
        let mut want = vec![parent, me];
        want.sort();
        assert_eq!(pids, want);
    }

    #[test]
    fn a_corrupt_file_is_reported_by_name_and_never_overwritten() {
        let home = tempfile::tempdir().unwrap();
        let dir = run_dir(home.path());
        ensure_private_dir(&dir).unwrap();
        let corrupt = dir.join("api.json");
        fs::write(&corrupt, b"{not json").unwrap();
        let listing = list_live(home.path());
        assert!(listing.live.is_empty());
        assert_eq!(listing.problems.len(), 1);
        assert_eq!(listing.problems[0].word, corrupt.display().to_string());
        assert!(!listing.problems[0].to_string().contains('\n'));
        let me = std::process::id();
        let written = sample(me, "api").write(home.path()).unwrap();
        assert_ne!(written, corrupt);
        assert_eq!(fs::read(&corrupt).unwrap(), b"{not json");
        assert!(!remove_if_ours(&corrupt, me).unwrap());
        assert!(corrupt.exists());
        // Temporary files of a write in progress are not run files.
        fs::write(dir.join(".x.json.1.tmp"), b"{").unwrap();
        assert_eq!(list_live(home.path()).problems.len(), 1);
    }

    #[test]
    fn an_announcement_removes_its_file_when_dropped() {
        let home = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let path = sample(me, "api").write(home.path()).unwrap();
        drop(Announcement {
            path: path.clone(),
            pid: me,
        });
        assert!(!path.exists());
        // A file another server has taken over since stays.
        let parent = std::os::unix::process::parent_id();
        let path = sample(parent, "api").write(home.path()).unwrap();
        drop(Announcement {
            path: path.clone(),
            pid: me,
        });
        assert!(path.exists());
    }

    #[test]
    fn no_home_directory_means_no_servers() {
        let home = tempfile::tempdir().unwrap();
        let listing = list_live(&home.path().join("absent"));
        assert!(listing.live.is_empty() && listing.problems.is_empty());
    }

    #[test]
    fn liveness() {
        assert!(pid_is_alive(std::process::id()));
        assert!(!pid_is_alive(dead_pid()));
        assert!(!pid_is_alive(0));
        assert!(!pid_is_alive(u32::MAX));
    }
}
