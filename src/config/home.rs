//! `$RIP_HOME`: the one directory where rip-server keeps state between runs
//! (run files and the host registry today; the dev CA, certificates and the
//! platform's apps later).
//!
//! Directories are created 0700 and files written 0600, atomically (a
//! temporary file in the same directory, fsync, rename, fsync of the
//! directory), so a reader never sees half a file and a crash leaves the old
//! one. A read-modify-write of a shared file holds a [`FileLock`] so that two
//! processes editing it at once both land. The caller passes the
//! environment's values in: nothing here reads it.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// The home's name under the user's home directory when `RIP_HOME` is unset.
pub const DEFAULT_HOME_DIR: &str = ".rip-server";
/// The subdirectory of run files (`run/<app>.json`).
pub const RUN_DIR: &str = "run";

/// Which input of [`resolve`] is not an absolute path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAbsolute {
    /// The explicit home (`RIP_HOME`).
    Home,
    /// The user's home directory (`HOME`).
    UserHome,
}

/// Where the home is: `rip_home` (the value of `RIP_HOME`) if given, else
/// `<user_home>/.rip-server`; `Ok(None)` when neither is given. An empty
/// value counts as absent; the one used must be absolute.
pub fn resolve(rip_home: Option<&str>, user_home: Option<&str>) -> Result<Option<PathBuf>, NotAbsolute> {
    let absolute = |v: &str| Path::new(v).is_absolute();
    match (rip_home.filter(|v| !v.is_empty()), user_home.filter(|v| !v.is_empty())) {
        (Some(v), _) if absolute(v) => Ok(Some(PathBuf::from(v))),
        (Some(_), _) => Err(NotAbsolute::Home),
        (None, Some(h)) if absolute(h) => Ok(Some(Path::new(h).join(DEFAULT_HOME_DIR))),
        (None, Some(_)) => Err(NotAbsolute::UserHome),
        (None, None) => Ok(None),
    }
}

/// `<home>/run`, where running servers announce themselves.
pub fn run_dir(home: &Path) -> PathBuf {
    home.join(RUN_DIR)
}

/// Creates `dir` and any missing parents with mode 0700 (an existing
/// directory keeps its mode).
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Writes `contents` to `path` atomically with mode 0600: the file is either
/// the old one or the whole new one, never a part. The directory must exist.
pub fn write_private_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "expected a file name"))?;
    // A dotfile, so that readers listing the directory skip it; the pid
    // keeps two writers from sharing one.
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = dir.join(temp_name);
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written?;
    // The rename is durable once the directory is.
    fs::File::open(dir)?.sync_all()
}

/// An exclusive advisory lock (`flock`) on a lock file, held until dropped
/// (closing the file releases it, also when the process dies).
#[derive(Debug)]
pub struct FileLock {
    _file: fs::File,
}

/// Takes an exclusive lock on `path`, creating it (0600, empty) if needed and
/// waiting for another holder to let go. The lock file is never removed:
/// removing it would let a later process lock a new file while an older
/// one still holds the removed one.
pub fn lock_exclusive(path: &Path) -> io::Result<FileLock> {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive) {
            Ok(()) => return Ok(FileLock { _file: file }),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn rip_home_wins_and_must_be_absolute() {
        assert_eq!(
            resolve(Some("/srv/rip"), Some("/home/u")),
            Ok(Some(PathBuf::from("/srv/rip")))
        );
        assert_eq!(
            resolve(None, Some("/home/u")),
            Ok(Some(PathBuf::from("/home/u/.rip-server")))
        );
        assert_eq!(
            resolve(Some(""), Some("/home/u")),
            Ok(Some(PathBuf::from("/home/u/.rip-server")))
        );
        assert_eq!(resolve(None, None), Ok(None));
        assert_eq!(resolve(None, Some("")), Ok(None));
        assert_eq!(
            resolve(Some("rel/home"), Some("/home/u")).unwrap_err(),
            NotAbsolute::Home
        );
        assert_eq!(resolve(None, Some("relative")).unwrap_err(), NotAbsolute::UserHome);
        assert_eq!(
            resolve(Some("/srv/rip"), Some("relative")),
            Ok(Some(PathBuf::from("/srv/rip")))
        );
    }

    #[test]
    fn directories_are_private_and_files_atomic_and_private() {
        let tmp = tempfile::tempdir().unwrap();
        let run = run_dir(&tmp.path().join("home"));
        ensure_private_dir(&run).unwrap();
        for dir in [run.parent().unwrap(), run.as_path()] {
            let mode = fs::metadata(dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", dir.display());
        }
        let file = run.join("a.json");
        write_private_atomically(&file, b"one").unwrap();
        write_private_atomically(&file, b"two").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"two");
        assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(&run).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.json")]);
        // Into a directory that does not exist: an error, nothing created.
        assert!(write_private_atomically(&tmp.path().join("nope/a.json"), b"x").is_err());
    }

    #[test]
    fn a_file_lock_excludes_a_second_holder_until_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.lock");
        let held = lock_exclusive(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // flock locks belong to the open file: a second open is a second holder.
        let other = fs::File::open(&path).unwrap();
        let try_lock = || rustix::fs::flock(&other, rustix::fs::FlockOperation::NonBlockingLockExclusive);
        assert_eq!(try_lock(), Err(rustix::io::Errno::WOULDBLOCK));
        drop(held);
        assert_eq!(try_lock(), Ok(()));
    }
}
