//! Signals, after unicorn and nginx: `SIGHUP` rolling restart (and, with
//! HTTPS, a reload of the `cert:`/`key:` files and of the registered host
//! names that get certificates of their own), `SIGTERM` / `SIGINT` graceful stop,
//! `SIGTTIN` / `SIGTTOU` one worker more / fewer.

use std::sync::Arc;

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::AppHandle;
use crate::runtime::Admin;

/// The signals, taken from their default action (registered before any
/// worker starts, so none is lost or kills the server meanwhile).
pub(super) struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
    ttin: Signal,
    ttou: Signal,
}

impl Signals {
    pub(super) fn register() -> std::io::Result<Signals> {
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            ttin: signal(SignalKind::from_raw(libc_sigttin()))?,
            ttou: signal(SignalKind::from_raw(libc_sigttou()))?,
        })
    }

    /// From now on, each signal drives `app` (and `SIGHUP` also runs `on_hup`,
    /// off the event loop: it reads files).
    pub(super) fn forward(self, app: AppHandle, on_hup: Option<Arc<dyn Fn() + Send + Sync>>) {
        let Signals {
            mut hup,
            mut term,
            mut int,
            mut ttin,
            mut ttou,
        } = self;
        tokio::spawn(async move {
            loop {
                let command = tokio::select! {
                    biased;
                    _ = term.recv() => None,
                    _ = int.recv() => None,
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
                        if let Err(e) = app.admin(command).await {
                            tracing::warn!("{e}");
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
