//! `rip-server <app-path> ...`: wires the core, the driver, the front door,
//! the control socket, the manager and the signal handlers together.
//!
//! [`app`] starts one app's machinery without a listener or signals
//! ([`AppServer`], [`AppHandle`]); [`serve`] puts one app behind one
//! listener for every host and forwards the signals to it. The platform
//! starts many apps with [`AppServer::start`] and routes to them by host
//! with a `frontdoor::FrontDoor` of its own.
//!
//! The top of the adapters: may import every other folder but `cli` and
//! `worker`; nothing but `main`, the CLI and the platform imports this.

pub mod admin_port;
pub mod app;
mod signals;
mod sockets;

pub use app::{AppHandle, AppServer};

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::config::{EntryKind, Protocol, ServeConfig};
use crate::frontdoor::{FrontDoor, FrontDoorConfig, Routes};
use crate::manager::WorkerProgram;
use crate::manager::bun::{self, BunProgram, RuntimeFile};
use crate::net::listen::bind_tcp;
use crate::os::clock::wall_micros;

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

/// Runs the server until a graceful stop completes: one app behind one
/// listener, serving it for every host name, with the signals driving it.
pub async fn serve(config: ServeConfig) -> Result<(), ServeError> {
    let program = preflight(&config).await?;
    // Refuses a live server's prefix before taking the port (so that is
    // the error a second start reports); `AppServer::start` claims again
    // and finds nothing left to remove.
    sockets::claim(&config).await?;
    let listener = bind_tcp(config.bind, config.http_port).map_err(|e| {
        format!(
            "rip-server: http:{} on {}: cannot listen: {e}",
            config.http_port, config.bind
        )
    })?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let admin_listener = bind_admin_port(&config)?;
    let exe = std::env::current_exe().map_err(|e| format!("rip-server: cannot find own executable: {e}"))?;
    // Before any worker starts: a signal from then on is ours.
    let signals = signals::Signals::register().map_err(|e| format!("rip-server: signals: {e}"))?;
    let app = AppServer::start(&config, program, &exe, vec![port]).await?;
    // `$RIP_HOME/run/<app>.json`, removed when this guard drops (any return).
    let run_file = crate::config::run_file::Announcement::announce(&config, port);
    let handle = app.handle();
    let drain = signals::Drain {
        delay: config.drain_delay,
        ..signals::Drain::default()
    };
    let mut admin_line = String::new();
    if let Some((listener, address)) = admin_listener {
        let source = Arc::new(admin_port::AppSource {
            app: handle.clone(),
            draining: drain.flag.clone(),
        });
        tokio::spawn(admin_port::run(listener, source, handle.stopped()));
        admin_line = format!("; metrics, /ready and /live on http://{address}");
    }
    signals.forward(handle.clone(), drain);

    let front_door = Arc::new(FrontDoor::with_routes(
        listener_config(&config),
        Routes::every_host(handle.proxy()),
        wall_micros() ^ u64::from(std::process::id()),
    ));
    // Stopping: the listener closes at once; the app finishes queued and
    // in-flight requests, then stops its workers.
    tokio::spawn(crate::frontdoor::run(listener, front_door, handle.stopping()));
    tokio::spawn(release_memory_of_idle_connections());

    println!(
        "rip-server: app {} with {} worker{} on http://{}:{port}{admin_line}",
        config.app_name,
        config.workers,
        if config.workers == 1 { "" } else { "s" },
        display_host(config.bind),
    );
    app.wait().await;
    drop(run_file);
    tracing::info!("stopped");
    Ok(())
}

/// The admin port's listener (`--metrics-port` on `--admin-bind`) and its
/// real address, if one was asked for; bound before any worker starts, so
/// a port in use fails the start.
fn bind_admin_port(config: &ServeConfig) -> Result<Option<(tokio::net::TcpListener, SocketAddr)>, ServeError> {
    let Some(port) = config.metrics_port else {
        return Ok(None);
    };
    let cannot = |e: std::io::Error| {
        ServeError::Failed(format!(
            "rip-server: --metrics-port={port} on {}: cannot listen: {e}",
            config.admin_bind
        ))
    };
    let listener = bind_tcp(config.admin_bind, port).map_err(cannot)?;
    let address = listener.local_addr().map_err(cannot)?;
    if !config.admin_bind.is_loopback() {
        tracing::warn!("the metrics port listens on {address}: /metrics and /ready answer anyone who can reach it");
    }
    Ok(Some((listener, address)))
}

/// The settings of an HTTP listener serving `config`'s app (or, for the
/// platform, apps like it): the scheme, the header timeout, the limits.
pub fn listener_config(config: &ServeConfig) -> FrontDoorConfig {
    FrontDoorConfig {
        scheme: "http",
        connect_timeout: config.connect_timeout,
        read_timeout: config.read_timeout,
        header_timeout: config.header_timeout,
        response_buffer: config.response_buffer,
        ..FrontDoorConfig::default()
    }
}

/// Gives memory freed by connections that went idle back to the system, at
/// most once a second and only after some was freed (a burst of 10,000
/// clients going idle would otherwise leave the process at its peak size).
/// One per process, whatever its number of listeners: spawn it once.
pub async fn release_memory_of_idle_connections() {
    loop {
        crate::frontdoor::client_conn::buffers_freed().notified().await;
        // Let the rest of a burst go idle first.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let _ = tokio::task::spawn_blocking(crate::os::sys::release_free_memory).await;
    }
}
