//! Claiming the socket prefix: refuse to start over a live server, then
//! remove what a dead one left behind.

use std::path::Path;

use crate::config::ServeConfig;

/// Refuses to start over a live server's sockets, then removes stale ones.
pub(super) async fn claim(config: &ServeConfig) -> Result<(), String> {
    let control = config.control_socket();
    if tokio::net::UnixStream::connect(&control).await.is_ok() {
        return Err(format!(
            "rip-server: {}: another rip-server is running with this socket prefix (stop it, or use --socket-prefix)",
            control.display()
        ));
    }
    let prefix = &config.socket_prefix;
    let dir = prefix
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = prefix
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("rip-server: {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{base}.")) && name.ends_with(".sock") {
            crate::net::unix_socket::remove_stale(&entry.path()).map_err(|e| format!("rip-server: {e}"))?;
        }
    }
    Ok(())
}
