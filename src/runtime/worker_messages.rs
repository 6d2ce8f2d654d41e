//! The driver's side of the worker protocol: a worker's join, quit, error
//! and reload reports, checked against what the server knows before they
//! reach the core.

use std::sync::Arc;

use super::{Driver, Spawner, WorkerConn, is_socket};
use crate::core::balancer::WorkerInfo;
use crate::core::supervisor::AppErrorPhase;
use crate::core::{Pid, Slot, Time, Version};
use crate::protocol::{ErrorPhase, MAX_ERROR_TEXT, Reply, WorkerMessage};

impl<S: Spawner> Driver<S> {
    pub(super) fn worker_message(&mut self, message: WorkerMessage, now: Time) -> Reply {
        match message {
            WorkerMessage::Join {
                app,
                worker_id,
                pid,
                socket,
                version,
                reload,
            } => {
                if app != self.identity.app {
                    return Reply::error(format!(
                        "app {app:?} is not served here (this is {:?})",
                        self.identity.app
                    ));
                }
                let prefix = format!("{}.", self.identity.socket_prefix.display());
                if !socket.starts_with(&prefix) || socket.contains("/../") || socket.contains('\0') {
                    return Reply::error(format!("socket {socket:?} is not under the server's prefix {prefix:?}"));
                }
                if self.identity.check_sockets && !is_socket(&socket) {
                    return Reply::error(format!("socket {socket:?} does not exist or is not a socket"));
                }
                if self.node.is_stopping() {
                    return Reply::error("server is stopping");
                }
                let info = WorkerInfo {
                    pid: Pid(pid),
                    slot: Slot(worker_id),
                    version: Version(version.unwrap_or(0)),
                    socket,
                };
                let address: Arc<str> = info.socket.as_str().into();
                match self.node.handle_join(info, reload, now) {
                    Ok(()) => {
                        let replicas = self.replicas();
                        self.conns
                            .entry(Pid(pid))
                            .or_insert_with(|| WorkerConn::new(address, replicas, now));
                        Reply::ok()
                    }
                    Err(e) => Reply::error(format!("join refused: {e:?}")),
                }
            }
            WorkerMessage::Error {
                app,
                worker_id,
                pid,
                phase,
                error,
            } => {
                let pid = match self.own_process(&app, worker_id, pid) {
                    Ok(pid) => pid,
                    Err(reply) => return reply,
                };
                let error = truncate(error, MAX_ERROR_TEXT);
                let phase = match phase {
                    ErrorPhase::Load => AppErrorPhase::Load,
                    ErrorPhase::Reload => AppErrorPhase::Reload,
                };
                match phase {
                    AppErrorPhase::Load => {
                        tracing::error!(pid = pid.0, worker = worker_id, "the app failed to load: {error}")
                    }
                    AppErrorPhase::Reload => tracing::error!(
                        pid = pid.0,
                        worker = worker_id,
                        "the app failed to reload; the worker keeps serving its last good code: {error}"
                    ),
                }
                self.node.handle_app_error(pid, phase, error, now);
                Reply::ok()
            }
            WorkerMessage::Reloaded {
                app,
                worker_id,
                pid,
                reloads,
            } => {
                let pid = match self.own_process(&app, worker_id, pid) {
                    Ok(pid) => pid,
                    Err(reply) => return reply,
                };
                tracing::info!(
                    pid = pid.0,
                    worker = worker_id,
                    reloads,
                    "worker reloaded the app in place"
                );
                self.node.handle_reloaded(pid, reloads, now);
                Reply::ok()
            }
            WorkerMessage::Quit { app, worker_id, pid } => {
                if app != self.identity.app {
                    return Reply::error(format!("app {app:?} is not served here"));
                }
                let pid = match pid {
                    Some(p) => Pid(p),
                    None => match self.node.balancer.pid_for_slot(Slot(worker_id)) {
                        Some(p) => p,
                        None => {
                            return Reply::error(format!("no worker {worker_id} is registered"));
                        }
                    },
                };
                if self.node.balancer.worker_socket(pid).is_none() {
                    return Reply::error(format!("no worker with pid {} is registered", pid.0));
                }
                self.node.handle_quit(pid, now);
                Reply::ok()
            }
        }
    }

    /// The pid of a report from a worker process this server started for
    /// slot `worker_id` of `app`, or the reply refusing it.
    fn own_process(&self, app: &str, worker_id: u32, pid: u32) -> Result<Pid, Reply> {
        if app != self.identity.app {
            return Err(Reply::error(format!("app {app:?} is not served here")));
        }
        let pid = Pid(pid);
        match self.node.supervisor.slot_of(pid) {
            Some(slot) if slot == Slot(worker_id) => Ok(pid),
            Some(slot) => Err(Reply::error(format!(
                "pid {} is worker {}, not worker {worker_id}",
                pid.0, slot.0
            ))),
            None => Err(Reply::error(format!("pid {} is not a worker of this server", pid.0))),
        }
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(" [...]");
    }
    text
}
