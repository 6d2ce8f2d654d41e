//! The status snapshot: one typed picture of an app's server, taken by the
//! driver (the only owner of the state it shows) and rendered by every
//! reader: `GET /status` and the control socket's `/status` as JSON today,
//! `rip-server status` as a table, `/metrics` (see `observe::metrics`) and
//! the dashboard. They
//! all read the same counters, so no reader counts on its own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::build::BuildInfo;
use crate::core::Version;
use crate::core::balancer::{Counters, WorkerStatus};
use crate::core::stats::Histogram;
use crate::core::supervisor::SupervisorStatus;

/// Whether the app can serve: `healthy` once a worker is registered and no
/// stop has begun, else `degraded` (the contract's `/status.status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Healthy,
    Degraded,
}

/// The queue in front of the workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct QueueStatus {
    /// Requests waiting now.
    pub depth: usize,
    /// `--max-queue`.
    pub max: usize,
}

/// One worker of the pool: the balancer's view of it and its age.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PoolWorker {
    /// pid, slot, version, state, requests served, socket.
    #[serde(flatten)]
    pub worker: WorkerStatus,
    /// Milliseconds since the worker joined (`None` if the driver never saw
    /// it join, which only a test harness can arrange).
    pub age_ms: Option<u64>,
}

/// Responses sent to clients for requests that reached the balancer, by
/// status class: the workers' answers and the synthesized ones (`Rip-Reason`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ResponseClasses {
    #[serde(rename = "1xx")]
    pub informational: u64,
    #[serde(rename = "2xx")]
    pub success: u64,
    #[serde(rename = "3xx")]
    pub redirection: u64,
    #[serde(rename = "4xx")]
    pub client_error: u64,
    #[serde(rename = "5xx")]
    pub server_error: u64,
}

impl ResponseClasses {
    /// Counts one response with this status code (anything outside
    /// 100..=599 counts as a server error: it is one, whoever sent it).
    pub fn count(&mut self, status: u16) {
        let class = match status {
            100..=199 => &mut self.informational,
            200..=299 => &mut self.success,
            300..=399 => &mut self.redirection,
            400..=499 => &mut self.client_error,
            _ => &mut self.server_error,
        };
        *class += 1;
    }

    /// `(class label, count)` in label order: `1xx` … `5xx`.
    pub fn by_label(&self) -> [(&'static str, u64); 5] {
        [
            ("1xx", self.informational),
            ("2xx", self.success),
            ("3xx", self.redirection),
            ("4xx", self.client_error),
            ("5xx", self.server_error),
        ]
    }
}

/// The Bun program that runs a `.ts`, `.js` or `.rip` app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BunStatus {
    pub path: String,
    /// As `bun --version` printed it.
    pub version: String,
}

/// Connections accepted by each front-door replica (`--lb-replicas`),
/// counted by the accept loops and read by the driver for `/status`. One
/// relaxed add per accepted connection, nothing per request.
#[derive(Clone, Debug)]
pub struct AcceptCounts(Arc<[AtomicU64]>);

impl AcceptCounts {
    /// Counters for `replicas` accept loops (at least one).
    pub fn new(replicas: usize) -> AcceptCounts {
        AcceptCounts((0..replicas.max(1)).map(|_| AtomicU64::new(0)).collect())
    }

    /// The number of replicas.
    pub fn replicas(&self) -> usize {
        self.0.len()
    }

    /// Replica `replica` accepted one connection (an index past the last
    /// counts nowhere).
    pub fn count(&self, replica: usize) {
        if let Some(counter) = self.0.get(replica) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Each replica's count, in replica order.
    pub fn snapshot(&self) -> Vec<ReplicaStatus> {
        self.0
            .iter()
            .map(|accepted| ReplicaStatus {
                accepted: accepted.load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// One front-door replica in `/status` (`replicas`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplicaStatus {
    /// Client connections its accept loop took, HTTP and HTTPS together.
    pub accepted: u64,
}

/// One app's server, as the driver saw it at one instant. Serialises to the
/// JSON of `/status` (field names are the contract's and stay stable;
/// fields are only ever added).
#[derive(Clone, Debug, Serialize)]
pub struct StatusSnapshot {
    /// `healthy` or `degraded`.
    pub status: Health,
    /// The app name.
    pub app: String,
    /// Registered workers.
    pub workers: usize,
    /// The ports the server listens on.
    pub ports: Vec<u16>,
    /// Seconds since the server started, to the millisecond.
    pub uptime: f64,
    /// The generation new requests go to.
    pub version: Option<Version>,
    /// The queue.
    pub queue: QueueStatus,
    /// Requests a worker is running.
    pub inflight: usize,
    /// Workers a request may be sent to now.
    pub routable: usize,
    /// A graceful stop has begun.
    pub stopping: bool,
    /// Every worker the balancer knows, with its state.
    pub pool: Vec<PoolWorker>,
    /// The process manager's view: desired count, slots, rolls, the last
    /// error the app reported while loading (`app_error`).
    pub supervisor: SupervisorStatus,
    /// The build: version and build id (see `observe::build`).
    pub build: BuildInfo,
    /// The hot reload mode: `none`, `process` or `module`.
    pub hot_reload: &'static str,
    /// The Bun that runs the app (`null` for other apps).
    pub bun: Option<BunStatus>,
    /// The balancer's request counters.
    pub counters: Counters,
    /// Responses by status class.
    pub responses: ResponseClasses,
    /// Synthesized answers by reason (`Rip-Reason`), every reason listed.
    pub rejections: BTreeMap<&'static str, u64>,
    /// Worker processes that ended, by cause (`crash`, `recycled`, …), every
    /// cause listed.
    pub worker_exits: BTreeMap<&'static str, u64>,
    /// Time from arrival to first dispatch (microsecond buckets).
    pub queue_wait: Histogram,
    /// Time from arrival to the end of the worker's response, for every
    /// request whose client got the worker's answer (microsecond buckets).
    pub request_duration: Histogram,
    /// Exchanges completed by each slot's workers (index = slot,
    /// `RIP_WORKER_ID`), across replacements.
    pub served_by_slot: Vec<u64>,
    /// State transitions the core's own rules forbid (refused, or a
    /// dispatch to a worker that was not routable): each one is a bug,
    /// counted instead of dropped silently (0 in a healthy server).
    pub illegal_transitions: u64,
    /// Request tasks the driver still holds a channel to: 0 when idle (a
    /// leak check for the tests).
    pub tracked: usize,
    /// Front-door accept loops sending this app requests (`--lb-replicas`;
    /// 1 for an app of the platform).
    pub lb_replicas: usize,
    /// Each replica's accepted connections, in replica order; empty when
    /// nobody counts (an app of the platform, whose listeners serve every
    /// app).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaStatus>,
}

/// The JSON of `/status`: the snapshot, or `null` once the driver has
/// stopped (a request can still arrive while the server shuts down).
pub fn to_json(snapshot: Option<&StatusSnapshot>) -> String {
    // Every key is a string and every number finite, so this cannot fail.
    serde_json::to_string(&snapshot).unwrap_or_else(|_| "null".to_owned())
}

/// `/status`'s `tls` on a server that serves HTTPS: where the certificate
/// comes from and what it says. Never key material.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsStatus {
    /// `files` (`cert:`/`key:`), `quick` (self-signed) or `ca` (the dev CA).
    pub source: &'static str,
    pub subject: String,
    /// The names and addresses it covers.
    pub sans: Vec<String>,
    pub issuer: String,
    /// The serial number, lowercase hex.
    pub serial: String,
    /// RFC 3339, UTC.
    pub not_after: String,
    /// When it is renewed next (RFC 3339); `null` for files, reloaded when
    /// they change instead.
    pub next_renewal: Option<String>,
}

/// [`to_json`] with `tls` added to the snapshot (when there is one).
pub fn to_json_with_tls(snapshot: Option<&StatusSnapshot>, tls: Option<&TlsStatus>) -> String {
    #[derive(Serialize)]
    struct WithTls<'a> {
        #[serde(flatten)]
        snapshot: &'a StatusSnapshot,
        tls: &'a TlsStatus,
    }
    match (snapshot, tls) {
        (Some(snapshot), Some(tls)) => {
            serde_json::to_string(&WithTls { snapshot, tls }).unwrap_or_else(|_| "null".to_owned())
        }
        (snapshot, _) => to_json(snapshot),
    }
}
