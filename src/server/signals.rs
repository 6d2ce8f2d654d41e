//! Signals, after unicorn and nginx: `SIGHUP` rolling restart (and, with
//! HTTPS, a reload of the `cert:`/`key:` files and of the registered host
//! names that get certificates of their own), `SIGTERM` / `SIGINT` graceful
//! stop, `SIGTTIN` / `SIGTTOU` one worker more / fewer, `SIGUSR2` hitless
//! upgrade to the binary now at the server's path, `SIGQUIT` graceful stop
//! as the upgrade's old server (sent by the new one).

use std::sync::Arc;

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::AppHandle;
use super::systemd::{Notifier, ready_after_roll};
use super::upgrade::{Listeners, Relaunch};
use crate::runtime::Admin;

/// What the signals drive.
pub(super) struct SignalTargets {
    /// The app.
    pub app: AppHandle,
    /// systemd's notifications.
    pub notifier: Arc<Notifier>,
    /// How to start the binary at the path (`SIGUSR2`).
    pub relaunch: Relaunch,
    /// The listening sockets an upgrade hands over.
    pub listeners: Listeners,
    /// Run on `SIGHUP` before the rolling restart (certificate files).
    pub on_hup: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// The signals, taken from their default action (registered before any
/// worker starts, so none is lost or kills the server meanwhile).
pub(super) struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
    ttin: Signal,
    ttou: Signal,
    usr2: Signal,
    quit: Signal,
}

impl Signals {
    pub(super) fn register() -> std::io::Result<Signals> {
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            ttin: signal(SignalKind::from_raw(libc_sigttin()))?,
            ttou: signal(SignalKind::from_raw(libc_sigttou()))?,
            usr2: signal(SignalKind::user_defined2())?,
            quit: signal(SignalKind::quit())?,
        })
    }

    /// From now on, each signal drives `app` (and `SIGHUP` also runs
    /// `on_hup`, off the event loop: it reads files); systemd hears of a
    /// rolling restart `SIGHUP` begins (`RELOADING=1`, then `READY=1` at
    /// its end).
    pub(super) fn forward(self, targets: SignalTargets) {
        let SignalTargets {
            app,
            notifier,
            relaunch,
            listeners,
            on_hup,
        } = targets;
        let Signals {
            mut hup,
            mut term,
            mut int,
            mut ttin,
            mut ttou,
            mut usr2,
            mut quit,
        } = self;
        tokio::spawn(async move {
            loop {
                let command = tokio::select! {
                    biased;
                    _ = term.recv() => None,
                    _ = int.recv() => None,
                    _ = quit.recv() => {
                        tracing::info!("replaced by a new server: stopping gracefully");
                        relaunch.mark_replaced();
                        None
                    }
                    _ = usr2.recv() => {
                        match listeners.start_upgrade(&relaunch) {
                            Ok(pid) => tracing::info!("upgrade: started {} (pid {pid})", relaunch.exe().display()),
                            Err(e) => tracing::error!("upgrade refused: {e}"),
                        }
                        continue;
                    }
                    _ = hup.recv() => Some(Admin::RollingRestart),
                    _ = ttin.recv() => Some(Admin::ScaleBy(1)),
                    _ = ttou.recv() => Some(Admin::ScaleBy(-1)),
                };
                match command {
                    None => {
                        tracing::info!("stop signal received");
                        app.stop();
                    }
                    Some(command) => {
                        tracing::info!(?command, "signal received");
                        if let (Admin::RollingRestart, Some(on_hup)) = (&command, &on_hup) {
                            let on_hup = on_hup.clone();
                            let _ = tokio::task::spawn_blocking(move || on_hup()).await;
                        }
                        let rolling = matches!(command, Admin::RollingRestart);
                        if rolling {
                            notifier.reloading();
                        }
                        match app.admin(command).await {
                            Err(e) => {
                                tracing::warn!("{e}");
                                if rolling {
                                    notifier.ready(&format!("restart refused: {e}"));
                                }
                            }
                            Ok(()) if rolling && notifier.enabled() => {
                                tokio::spawn(ready_after_roll(app.clone(), notifier.clone()));
                            }
                            Ok(()) => {}
                        }
                    }
                }
            }
        });
    }
}

fn libc_sigttin() -> i32 {
    rustix::process::Signal::TTIN.as_raw()
}

fn libc_sigttou() -> i32 {
    rustix::process::Signal::TTOU.as_raw()
}
