//! Unix socket files: the one place that removes stale ones and binds new
//! ones, for the control socket, the manager and the worker runtime alike.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use tokio::net::UnixListener;

/// Removes `path` if it is a socket of ours; refuses to touch anything else
/// (a regular file, a symlink, or another user's socket planted there stops
/// us instead of being trusted or deleted; `root` would otherwise be able to
/// delete anyone's socket in a sticky `/tmp`).
pub fn remove_stale(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() && meta.uid() != rustix::process::geteuid().as_raw() => {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} is a socket owned by uid {}, not by this user; refusing to remove it",
                    path.display(),
                    meta.uid()
                ),
            ))
        }
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket; refusing to remove it", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Binds `path` after removing a stale socket there, and restricts it to
/// the server's user (mode 0600).
pub fn bind_private(path: &Path) -> io::Result<UnixListener> {
    remove_stale(path)?;
    // Created 0600 from the start (no window in which the umask's mode lets
    // another user connect), then set explicitly in case the umask was odd.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let bound = UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = bound.map_err(|e| io::Error::new(e.kind(), format!("bind {}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}
