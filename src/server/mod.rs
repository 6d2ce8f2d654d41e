//! `rip-server <app-path> ...`: wires the core, the driver, the front door,
//! the control socket, the manager and the signal handlers together.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::config::{EntryKind, Protocol, ServeConfig};
use crate::core::balancer::{Balancer, BalancerConfig};
use crate::core::node::Node;
use crate::core::supervisor::{Supervisor, SupervisorConfig};
use crate::frontdoor::{FrontDoor, FrontDoorConfig};
use crate::manager::{ProcessSpawner, WorkerProgram, WorkerSetup};
use crate::net::transport::UnixTransport;
use crate::observe::access_log::{AccessLog, Format};
use crate::os::clock::{Clock, wall_micros};
use crate::runtime::{Admin, Driver, DriverHandle, Identity};

/// Checks what can be checked before anything starts.
pub fn preflight(config: &ServeConfig) -> Result<WorkerProgram, String> {
    if config.protocol != Protocol::Http || config.https_port.is_some() {
        return Err("rip-server: https: HTTPS is not available in this version; use http:<port>".into());
    }
    match config.entry_kind {
        EntryKind::Builtin => Ok(WorkerProgram::Builtin),
        EntryKind::Executable => Ok(WorkerProgram::Executable(config.entry.clone())),
        EntryKind::Rip | EntryKind::TypeScript => Err(format!(
            "rip-server: {}: running .rip and .ts apps through Bun is not available in this version; \
             use an executable worker program or builtin:hello",
            config.entry.display()
        )),
    }
}

/// Refuses to start over a live server's sockets, then removes stale ones.
async fn claim_sockets(config: &ServeConfig) -> Result<(), String> {
    let control = config.control_socket();
    if tokio::net::UnixStream::connect(&control).await.is_ok() {
        return Err(format!(
            "rip-server: {}: another rip-server is running with this socket prefix (stop it, or use --socket-prefix)",
            control.display()
        ));
    }
    let prefix = &config.socket_prefix;
    let dir = prefix
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = prefix
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("rip-server: {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{base}.")) && name.ends_with(".sock") {
            crate::net::unix_socket::remove_stale(&entry.path()).map_err(|e| format!("rip-server: {e}"))?;
        }
    }
    Ok(())
}

fn bind_http(ip: IpAddr, port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let addr = SocketAddr::from((ip, port));
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    if ip.is_ipv6() && ip.is_unspecified() {
        // `--bind=::` means every interface, IPv4 included.
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    tokio::net::TcpListener::from_std(socket.into())
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
pub async fn serve(config: ServeConfig) -> Result<(), String> {
    let program = preflight(&config)?;
    claim_sockets(&config).await?;
    let listener = bind_http(config.bind, config.http_port).map_err(|e| {
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
        ..BalancerConfig::default()
    });
    let supervisor = Supervisor::new(
        SupervisorConfig {
            workers: config.workers,
            max_requests: config.max_requests,
            max_age: config.max_age,
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
    let driver = Driver::new(Node::new(balancer, supervisor), spawner, clock, identity);
    let handle = driver.handle();

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
    install_signals(handle.clone(), begin_stop.clone()).map_err(|e| format!("rip-server: signals: {e}"))?;

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

fn install_signals(handle: DriverHandle, begin_stop: crate::control::OnStop) -> std::io::Result<()> {
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
