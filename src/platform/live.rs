//! [`RealControl`]: the [`AppControl`] over real apps. Each app is one
//! [`AppServer`] (its own driver, queue, workers, socket prefix and control
//! socket) behind the platform's one HTTP front door, routed by host.
//!
//! - deploy / start: the app's [`ServeConfig`] is the platform's template
//!   (limits, timeouts, Bun) with the record's directory (resolved as
//!   `rip-server <dir>` would), name, worker count, no hot reload, and the
//!   socket prefix `/tmp/rip_<variant>_<name>` (variant `platform` unless
//!   `--variant` says otherwise). The record's environment goes on top of
//!   the workers' ([`WorkerEnv`]); the workers' output goes, line by line,
//!   to the platform's stderr (prefixed with the app name) and to the app's
//!   [`LogRing`](super::logs::LogRing).
//! - stop: the app's hosts stop routing at once (`404 Host not found`),
//!   the app drains (requests under way finish) and stops in the
//!   background; a later start of the same name waits for that to end.
//! - restart: the rolling restart (`Admin::RollingRestart`). A changed
//!   environment is applied by swapping the app's [`WorkerEnv`] first, so
//!   the new generation starts with it while the old one keeps serving:
//!   never a stop and a start.
//! - scale: `Admin::ScaleTo` (the other workers are untouched).
//! - hosts: an app's hosts are its record's `hosts` plus every `hosts.json`
//!   entry naming its directory. The route table is rebuilt whole from the
//!   running apps and the last registry read, under the one state lock, so
//!   two changes never interleave their writes to the front door.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::apps::AppRecord;
use super::control::{AppControl, AppStatus, ControlError, LiveApp, LiveCounters, LiveQueue, LiveWorker};
use super::listeners::FrontDoors;
use super::logs::AppLogs;
use crate::config::defaults::DEFAULT_VARIANT;
use crate::config::hosts::{HostName, HostRegistry, read_registry};
use crate::config::{HotReload, ServeConfig, default_socket_prefix, resolve_app};
use crate::frontdoor::Routes;
use crate::manager::{WorkerEnv, WorkerOutput};
use crate::observe::status::StatusSnapshot;
use crate::os::clock::{rfc3339_millis, wall_micros};
use crate::runtime::Admin;
use crate::server::{AppHandle, AppServer, ServeError, preflight};

/// What every app of the platform shares.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// The apps' settings but their own (name, directory, entry, workers,
    /// socket prefix): limits, timeouts, Bun, access log.
    pub template: ServeConfig,
    /// The `rip-server` binary the workers start through.
    pub exe: PathBuf,
    /// `$RIP_HOME` (`hosts.json`).
    pub home: PathBuf,
    /// The HTTP port the apps are served on (for their `/status`).
    pub http_port: u16,
}

/// The running apps, routed by host through one front door.
pub struct RealControl {
    settings: LiveSettings,
    logs: Arc<AppLogs>,
    doors: FrontDoors,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The apps running (or starting), by name.
    apps: BTreeMap<String, Running>,
    /// Apps stopping in the background, by name: a start of the same name
    /// waits for the old one to end (it holds the socket prefix).
    stopping: BTreeMap<String, AppHandle>,
    /// Why an app could not start (shown as `error` until it starts).
    failed: BTreeMap<String, String>,
    /// `hosts.json` as last read.
    registry: HostRegistry,
}

struct Running {
    handle: AppHandle,
    record: AppRecord,
    /// The app's canonical directory (what `hosts.json` entries name).
    app_dir: PathBuf,
    env: WorkerEnv,
    started_at: String,
}

impl RealControl {
    /// A control that runs no app yet; routes go to `doors`.
    pub fn new(settings: LiveSettings, logs: Arc<AppLogs>, doors: FrontDoors) -> RealControl {
        RealControl {
            settings,
            logs,
            doors,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change leaves the state whole: a poisoned lock still holds it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads `hosts.json` again and routes by it. A registry that cannot be
    /// read or parsed is reported (one line) and the last good one kept.
    pub fn reload_registry(&self) -> Result<(), String> {
        let registry = read_registry(&self.settings.home).map_err(|e| e.to_string())?;
        let mut state = self.lock();
        state.registry = registry;
        self.publish(&state);
        Ok(())
    }

    /// The names of the apps running now.
    pub fn running(&self) -> Vec<String> {
        self.lock().apps.keys().cloned().collect()
    }

    /// Stops every app gracefully and waits until all have stopped (the
    /// platform's own stop).
    pub async fn stop_all(&self) {
        let handles: Vec<AppHandle> = {
            let mut state = self.lock();
            let running = std::mem::take(&mut state.apps);
            self.publish(&state);
            let mut handles: Vec<AppHandle> = running.into_values().map(|r| r.handle).collect();
            handles.extend(std::mem::take(&mut state.stopping).into_values());
            handles
        };
        for handle in &handles {
            handle.stop();
        }
        for handle in handles {
            handle.stopped().await;
        }
    }

    /// Rebuilds the route table from the running apps and the registry and
    /// hands it to the front door. Called with the state lock held: the
    /// one writer of the table.
    fn publish(&self, state: &State) {
        let mut routes = Routes::new();
        let mut owner: BTreeMap<HostName, String> = BTreeMap::new();
        let registered: Vec<(HostName, PathBuf)> = state
            .registry
            .iter()
            .map(|(host, dir)| (host.clone(), canonical(dir)))
            .collect();
        for (name, app) in &state.apps {
            let own = app.record.hosts.iter().filter_map(|h| HostName::parse(h).ok());
            let from_registry = registered
                .iter()
                .filter(|(_, dir)| *dir == app.app_dir)
                .map(|(host, _)| host.clone());
            for host in own.chain(from_registry) {
                match owner.get(&host) {
                    Some(first) if first != name => {
                        tracing::warn!(
                            "platform: host {host} is claimed by apps {first} and {name}; it routes to {first}"
                        );
                    }
                    Some(_) => {}
                    None => {
                        owner.insert(host.clone(), name.clone());
                        routes.insert(host, app.handle.proxy());
                    }
                }
            }
        }
        self.doors.set_routes(&routes, owner.into_keys().collect());
    }

    /// Every running app's status, by name (the metrics port's sample).
    pub async fn snapshots(&self) -> Vec<(String, StatusSnapshot)> {
        let handles: Vec<(String, AppHandle)> = self
            .lock()
            .apps
            .iter()
            .map(|(name, app)| (name.clone(), app.handle.clone()))
            .collect();
        let mut out = Vec::with_capacity(handles.len());
        for (name, handle) in handles {
            if let Some(status) = handle.status().await {
                out.push((name, status));
            }
        }
        out
    }

    /// The app's configuration: the template with the record's own settings.
    fn app_config(&self, record: &AppRecord) -> Result<ServeConfig, ControlError> {
        let Some(text) = record.directory.to_str() else {
            return Err(ControlError::Refused(format!(
                "directory {}: expected a UTF-8 path",
                record.directory.display()
            )));
        };
        let resolved =
            resolve_app(text).map_err(|e| ControlError::Refused(format!("directory {text}: {}", e.message)))?;
        let mut config = self.settings.template.clone();
        config.app_name = record.name.clone();
        config.app_dir = resolved.app_dir;
        config.entry = resolved.entry;
        config.entry_kind = resolved.entry_kind;
        config.workers = record.workers;
        config.hot_reload = HotReload::None;
        let variant = if config.variant == DEFAULT_VARIANT {
            "platform"
        } else {
            config.variant.as_str()
        };
        config.socket_prefix = default_socket_prefix(variant, &record.name);
        Ok(config)
    }

    /// Starts `record`'s app and routes its hosts; an app of that name
    /// already running is left as it is.
    async fn launch(&self, record: &AppRecord) -> Result<(), ControlError> {
        let previous = {
            let mut state = self.lock();
            if state.apps.contains_key(&record.name) {
                return Ok(());
            }
            state.stopping.remove(&record.name)
        };
        if let Some(old) = previous {
            old.stopped().await;
        }
        match self.start_server(record).await {
            Ok(running) => {
                let mut state = self.lock();
                state.failed.remove(&record.name);
                state.apps.insert(record.name.clone(), running);
                self.publish(&state);
                Ok(())
            }
            Err(e) => {
                self.lock().failed.insert(record.name.clone(), e.message().to_owned());
                Err(e)
            }
        }
    }

    async fn start_server(&self, record: &AppRecord) -> Result<Running, ControlError> {
        let config = self.app_config(record)?;
        let program = preflight(&config).await.map_err(control_error)?;
        let env = WorkerEnv::new(record.env.clone());
        let ring = self.logs.ring(&record.name);
        let name = record.name.clone();
        let output = WorkerOutput::Lines(Arc::new(move |line: &str| {
            crate::os::log_style::stderr_line(&format!("{name}: {line}"));
            ring.push(line);
        }));
        let server = AppServer::start_with(
            &config,
            program,
            &self.settings.exe,
            vec![self.settings.http_port],
            env.clone(),
            output,
        )
        .await
        .map_err(control_error)?;
        let handle = server.handle();
        if let Some(certificates) = &self.doors.certificates {
            let resolver = certificates.resolver.clone();
            handle.show_tls(move || crate::frontdoor::https::tls_status(&resolver.info()));
        }
        Ok(Running {
            handle,
            record: record.clone(),
            app_dir: config.app_dir,
            env,
            started_at: rfc3339_millis(wall_micros()),
        })
    }

    /// Takes the app out of the routes and stops it in the background.
    fn halt(&self, name: &str) {
        let mut state = self.lock();
        if let Some(running) = state.apps.remove(name) {
            self.publish(&state);
            running.handle.stop();
            state.stopping.insert(name.to_owned(), running.handle);
        }
    }

    fn handle(&self, name: &str) -> Option<AppHandle> {
        self.lock().apps.get(name).map(|r| r.handle.clone())
    }

    async fn admin(&self, name: &str, command: Admin) -> Result<(), ControlError> {
        let Some(handle) = self.handle(name) else {
            return Err(ControlError::Conflict(format!("app {name:?} is not running")));
        };
        handle.admin(command).await.map_err(ControlError::Conflict)
    }
}

fn control_error(e: ServeError) -> ControlError {
    match e {
        ServeError::Usage(m) => ControlError::Refused(m),
        ServeError::Failed(m) => ControlError::Failed(m),
    }
}

/// `dir` with its links resolved, or as it is when that fails (a directory
/// that is gone matches no app).
fn canonical(dir: &Path) -> PathBuf {
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}

/// An app's live state from its status snapshot.
pub fn live_from_status(status: &StatusSnapshot, started_at: Option<String>) -> LiveApp {
    let app_error = status.supervisor.app_error.as_ref().map(|e| e.message.clone());
    let state = if status.stopping {
        AppStatus::Stopped
    } else if status.workers > 0 {
        AppStatus::Running
    } else if app_error.is_some() {
        AppStatus::Error
    } else {
        AppStatus::Deployed
    };
    LiveApp {
        status: state,
        started_at,
        error: if state == AppStatus::Error { app_error } else { None },
        version: status.version.map(|v| v.0),
        pool: status
            .pool
            .iter()
            .map(|w| LiveWorker {
                pid: w.worker.pid.0,
                state: w.worker.state.to_owned(),
                version: w.worker.version.0,
                served: w.worker.served,
            })
            .collect(),
        queue: LiveQueue {
            depth: status.queue.depth,
            max: status.queue.max,
        },
        counters: LiveCounters {
            requests: status.counters.requests,
            server_errors: status.responses.server_error,
            restarts: status.supervisor.slots.iter().map(|s| s.restarts).sum(),
        },
    }
}

impl AppControl for RealControl {
    async fn deploy(&self, app: &AppRecord) -> Result<(), ControlError> {
        self.launch(app).await
    }

    async fn start(&self, app: &AppRecord) -> Result<(), ControlError> {
        self.launch(app).await
    }

    async fn stop(&self, name: &str) -> Result<(), ControlError> {
        self.halt(name);
        Ok(())
    }

    async fn restart(&self, app: &AppRecord) -> Result<(), ControlError> {
        let handle = {
            let mut state = self.lock();
            match state.apps.get_mut(&app.name) {
                Some(running) => {
                    // The new generation starts with the record's
                    // environment; the old one keeps serving meanwhile.
                    running.env.replace(app.env.clone());
                    running.record = app.clone();
                    running.started_at = rfc3339_millis(wall_micros());
                    Some(running.handle.clone())
                }
                None => None,
            }
        };
        match handle {
            Some(handle) => handle
                .admin(Admin::RollingRestart)
                .await
                .map_err(ControlError::Conflict),
            None => self.launch(app).await,
        }
    }

    async fn scale(&self, name: &str, workers: u32) -> Result<(), ControlError> {
        self.admin(name, Admin::ScaleTo(workers)).await?;
        if let Some(running) = self.lock().apps.get_mut(name) {
            running.record.workers = workers;
        }
        Ok(())
    }

    async fn reconfigure(&self, app: &AppRecord) -> Result<(), ControlError> {
        let rescale = {
            let mut state = self.lock();
            let Some(running) = state.apps.get_mut(&app.name) else {
                return Ok(()); // a stopped app takes the record at its next start
            };
            let rescale = running.record.workers != app.workers;
            // The environment waits for the next (rolling) restart: the
            // workers' `WorkerEnv` is not touched here.
            let env = running.record.env.clone();
            running.record = AppRecord { env, ..app.clone() };
            self.publish(&state);
            rescale
        };
        if rescale {
            self.admin(&app.name, Admin::ScaleTo(app.workers)).await?;
        }
        Ok(())
    }

    async fn undeploy(&self, name: &str) -> Result<(), ControlError> {
        self.halt(name);
        self.lock().failed.remove(name);
        Ok(())
    }

    async fn live(&self, name: &str) -> Option<LiveApp> {
        let (handle, started_at, failed) = {
            let state = self.lock();
            match state.apps.get(name) {
                Some(r) => (Some(r.handle.clone()), Some(r.started_at.clone()), None),
                None => match state.stopping.get(name) {
                    Some(h) => (Some(h.clone()), None, None),
                    None => (None, None, state.failed.get(name).cloned()),
                },
            }
        };
        if let Some(error) = failed {
            return Some(LiveApp {
                status: AppStatus::Error,
                error: Some(error),
                ..LiveApp::default()
            });
        }
        let handle = handle?;
        let stopping = handle.is_stopping();
        match handle.status().await {
            Some(status) => {
                let mut live = live_from_status(&status, started_at);
                if stopping {
                    live.status = AppStatus::Stopped;
                }
                Some(live)
            }
            None => Some(LiveApp {
                status: AppStatus::Stopped,
                ..LiveApp::default()
            }),
        }
    }
}
