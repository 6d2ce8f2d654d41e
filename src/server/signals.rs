//! Signals, after unicorn and nginx: `SIGHUP` rolling restart (and a
//! reload of the `cert:`/`key:` files), `SIGTERM` / `SIGINT` graceful stop,
//! `SIGTTIN` / `SIGTTOU` one worker more / fewer.

use tokio::signal::unix::{Signal, SignalKind, signal};

use std::sync::Arc;

use super::AppHandle;
use crate::runtime::Admin;
use crate::tls::files::CertFiles;

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

    /// From now on, each signal drives `app` (and `SIGHUP` reloads `files`).
    pub(super) fn forward(self, app: AppHandle, files: Option<Arc<CertFiles>>) {
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
                        if let (Admin::RollingRestart, Some(files)) = (&command, &files) {
                            let files = files.clone();
                            let _ = tokio::task::spawn_blocking(move || files.reload()).await;
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
