//! `rip-server <app-path> ...`: wires the core, the driver, the front door,
//! the control socket, the manager and the signal handlers together.
//!
//! The top of the adapters: may import every other folder but `cli` and
//! `worker`; nothing but `main` and the CLI imports this.

mod signals;
mod sockets;

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::{EntryKind, HotReload, Protocol, ServeConfig};
use crate::core::balancer::{Balancer, BalancerConfig};
use crate::core::node::Node;
use crate::core::supervisor::{Supervisor, SupervisorConfig};
use crate::frontdoor::{FrontDoor, FrontDoorConfig};
use crate::manager::bun::{self, BunProgram, RuntimeFile};
use crate::manager::{ProcessSpawner, WorkerProgram, WorkerSetup};
use crate::net::listen::bind_tcp;
use crate::net::transport::UnixTransport;
use crate::observe::access_log::{AccessLog, Format};
use crate::observe::status::BunStatus;
use crate::os::clock::{Clock, wall_micros};
use crate::runtime::{Admin, AppRuntime, Driver, Identity};

/// Why the server did not run: the command cannot be carried out as
/// written (exit 2), or starting or running failed (exit 1). The text is
/// one line for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServeError {
    /// Found before anything started: no Bun for a Bun app, a `.rip` entry
    /// without a preload, a preload that does not exist.
    Usage(String),
    /// A port in use, a socket that cannot be bound, a feature not in this version.
    Failed(String),
}

impl ServeError {
    /// The line to print.
    pub fn message(&self) -> &str {
        match self {
            ServeError::Usage(m) | ServeError::Failed(m) => m,
        }
    }
}

impl From<String> for ServeError {
    fn from(message: String) -> ServeError {
        ServeError::Failed(message)
    }
}

/// How the workers run, checked before anything starts.
pub struct Program {
    pub worker: WorkerProgram,
    /// The Bun that runs the app, for `/status`.
    pub bun: Option<BunProgram>,
    /// Keeps the Bun worker runtime's private directory while the server runs.
    pub runtime_file: Option<RuntimeFile>,
}

/// Checks what can be checked before anything starts.
pub async fn preflight(config: &ServeConfig) -> Result<Program, ServeError> {
    if config.protocol != Protocol::Http || config.https_port.is_some() {
        return Err(ServeError::Failed(
            "rip-server: https: HTTPS is not available in this version; use http:<port>".into(),
        ));
    }
    let plain = |worker| Program {
        worker,
        bun: None,
        runtime_file: None,
    };
    match config.entry_kind {
        EntryKind::Builtin => return Ok(plain(WorkerProgram::Builtin)),
        EntryKind::Executable => return Ok(plain(WorkerProgram::Executable(config.entry.clone()))),
        EntryKind::Rip | EntryKind::TypeScript => {}
    }
    let preload = match (&config.bun_preload, config.entry_kind) {
        (Some(preload), _) => {
            if !preload.is_file() {
                return Err(ServeError::Usage(format!(
                    "rip-server: --bun-preload={}: no such file; expected the Bun preload script that registers the .rip loader",
                    preload.display()
                )));
            }
            Some(preload.clone())
        }
        (None, EntryKind::Rip) => {
            return Err(ServeError::Usage(format!(
                "rip-server: {}: a .rip app needs --bun-preload=PATH (or RIP_BUN_PRELOAD): a Bun preload script that registers the Rip compiler as a Bun.plugin",
                config.entry.display()
            )));
        }
        (None, _) => None,
    };
    let bun = bun::probe(&config.bun, &config.entry)
        .await
        .map_err(ServeError::Usage)?;
    let runtime_file = RuntimeFile::write()
        .map_err(|e| ServeError::Failed(format!("rip-server: cannot write the Bun worker runtime: {e}")))?;
    Ok(Program {
        worker: WorkerProgram::Bun {
            bun: bun.path.clone(),
            runtime: runtime_file.path().to_path_buf(),
            preload,
        },
        bun: Some(bun),
        runtime_file: Some(runtime_file),
    })
}

/// The host of the start line's URL: `localhost` when the port is reachable
/// there (every interface, or loopback), else the address itself.
fn display_host(bind: IpAddr) -> String {
    match bind {
        ip if ip.is_unspecified() || ip.is_loopback() => "localhost".to_owned(),
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Runs the server until a graceful stop completes.
pub async fn serve(config: ServeConfig) -> Result<(), ServeError> {
    let Program {
        worker: program,
        bun,
        runtime_file: _runtime_file,
    } = preflight(&config).await?;
    sockets::claim(&config).await?;
    let listener = bind_tcp(config.bind, config.http_port).map_err(|e| {
        format!(
            "rip-server: http:{} on {}: cannot listen: {e}",
            config.http_port, config.bind
        )
    })?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let control_path = config.control_socket();
    let control_listener =
        crate::control::bind(&control_path).map_err(|e| format!("rip-server: {}: {e}", control_path.display()))?;
    // `$RIP_HOME/run/<app>.json`, removed when this guard drops (any return).
    let run_file = crate::config::run_file::Announcement::announce(&config, port);

    let clock = Clock::start();
    let now = clock.now();
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
        now,
    );
    let spawner = ProcessSpawner::new(WorkerSetup {
        program,
        app: config.app_name.clone(),
        app_dir: config.app_dir.clone(),
        entry: config.entry.clone(),
        socket_prefix: config.socket_prefix.clone(),
        control_socket: control_path.clone(),
        max_requests: config.max_requests,
        max_age: config.max_age,
        max_reloads: config.max_reloads,
        hot_reload: config.hot_reload.as_str(),
    })
    .map_err(|e| format!("rip-server: cannot find own executable: {e}"))?;
    let identity = Identity {
        app: config.app_name.clone(),
        ports: vec![port],
        socket_prefix: config.socket_prefix.clone(),
        check_sockets: true,
    };
    let mut node = Node::new(balancer, supervisor);
    node.set_reload_mode(config.hot_reload);
    let driver = Driver::new(node, spawner, clock, identity).with_app_runtime(AppRuntime {
        hot_reload: config.hot_reload.as_str(),
        bun: bun.map(|b| BunStatus {
            path: b.path.display().to_string(),
            version: b.version,
        }),
    });
    let handle = driver.handle();
    // One watcher for the app, reporting to the core, which decides.
    let _watcher = match (config.hot_reload, config.entry_kind) {
        (HotReload::None, _) | (_, EntryKind::Builtin) => None,
        _ => {
            let handle = handle.clone();
            Some(
                crate::manager::watch::watch(&config.app_dir, move |_| handle.files_changed()).map_err(|e| {
                    format!(
                        "rip-server: --hot-reload={}: cannot watch {}: {e}",
                        config.hot_reload,
                        config.app_dir.display()
                    )
                })?,
            )
        }
    };

    let access_log = config.access_log.then(|| {
        AccessLog::start(
            config.app_name.clone(),
            if config.json_logging {
                Format::Json
            } else {
                Format::Human
            },
        )
    });
    let front_door = Arc::new(FrontDoor::new(
        FrontDoorConfig {
            scheme: "http",
            connect_timeout: config.connect_timeout,
            read_timeout: config.read_timeout,
            header_timeout: config.header_timeout,
            response_buffer: config.response_buffer,
            ..FrontDoorConfig::default()
        },
        UnixTransport,
        handle.clone(),
        clock,
        access_log,
        wall_micros() ^ u64::from(std::process::id()),
    ));

    // Stopping: the driver finishes queued and in-flight requests, then the
    // workers; the listener closes at once.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let begin_stop: crate::control::OnStop = {
        let handle = handle.clone();
        let stop_tx = stop_tx.clone();
        Arc::new(move || {
            let handle = handle.clone();
            let _ = stop_tx.send(true);
            tokio::spawn(async move {
                let _ = handle.admin(Admin::Stop).await;
            });
        })
    };
    signals::install(handle.clone(), begin_stop.clone()).map_err(|e| format!("rip-server: signals: {e}"))?;

    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let driver_task = tokio::spawn(driver.run());
    // The control socket outlives the listener: workers quit through it while stopping.
    let (done_tx, done_rx) = watch::channel(false);
    let control_task = tokio::spawn(crate::control::run(
        control_listener,
        handle.clone(),
        begin_stop,
        stopped(done_rx),
    ));
    tokio::spawn(crate::frontdoor::run(listener, front_door, stopped(stop_rx.clone())));
    tokio::spawn(release_memory_of_idle_connections());

    println!(
        "rip-server: app {} with {} worker{} on http://{}:{port}",
        config.app_name,
        config.workers,
        if config.workers == 1 { "" } else { "s" },
        display_host(config.bind),
    );
    let _ = driver_task.await;
    let _ = done_tx.send(true);
    let _ = control_task.await;
    let _ = std::fs::remove_file(&control_path);
    drop(run_file);
    tracing::info!("stopped");
    Ok(())
}

/// Gives memory freed by connections that went idle back to the system, at
/// most once a second and only after some was freed (a burst of 10,000
/// clients going idle would otherwise leave the process at its peak size).
async fn release_memory_of_idle_connections() {
    loop {
        crate::frontdoor::client_conn::buffers_freed().notified().await;
        // Let the rest of a burst go idle first.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let _ = tokio::task::spawn_blocking(crate::os::sys::release_free_memory).await;
    }
}
