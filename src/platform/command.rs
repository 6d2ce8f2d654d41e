//! `rip-server platform`: the API and dashboard on the admin address, the
//! apps' traffic on the HTTP port, routed by host ([`run`]).
//!
//! ```text
//! run ─► token (created on first start) ─► claim the control socket (a
//!        live platform of this variant: exit 1) ─► bind the API and HTTP
//!        listeners ─► open apps.json (corrupt: one line naming it, exit 1,
//!        file kept) ─► bind the control socket ─► signals registered
//!     ─► restore the apps kept as running (one line per app that cannot
//!        start; it shows `error` in the API) ─► deploy an app for each
//!        hosts.json directory no app serves ─► follow hosts.json ─► run
//!        file ─► start lines ─► ... SIGHUP: rolling restart of every
//!        running app ... SIGTERM / SIGINT / `rip-server stop` ─► listeners
//!        close ─► every app drains and stops ─► socket and run file
//!        removed ─► exit 0
//! ```
//!
//! `hosts.json` is followed with a file watcher on `$RIP_HOME` (inotify);
//! when the watcher cannot start it is re-read every [`POLL`] instead.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, watch};

use super::api::{self, Api, ApiConfig};
use super::listeners::{self, FrontDoors};
use super::live::{LiveSettings, RealControl};
use super::logs::AppLogs;
use super::{socket, token};
use crate::config::ServeConfig;
use crate::config::hosts::HOSTS_FILE;
use crate::config::run_file::{Announcement, RunFile};
use crate::net::listen::bind_tcp;
use crate::os::clock::{rfc3339_millis, wall_micros};
use crate::server::admin_port::{self, DrainFlag, MetricsSource, Sample};
use crate::server::{ServeError, release_memory_of_idle_connections};

/// The API's port by default.
pub const DEFAULT_API_PORT: u16 = 3000;
/// The admin address by default.
pub const DEFAULT_ADMIN_BIND: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// How often `hosts.json` is re-read when it cannot be watched.
pub const POLL: Duration = Duration::from_secs(2);

/// Everything `rip-server platform` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformConfig {
    /// `$RIP_HOME`: the token, `apps.json`, `hosts.json`.
    pub home: PathBuf,
    /// The API and dashboard port (0: a free one).
    pub api_port: u16,
    /// The API's address (`--admin-bind`).
    pub admin_bind: IpAddr,
    /// Settings every app shares, and the HTTP listener's (`http_port`,
    /// `bind`); `workers` is the count of an app deployed without one. Its
    /// app fields are not used.
    pub apps: ServeConfig,
}

/// Runs the platform until SIGTERM or SIGINT has stopped every app.
pub async fn run(config: PlatformConfig) -> Result<(), ServeError> {
    let failed = |m: String| ServeError::Failed(format!("rip-server: platform: {m}"));
    if !config.admin_bind.is_loopback() {
        eprintln!(
            "rip-server: platform: warning: the API listens on {}, not a loopback address: anyone who can reach it and has the token can deploy code",
            config.admin_bind
        );
    }
    let token = token::load_or_create(&config.home).map_err(|e| failed(e.to_string()))?;
    let control_path = socket::control_socket(&config.apps.variant);
    socket::claim(&control_path).await.map_err(failed)?;
    let (swept, problems) = socket::sweep_stale_app_sockets(&config.apps.variant).await;
    if !swept.is_empty() {
        tracing::info!("platform: removed {} socket files a stopped platform left", swept.len());
    }
    for problem in problems {
        eprintln!("rip-server: platform: {problem}");
    }
    let api_listener = bind_tcp(config.admin_bind, config.api_port).map_err(|e| {
        failed(format!(
            "--api-port={} on {}: cannot listen: {e}",
            config.api_port, config.admin_bind
        ))
    })?;
    // The apps' listeners (and the certificates, a missing CA: exit 2).
    let bound = listeners::bind(&config.apps, config.admin_bind)?;
    let admin = api_listener.local_addr().map_err(|e| failed(e.to_string()))?;
    let http_port = bound
        .http
        .as_ref()
        .or(bound.https.as_ref())
        .map(|(_, port)| *port)
        .unwrap_or_default();
    let exe = std::env::current_exe().map_err(|e| failed(format!("cannot find own executable: {e}")))?;

    let logs = Arc::new(AppLogs::default());
    let listeners::Bound {
        http,
        https,
        certificates,
        metrics,
    } = bound;
    let mut ports = BTreeMap::from([("api".to_owned(), admin.port())]);
    for (kind, listener) in [("http", &http), ("https", &https)] {
        if let Some((_, port)) = listener {
            ports.insert(kind.to_owned(), *port);
        }
    }
    // Kept for as long as the platform runs: dropping it stops the watch.
    let _certificate_watch = match &certificates {
        Some(c) => c.watch().map_err(|e| failed(format!("https: {e}")))?,
        None => None,
    };
    let doors = FrontDoors::new(&config.apps, http.is_some(), https.is_some(), certificates);
    let (closing_tx, closing_rx) = watch::channel(false);
    let closing = move || {
        let mut rx = closing_rx.clone();
        async move {
            let _ = rx.wait_for(|set| *set).await;
        }
    };
    // Served from now on; every host is `404 Host not found` until the
    // apps are restored.
    let app_addresses = listeners::serve(&config.apps, http, https, &doors, &closing)?;
    let control = RealControl::new(
        LiveSettings {
            template: config.apps.clone(),
            exe,
            home: config.home.clone(),
            http_port,
        },
        logs.clone(),
        doors,
    );
    let api_config = ApiConfig {
        home: config.home.clone(),
        admin,
        token: token.clone(),
        default_workers: config.apps.workers,
    };
    // apps.json is read before anything starts; a corrupt one stops here.
    let api = Arc::new(Api::open(api_config, control, logs).map_err(|e| failed(e.to_string()))?);
    if let Err(e) = api.control().reload_registry() {
        eprintln!("rip-server: platform: {e}; hosts from it are not routed until it is fixed");
    }

    let control_listener = crate::control::bind(&control_path)
        .map_err(|e| failed(format!("{}: cannot listen: {e}", control_path.display())))?;

    // Before any worker starts: a signal from then on is ours.
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| failed(format!("signals: {e}")))?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| failed(format!("signals: {e}")))?;
    let mut hangup = signal(SignalKind::hangup()).map_err(|e| failed(format!("signals: {e}")))?;
    let stop_asked = Arc::new(Notify::new());
    let draining = DrainFlag::default();
    tokio::spawn(api::run(api_listener, api.clone(), closing()));
    let mut metrics_line = String::new();
    if let Some((listener, address)) = metrics {
        ports.insert("metrics".to_owned(), address.port());
        let source = Arc::new(PlatformMetrics {
            api: api.clone(),
            draining: draining.clone(),
        });
        tokio::spawn(admin_port::run(listener, source, closing()));
        metrics_line = format!("; metrics, /ready and /live on http://{address}");
    }
    let identity = socket::Identity {
        ports: ports.clone(),
        dashboard: format!("http://{admin}/"),
    };
    tokio::spawn(socket::run(
        control_listener,
        api.clone(),
        identity,
        stop_asked.clone(),
        closing(),
    ));
    tokio::spawn(release_memory_of_idle_connections());

    for (name, error) in api.restore().await {
        eprintln!("rip-server: platform: app {name} did not start: {error}");
    }
    for line in api.adopt_registry().await {
        eprintln!("rip-server: platform: {line}");
    }
    let _registry = follow_registry(api.clone());
    // `$RIP_HOME/run/platform.json`, removed when this guard drops.
    let run_file = Announcement::publish(
        &config.home,
        RunFile {
            pid: std::process::id(),
            app: "platform".to_owned(),
            ports,
            control_socket: control_path.clone(),
            started: rfc3339_millis(wall_micros()),
        },
    );
    let running = api.control().running().len();
    println!(
        "rip-server: platform API and dashboard on http://{admin} ({} apps, {running} running){metrics_line}",
        api.apps().len()
    );
    println!("rip-server: platform login: {}", token.login_url(admin));
    for address in app_addresses {
        println!("rip-server: platform apps on {address} (routed by host)");
    }

    loop {
        tokio::select! {
            _ = terminate.recv() => {
                // `--drain-delay-ms`: `/ready` answers 503 at once, the apps
                // keep serving for the delay (a second SIGTERM cuts it).
                draining.raise();
                if !config.apps.drain_delay.is_zero() {
                    tracing::info!("platform: draining for {} ms before the stop", config.apps.drain_delay.as_millis());
                    tokio::select! {
                        _ = tokio::time::sleep(config.apps.drain_delay) => {}
                        _ = terminate.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                break;
            }
            _ = interrupt.recv() => break,
            _ = stop_asked.notified() => break,
            _ = hangup.recv() => {
                let api = api.clone();
                tokio::spawn(async move {
                    for (name, answer) in api.restart_running().await {
                        if !answer.status().is_success() {
                            crate::os::log_style::stderr_line(&format!(
                                "rip-server: platform: app {name}: not restarted ({})",
                                answer.status()
                            ));
                        }
                    }
                });
            }
        }
    }
    tracing::info!("platform: stopping every app");
    draining.raise();
    let _ = closing_tx.send(true);
    api.control().stop_all().await;
    let _ = std::fs::remove_file(&control_path);
    drop(run_file);
    Ok(())
}

/// Keeps the routes in line with `hosts.json` while the platform runs:
/// a watcher on `$RIP_HOME` wakes a task that re-reads it; without a
/// watcher, the task re-reads it every [`POLL`]. Dropping the returned
/// watcher stops the watching (the task then polls).
fn follow_registry(api: Arc<Api<RealControl>>) -> Option<crate::manager::watch::AppWatcher> {
    let changed = Arc::new(Notify::new());
    let wake = changed.clone();
    let watcher = crate::manager::watch::watch(&api.config().home, move |path| {
        if path.file_name().is_some_and(|n| n == HOSTS_FILE) {
            wake.notify_one();
        }
    });
    let watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            eprintln!(
                "rip-server: platform: cannot watch {} ({e}); re-reading {HOSTS_FILE} every {}s",
                api.config().home.display(),
                POLL.as_secs()
            );
            None
        }
    };
    let poll = watcher.is_none();
    tokio::spawn(async move {
        loop {
            if poll {
                tokio::time::sleep(POLL).await;
            } else {
                changed.notified().await;
            }
            if let Err(e) = api.control().reload_registry() {
                tracing::warn!("platform: {e}; keeping the hosts read before");
            }
            for line in api.adopt_registry().await {
                crate::os::log_style::stderr_line(&format!("rip-server: platform: {line}"));
            }
        }
    });
    watcher
}

/// The metrics port's view of the platform: every running app under its
/// own `app` label; ready while not draining and some app has a worker.
struct PlatformMetrics {
    api: Arc<Api<RealControl>>,
    draining: DrainFlag,
}

impl MetricsSource for PlatformMetrics {
    fn sample(&self) -> Pin<Box<dyn Future<Output = Sample> + Send + '_>> {
        Box::pin(async move {
            Sample {
                apps: self.api.control().snapshots().await,
                draining: self.draining.is_raised(),
            }
        })
    }
}
