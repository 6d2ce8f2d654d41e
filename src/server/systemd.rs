//! systemd's service notifications (sd_notify(3), with the `sd-notify`
//! crate) for a `Type=notify` unit. Without `NOTIFY_SOCKET` every call is a
//! no-op.
//!
//! | when | sent |
//! | --- | --- |
//! | the first worker is registered | `READY=1`, `STATUS=serving <app> with N workers` |
//! | a rolling restart begins (`SIGHUP`) | `RELOADING=1`, `MONOTONIC_USEC=<now>` |
//! | it ends (done or aborted) | `READY=1`, `STATUS=...` |
//! | the graceful stop begins | `STOPPING=1`, `STATUS=stopping` |
//! | every half of `WATCHDOG_USEC` | `WATCHDOG=1`, while the app's driver answers |
//!
//! The follower reads the app's status snapshot (the same one `/status`
//! shows) a few times a second while it waits for the first worker or the
//! end of a roll: nothing is added to the request path.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;

use super::AppHandle;

/// How often the follower looks at the app while it waits for a change.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// Sends notifications when systemd asked for them.
#[derive(Debug, Clone)]
pub struct Notifier {
    enabled: bool,
}

impl Notifier {
    /// Enabled when `NOTIFY_SOCKET` is set.
    pub fn from_env() -> Notifier {
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
        }
    }

    /// Whether systemd listens.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!("systemd notification failed: {e}");
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// `RELOADING=1` with `MONOTONIC_USEC` (systemd 253's reload protocol).
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now, NotifyState::Status("rolling restart")]),
            Err(_) => self.send(&[NotifyState::Reloading, NotifyState::Status("rolling restart")]),
        }
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// `MAINPID=<pid>` then `READY=1`: a hitless upgrade's new process
    /// takes over as the service's main process.
    pub fn ready_as_main(&self, status: &str) {
        self.send(&[
            NotifyState::MainPid(std::process::id()),
            NotifyState::Ready,
            NotifyState::Status(status),
        ]);
    }
}

/// The status line for people (`systemctl status`).
async fn status_line(app: &AppHandle) -> Option<String> {
    let status = app.status().await?;
    Some(format!(
        "serving {} with {} worker{}",
        status.app,
        status.workers,
        if status.workers == 1 { "" } else { "s" }
    ))
}

/// Waits until at least one worker of `app` is registered, then `on_ready`
/// with the status line. Returns without calling it if the app stops first.
pub async fn when_serving(app: &AppHandle, on_ready: impl FnOnce(&str)) {
    loop {
        if app.is_stopping() {
            return;
        }
        if let Some(status) = app.status().await
            && status.workers > 0
        {
            on_ready(&status_line(app).await.unwrap_or_default());
            return;
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

/// `READY=1` once the first worker is registered (unless `announce_ready`
/// is false: an upgrade's new server says it as the new main process), and
/// `WATCHDOG=1` at half the interval systemd asked for while the app's
/// driver answers.
pub fn follow(app: AppHandle, notifier: Arc<Notifier>, announce_ready: bool) {
    if !notifier.enabled() {
        return;
    }
    if announce_ready {
        let ready = notifier.clone();
        let watched = app.clone();
        tokio::spawn(async move {
            when_serving(&watched, |line| ready.ready(line)).await;
        });
    }
    if let Some(interval) = sd_notify::watchdog_enabled() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval / 2);
            loop {
                tick.tick().await;
                // A driver that no longer answers gets no keep-alive: systemd
                // then restarts the service, as the watchdog is meant to.
                if app.status().await.is_none() {
                    return;
                }
                notifier.send(&[NotifyState::Watchdog]);
            }
        });
    }
}

/// After `SIGHUP` started a rolling restart: `READY=1` once the roll has
/// ended (finished or aborted).
pub async fn ready_after_roll(app: AppHandle, notifier: Arc<Notifier>) {
    loop {
        match app.status().await {
            None => return,
            Some(status) if status.supervisor.rolling.is_none() => {
                notifier.ready(&status_line(&app).await.unwrap_or_default());
                return;
            }
            Some(_) => tokio::time::sleep(LOOK_EVERY).await,
        }
    }
}
