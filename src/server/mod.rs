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
mod replicas;
mod signals;
mod sockets;
pub mod systemd;
pub mod upgrade;

pub use app::{AppHandle, AppServer};

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::config::{EntryKind, Protocol, ServeConfig};
use crate::frontdoor::https::{TlsListener, run_tls};
use crate::frontdoor::redirect::run_redirect;
use crate::frontdoor::{FrontDoor, FrontDoorConfig, Routes};
use crate::manager::WorkerProgram;
use crate::manager::bun::{self, BunProgram, RuntimeFile};
use crate::net::inherited::{HandedBy, Inherited};
use crate::net::listen::bind_tcp;
use crate::observe::status::AcceptCounts;
use crate::os::clock::wall_micros;
use crate::tls::TlsError;
use replicas::{PortSockets, ReplicaListener};

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

/// Runs the server until a graceful stop completes: one app behind its
/// listeners (HTTP, HTTPS or both, per `config.protocol`), serving it for
/// every host name, with the signals driving it.
pub async fn serve(config: ServeConfig) -> Result<(), ServeError> {
    let mut config = config;
    // Fixed now: the build of the file this process was started from.
    crate::observe::build::current();
    // The binary's path and arguments, for a later `SIGUSR2`.
    let relaunch = upgrade::Relaunch::capture().map_err(|e| format!("rip-server: cannot find own executable: {e}"))?;
    // Sockets handed over by systemd or by the server this one upgrades
    // are used instead of binding.
    let mut inherited = Inherited::from_env().map_err(|e| format!("rip-server: {e}"))?;
    let upgrading_from = match inherited.handed_by() {
        Some(HandedBy::Upgrade { from }) => Some(from),
        _ => None,
    };
    // The prefix the CLI knows; an upgrade's new server takes names of its
    // own until the old one is gone.
    let known_control_socket = config.control_socket();
    if upgrading_from.is_some() {
        config.socket_prefix = upgrade::own_prefix(&config.socket_prefix);
    }
    let program = preflight(&config).await?;
    // The certificates before anything is bound: a missing file or CA is a
    // mistake in the command (exit 2).
    let certificates = match config.protocol {
        Protocol::Http => None,
        Protocol::Https | Protocol::HttpAndHttps => Some(
            crate::tls::open(&config, crate::tls::resolver::system_clock()).map_err(|e| match e {
                TlsError::Usage(m) => ServeError::Usage(format!("rip-server: {m}")),
                TlsError::Failed(m) => ServeError::Failed(format!("rip-server: {m}")),
            })?,
        ),
    };
    // Refuses a live server's prefix before taking the port (so that is
    // the error a second start reports); `AppServer::start` claims again
    // and finds nothing left to remove.
    sockets::claim(&config).await?;
    let serves_http = match config.protocol {
        Protocol::Http | Protocol::HttpAndHttps => true,
        Protocol::Https => config.redirect_http,
    };
    // Sockets handed over (systemd, an upgrade) are taken by name first.
    // An HTTPS-only server's HTTP port only redirects: one loop does.
    let redirects = config.protocol == Protocol::Https;
    let http_replicas = if redirects { 1 } else { config.lb_replicas };
    let http_sockets = match serves_http {
        true => Some(PortSockets::take_or_bind(
            &mut inherited,
            &config,
            "http",
            config.http_port,
            http_replicas,
        )?),
        false => None,
    };
    let https_sockets = match config.https_port {
        Some(port) if certificates.is_some() => Some(PortSockets::take_or_bind(
            &mut inherited,
            &config,
            "https",
            port,
            config.lb_replicas,
        )?),
        _ => None,
    };
    for unused in inherited.unused() {
        tracing::warn!("a handed-over socket named {unused} is not used by this configuration");
    }
    let mut ports = Vec::new();
    for (kind, sockets) in [("http", &http_sockets), ("https", &https_sockets)] {
        if let Some(sockets) = sockets {
            ports.push((kind, sockets.first.local_addr().map_err(|e| e.to_string())?.port()));
        }
    }
    let port_of = |kind: &str| ports.iter().find(|(k, _)| *k == kind).map(|(_, p)| *p);
    // Kept to hand the sockets to a new binary on `SIGUSR2`; dropped when
    // the stop begins, so a stopping server holds no listening socket.
    // Replica 0's socket is handed over; the new server shares it among
    // its own replicas (see `replicas`).
    let named: Vec<(&str, &tokio::net::TcpListener)> = [("http", &http_sockets), ("https", &https_sockets)]
        .into_iter()
        .filter_map(|(name, sockets)| sockets.as_ref().map(|s| (name, &s.first)))
        .collect();
    let handover = upgrade::Listeners::keep(&named).map_err(|e| format!("rip-server: {e}"))?;
    let admin_listener = bind_admin_port(&config)?;
    // Before any worker starts: a signal from then on is ours.
    let signals = signals::Signals::register().map_err(|e| format!("rip-server: signals: {e}"))?;
    let accepts = AcceptCounts::new(config.lb_replicas);
    let app = AppServer::start_replicated(
        &config,
        program,
        relaunch.exe(),
        ports.iter().map(|(_, p)| *p).collect(),
        accepts.clone(),
    )
    .await?;
    // `$RIP_HOME/run/<app>.json`, removed when this guard drops (any return).
    let run_file = crate::config::run_file::Announcement::announce(&config, &ports);
    let handle = app.handle();
    let resolver = certificates.as_ref().map(|c| c.resolver.clone());
    let on_hup = certificates.as_ref().map(|certificates| {
        let (files, resolver, config) = (
            certificates.files.clone(),
            certificates.resolver.clone(),
            config.clone(),
        );
        Arc::new(move || {
            if let Some(files) = &files {
                files.reload();
            }
            resolver.set_registered_hosts(registered_hosts(&config));
        }) as Arc<dyn Fn() + Send + Sync>
    });
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
    let notifier = Arc::new(systemd::Notifier::from_env());
    signals.forward(signals::SignalTargets {
        app: handle.clone(),
        drain,
        notifier: notifier.clone(),
        relaunch: relaunch.clone(),
        listeners: handover.clone(),
        on_hup,
    });
    systemd::follow(handle.clone(), notifier.clone(), upgrading_from.is_none());
    if let Some(old) = upgrading_from {
        tokio::spawn(upgrade::take_over(
            handle.clone(),
            notifier.clone(),
            old,
            known_control_socket,
        ));
    }
    let stopping = handle.stopping();
    let told = notifier.clone();
    let retiring = relaunch.clone();
    tokio::spawn(async move {
        stopping.await;
        handover.release();
        if !retiring.replaced() {
            told.stopping();
        }
    });
    // Kept for as long as the server runs: dropping it stops the watch.
    let _watch = match &certificates {
        Some(certificates) => certificates.watch().map_err(|e| format!("rip-server: https: {e}"))?,
        None => None,
    };
    if let Some(resolver) = &resolver {
        resolver.set_registered_hosts(registered_hosts(&config));
        let shown = resolver.clone();
        handle.show_tls(move || crate::frontdoor::https::tls_status(&shown.info()));
    }

    let id_seed = wall_micros() ^ u64::from(std::process::id());
    let mut lines = Vec::new();
    let host = display_host(config.bind);
    // Stopping: the listeners close at once; their open connections finish
    // (an idle one lingers for one more request); then, or after the
    // linger at most, the app finishes queued and in-flight requests and
    // stops its workers.
    handle.hold_drain();
    let mut fronts = Vec::new();
    // The front door of replica `replica` for a listener with `settings`:
    // the app as that replica's event loop reaches it.
    let front_door = |settings: FrontDoorConfig, replica: usize, seed: u64| {
        let proxy = match replica {
            0 => handle.proxy(),
            _ => Arc::new(handle.proxy().for_replica(replica)),
        };
        let front_door = Arc::new(FrontDoor::with_routes(
            settings,
            Routes::every_host(proxy),
            seed ^ replica as u64,
        ));
        front_door.set_tls(resolver.clone());
        front_door
    };
    let https_seed = id_seed;
    let http_seed = id_seed.rotate_left(17);
    let mut https_others = Vec::new();
    let mut tls_listener = None;
    if let (Some(sockets), Some(resolver)) = (https_sockets, &resolver) {
        let https_port = port_of("https").unwrap_or_default();
        let server_config = crate::tls::server_config(resolver.clone()).map_err(|e| format!("rip-server: {e}"))?;
        let tls = TlsListener::new(server_config, config.tls_handshake_timeout, https_port);
        let listener = ReplicaListener::new(sockets.first, sockets.own_queues, accepts.clone(), 0);
        fronts.push(tokio::spawn(run_tls(
            listener,
            front_door(https_listener_config(&config), 0, https_seed),
            tls.clone(),
            handle.stopping(),
        )));
        lines.push(format!("https://{host}:{https_port}"));
        https_others = sockets.others.into_iter().map(|l| (l, sockets.own_queues)).collect();
        tls_listener = Some(tls);
    }
    let mut http_others = Vec::new();
    if let Some(sockets) = http_sockets {
        let http_port = port_of("http").unwrap_or_default();
        match (redirects, port_of("https")) {
            (true, Some(https_port)) => {
                fronts.push(tokio::spawn(run_redirect(
                    sockets.first,
                    https_port,
                    config.header_timeout,
                    handle.stopping(),
                )));
                tracing::info!("http:{http_port} redirects every request to HTTPS (--no-redirect-http turns it off)");
            }
            _ => {
                let listener = ReplicaListener::new(sockets.first, sockets.own_queues, accepts.clone(), 0);
                fronts.push(tokio::spawn(crate::frontdoor::run(
                    listener,
                    front_door(listener_config(&config), 0, http_seed),
                    handle.stopping(),
                )));
                http_others = sockets.others.into_iter().map(|l| (l, sockets.own_queues)).collect();
            }
        }
        lines.push(format!("http://{host}:{http_port}"));
    }
    // Replicas 1.., each on a thread of its own with its socket of each port.
    let mut replica_threads = Vec::new();
    let (mut http_others, mut https_others) = (http_others.into_iter(), https_others.into_iter());
    for replica in 1..config.lb_replicas {
        let http = http_others.next();
        let https = https_others.next();
        let job = replicas::ReplicaJob {
            replica,
            own_queues: (
                http.as_ref().is_some_and(|(_, own)| *own),
                https.as_ref().is_some_and(|(_, own)| *own),
            ),
            http: http.map(|(l, _)| (l, front_door(listener_config(&config), replica, http_seed))),
            https: match (https, &tls_listener) {
                (Some((l, _)), Some(tls)) => Some((
                    l,
                    front_door(https_listener_config(&config), replica, https_seed),
                    tls.clone(),
                )),
                _ => None,
            },
        };
        let (thread, closed) = replicas::start_thread(job, accepts.clone(), handle.clone())?;
        replica_threads.push(thread);
        fronts.push(tokio::spawn(closed));
    }
    let draining = handle.clone();
    tokio::spawn(async move {
        draining.stopping().await;
        let closed = async {
            for front in fronts {
                let _ = front.await;
            }
        };
        let _ = tokio::time::timeout(crate::frontdoor::idle::STOP_LINGER, closed).await;
        draining.begin_drain();
    });
    tokio::spawn(release_memory_of_idle_connections());

    let replicas_line = match config.lb_replicas {
        1 => String::new(),
        n => format!(" ({n} front-door replicas)"),
    };
    println!(
        "rip-server: app {} with {} worker{} on {}{replicas_line}{admin_line}",
        config.app_name,
        config.workers,
        if config.workers == 1 { "" } else { "s" },
        lines.join(" and "),
    );
    app.wait().await;
    // The replicas' loops end once the app has stopped.
    let _ = tokio::task::spawn_blocking(move || {
        for thread in replica_threads {
            let _ = thread.join();
        }
    })
    .await;
    drop(run_file);
    tracing::info!("stopped");
    Ok(())
}

/// The host names that may get a certificate of their own: every
/// `hosts.json` entry naming this app's directory (read at start and on
/// `SIGHUP`). An unreadable registry only loses those names (logged): the
/// default certificate still serves.
fn registered_hosts(config: &ServeConfig) -> Vec<crate::config::hosts::HostName> {
    let Some(home) = &config.home else {
        return Vec::new();
    };
    match crate::config::hosts::read_registry(home) {
        Ok(registry) => registry
            .iter()
            .filter(|(_, dir)| *dir == config.app_dir.as_path())
            .map(|(host, _)| host.clone())
            .collect(),
        Err(e) => {
            tracing::warn!("https: {e}: registered hosts get the default certificate");
            Vec::new()
        }
    }
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

/// [`listener_config`] for the HTTPS listener: scheme `https` (for
/// `X-Forwarded-Proto`) and `--hsts`.
pub fn https_listener_config(config: &ServeConfig) -> FrontDoorConfig {
    FrontDoorConfig {
        scheme: "https",
        hsts: config.hsts,
        ..listener_config(config)
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
