//! What the driver keeps for each worker besides the core's view of it:
//! its address and its kept-alive connections, one per front-door replica.

use std::sync::Arc;

use crate::core::Time;
use crate::upstream::Upstream;

pub(super) struct WorkerConn {
    pub(super) address: Arc<str>,
    /// The kept-alive connection of each replica's event loop (index =
    /// replica), at most one each: a connection is only ever handed to a
    /// request of the loop that opened it.
    idle: Box<[Option<Upstream>]>,
    /// When the worker joined (its age in the snapshot).
    pub(super) joined: Time,
}

impl WorkerConn {
    pub(super) fn new(address: Arc<str>, replicas: usize, joined: Time) -> WorkerConn {
        WorkerConn {
            address,
            idle: (0..replicas.max(1)).map(|_| None).collect(),
            joined,
        }
    }

    /// Keeps `conn` as replica `replica`'s idle connection (`None` forgets
    /// the one kept); a replica that does not exist keeps nothing.
    pub(super) fn keep(&mut self, replica: usize, conn: Option<Upstream>) {
        if let Some(slot) = self.idle.get_mut(replica) {
            *slot = conn;
        }
    }

    /// Drops every replica's idle connection.
    pub(super) fn forget_all(&mut self) {
        self.idle.iter_mut().for_each(|slot| *slot = None);
    }

    /// Replica `replica`'s idle connection, taken.
    pub(super) fn take(&mut self, replica: usize) -> Option<Upstream> {
        self.idle.get_mut(replica).and_then(Option::take)
    }
}
