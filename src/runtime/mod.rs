//! The driver task: the single owner of the core state.
//!
//! Request tasks, the control socket, the process manager and the signal
//! handlers talk to the driver over one channel ([`DriverHandle`]). The
//! driver feeds each message to the [`Balancer`] or the [`Supervisor`],
//! drains their outputs, carries them out (answers to request tasks, spawns
//! and signals through the [`Spawner`]) and sleeps until the next message or
//! the core's next deadline. No lock guards the core: only this task
//! touches it, and request and response bytes never pass through here.
//!
//! Front-door replicas (`--lb-replicas`) run request tasks on event loops
//! of their own, each with a [`DriverHandle`] naming its replica
//! ([`DriverHandle::for_replica`]). A worker connection belongs to the
//! event loop that opened it, so the driver keeps each worker's idle
//! connection per replica and hands a request only the one of its own
//! replica; the core, and so the one-request-per-worker rule, is the same
//! whatever loop a request came through.
//!
//! May import: `core`, `os`, `protocol`, `upstream` (a worker's connection
//! travels with a dispatch). Never `frontdoor`, `control`, `manager`.

pub mod decision;
#[cfg(test)]
mod tests;
mod worker_conn;
mod worker_messages;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::core::balancer::{Action, RequestMeta, WorkerEvent};
use crate::core::node::{Node, Output};
use crate::core::supervisor::SupervisorAction;
use crate::core::{Answer, Pid, RequestId, Slot, Time, Version};
use crate::observe::status::{
    AcceptCounts, BunStatus, Health, PoolWorker, QueueStatus, ResponseClasses, StatusSnapshot,
};
use crate::os::clock::Clock;
use crate::protocol::{Reply, WorkerMessage};
use crate::upstream::Upstream;
pub use decision::Decision;
use decision::{DecisionRx, DecisionTx};
use worker_conn::WorkerConn;

/// Signals the manager sends to workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Terminate,
    Kill,
    /// Reload the code in place (module hot reload; `protocol::RELOAD_SIGNAL`).
    Reload,
}

/// Starts and signals worker processes (real ones, or simulated hosts).
pub trait Spawner: Send + 'static {
    /// Starts the worker of `slot` at `version`; its exit must later be
    /// reported with [`DriverHandle::process_exited`].
    fn spawn(&mut self, slot: Slot, version: Version, handle: &DriverHandle) -> std::io::Result<Pid>;
    /// Sends a signal to a worker process.
    fn signal(&mut self, pid: Pid, signal: Signal);
    /// A worker process exited (after the driver learned of it).
    fn exited(&mut self, _pid: Pid) {}
    /// Called once when the server has stopped (remove leftovers).
    fn cleanup(&mut self) {}
}

/// Admin commands (signals and the control socket's admin endpoints).
#[derive(Debug)]
pub enum Admin {
    RollingRestart,
    ScaleBy(i32),
    ScaleTo(u32),
    Stop,
}

enum Msg {
    Arrive {
        id: RequestId,
        meta: RequestMeta,
        tx: DecisionTx,
        replica: usize,
    },
    Head {
        id: RequestId,
        status: u16,
    },
    Complete {
        id: RequestId,
        clean: bool,
        conn: Option<Upstream>,
        /// The response's status when its head is reported here too (a
        /// whole response in one message); `None` after a `Head`.
        status: Option<u16>,
        /// The replica whose event loop `conn` belongs to.
        replica: usize,
    },
    Busy {
        id: RequestId,
    },
    ConnectFailed {
        id: RequestId,
    },
    FailedAfterSend {
        id: RequestId,
    },
    ClientGone {
        id: RequestId,
    },
    Unused {
        id: RequestId,
        conn: Option<Upstream>,
        replica: usize,
    },
    Worker {
        message: WorkerMessage,
        reply: oneshot::Sender<Reply>,
    },
    Exited {
        pid: Pid,
    },
    /// A file under the app directory changed (hot reload).
    FilesChanged,
    Admin {
        command: Admin,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Status {
        reply: oneshot::Sender<StatusSnapshot>,
    },
}

/// A cheap, cloneable handle to the driver.
#[derive(Clone)]
pub struct DriverHandle {
    tx: mpsc::UnboundedSender<Msg>,
    next_id: Arc<AtomicU64>,
    /// The front-door replica whose request tasks use this handle (0: the
    /// runtime's own loop, and every handle that carries no connection).
    replica: usize,
}

impl std::fmt::Debug for DriverHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DriverHandle")
    }
}

impl DriverHandle {
    fn send(&self, msg: Msg) {
        // The driver outlives every sender except during shutdown, when
        // messages no longer matter.
        let _ = self.tx.send(msg);
    }

    /// The same driver, for request tasks on front-door replica `replica`'s
    /// event loop: the worker connections their dispatches carry were
    /// opened on that loop, and go back to it.
    pub fn for_replica(&self, replica: usize) -> DriverHandle {
        DriverHandle {
            replica,
            ..self.clone()
        }
    }

    /// The front-door replica this handle serves.
    pub fn replica(&self) -> usize {
        self.replica
    }

    /// Registers a new request; decisions arrive on the returned receiver.
    pub fn arrive(&self, meta: RequestMeta) -> (RequestId, DecisionRx) {
        let id = RequestId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = decision::channel();
        self.send(Msg::Arrive {
            id,
            meta,
            tx,
            replica: self.replica,
        });
        (id, rx)
    }

    /// The worker's response head arrived (its body streams on).
    pub fn response_head(&self, id: RequestId, status: u16) {
        self.send(Msg::Head { id, status });
    }

    /// The exchange ended after [`DriverHandle::response_head`] (or without a
    /// response); `conn` is the connection to reuse, if it still works.
    pub fn complete(&self, id: RequestId, clean: bool, conn: Option<Upstream>) {
        self.send(Msg::Complete {
            id,
            clean,
            conn,
            status: None,
            replica: self.replica,
        });
    }

    /// A whole response (head and body) arrived at once: its head and its
    /// clean end in one message.
    pub fn complete_whole(&self, id: RequestId, status: u16, conn: Option<Upstream>) {
        self.send(Msg::Complete {
            id,
            clean: true,
            conn,
            status: Some(status),
            replica: self.replica,
        });
    }

    pub fn busy(&self, id: RequestId) {
        self.send(Msg::Busy { id });
    }

    pub fn connect_failed(&self, id: RequestId) {
        self.send(Msg::ConnectFailed { id });
    }

    pub fn failed_after_send(&self, id: RequestId) {
        self.send(Msg::FailedAfterSend { id });
    }

    pub fn client_gone(&self, id: RequestId) {
        self.send(Msg::ClientGone { id });
    }

    /// A dispatch was never carried out (its client left); `conn` goes back.
    pub fn dispatch_unused(&self, id: RequestId, conn: Option<Upstream>) {
        self.send(Msg::Unused {
            id,
            conn,
            replica: self.replica,
        });
    }

    /// A control-socket message from a worker; resolves to the reply.
    pub async fn worker_message(&self, message: WorkerMessage) -> Reply {
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Worker { message, reply });
        rx.await.unwrap_or_else(|_| Reply::error("server is stopping"))
    }

    /// Something under the app directory changed: the core coalesces a
    /// burst of these into one reload (hot reload modes only).
    pub fn files_changed(&self) {
        self.send(Msg::FilesChanged);
    }

    /// A worker process exited (reaped).
    pub fn process_exited(&self, pid: Pid) {
        self.send(Msg::Exited { pid });
    }

    /// Runs an admin command.
    pub async fn admin(&self, command: Admin) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Admin { command, reply });
        rx.await.unwrap_or_else(|_| Err("server is stopping".into()))
    }

    /// The status snapshot (`None` once the driver has stopped).
    pub async fn status(&self) -> Option<StatusSnapshot> {
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Status { reply });
        rx.await.ok()
    }
}

/// Static facts the driver reports in `/status`.
#[derive(Clone, Debug)]
pub struct Identity {
    pub app: String,
    pub ports: Vec<u16>,
    /// Worker sockets must live under this prefix (`<prefix>.`).
    pub socket_prefix: PathBuf,
    /// Check that a joining worker's socket exists and is a socket.
    pub check_sockets: bool,
}

/// What runs the app, for `/status`: the hot reload mode and, for Bun
/// apps, which Bun.
#[derive(Clone, Debug, Default)]
pub struct AppRuntime {
    pub hot_reload: &'static str,
    pub bun: Option<BunStatus>,
}

/// The state owned by the driver task.
pub struct Driver<S: Spawner> {
    node: Node,
    spawner: S,
    clock: Clock,
    identity: Identity,
    handle: DriverHandle,
    rx: mpsc::UnboundedReceiver<Msg>,
    /// Per-request decision channels.
    pending: BTreeMap<RequestId, Pending>,
    /// Per-worker address and idle connections.
    conns: BTreeMap<Pid, WorkerConn>,
    /// Front-door replicas sending requests (each worker keeps one idle
    /// connection per replica), and what they accepted, for `/status`.
    replicas: usize,
    accepts: Option<AcceptCounts>,
    stopped: bool,
    started: Time,
    inspector: Option<Inspector>,
    /// Responses sent, by status class (the snapshot's `responses`).
    responses: ResponseClasses,
    app_runtime: AppRuntime,
}

/// Looks at the core after every step (the simulation checks invariants with it).
pub type Inspector = Box<dyn FnMut(&Node, Time) + Send>;

/// A request the driver may still have to tell something.
struct Pending {
    tx: DecisionTx,
    /// The front-door replica its task runs on.
    replica: usize,
}

impl<S: Spawner> Driver<S> {
    /// Builds the driver and its handle.
    pub fn new(node: Node, spawner: S, clock: Clock, identity: Identity) -> Driver<S> {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = DriverHandle {
            tx,
            next_id: Arc::new(AtomicU64::new(1)),
            replica: 0,
        };
        let started = clock.now();
        Driver {
            node,
            spawner,
            clock,
            identity,
            handle,
            rx,
            pending: BTreeMap::new(),
            conns: BTreeMap::new(),
            replicas: 1,
            accepts: None,
            stopped: false,
            started,
            inspector: None,
            responses: ResponseClasses::default(),
            app_runtime: AppRuntime {
                hot_reload: "none",
                bun: None,
            },
        }
    }

    /// Sets what `/status` says runs the app.
    pub fn with_app_runtime(mut self, app_runtime: AppRuntime) -> Driver<S> {
        self.app_runtime = app_runtime;
        self
    }

    /// Requests come from `accepts.replicas()` front-door replicas (see
    /// [`DriverHandle::for_replica`]), whose accepted connections
    /// `/status` shows.
    pub fn with_replicas(mut self, accepts: AcceptCounts) -> Driver<S> {
        self.replicas = accepts.replicas();
        self.accepts = Some(accepts);
        self
    }

    /// The number of front-door replicas (idle connections kept per worker).
    pub(crate) fn replicas(&self) -> usize {
        self.replicas
    }

    /// Calls `inspector` with the core after every step.
    pub fn with_inspector(mut self, inspector: Inspector) -> Driver<S> {
        self.inspector = Some(inspector);
        self
    }

    /// A handle for request tasks, the control socket and signal handlers.
    pub fn handle(&self) -> DriverHandle {
        self.handle.clone()
    }

    /// Runs until a graceful stop has finished (every worker exited).
    pub async fn run(mut self) {
        let now = self.clock.now();
        self.process_outputs(now);
        let sleep = tokio::time::sleep_until(self.clock.instant(now));
        tokio::pin!(sleep);
        let mut armed: Option<Time> = None;
        while !self.stopped {
            // Re-arm only for an earlier deadline. A later one (the usual
            // case: the earliest read deadline just completed) leaves the
            // timer as it is; it fires early once and is re-armed then. This
            // keeps timer-wheel updates off the per-request path.
            if let Some(t) = self.next_deadline()
                && armed.is_none_or(|a| t < a)
            {
                sleep.as_mut().reset(self.clock.instant(t));
                armed = Some(t);
            }
            tokio::select! {
                biased;
                msg = self.rx.recv() => {
                    let Some(msg) = msg else { break };
                    let now = self.clock.now();
                    self.handle_msg(msg, now);
                    // Take whatever else is already waiting before draining outputs.
                    for _ in 0..256 {
                        match self.rx.try_recv() {
                            Ok(msg) => self.handle_msg(msg, now),
                            Err(_) => break,
                        }
                    }
                    self.process_outputs(now);
                }
                () = &mut sleep, if armed.is_some() => {
                    armed = None;
                    let now = self.clock.now();
                    self.node.handle_timeout(now);
                    self.process_outputs(now);
                }
            }
        }
        self.spawner.cleanup();
    }

    fn next_deadline(&self) -> Option<Time> {
        self.node.poll_timeout()
    }

    fn handle_msg(&mut self, msg: Msg, now: Time) {
        self.node.tick(now);
        match msg {
            Msg::Arrive { id, meta, tx, replica } => {
                self.pending.insert(id, Pending { tx, replica });
                self.node.balancer.handle_request(id, meta, now);
            }
            Msg::Head { id, status } => {
                self.responses.count(status);
                self.node.balancer.handle_response_head(id, now);
                // The request task needs nothing more from the driver.
                self.pending.remove(&id);
            }
            Msg::Complete {
                id,
                clean,
                conn,
                status,
                replica,
            } => {
                if let Some(status) = status {
                    self.responses.count(status);
                }
                if let Some(pid) = self.node.balancer.worker_of(id)
                    && let Some(wc) = self.conns.get_mut(&pid)
                {
                    wc.keep(replica, conn);
                }
                self.pending.remove(&id);
                self.node.balancer.handle_complete(id, clean, now);
            }
            Msg::Busy { id } => {
                let answered = !self.node.balancer.awaits_decision(id);
                self.node.balancer.handle_busy(id, now);
                self.forget_if_answered(id, answered);
            }
            Msg::ConnectFailed { id } => {
                let answered = !self.node.balancer.awaits_decision(id);
                // The worker refused a connection: the ones kept for it
                // (every replica's) are not worth trying either.
                if let Some(pid) = self.node.balancer.worker_of(id)
                    && let Some(wc) = self.conns.get_mut(&pid)
                {
                    wc.forget_all();
                }
                self.node.balancer.handle_connect_failed(id, now);
                self.forget_if_answered(id, answered);
            }
            Msg::FailedAfterSend { id } => {
                let answered = !self.node.balancer.awaits_decision(id);
                self.node.balancer.handle_failed_after_send(id, now);
                self.forget_if_answered(id, answered);
            }
            Msg::ClientGone { id } => {
                self.pending.remove(&id);
                self.node.balancer.handle_client_gone(id, now);
            }
            Msg::Unused { id, conn, replica } => {
                if let Some(pid) = self.node.balancer.worker_of(id)
                    && let Some(wc) = self.conns.get_mut(&pid)
                {
                    wc.keep(replica, conn);
                }
                self.pending.remove(&id);
                self.node.balancer.handle_dispatch_unused(id, now);
            }
            Msg::Worker { message, reply } => {
                let answer = self.worker_message(message, now);
                let _ = reply.send(answer);
            }
            Msg::FilesChanged => self.node.handle_files_changed(now),
            Msg::Exited { pid } => {
                self.spawner.exited(pid);
                self.node.handle_exit(pid, now);
            }
            Msg::Admin { command, reply } => {
                let result = self.admin(command, now);
                let _ = reply.send(result);
            }
            Msg::Status { reply } => {
                let _ = reply.send(self.status(now));
            }
        }
    }

    /// A request answered earlier (read timeout, client gone) whose
    /// exchange just ended needs no decision channel any more.
    fn forget_if_answered(&mut self, id: RequestId, answered_before: bool) {
        if answered_before {
            self.pending.remove(&id);
        }
    }

    fn admin(&mut self, command: Admin, now: Time) -> Result<(), String> {
        if self.node.is_stopping() && !matches!(command, Admin::Stop) {
            return Err("server is stopping".into());
        }
        match command {
            Admin::RollingRestart => self.node.supervisor.rolling_restart(now).map_err(str::to_owned),
            Admin::ScaleBy(delta) => {
                let target = i64::from(self.node.supervisor.desired()) + i64::from(delta);
                if !(1..=1024).contains(&target) {
                    return Err(format!(
                        "cannot scale from {} by {delta}: the worker count stays within 1..=1024",
                        self.node.supervisor.desired()
                    ));
                }
                self.node.scale_by(delta, now);
                Ok(())
            }
            Admin::ScaleTo(n) => {
                self.node.scale_to(n, now);
                Ok(())
            }
            Admin::Stop => {
                if !self.node.is_stopping() {
                    tracing::info!("graceful stop: finishing queued and in-flight requests");
                }
                self.node.begin_stop(now);
                Ok(())
            }
        }
    }

    /// Carries out everything the core decided, until it has nothing more.
    fn process_outputs(&mut self, now: Time) {
        self.node.tick(now);
        while let Some(output) = self.node.poll() {
            match output {
                Output::Request(action) => self.carry_out(action),
                Output::Event(event) => match event {
                    WorkerEvent::Stuck { pid } => {
                        tracing::warn!(pid = pid.0, "worker passed the read timeout; treating it as stuck")
                    }
                    WorkerEvent::Removed { pid } => {
                        self.conns.remove(&pid);
                    }
                    WorkerEvent::VersionActivated { version } => {
                        tracing::info!(version = version.0, "version now takes new requests");
                    }
                    _ => {}
                },
                Output::Process(action) => match action {
                    SupervisorAction::Spawn { spawn, slot, version } => {
                        match self.spawner.spawn(slot, version, &self.handle) {
                            Ok(pid) => {
                                self.node.supervisor.handle_spawned(spawn, pid, now);
                            }
                            Err(e) => {
                                tracing::error!(slot = slot.0, "could not start worker: {e}");
                                self.node.supervisor.handle_spawn_failed(spawn, now);
                            }
                        }
                    }
                    SupervisorAction::Drain { pid } => self.node.balancer.handle_drain(pid, now),
                    SupervisorAction::Terminate { pid } => self.spawner.signal(pid, Signal::Terminate),
                    SupervisorAction::Reload { pid } => {
                        tracing::info!(pid = pid.0, "reloading worker in place");
                        self.spawner.signal(pid, Signal::Reload);
                    }
                    SupervisorAction::Kill { pid } => {
                        match self.node.balancer.request_on(pid) {
                            Some(request) => tracing::warn!(
                                pid = pid.0,
                                request = request.0,
                                "killing worker (SIGKILL) while it still handles this request"
                            ),
                            None => tracing::warn!(pid = pid.0, "killing worker (SIGKILL)"),
                        }
                        self.spawner.signal(pid, Signal::Kill)
                    }
                    SupervisorAction::Stopped => self.stopped = true,
                },
            }
        }
        if let Some(inspect) = self.inspector.as_mut() {
            inspect(&self.node, now);
        }
    }

    fn carry_out(&mut self, action: Action) {
        match action {
            Action::Dispatch { request, pid, attempt } => {
                // Every dispatch must end in exactly one outcome; if nobody can
                // carry this one out, it ends here and the worker goes back.
                // (A normal race: within one batch a completion dispatched a
                // queued request whose client-gone message came next.)
                let Some(Pending { tx, replica }) = self.pending.get(&request) else {
                    tracing::debug!(
                        request = request.0,
                        pid = pid.0,
                        "dispatch for a departed client; undone"
                    );
                    let now = self.clock.now();
                    self.node.balancer.handle_dispatch_unused(request, now);
                    return;
                };
                let Some(wc) = self.conns.get_mut(&pid) else {
                    tracing::error!(
                        request = request.0,
                        pid = pid.0,
                        "dispatch to a worker with no address; undone"
                    );
                    let now = self.clock.now();
                    self.node.balancer.handle_dispatch_unused(request, now);
                    return;
                };
                let replica = *replica;
                let decision = Decision::Dispatch {
                    pid,
                    attempt,
                    address: wc.address.clone(),
                    conn: wc.take(replica),
                };
                if let Err(Decision::Dispatch { conn, .. }) = tx.send(decision) {
                    // The request task is gone; it will never report an
                    // outcome, so the exchange ends here.
                    if let Some(wc) = self.conns.get_mut(&pid) {
                        wc.keep(replica, conn);
                    }
                    self.pending.remove(&request);
                    let now = self.clock.now();
                    self.node.balancer.handle_dispatch_unused(request, now);
                }
            }
            Action::Answer { request, answer } => {
                // A timed-out request stays registered: its task still
                // reports how the worker's exchange ended.
                let sent = if answer == Answer::UpstreamTimeout {
                    self.pending
                        .get(&request)
                        .is_some_and(|p| p.tx.send(Decision::Answer(answer)).is_ok())
                } else {
                    self.pending
                        .remove(&request)
                        .is_some_and(|p| p.tx.send(Decision::Answer(answer)).is_ok())
                };
                if sent {
                    self.responses.count(answer.status());
                }
            }
        }
    }

    fn status(&self, now: Time) -> StatusSnapshot {
        let lb = self.node.balancer.status();
        let uptime = now.saturating_since(self.started).as_secs_f64();
        let healthy = lb.registered > 0 && !self.node.is_stopping();
        StatusSnapshot {
            status: if healthy { Health::Healthy } else { Health::Degraded },
            app: self.identity.app.clone(),
            workers: lb.registered,
            ports: self.identity.ports.clone(),
            uptime: (uptime * 1000.0).round() / 1000.0,
            version: lb.active_version,
            queue: QueueStatus {
                depth: lb.queued,
                max: self.node.balancer.config().max_queue,
            },
            inflight: lb.in_flight,
            routable: lb.routable,
            stopping: self.node.is_stopping(),
            pool: lb
                .workers
                .into_iter()
                .map(|worker| PoolWorker {
                    age_ms: self
                        .conns
                        .get(&worker.pid)
                        .map(|c| now.saturating_since(c.joined).as_millis() as u64),
                    worker,
                })
                .collect(),
            supervisor: self.node.supervisor.status(now),
            build: crate::observe::build::current().clone(),
            hot_reload: self.app_runtime.hot_reload,
            bun: self.app_runtime.bun.clone(),
            rejections: self.node.balancer.stats().answers.clone(),
            worker_exits: self
                .node
                .supervisor
                .exit_counts()
                .iter()
                .map(|(cause, n)| (cause.as_str(), *n))
                .collect(),
            queue_wait: self.node.balancer.stats().queue_wait.clone(),
            request_duration: self.node.balancer.stats().request_duration.clone(),
            served_by_slot: self.node.balancer.stats().served_by_slot.clone(),
            illegal_transitions: self.node.illegal_transitions(),
            counters: lb.counters,
            responses: self.responses,
            tracked: self.pending.len(),
            lb_replicas: self.replicas,
            replicas: self.accepts.as_ref().map(AcceptCounts::snapshot).unwrap_or_default(),
        }
    }
}

pub(crate) fn is_socket(path: &str) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}
