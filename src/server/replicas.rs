//! Front-door replicas (`--lb-replicas=N`): N accept loops on the same
//! ports, like HAProxy's threads or nginx's workers, in front of one driver.
//!
//! ```text
//!   kernel: N SO_REUSEPORT sockets on :port, new connections spread by hash
//!     │ socket 0                 │ socket 1          …  │ socket N-1
//!     ▼                          ▼                      ▼
//!   replica 0: the runtime's   replica 1: a thread,    replica N-1
//!   own loop (with the driver, own current-thread      …
//!   control socket, metrics)   event loop
//!     │  requests (DriverHandle::for_replica(i)), decisions back
//!     ▼
//!   the driver: one core, one request per worker whichever loop asked
//! ```
//!
//! Each replica accepts on its own socket, serves its connections on its
//! own event loop and opens its own connections to the workers (the driver
//! keeps one idle connection per worker and replica: an I/O object belongs
//! to the loop that registered it). Replica 0 is the runtime's own loop,
//! so `--lb-replicas=1` is the server without replicas, thread for thread.
//!
//! Why `SO_REUSEPORT` sockets and not one socket shared by every loop: with
//! one socket every loop's epoll wakes for every new connection and all but
//! one find nothing to accept (the thundering herd); with a socket each, the
//! kernel picks one loop per connection and wakes only it. The price is
//! that a socket's queue is its own: closing it resets the connections that
//! waited there. A replica that stops therefore takes what is queued first
//! ([`Draining`]). Sockets handed over (systemd, a `SIGUSR2` upgrade) are
//! one socket per port, and siblings cannot be bound beside them reliably
//! (systemd's need `ReusePort=yes`): every replica then accepts from a
//! duplicate of that one socket, which loses nothing when a replica stops.
//!
//! The HTTPS port gets replicas too (the same loop serves both ports of a
//! replica); the redirect of an HTTPS-only server's HTTP port, the metrics
//! port and the control socket run on the runtime's own loop.

use std::future::Future;
use std::io;
use std::sync::Arc;

use super::{AppHandle, ServeError};
use crate::config::ServeConfig;
use crate::frontdoor::FrontDoor;
use crate::frontdoor::https::{TlsListener, run_tls};
use crate::net::inherited::Inherited;
use crate::net::listen::{Accept, Draining, Peer, bind_tcp, bind_tcp_group};
use crate::net::transport::Transport;
use crate::observe::status::AcceptCounts;

/// One front-door port's listening sockets, one per replica.
pub(super) struct PortSockets {
    /// Replica 0's, on the runtime's own loop.
    pub(super) first: tokio::net::TcpListener,
    /// Replicas 1.. (in order), each registered on its replica's loop.
    pub(super) others: Vec<std::net::TcpListener>,
    /// Each socket is its own (a `SO_REUSEPORT` group member): it takes
    /// its queue before it closes. `false` for one socket shared.
    pub(super) own_queues: bool,
}

impl PortSockets {
    /// The port's sockets for `replicas` accept loops: the one handed over
    /// under `kind` (duplicated for each replica), else `replicas` new
    /// `SO_REUSEPORT` sockets on `config.bind` (one plain socket for one
    /// replica, as without replicas).
    pub(super) fn take_or_bind(
        inherited: &mut Inherited,
        config: &ServeConfig,
        kind: &str,
        port: u16,
        replicas: usize,
    ) -> Result<PortSockets, ServeError> {
        let failed = |e: io::Error| {
            ServeError::Failed(format!(
                "rip-server: {kind}:{port} on {}: cannot listen: {e}",
                config.bind
            ))
        };
        if let Some(first) = inherited
            .take(kind)
            .map_err(|e| ServeError::Failed(format!("rip-server: {e}")))?
        {
            let others = (1..replicas)
                .map(|_| duplicate(&first))
                .collect::<io::Result<Vec<_>>>()
                .map_err(|e| {
                    ServeError::Failed(format!("rip-server: {kind}: cannot share the handed-over socket: {e}"))
                })?;
            return Ok(PortSockets {
                first,
                others,
                own_queues: false,
            });
        }
        if replicas <= 1 {
            return Ok(PortSockets {
                first: bind_tcp(config.bind, port).map_err(failed)?,
                others: Vec::new(),
                own_queues: false,
            });
        }
        let mut group = bind_tcp_group(config.bind, port, replicas).map_err(failed)?;
        let first = tokio::net::TcpListener::from_std(group.remove(0)).map_err(failed)?;
        Ok(PortSockets {
            first,
            others: group,
            own_queues: true,
        })
    }
}

/// Another descriptor for `listener`'s socket (the same accept queue).
fn duplicate(listener: &tokio::net::TcpListener) -> io::Result<std::net::TcpListener> {
    let socket = socket2::SockRef::from(listener).try_clone()?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// A replica's listener: counts what it accepts for `/status`, and takes
/// its queue when it stops if the socket is its own.
pub(super) struct ReplicaListener {
    inner: Draining,
    own_queue: bool,
    accepts: AcceptCounts,
    replica: usize,
}

impl ReplicaListener {
    pub(super) fn new(
        listener: tokio::net::TcpListener,
        own_queue: bool,
        accepts: AcceptCounts,
        replica: usize,
    ) -> ReplicaListener {
        ReplicaListener {
            inner: Draining(listener),
            own_queue,
            accepts,
            replica,
        }
    }
}

impl Accept for ReplicaListener {
    type Io = tokio::net::TcpStream;

    async fn accept(&mut self) -> io::Result<(tokio::net::TcpStream, Peer)> {
        let accepted = self.inner.accept().await?;
        self.accepts.count(self.replica);
        Ok(accepted)
    }

    fn take_queued(&mut self, serve: &mut dyn FnMut(tokio::net::TcpStream, Peer)) {
        if !self.own_queue {
            return;
        }
        let (accepts, replica) = (&self.accepts, self.replica);
        self.inner.take_queued(&mut |io, peer| {
            accepts.count(replica);
            serve(io, peer);
        });
    }
}

/// What one replica thread serves: its socket of each port with the front
/// door for it.
pub(super) struct ReplicaJob<T: Transport> {
    pub(super) replica: usize,
    pub(super) http: Option<(std::net::TcpListener, Arc<FrontDoor<T>>)>,
    pub(super) https: Option<(std::net::TcpListener, Arc<FrontDoor<T>>, TlsListener)>,
    /// See [`PortSockets::own_queues`], per port.
    pub(super) own_queues: (bool, bool),
}

/// Starts `job` on a new thread with its own current-thread event loop:
/// it serves until `app` is stopping, closes its listeners (taking their
/// queues, see [`ReplicaListener`]), lets its connections finish, and keeps
/// its loop running until the app has stopped, since exchanges its requests
/// started may still be reporting to the driver. Returns the thread and a
/// future that resolves once its listeners closed and their connections
/// ended (or the thread is gone).
pub(super) fn start_thread<T: Transport>(
    job: ReplicaJob<T>,
    accepts: AcceptCounts,
    app: AppHandle,
) -> Result<(std::thread::JoinHandle<()>, impl Future<Output = ()> + Send + 'static), ServeError> {
    let replica = job.replica;
    let cannot = |e: io::Error| ServeError::Failed(format!("rip-server: front-door replica {replica}: {e}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(cannot)?;
    let (closed_tx, closed) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(format!("rip-replica-{replica}"))
        .spawn(move || {
            runtime.block_on(async move {
                serve_job(job, accepts, &app).await;
                let _ = closed_tx.send(());
                app.stopped().await;
            });
        })
        .map_err(cannot)?;
    Ok((thread, async move {
        let _ = closed.await;
    }))
}

/// Serves one replica's ports on the current (the replica's) event loop
/// until the app is stopping and their connections have ended.
async fn serve_job<T: Transport>(job: ReplicaJob<T>, accepts: AcceptCounts, app: &AppHandle) {
    let replica = job.replica;
    let register = |listener: std::net::TcpListener, own_queue: bool| {
        tokio::net::TcpListener::from_std(listener)
            .map(|l| ReplicaListener::new(l, own_queue, accepts.clone(), replica))
            .inspect_err(|e| tracing::error!("front-door replica {replica}: cannot register its socket: {e}"))
            .ok()
    };
    let mut ports = Vec::new();
    if let Some((listener, front_door)) = job.http
        && let Some(listener) = register(listener, job.own_queues.0)
    {
        ports.push(tokio::spawn(crate::frontdoor::run(
            listener,
            front_door,
            app.stopping(),
        )));
    }
    if let Some((listener, front_door, tls)) = job.https
        && let Some(listener) = register(listener, job.own_queues.1)
    {
        ports.push(tokio::spawn(run_tls(listener, front_door, tls, app.stopping())));
    }
    for port in ports {
        let _ = port.await;
    }
}
