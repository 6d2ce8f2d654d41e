//! Signals, after unicorn and nginx: `SIGHUP` rolling restart, `SIGTERM` /
//! `SIGINT` graceful stop, `SIGTTIN` / `SIGTTOU` one worker more / fewer.
//!
//! With a drain delay (`--drain-delay-ms`), `SIGTERM` first raises the
//! drain flag (`/ready` answers 503 at once, so a load balancer or a
//! Kubernetes Service stops sending traffic) and the graceful stop begins
//! when the delay is over; meanwhile the server serves as before. A second
//! `SIGTERM`, or a `SIGINT`, begins the stop at once.

use std::pin::Pin;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::Sleep;

use super::AppHandle;
use super::admin_port::DrainFlag;
use crate::runtime::Admin;

/// What `SIGTERM` does before the graceful stop.
#[derive(Clone, Debug, Default)]
pub(super) struct Drain {
    /// How long to keep serving once the flag is up (0: stop at once).
    pub(super) delay: Duration,
    /// Raised by the first `SIGTERM`; `/ready` reads it.
    pub(super) flag: DrainFlag,
}

enum Received {
    Term,
    Int,
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

    /// From now on, each signal drives `app`; `SIGTERM` drains first as
    /// `drain` says.
    pub(super) fn forward(self, app: AppHandle, drain: Drain) {
        let Signals {
            mut hup,
            mut term,
            mut int,
            mut ttin,
            mut ttou,
        } = self;
        tokio::spawn(async move {
            // Running while the drain delay is: its end begins the stop.
            let mut drain_timer: Option<Pin<Box<Sleep>>> = None;
            loop {
                let received = tokio::select! {
                    biased;
                    _ = term.recv() => Received::Term,
                    _ = int.recv() => Received::Int,
                    () = until_drained(&mut drain_timer) => Received::DrainOver,
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
                    Received::DrainOver => {
                        drain_timer = None;
                        tracing::info!("drain delay over: stopping");
                        app.stop();
                    }
                    Received::Admin(command) => {
                        tracing::info!(?command, "signal received");
                        if let Err(e) = app.admin(command).await {
                            tracing::warn!("{e}");
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
