//! Listening sockets a process is handed instead of binding them:
//!
//! - **systemd socket activation**: `LISTEN_PID` (this process),
//!   `LISTEN_FDS` (how many, from descriptor 3 on) and `LISTEN_FDNAMES`
//!   (`http`, `https`: the `.socket` unit's `FileDescriptorName=`), read
//!   with the `sd-notify` crate, which checks `LISTEN_PID`.
//! - **a hitless upgrade** (`SIGUSR2`): the old server starts the binary
//!   now at its path with `RIP_UPGRADE_FDS=http:<fd>[,https:<fd>]` and
//!   `RIP_UPGRADE_FROM=<its pid>`; the new process takes the descriptors
//!   only when its parent is that pid (the same guard as `LISTEN_PID`).
//!
//! A socket without a name, or with one other than `https`, is the HTTP
//! listener (a `.socket` unit without `FileDescriptorName=` names its
//! descriptors after the unit). None of these variables reaches a worker
//! ([`HANDED_OVER_ENV`]).

use std::collections::BTreeMap;
use std::io;

use crate::os::sys::adopt_inherited_listener;

/// The variables of both hand-overs and of systemd's notification socket:
/// the manager removes them from every worker's environment (a worker must
/// neither adopt a listener nor notify systemd in the server's name).
pub const HANDED_OVER_ENV: [&str; 8] = [
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    UPGRADE_FDS_ENV,
    UPGRADE_FROM_ENV,
];
/// `http:<fd>[,https:<fd>]`, set by the server being upgraded.
pub const UPGRADE_FDS_ENV: &str = "RIP_UPGRADE_FDS";
/// The pid of the server being upgraded.
pub const UPGRADE_FROM_ENV: &str = "RIP_UPGRADE_FROM";

/// Who handed the sockets over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandedBy {
    /// systemd (or `systemd-socket-activate`).
    Systemd,
    /// The server this process upgrades, still running with this pid.
    Upgrade { from: u32 },
}

/// The listeners handed to this process, by name (`http`, `https`).
#[derive(Debug, Default)]
pub struct Inherited {
    listeners: BTreeMap<String, std::net::TcpListener>,
    by: Option<HandedBy>,
}

impl Inherited {
    /// Reads the environment once at start: an upgrade's variables, else
    /// systemd's, else nothing. A descriptor that is not a listening stream
    /// socket, or two of one name, is an error naming it.
    pub fn from_env() -> io::Result<Inherited> {
        if let Ok(list) = std::env::var(UPGRADE_FDS_ENV) {
            let from: Option<u32> = std::env::var(UPGRADE_FROM_ENV).ok().and_then(|p| p.parse().ok());
            let parent = rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32);
            if from.is_some() && from == parent {
                let named = parse_upgrade_fds(&list).map_err(io::Error::other)?;
                return Inherited::adopt(
                    named,
                    HandedBy::Upgrade {
                        from: from.unwrap_or_default(),
                    },
                );
            }
            // Not our parent's hand-over (inherited through another process).
            return Ok(Inherited::default());
        }
        match sd_notify::listen_fds_with_names() {
            Ok(fds) if fds.len() > 0 => Inherited::adopt(fds.collect(), HandedBy::Systemd),
            _ => Ok(Inherited::default()),
        }
    }

    fn adopt(named: Vec<(i32, String)>, by: HandedBy) -> io::Result<Inherited> {
        let mut listeners = BTreeMap::new();
        for (fd, name) in named {
            let name = if name == "https" { "https" } else { "http" };
            let listener = adopt_inherited_listener(fd)
                .map_err(|e| io::Error::other(format!("handed-over socket {name} (descriptor {fd}): {e}")))?;
            if listeners.insert(name.to_owned(), listener).is_some() {
                return Err(io::Error::other(format!(
                    "two handed-over sockets are named {name}; name them http and https (FileDescriptorName=)"
                )));
            }
        }
        Ok(Inherited {
            listeners,
            by: Some(by),
        })
    }

    /// Who handed the sockets over, if anyone did.
    pub fn handed_by(&self) -> Option<HandedBy> {
        self.by
    }

    /// The listener named `name`, once, ready for tokio.
    pub fn take(&mut self, name: &str) -> io::Result<Option<tokio::net::TcpListener>> {
        match self.listeners.remove(name) {
            Some(listener) => {
                listener.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(listener).map(Some)
            }
            None => Ok(None),
        }
    }

    /// The names handed over and not taken (for a warning).
    pub fn unused(&self) -> Vec<String> {
        self.listeners.keys().cloned().collect()
    }
}

/// `http:5,https:6` → `[(5,"http"),(6,"https")]`.
pub fn parse_upgrade_fds(list: &str) -> Result<Vec<(i32, String)>, String> {
    list.split(',')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, fd) = part
                .split_once(':')
                .ok_or_else(|| format!("{UPGRADE_FDS_ENV}: expected name:fd, got {part:?}"))?;
            let fd: i32 = fd
                .parse()
                .map_err(|_| format!("{UPGRADE_FDS_ENV}: {fd:?} is not a descriptor number"))?;
            Ok((fd, name.to_owned()))
        })
        .collect()
}

/// The value of [`UPGRADE_FDS_ENV`] for these named descriptors.
pub fn render_upgrade_fds(named: &[(&str, i32)]) -> String {
    named
        .iter()
        .map(|(name, fd)| format!("{name}:{fd}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upgrade_list_round_trips_and_bad_entries_are_named() {
        let text = render_upgrade_fds(&[("http", 5), ("https", 9)]);
        assert_eq!(text, "http:5,https:9");
        assert_eq!(
            parse_upgrade_fds(&text).unwrap(),
            vec![(5, "http".to_owned()), (9, "https".to_owned())]
        );
        assert!(parse_upgrade_fds("http=5").unwrap_err().contains("name:fd"));
        assert!(parse_upgrade_fds("http:x").unwrap_err().contains("\"x\""));
    }

    #[test]
    fn a_descriptor_that_is_no_listener_is_refused() {
        // Standard streams, a closed number, a plain file, a socket that
        // does not listen.
        assert!(adopt_inherited_listener(1).is_err());
        assert!(adopt_inherited_listener(999_999).is_err());
        let file = tempfile::tempfile().unwrap();
        let fd = std::os::fd::IntoRawFd::into_raw_fd(file);
        assert!(adopt_inherited_listener(fd).is_err(), "a plain file is no listener");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = std::os::fd::IntoRawFd::into_raw_fd(listener);
        let adopted = adopt_inherited_listener(fd).expect("a listening socket is adopted");
        assert!(adopted.local_addr().unwrap().port() > 0);
    }
}
