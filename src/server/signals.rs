//! Signals, after unicorn and nginx: `SIGHUP` rolling restart, `SIGTERM` /
//! `SIGINT` graceful stop, `SIGTTIN` / `SIGTTOU` one worker more / fewer.

use tokio::signal::unix::{SignalKind, signal};

use crate::control::OnStop;
use crate::runtime::{Admin, DriverHandle};

pub(super) fn install(handle: DriverHandle, begin_stop: OnStop) -> std::io::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut ttin = signal(SignalKind::from_raw(libc_sigttin()))?;
    let mut ttou = signal(SignalKind::from_raw(libc_sigttou()))?;
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
                    begin_stop();
                }
                Some(command) => {
                    tracing::info!(?command, "signal received");
                    if let Err(e) = handle.admin(command).await {
                        tracing::warn!("{e}");
                    }
                }
            }
        }
    });
    Ok(())
}

fn libc_sigttin() -> i32 {
    rustix::process::Signal::TTIN.as_raw()
}

fn libc_sigttou() -> i32 {
    rustix::process::Signal::TTOU.as_raw()
}
