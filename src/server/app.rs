//! One app's machinery, started without a listener or signals: its core
//! (balancer and supervisor in a driver task), its worker processes, its
//! control socket, its file watcher and its [`AppProxy`] for a front door.
//!
//! `rip-server <app>` starts one and puts it behind its own listener for
//! every host (see [`super::serve`]); the platform starts many and routes
//! to them by host. Apps share nothing but the process: each has its own
//! driver, queue, workers and socket prefix, so a flood on one never
//! delays another.
//!
//! ```text
//! AppServer::start ─► claim the socket prefix, bind <prefix>.ctl.sock
//!                  ─► driver task (workers start) + control socket task
//! AppHandle::stop  ─► stopping (a listener serving only this app closes)
//!                  ─► the driver drains, stops the workers and ends
//!                  ─► control socket closed and removed ─► stopped
//! ```

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Program, ServeError, sockets};
use crate::config::{EntryKind, HotReload, ServeConfig};
use crate::core::balancer::{Balancer, BalancerConfig};
use crate::core::node::Node;
use crate::core::supervisor::{Supervisor, SupervisorConfig};
use crate::frontdoor::{AppProxy, ProxyConfig};
use crate::manager::{ProcessSpawner, WorkerEnv, WorkerOutput, WorkerSetup};
use crate::net::transport::UnixTransport;
use crate::observe::access_log::{AccessLog, Format};
use crate::observe::status::{AcceptCounts, BunStatus, StatusSnapshot};
use crate::os::clock::Clock;
use crate::runtime::{Admin, AppRuntime, Driver, DriverHandle, Identity};

/// One running app; [`AppServer::wait`] returns once it has stopped.
pub struct AppServer {
    handle: AppHandle,
    lifecycle: JoinHandle<()>,
}

/// A cheap, cloneable handle to a running app: its front-door side, its
/// status and its admin commands. Dropping handles does not stop the app.
#[derive(Clone)]
pub struct AppHandle {
    inner: Arc<Shared>,
}

struct Shared {
    name: String,
    control_socket: PathBuf,
    proxy: Arc<AppProxy<UnixTransport>>,
    /// True once a stop was asked for (by [`AppHandle::stop`], a signal,
    /// or the control socket's `/stop`).
    stopping: watch::Sender<bool>,
    /// True once the app has stopped and its control socket is gone.
    stopped: watch::Receiver<bool>,
    /// Set by [`AppHandle::hold_drain`]: the core's drain waits for
    /// [`AppHandle::begin_drain`] (the listener's connections first).
    drain_held: std::sync::atomic::AtomicBool,
    /// What the control socket's `/status` shows as `tls`.
    tls_view: crate::control::TlsView,
}

impl AppServer {
    /// Starts the app `config` describes with `program` (from
    /// [`super::preflight`]): claims its socket prefix (refusing a live
    /// server's), binds its control socket, starts its driver and so its
    /// workers, which run through `exe` (a `rip-server` binary; see
    /// [`ProcessSpawner::with_executable`]). `ports` are the listener
    /// ports its `/status` names. The listener settings of `config`
    /// (`bind`, `http_port`, `header_timeout`) are not used here.
    pub async fn start(
        config: &ServeConfig,
        program: Program,
        exe: &Path,
        ports: Vec<u16>,
    ) -> Result<AppServer, ServeError> {
        AppServer::start_with(config, program, exe, ports, WorkerEnv::default(), WorkerOutput::Inherit).await
    }

    /// [`AppServer::start`] for an app whose requests come from
    /// `accepts.replicas()` front-door replicas (`--lb-replicas`), each
    /// with its own event loop (see `AppProxy::for_replica`); `/status`
    /// shows what each accepted.
    pub async fn start_replicated(
        config: &ServeConfig,
        program: Program,
        exe: &Path,
        ports: Vec<u16>,
        accepts: AcceptCounts,
    ) -> Result<AppServer, ServeError> {
        let (env, output) = (WorkerEnv::default(), WorkerOutput::Inherit);
        AppServer::start_inner(config, program, exe, ports, env, output, Some(accepts)).await
    }

    /// [`AppServer::start`], with `env` on top of every worker's
    /// environment (swappable while the app runs, see [`WorkerEnv`]) and
    /// the workers' output sent to `output` (the platform's log rings).
    pub async fn start_with(
        config: &ServeConfig,
        program: Program,
        exe: &Path,
        ports: Vec<u16>,
        env: WorkerEnv,
        output: WorkerOutput,
    ) -> Result<AppServer, ServeError> {
        AppServer::start_inner(config, program, exe, ports, env, output, None).await
    }

    async fn start_inner(
        config: &ServeConfig,
        program: Program,
        exe: &Path,
        ports: Vec<u16>,
        env: WorkerEnv,
        output: WorkerOutput,
        accepts: Option<AcceptCounts>,
    ) -> Result<AppServer, ServeError> {
        let Program {
            worker,
            bun,
            runtime_file,
        } = program;
        sockets::claim(config).await?;
        let control_socket = config.control_socket();
        let control_listener = crate::control::bind(&control_socket)
            .map_err(|e| format!("rip-server: {}: {e}", control_socket.display()))?;

        let clock = Clock::start();
        let spawner = ProcessSpawner::with_executable(
            WorkerSetup {
                program: worker,
                app: config.app_name.clone(),
                app_dir: config.app_dir.clone(),
                entry: config.entry.clone(),
                socket_prefix: config.socket_prefix.clone(),
                control_socket: control_socket.clone(),
                max_requests: config.max_requests,
                max_age: config.max_age,
                max_reloads: config.max_reloads,
                hot_reload: config.hot_reload.as_str(),
                json_logs: config.json_logging,
            },
            exe.to_path_buf(),
        )
        .with_env(env)
        .with_output(output);
        let identity = Identity {
            app: config.app_name.clone(),
            ports,
            socket_prefix: config.socket_prefix.clone(),
            check_sockets: true,
        };
        let mut driver = Driver::new(node(config, clock), spawner, clock, identity).with_app_runtime(AppRuntime {
            hot_reload: config.hot_reload.as_str(),
            bun: bun.map(|b| BunStatus {
                path: b.path.display().to_string(),
                version: b.version,
            }),
        });
        if let Some(accepts) = accepts {
            driver = driver.with_replicas(accepts);
        }
        let driver_handle = driver.handle();
        // One watcher for the app, reporting to the core, which decides.
        let watcher = match (config.hot_reload, config.entry_kind) {
            (HotReload::None, _) | (_, EntryKind::Builtin) => None,
            _ => {
                let handle = driver_handle.clone();
                let watching = crate::manager::watch::watch(&config.app_dir, move |_| handle.files_changed());
                match watching {
                    Ok(watcher) => Some(watcher),
                    Err(e) => {
                        let _ = std::fs::remove_file(&control_socket);
                        return Err(ServeError::Failed(format!(
                            "rip-server: --hot-reload={}: cannot watch {}: {e}",
                            config.hot_reload,
                            config.app_dir.display()
                        )));
                    }
                }
            }
        };
        let access_log = config.access_log.then(|| {
            let format = if config.json_logging {
                Format::Json
            } else {
                Format::Human
            };
            AccessLog::start(config.app_name.clone(), format)
        });
        let proxy = Arc::new(AppProxy::new(
            proxy_config(config),
            UnixTransport,
            driver_handle.clone(),
            clock,
            access_log,
        ));

        let (stopping, _) = watch::channel(false);
        let (stopped_tx, stopped) = watch::channel(false);
        let tls_view = crate::control::TlsView::default();
        let handle = AppHandle {
            inner: Arc::new(Shared {
                name: config.app_name.clone(),
                control_socket: control_socket.clone(),
                proxy,
                stopping,
                stopped,
                drain_held: std::sync::atomic::AtomicBool::new(false),
                tls_view: tls_view.clone(),
            }),
        };
        let on_stop: crate::control::OnStop = {
            let handle = handle.clone();
            Arc::new(move || handle.stop())
        };
        let driver_task = tokio::spawn(driver.run());
        // The control socket outlives the driver's stop: workers quit through it while stopping.
        let (done_tx, done_rx) = watch::channel(false);
        let control_task = tokio::spawn(crate::control::run_with_tls(
            control_listener,
            driver_handle,
            on_stop,
            tls_view.clone(),
            became_true(done_rx),
        ));
        let lifecycle = tokio::spawn(async move {
            // Kept until the app has stopped: the watcher, and the Bun
            // worker runtime's private directory.
            let _kept = (watcher, runtime_file);
            let _ = driver_task.await;
            let _ = done_tx.send(true);
            let _ = control_task.await;
            let _ = std::fs::remove_file(&control_socket);
            let _ = stopped_tx.send(true);
        });
        Ok(AppServer { handle, lifecycle })
    }

    /// A handle to the app.
    pub fn handle(&self) -> AppHandle {
        self.handle.clone()
    }

    /// Waits until the app has stopped: every worker gone, the control
    /// socket closed and removed.
    pub async fn wait(self) {
        let _ = self.lifecycle.await;
    }
}

impl AppHandle {
    /// The app's name (`RIP_APP`, its access log's `app`).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The app's control socket (`<prefix>.ctl.sock`).
    pub fn control_socket(&self) -> &Path {
        &self.inner.control_socket
    }

    /// The app as a front door routes to it (see `frontdoor::Routes`).
    pub fn proxy(&self) -> Arc<AppProxy<UnixTransport>> {
        self.inner.proxy.clone()
    }

    /// The app's driver.
    pub fn driver(&self) -> &DriverHandle {
        self.inner.proxy.driver()
    }

    /// The app's status, as its `/status` shows it (`None` once stopped).
    pub async fn status(&self) -> Option<StatusSnapshot> {
        self.driver().status().await
    }

    /// Runs an admin command: `RollingRestart` (no failed request),
    /// `ScaleBy`, `ScaleTo` (workers added or removed, the others
    /// untouched), `Stop` (as [`AppHandle::stop`]). Refused with a reason
    /// once the app is stopping.
    pub async fn admin(&self, command: Admin) -> Result<(), String> {
        if matches!(command, Admin::Stop) {
            self.stop();
            return Ok(());
        }
        self.driver().admin(command).await
    }

    /// Begins a graceful stop: queued and in-flight requests finish, then
    /// the workers stop. Returns at once; see [`AppHandle::stopped`].
    pub fn stop(&self) {
        self.inner.stopping.send_replace(true);
        if !self.inner.drain_held.load(std::sync::atomic::Ordering::SeqCst) {
            self.begin_drain();
        }
    }

    /// From now on a stop only closes the listener (those following
    /// [`AppHandle::stopping`]); the core's drain (queued and in-flight
    /// requests finish, then the workers stop) begins at
    /// [`AppHandle::begin_drain`]. The owner of the listener calls both, so
    /// the requests its open connections still send during their linger
    /// are served rather than refused.
    pub fn hold_drain(&self) {
        self.inner.drain_held.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// From now on the control socket's `/status` shows `view()` as `tls`
    /// (the certificate the app's HTTPS listener serves).
    pub fn show_tls(&self, view: impl Fn() -> crate::observe::status::TlsStatus + Send + Sync + 'static) {
        self.inner.tls_view.store(Some(Arc::new(Box::new(view))));
    }

    /// The core's drain: see [`AppHandle::stop`] and [`AppHandle::hold_drain`].
    pub fn begin_drain(&self) {
        let driver = self.driver().clone();
        tokio::spawn(async move {
            let _ = driver.admin(Admin::Stop).await;
        });
    }

    /// Whether a stop was asked for.
    pub fn is_stopping(&self) -> bool {
        *self.inner.stopping.borrow()
    }

    /// Resolves once a stop was asked for (at once if it was).
    pub fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        became_true(self.inner.stopping.subscribe())
    }

    /// Resolves once the app has stopped (at once if it has).
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        became_true(self.inner.stopped.clone())
    }
}

/// Resolves when `flag` is or becomes true, or its sender is gone.
async fn became_true(mut flag: watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}

/// The app's core: its balancer and supervisor, as `config` sets them.
fn node(config: &ServeConfig, clock: Clock) -> Node {
    let balancer = Balancer::new(BalancerConfig {
        max_queue: config.max_queue,
        queue_timeout: config.queue_timeout,
        read_timeout: config.read_timeout,
        policy: config.lb_policy,
        max_requests_per_worker: config.max_requests,
        desired_workers: config.workers,
        retry_after_send: config.retry_sent,
        ..BalancerConfig::default()
    });
    let supervisor = Supervisor::new(
        SupervisorConfig {
            workers: config.workers,
            max_requests: config.max_requests,
            max_age: config.max_age,
            max_reloads: (config.max_reloads > 0).then_some(config.max_reloads),
            stop_timeout: config.stop_timeout,
            stuck_grace: config.stuck_grace,
            ..SupervisorConfig::default()
        },
        clock.now(),
    );
    let mut node = Node::new(balancer, supervisor);
    node.set_reload_mode(config.hot_reload);
    node
}

/// The app's settings at the front door.
fn proxy_config(config: &ServeConfig) -> ProxyConfig {
    ProxyConfig {
        connect_timeout: config.connect_timeout,
        read_timeout: config.read_timeout,
        response_buffer: config.response_buffer,
    }
}
