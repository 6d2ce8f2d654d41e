//! Signals, after unicorn and nginx: `SIGHUP` rolling restart (and, with
//! HTTPS, a reload of the `cert:`/`key:` files and of the registered host
//! names that get certificates of their own), `SIGTERM` / `SIGINT` graceful
//! stop, `SIGTTIN` / `SIGTTOU` one worker more / fewer, `SIGUSR2` hitless
//! upgrade to the binary now at the server's path, `SIGQUIT` graceful stop
//! as the upgrade's old server (sent by the new one).
//!
//! With a drain delay (`--drain-delay-ms`), `SIGTERM` first raises the
//! drain flag (`/ready` answers 503 at once, so a load balancer or a
//! Kubernetes Service stops sending traffic) and the graceful stop begins
//! when the delay is over; meanwhile the server serves as before. A second
//! `SIGTERM`, or a `SIGINT`, begins the stop at once.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::Sleep;

use super::AppHandle;
use super::admin_port::DrainFlag;
use super::systemd::{Notifier, ready_after_roll};
use super::upgrade::{Listeners, Relaunch};
use crate::runtime::Admin;

/// What `SIGTERM` does before the graceful stop.
#[derive(Clone, Debug, Default)]
pub(super) struct Drain {
    /// How long to keep serving once the flag is up (0: stop at once).
    pub(super) delay: Duration,
    /// Raised by the first `SIGTERM`; `/ready` reads it.
    pub(super) flag: DrainFlag,
}

/// What the signals drive.
pub(super) struct SignalTargets {
    /// The app.
    pub app: AppHandle,
    /// `SIGTERM`'s drain delay and flag.
    pub drain: Drain,
    /// systemd's notifications.
    pub notifier: Arc<Notifier>,
    /// How to start the binary at the path (`SIGUSR2`).
    pub relaunch: Relaunch,
    /// The listening sockets an upgrade hands over.
    pub listeners: Listeners,
    /// Run on `SIGHUP` before the rolling restart (certificate files).
    pub on_hup: Option<Arc<dyn Fn() + Send + Sync>>,
}

enum Received {
    Term,
    Int,
    Replaced,
    Upgrade,
    DrainOver,
    Admin(Admin),
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

    /// From now on, each signal drives `targets.app`: `SIGTERM` drains
    /// first as `targets.drain` says; `SIGHUP` also runs `on_hup` (off the
    /// event loop: it reads files), and systemd hears of the rolling
    /// restart it begins (`RELOADING=1`, then `READY=1` at its end).
    pub(super) fn forward(self, targets: SignalTargets) {
        let SignalTargets {
            app,
            drain,
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
            // Running while the drain delay is: its end begins the stop.
            let mut drain_timer: Option<Pin<Box<Sleep>>> = None;
            loop {
                let received = tokio::select! {
                    biased;
                    _ = term.recv() => Received::Term,
                    _ = int.recv() => Received::Int,
                    _ = quit.recv() => Received::Replaced,
                    () = until_drained(&mut drain_timer) => Received::DrainOver,
                    _ = usr2.recv() => Received::Upgrade,
                    _ = hup.recv() => Received::Admin(Admin::RollingRestart),
                    _ = ttin.recv() => Received::Admin(Admin::ScaleBy(1)),
                    _ = ttou.recv() => Received::Admin(Admin::ScaleBy(-1)),
                };
                match received {
                    Received::Term if !drain.delay.is_zero() && !drain.flag.is_raised() => {
                        drain.flag.raise();
                        tracing::info!(
                            "stop signal received: draining, /ready answers 503; the graceful stop begins in {} ms",
                            drain.delay.as_millis()
                        );
                        drain_timer = Some(Box::pin(tokio::time::sleep(drain.delay)));
                    }
                    Received::Term | Received::Int => {
                        drain_timer = None;
                        drain.flag.raise();
                        tracing::info!("stop signal received");
                        app.stop();
                    }
                    Received::Replaced => {
                        tracing::info!("replaced by a new server: stopping gracefully");
                        relaunch.mark_replaced();
                        drain.flag.raise();
                        app.stop();
                    }
                    Received::DrainOver => {
                        drain_timer = None;
                        tracing::info!("drain delay over: stopping");
                        app.stop();
                    }
                    Received::Upgrade => match listeners.start_upgrade(&relaunch) {
                        Ok(pid) => tracing::info!("upgrade: started {} (pid {pid})", relaunch.exe().display()),
                        Err(e) => tracing::error!("upgrade refused: {e}"),
                    },
                    Received::Admin(command) => {
                        tracing::info!(?command, "signal received");
                        let rolling = matches!(command, Admin::RollingRestart);
                        if let (true, Some(on_hup)) = (rolling, &on_hup) {
                            let on_hup = on_hup.clone();
                            let _ = tokio::task::spawn_blocking(move || on_hup()).await;
                        }
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

/// Resolves when the drain delay is over; never while none runs.
async fn until_drained(timer: &mut Option<Pin<Box<Sleep>>>) {
    match timer {
        Some(sleep) => sleep.await,
        None => std::future::pending().await,
    }
}

fn libc_sigttin() -> i32 {
    rustix::process::Signal::TTIN.as_raw()
}

fn libc_sigttou() -> i32 {
    rustix::process::Signal::TTOU.as_raw()
}
