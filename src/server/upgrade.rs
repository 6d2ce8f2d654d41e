//! The hitless binary upgrade (`SIGUSR2`, the unicorn and nginx
//! convention), both sides of it.
//!
//! ```text
//! old server                                  new server (the binary now at the path)
//! SIGUSR2 ─► dup the listening sockets ─► spawn ─► adopts them (net::inherited), starts
//!            (without close-on-exec)               its workers on socket names of its
//!            close the dups                        own (<prefix>-u<pid>.*), and once one
//!            keeps serving meanwhile               has joined: MAINPID=/READY=1 to
//!                                                  systemd, SIGQUIT to the old server
//! SIGQUIT ─► graceful stop, handed over: ─────────► when the old one has exited: binds
//!            stops accepting (the new one keeps    <prefix>.ctl.sock too, so the CLI
//!            the same sockets: nothing refused),   finds it where it found the old one
//!            finishes every request, exits 0
//! ```
//!
//! Both processes accept from the same listening sockets during the
//! overlap: the kernel's accept queue is shared, so a connection waiting
//! in it when the old server stops accepting is taken by the new one, never
//! reset. The old server records the binary's path and its arguments at
//! start ([`Relaunch::capture`]): `/proc/self/exe` would re-run the old
//! image, which is not an upgrade. If the new process exits before it is
//! ready, the old one says so and keeps serving.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::AppHandle;
use super::systemd::{Notifier, when_serving};
use crate::net::inherited::{UPGRADE_FDS_ENV, UPGRADE_FROM_ENV, render_upgrade_fds};

/// How to start the binary now at the server's path, with its arguments.
#[derive(Debug, Clone)]
pub struct Relaunch {
    exe: PathBuf,
    args: Vec<OsString>,
    /// An upgrade started and not finished (a second `SIGUSR2` meanwhile is
    /// refused).
    busy: Arc<AtomicBool>,
    /// The server stops because it was replaced (its stop is then no
    /// `STOPPING=1`: the service goes on in the new process).
    replaced: Arc<AtomicBool>,
}

impl Relaunch {
    /// The path this process was started from and its arguments, read at
    /// start, before anyone can replace the file.
    pub fn capture() -> io::Result<Relaunch> {
        Ok(Relaunch {
            exe: std::env::current_exe()?,
            args: std::env::args_os().skip(1).collect(),
            busy: Arc::new(AtomicBool::new(false)),
            replaced: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The binary's path.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// Whether an upgrade handed the service over (the stop that follows
    /// is the old server's retirement).
    pub fn replaced(&self) -> bool {
        self.replaced.load(Ordering::SeqCst)
    }

    /// Marks the coming stop as the hand-over's.
    pub fn mark_replaced(&self) {
        self.replaced.store(true, Ordering::SeqCst);
    }

    /// Starts the binary at the path with the listening sockets `named`
    /// (`http`, `https`) handed over, and watches it: if it exits before
    /// it took over, the upgrade is over and this server keeps serving.
    /// Refused while another upgrade is under way.
    pub fn start<L: AsFd>(&self, named: &[(&str, &L)]) -> io::Result<u32> {
        if self.busy.swap(true, Ordering::SeqCst) {
            return Err(io::Error::other("an upgrade is already under way"));
        }
        match self.spawn(named) {
            Ok(mut child) => {
                let pid = child.id().unwrap_or_default();
                let busy = self.busy.clone();
                let replaced = self.replaced.clone();
                tokio::spawn(async move {
                    let status = child.wait().await;
                    if !replaced.load(Ordering::SeqCst) {
                        tracing::error!(
                            "upgrade failed: the new server (pid {pid}) exited before it took over ({}); this one keeps serving",
                            status.map_or_else(|e| e.to_string(), |s| s.to_string())
                        );
                        busy.store(false, Ordering::SeqCst);
                    }
                });
                Ok(pid)
            }
            Err(e) => {
                self.busy.store(false, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    fn spawn<L: AsFd>(&self, named: &[(&str, &L)]) -> io::Result<tokio::process::Child> {
        // Duplicates lose close-on-exec, so the child inherits them under
        // these numbers; they are closed here once it has started. (Workers
        // close every inherited descriptor first, should one start meanwhile.)
        let dups: Vec<(String, OwnedFd)> = named
            .iter()
            .map(|(name, listener)| Ok(((*name).to_owned(), rustix::io::dup(listener.as_fd())?)))
            .collect::<io::Result<_>>()?;
        let list: Vec<(&str, i32)> = dups.iter().map(|(n, fd)| (n.as_str(), fd.as_raw_fd())).collect();
        let child = tokio::process::Command::new(&self.exe)
            .args(&self.args)
            .env(UPGRADE_FDS_ENV, render_upgrade_fds(&list))
            .env(UPGRADE_FROM_ENV, std::process::id().to_string())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(false)
            .spawn();
        drop(dups);
        child
    }
}

/// The server's listening sockets, kept (as close-on-exec duplicates) to be
/// handed to a new binary, until the stop begins.
#[derive(Debug, Clone, Default)]
pub struct Listeners {
    kept: Arc<Mutex<Option<Kept>>>,
}

/// Each listener's name and a duplicate of it.
type Kept = Vec<(String, OwnedFd)>;

impl Listeners {
    /// Keeps a duplicate of each named listener.
    pub fn keep<L: AsFd>(named: &[(&str, &L)]) -> io::Result<Listeners> {
        let kept = named
            .iter()
            .map(|(name, listener)| {
                Ok((
                    (*name).to_owned(),
                    rustix::io::fcntl_dupfd_cloexec(listener.as_fd(), 3)?,
                ))
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Listeners {
            kept: Arc::new(Mutex::new(Some(kept))),
        })
    }

    /// Closes the duplicates: once the front door has closed its
    /// listener, nothing of this process keeps the port open.
    pub fn release(&self) {
        self.lock().take();
    }

    /// `SIGUSR2`: starts the new binary with these sockets.
    pub fn start_upgrade(&self, relaunch: &Relaunch) -> io::Result<u32> {
        let kept = self.lock();
        let Some(kept) = kept.as_ref() else {
            return Err(io::Error::other("the server is stopping"));
        };
        let named: Vec<(&str, &OwnedFd)> = kept.iter().map(|(n, fd)| (n.as_str(), fd)).collect();
        relaunch.start(&named)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Kept>> {
        self.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The new server's side, once started: when its first worker has joined,
/// it becomes the service's main process for systemd (`MAINPID=`,
/// `READY=1`) and tells the old server to stop (`SIGQUIT`); once that one
/// has exited, it also answers on `known_control_socket`, the path the CLI
/// finds from the app path or `--socket-prefix`.
pub async fn take_over(app: AppHandle, notifier: Arc<Notifier>, old: u32, known_control_socket: PathBuf) {
    let mut serving = false;
    when_serving(&app, |line| {
        notifier.ready_as_main(line);
        serving = true;
    })
    .await;
    if !serving {
        return; // stopped before it served: the old server goes on
    }
    tracing::info!("upgrade: serving; the old server (pid {old}) stops now");
    retire(old);
    exited(old).await;
    if app.is_stopping() {
        return;
    }
    let listener = match crate::control::bind(&known_control_socket) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!(
                "upgrade: cannot answer on {}: {e}; the run file names this server's control socket",
                known_control_socket.display()
            );
            return;
        }
    };
    let on_stop: crate::control::OnStop = {
        let app = app.clone();
        Arc::new(move || app.stop())
    };
    crate::control::run(listener, app.driver().clone(), on_stop, app.stopping()).await;
    // Ours until the stop: remove it, unless a later generation took the
    // path meanwhile (it binds only once this process has exited).
    let _ = std::fs::remove_file(&known_control_socket);
}

/// The socket prefix of a server started by an upgrade: `<prefix>-u<pid>`,
/// so that two generations never share a socket path.
pub fn own_prefix(prefix: &Path) -> PathBuf {
    let mut text = prefix.as_os_str().to_owned();
    text.push(format!("-u{}", std::process::id()));
    PathBuf::from(text)
}

/// Tells the server being upgraded that this one serves now (`SIGQUIT`).
pub fn retire(old: u32) {
    let Some(pid) = i32::try_from(old).ok().and_then(rustix::process::Pid::from_raw) else {
        return;
    };
    if let Err(e) = rustix::process::kill_process(pid, rustix::process::Signal::QUIT) {
        tracing::warn!("upgrade: cannot tell the old server (pid {old}) to stop: {e}");
    }
}

/// Resolves when process `pid` has exited (at once if it is gone), with a
/// pidfd: no polling.
pub async fn exited(pid: u32) {
    let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) else {
        return;
    };
    let Ok(fd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) else {
        return; // gone already
    };
    let Ok(fd) = crate::os::sys::register_readable(fd) else {
        return;
    };
    let _ = fd.readable().await;
}
