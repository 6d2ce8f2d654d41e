//! The worker side of rip-server: a runtime for worker programs written in Rust.
//!
//! A worker serves exactly one request at a time over HTTP/1.1 on its own Unix
//! socket (see "Worker protocol" in `CONTRACT.md`). [`run`] does the whole
//! protocol around an application [`Handler`]:
//!
//! 1. remove a stale socket file, bind `RIP_SOCKET`, chmod it 0600;
//! 2. serve HTTP/1.1 with keep-alive on any number of connections, with a
//!    single request slot: a request arriving while another is in flight gets
//!    `503` + `Rip-Worker-Busy: 1` at once, never queued. The slot is released
//!    when the response body has been sent to its end (or the exchange is
//!    dropped), not merely when the handler returns;
//! 3. send `join` to the control socket once listening;
//! 4. on shutdown, or after `RIP_MAX_REQUESTS` requests: send `quit`, wait for
//!    the request in flight, close the listener and the connections, remove
//!    the socket file, return.
//!
//! Every response carries `Rip-Worker-Id` (the front door strips it). The
//! runtime puts a [`WorkerStats`] in every request's extensions so handlers can
//! report what the runtime saw (the built-in app's `/stats` does).
//!
//! [`run_tcp`] serves the same way on a TCP listener instead of the Unix
//! socket, standalone (no join, no quit): not part of the worker protocol, it
//! lets a load generator hit a worker directly (`benches/compare.sh`).

mod body;
pub mod builtin;
mod control;

use std::convert::Infallible;
use std::ffi::OsString;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use crate::net::transport::LeanUnixStream;
use crate::protocol::{WORKER_BUSY_HEADER, WORKER_ID_HEADER, WorkerMessage};
use body::{SlotBody, SlotGuard};

/// The response body type handlers produce: any `Send` body of [`Bytes`].
pub type WorkerBody = UnsyncBoxBody<Bytes, io::Error>;

/// An idle keep-alive connection is closed after this long without a request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the join keeps retrying while the control socket is not up yet.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the quit may take before it is given up (and logged).
pub const QUIT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long open connections get to finish writing once the worker stops.
const CONNECTION_DRAIN: Duration = Duration::from_secs(5);

/// What the manager tells a worker through its environment (`RIP_*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerEnv {
    /// `RIP_WORKER_ID`: the slot number.
    pub worker_id: u32,
    /// `RIP_SOCKET`: where to listen.
    pub socket: PathBuf,
    /// `RIP_CONTROL_SOCKET`: where to join and quit; `None` runs standalone.
    pub control_socket: Option<PathBuf>,
    /// `RIP_APP`: the app name.
    pub app: String,
    /// `RIP_APP_DIR` (default `.`).
    pub app_dir: PathBuf,
    /// `RIP_ENTRY` (default empty).
    pub entry: PathBuf,
    /// `RIP_VERSION`: the generation (default 0).
    pub version: u64,
    /// `RIP_MAX_REQUESTS`: recycle after this many requests; absent, empty or 0 means never.
    pub max_requests: Option<u64>,
    /// `RIP_HOT_RELOAD`: `none`, `process` or `module` (default `none`).
    pub hot_reload: String,
}

impl WorkerEnv {
    /// Reads the `RIP_*` variables of this process.
    pub fn from_env() -> Result<WorkerEnv, String> {
        WorkerEnv::from_lookup(|name| std::env::var_os(name))
    }

    /// Reads the `RIP_*` variables through `lookup` (testable without touching
    /// the process environment). `RIP_WORKER_ID`, `RIP_SOCKET` and `RIP_APP`
    /// are required; the error names the missing or malformed variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Result<WorkerEnv, String> {
        let present = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let required = |name: &str| present(name).ok_or_else(|| format!("{name} is not set"));
        let text = |name: &str, value: OsString| {
            value
                .into_string()
                .map_err(|v| format!("{name}={v:?} is not valid UTF-8"))
        };
        let number = |name: &str, value: OsString| -> Result<u64, String> {
            let value = text(name, value)?;
            value
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("{name}={value:?} is not a non-negative integer"))
        };

        let worker_id = number("RIP_WORKER_ID", required("RIP_WORKER_ID")?)?;
        let worker_id = u32::try_from(worker_id).map_err(|_| format!("RIP_WORKER_ID={worker_id} is too large"))?;
        let hot_reload = match present("RIP_HOT_RELOAD") {
            None => "none".to_owned(),
            Some(v) => {
                let v = text("RIP_HOT_RELOAD", v)?;
                if !matches!(v.as_str(), "none" | "process" | "module") {
                    return Err(format!("RIP_HOT_RELOAD={v:?} is not one of none, process, module"));
                }
                v
            }
        };
        Ok(WorkerEnv {
            worker_id,
            socket: required("RIP_SOCKET")?.into(),
            control_socket: present("RIP_CONTROL_SOCKET").map(PathBuf::from),
            app: text("RIP_APP", required("RIP_APP")?)?,
            app_dir: present("RIP_APP_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from),
            entry: present("RIP_ENTRY").map(PathBuf::from).unwrap_or_default(),
            version: present("RIP_VERSION")
                .map(|v| number("RIP_VERSION", v))
                .transpose()?
                .unwrap_or(0),
            max_requests: present("RIP_MAX_REQUESTS")
                .map(|v| number("RIP_MAX_REQUESTS", v))
                .transpose()?
                .filter(|&n| n > 0),
            hot_reload,
        })
    }

    /// A worker without a manager: slot 0, no control socket (no join/quit),
    /// version 0, no request limit, listening on `socket`.
    pub fn standalone(socket: PathBuf, app: &str) -> WorkerEnv {
        WorkerEnv {
            worker_id: 0,
            socket,
            control_socket: None,
            app: app.to_owned(),
            app_dir: PathBuf::from("."),
            entry: PathBuf::new(),
            version: 0,
            max_requests: None,
            hot_reload: "none".to_owned(),
        }
    }
}

/// An application served by a worker, one request at a time.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. The runtime adds `Rip-Worker-Id` to the response.
    fn handle(&self, req: Request<Incoming>) -> impl Future<Output = Response<WorkerBody>> + Send;
}

/// What the runtime has seen so far; found in every request's extensions.
#[derive(Clone, Debug)]
pub struct WorkerStats {
    shared: Arc<Shared>,
}

impl WorkerStats {
    /// The runtime's stats for `req`, if it came through [`run`].
    pub fn of<B>(req: &Request<B>) -> Option<&WorkerStats> {
        req.extensions().get::<WorkerStats>()
    }

    /// Requests served to completion (response sent or exchange dropped).
    pub fn served(&self) -> u64 {
        self.shared.served.load(Ordering::SeqCst)
    }

    /// Requests answered `503 Rip-Worker-Busy` because the slot was taken.
    pub fn busy_rejections(&self) -> u64 {
        self.shared.busy_rejections.load(Ordering::SeqCst)
    }

    /// The most requests ever present at once, counted on arrival before the
    /// busy check: 1 when the front door respects single in-flight.
    pub fn max_concurrent(&self) -> u64 {
        self.shared.max_concurrent.load(Ordering::SeqCst)
    }
}

/// A body of `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> WorkerBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// An empty body.
pub fn empty() -> WorkerBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A `text/plain` response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<WorkerBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// An `application/json` response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<WorkerBody> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Runs a worker until `shutdown` resolves or `max_requests` have been served,
/// following the worker protocol (module docs). Fails if the socket cannot be
/// bound or the join is refused or not answered within [`JOIN_TIMEOUT`]; a
/// failed quit is only logged.
pub async fn run<H: Handler>(env: WorkerEnv, handler: H, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    let listener = crate::net::unix_socket::bind_private(&env.socket)?;
    let identity = file_identity(&env.socket);
    tracing::info!(worker = env.worker_id, socket = %env.socket.display(), "worker listening");
    serve(env, Listener::Unix(listener), identity, handler, shutdown).await
}

/// Like [`run`], but serves on `listener` (TCP) and never talks to a control
/// socket: `env.control_socket` and `env.socket` are ignored. For load tests
/// that hit a worker without a front door; the single request slot, the busy
/// 503 and `max_requests` work as on the Unix socket.
pub async fn run_tcp<H: Handler>(
    env: WorkerEnv,
    listener: TcpListener,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let env = WorkerEnv {
        control_socket: None,
        ..env
    };
    match listener.local_addr() {
        Ok(addr) => tracing::info!(worker = env.worker_id, %addr, "worker listening on TCP"),
        Err(error) => tracing::info!(worker = env.worker_id, %error, "worker listening on TCP"),
    }
    serve(env, Listener::Tcp(listener), None, handler, shutdown).await
}

/// Binds a TCP listener on `addr` for [`run_tcp`].
pub async fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("bind {addr}: {e}")))
}

/// The rest of [`run`] once the listener is bound: join, serve, quit, drain.
/// `identity` is the socket file to remove at the end (Unix only).
async fn serve<H: Handler>(
    env: WorkerEnv,
    listener: Listener,
    identity: Option<(u64, u64)>,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let id_header = HeaderValue::from(env.worker_id);
    let shared = Arc::new(Shared::new(id_header, env.max_requests));
    let (stop_tx, stop_rx) = watch::channel(false);
    let acceptor = tokio::spawn(accept_loop(listener, shared.clone(), Arc::new(handler), stop_rx));

    let mut shutdown = pin!(shutdown);
    let mut stopping = false;
    if let Some(control) = &env.control_socket {
        let join = WorkerMessage::Join {
            reload: false,
            app: env.app.clone(),
            worker_id: env.worker_id,
            pid: std::process::id(),
            socket: env.socket.to_string_lossy().into_owned(),
            version: Some(env.version),
        };
        tokio::select! {
            joined = control::send(control, &join, JOIN_TIMEOUT) => {
                if let Err(error) = joined {
                    let _ = stop_tx.send(true);
                    let _ = acceptor.await;
                    remove_socket(&env.socket, identity);
                    return Err(io::Error::other(format!("join failed: {error}")));
                }
                tracing::info!(worker = env.worker_id, "worker joined");
            }
            () = shutdown.as_mut() => stopping = true,
        }
    }
    if !stopping {
        tokio::select! {
            () = shutdown.as_mut() => {
                tracing::info!(worker = env.worker_id, "worker shutting down");
            }
            () = shared.recycle.notified() => {
                tracing::info!(worker = env.worker_id, served = shared.served.load(Ordering::SeqCst), "worker reached its request limit");
            }
        }
    }

    if let Some(control) = &env.control_socket {
        let quit = WorkerMessage::Quit {
            app: env.app.clone(),
            worker_id: env.worker_id,
            pid: Some(std::process::id()),
        };
        if let Err(error) = control::send(control, &quit, QUIT_TIMEOUT).await {
            tracing::warn!(worker = env.worker_id, %error, "quit failed");
        }
    }
    // Wait for the request in flight, then keep the slot taken for good.
    if let Ok(permit) = shared.slot.acquire().await {
        permit.forget();
    }
    shared.slot.close();
    let _ = stop_tx.send(true);
    let _ = acceptor.await;
    remove_socket(&env.socket, identity);
    tracing::info!(worker = env.worker_id, "worker stopped");
    Ok(())
}

/// [`run`] with SIGTERM or SIGINT as the shutdown.
pub async fn run_with_signals<H: Handler>(env: WorkerEnv, handler: H) -> io::Result<()> {
    run(env, handler, termination()?).await
}

/// Resolves on the first SIGTERM or SIGINT (handlers installed at once).
pub fn termination() -> io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// The state shared by the acceptor, the connections and [`run`].
#[derive(Debug)]
struct Shared {
    id_header: HeaderValue,
    max_requests: Option<u64>,
    /// One permit: the request slot. Closed once the worker stops serving.
    slot: Semaphore,
    served: AtomicU64,
    busy_rejections: AtomicU64,
    present: AtomicU64,
    max_concurrent: AtomicU64,
    /// Notified once `max_requests` have been served.
    recycle: Notify,
}

impl Shared {
    fn new(id_header: HeaderValue, max_requests: Option<u64>) -> Shared {
        Shared {
            id_header,
            max_requests,
            slot: Semaphore::new(1),
            served: AtomicU64::new(0),
            busy_rejections: AtomicU64::new(0),
            present: AtomicU64::new(0),
            max_concurrent: AtomicU64::new(0),
            recycle: Notify::new(),
        }
    }

    /// Called by [`SlotGuard`] exactly once per request that got the slot.
    fn release(&self) {
        self.present.fetch_sub(1, Ordering::SeqCst);
        let served = self.served.fetch_add(1, Ordering::SeqCst) + 1;
        if self.max_requests.is_some_and(|max| served >= max) {
            // Serve nothing more; `run` sends the quit and stops.
            self.slot.close();
            self.recycle.notify_one();
        } else {
            self.slot.add_permits(1);
        }
    }
}

/// The (device, inode) of `path`, to remove only our own socket file later.
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Removes the socket file unless someone else (a replacement) bound that path since.
fn remove_socket(path: &Path, identity: Option<(u64, u64)>) {
    if identity.is_some()
        && file_identity(path) == identity
        && let Err(e) = std::fs::remove_file(path)
    {
        tracing::warn!(socket = %path.display(), error = %e, "cannot remove worker socket");
    }
}

/// One accepted connection being served.
type Connection = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a worker accepts connections on.
enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

async fn accept_loop<H: Handler>(
    listener: Listener,
    shared: Arc<Shared>,
    handler: Arc<H>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let connection_stop = stop.clone();
    loop {
        let accept = async {
            match &listener {
                Listener::Unix(unix) => unix.accept().await.and_then(|(stream, _)| -> io::Result<Connection> {
                    // Readable-only: the front door reading our answer
                    // must not wake this process (see `LeanUnixStream`).
                    let stream = LeanUnixStream::new(stream.into_std()?)?;
                    Ok(Box::pin(serve_connection(
                        stream,
                        shared.clone(),
                        handler.clone(),
                        connection_stop.clone(),
                    )))
                }),
                Listener::Tcp(tcp) => tcp.accept().await.map(|(stream, _)| -> Connection {
                    // Responses are written whole; do not let Nagle hold the last segment.
                    let _ = stream.set_nodelay(true);
                    Box::pin(serve_connection(
                        stream,
                        shared.clone(),
                        handler.clone(),
                        connection_stop.clone(),
                    ))
                }),
            }
        };
        tokio::select! {
            () = stopped(&mut stop) => break,
            accepted = accept => match accepted {
                Ok(connection) => {
                    connections.spawn(connection);
                }
                Err(error) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    // Connections see `stop` too and shut down gracefully; give them a bound.
    let drained = tokio::time::timeout(CONNECTION_DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(left = connections.len(), "closing connections that did not finish");
    }
}

async fn serve_connection<H, S>(stream: S, shared: Arc<Shared>, handler: Arc<H>, mut stop: watch::Receiver<bool>)
where
    H: Handler,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(serve_request(&shared, &*handler, req).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        // Also bounds how long a keep-alive connection may sit idle.
        .header_read_timeout(IDLE_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "worker connection ended");
            }
            return;
        }
        () = stopped(&mut stop) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

async fn serve_request<H: Handler>(
    shared: &Arc<Shared>,
    handler: &H,
    mut req: Request<Incoming>,
) -> Response<SlotBody> {
    let present = shared.present.fetch_add(1, Ordering::SeqCst) + 1;
    shared.max_concurrent.fetch_max(present, Ordering::SeqCst);
    let Ok(permit) = shared.slot.try_acquire() else {
        shared.present.fetch_sub(1, Ordering::SeqCst);
        shared.busy_rejections.fetch_add(1, Ordering::SeqCst);
        let mut response = text(StatusCode::SERVICE_UNAVAILABLE, "worker busy").map(SlotBody::free);
        response
            .headers_mut()
            .insert(WORKER_BUSY_HEADER, HeaderValue::from_static("1"));
        response
            .headers_mut()
            .insert(WORKER_ID_HEADER, shared.id_header.clone());
        return response;
    };
    // The guard gives the permit back (through `Shared::release`) when the
    // response body ends or this future or the body is dropped.
    permit.forget();
    let guard = SlotGuard::new(shared.clone());
    req.extensions_mut().insert(WorkerStats { shared: shared.clone() });
    let mut response = handler.handle(req).await;
    response
        .headers_mut()
        .insert(WORKER_ID_HEADER, shared.id_header.clone());
    response.map(|body| SlotBody::new(body, guard))
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
