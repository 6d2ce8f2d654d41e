//! What the platform's API asks of the running apps ([`AppControl`]), what
//! it learns from them ([`LiveApp`]), and an in-memory stand-in for tests
//! ([`FakeControl`]).
//!
//! The API owns the desired state (`apps.json`); an [`AppControl`] carries
//! it out: starting an app's pool, draining it, rolling it, scaling it,
//! routing its hosts. Keeping that behind a trait lets the API be tested
//! without processes, and keeps the API free of how apps run. Each method
//! answers once the change is *accepted* (a rolling restart has begun, not
//! ended); its progress shows in [`AppControl::live`].
//!
//! The methods that start workers take the whole [`AppRecord`]: its
//! environment is applied exactly at that start (a key removed from the
//! record is gone from the new workers).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;

use super::apps::AppRecord;

/// What an app is doing, as the API shows it (`status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AppStatus {
    /// Accepted, no worker ready yet.
    #[default]
    Deployed,
    /// Serving.
    Running,
    /// Stopped (drained) or never started.
    Stopped,
    /// It cannot run: see `error`.
    Error,
}

/// One worker of an app's pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveWorker {
    /// Its process id.
    pub pid: u32,
    /// The balancer's state of it (`idle`, `busy`, `draining`...).
    pub state: String,
    /// The generation it belongs to (`RIP_VERSION`).
    pub version: u64,
    /// Requests it has served.
    pub served: u64,
}

/// An app's queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveQueue {
    /// Requests waiting now.
    pub depth: usize,
    /// The most that may wait.
    pub max: usize,
}

/// An app's counters since it was deployed (the dashboard turns two polls
/// into rates).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveCounters {
    /// Requests that reached its balancer.
    pub requests: u64,
    /// Responses with a 5xx status (the workers' and synthesized ones).
    pub server_errors: u64,
    /// Worker processes started to replace others (crashes, recycling,
    /// rolling restarts).
    pub restarts: u64,
}

/// An app as it runs now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveApp {
    /// What it is doing.
    pub status: AppStatus,
    /// When its current workers were started, RFC 3339 UTC (left out
    /// when unknown: the API's app JSON then shows the record's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Why it cannot run (with [`AppStatus::Error`]), one line.
    pub error: Option<String>,
    /// The generation that takes new requests.
    pub version: Option<u64>,
    /// Its workers.
    pub pool: Vec<LiveWorker>,
    /// Its queue.
    pub queue: LiveQueue,
    /// Its counters.
    pub counters: LiveCounters,
}

/// Why an [`AppControl`] refused or failed a change. The message is one
/// line for `{"error": ...}` and never holds an environment value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlError {
    /// The app cannot run as it is (no Bun for a `.ts` entry, a `.rip`
    /// entry without a preload...): the API answers 400.
    Refused(String),
    /// Not now (a change that conflicts with one under way): 409.
    Conflict(String),
    /// Something failed (a socket, a spawn): 500.
    Failed(String),
}

impl ControlError {
    /// The API's status for it.
    pub fn status(&self) -> u16 {
        match self {
            ControlError::Refused(_) => 400,
            ControlError::Conflict(_) => 409,
            ControlError::Failed(_) => 500,
        }
    }

    /// The one-line reason.
    pub fn message(&self) -> &str {
        match self {
            ControlError::Refused(m) | ControlError::Conflict(m) | ControlError::Failed(m) => m,
        }
    }
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ControlError {}

/// The running apps, as the API drives them. Every method is called with
/// the API's change lock held, so two changes never overlap; `live` is
/// called without it, at any time.
pub trait AppControl: Send + Sync + 'static {
    /// A new app: route its hosts and start its pool.
    fn deploy(&self, app: &AppRecord) -> impl Future<Output = Result<(), ControlError>> + Send;
    /// Start a stopped app (or one the platform restored as stopped), with
    /// the record's environment and worker count.
    fn start(&self, app: &AppRecord) -> impl Future<Output = Result<(), ControlError>> + Send;
    /// Stop an app: drain its workers (requests under way finish).
    fn stop(&self, name: &str) -> impl Future<Output = Result<(), ControlError>> + Send;
    /// The rolling restart: a new generation with the record's environment
    /// takes over without a failed request.
    fn restart(&self, app: &AppRecord) -> impl Future<Output = Result<(), ControlError>> + Send;
    /// Add or remove workers without touching the others.
    fn scale(&self, name: &str, workers: u32) -> impl Future<Output = Result<(), ControlError>> + Send;
    /// The record changed (`PATCH`): hosts apply at once, the worker count
    /// by scaling if the app runs, the environment at its next start.
    fn reconfigure(&self, app: &AppRecord) -> impl Future<Output = Result<(), ControlError>> + Send;
    /// Stop the app for good and forget it (its hosts stop routing).
    fn undeploy(&self, name: &str) -> impl Future<Output = Result<(), ControlError>> + Send;
    /// How the app runs now; `None` when this control does not know it
    /// (never started since the platform started, or undeployed).
    fn live(&self, name: &str) -> impl Future<Output = Option<LiveApp>> + Send;
}

/// The operations of [`AppControl`] that change something, by the names
/// [`FakeControl`] records.
pub const OPERATIONS: [&str; 7] = ["deploy", "start", "stop", "restart", "scale", "reconfigure", "undeploy"];

/// An [`AppControl`] in memory, for tests: it records every call (as
/// `"<operation> <name>"`, `"scale <name> <workers>"`), keeps a plausible
/// live state (a pool of made-up pids), and can be told to fail the next
/// call of an operation ([`FakeControl::fail_next`]).
#[derive(Debug, Default)]
pub struct FakeControl {
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    calls: Vec<String>,
    failures: BTreeMap<&'static str, ControlError>,
    apps: BTreeMap<String, LiveApp>,
    next_pid: u32,
}

impl FakeState {
    fn pool(&mut self, workers: u32, version: u64) -> Vec<LiveWorker> {
        (0..workers)
            .map(|_| {
                self.next_pid += 1;
                LiveWorker {
                    pid: 10_000 + self.next_pid,
                    state: "idle".to_owned(),
                    version,
                    served: 0,
                }
            })
            .collect()
    }

    fn run(&mut self, app: &AppRecord) {
        let version = self.apps.get(&app.name).and_then(|a| a.version).map_or(1, |v| v + 1);
        let pool = self.pool(app.workers, version);
        let live = self.apps.entry(app.name.clone()).or_default();
        *live = LiveApp {
            status: AppStatus::Running,
            started_at: app.started_at.clone(),
            version: Some(version),
            pool,
            counters: live.counters,
            ..LiveApp::default()
        };
    }

    fn resize(&mut self, name: &str, workers: u32) {
        let Some(version) = self
            .apps
            .get(name)
            .filter(|a| a.status == AppStatus::Running)
            .and_then(|a| a.version)
        else {
            return;
        };
        let current = self.apps[name].pool.len();
        let target = workers as usize;
        let added = self.pool(workers.saturating_sub(current as u32), version);
        let live = self.apps.get_mut(name).expect("checked above");
        live.pool.truncate(target);
        live.pool.extend(added);
    }
}

impl FakeControl {
    /// A control that knows no app and has recorded nothing.
    pub fn new() -> FakeControl {
        FakeControl::default()
    }

    /// Every change asked of it so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// The next call of `operation` (one of [`OPERATIONS`]) is recorded and
    /// fails with `error`, changing nothing.
    pub fn fail_next(&self, operation: &'static str, error: ControlError) {
        assert!(OPERATIONS.contains(&operation), "no operation {operation:?}");
        self.lock().failures.insert(operation, error);
    }

    /// Sets what [`AppControl::live`] says of `name` (to show an error, a
    /// queue, counters).
    pub fn set_live(&self, name: &str, live: LiveApp) {
        self.lock().apps.insert(name.to_owned(), live);
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the call and applies `change` unless a failure was planted.
    fn call(
        &self,
        operation: &'static str,
        record: String,
        change: impl FnOnce(&mut FakeState),
    ) -> Result<(), ControlError> {
        let mut state = self.lock();
        state.calls.push(record);
        if let Some(error) = state.failures.remove(operation) {
            return Err(error);
        }
        change(&mut state);
        Ok(())
    }
}

impl AppControl for FakeControl {
    async fn deploy(&self, app: &AppRecord) -> Result<(), ControlError> {
        self.call("deploy", format!("deploy {}", app.name), |s| s.run(app))
    }

    async fn start(&self, app: &AppRecord) -> Result<(), ControlError> {
        self.call("start", format!("start {}", app.name), |s| s.run(app))
    }

    async fn stop(&self, name: &str) -> Result<(), ControlError> {
        self.call("stop", format!("stop {name}"), |s| {
            let live = s.apps.entry(name.to_owned()).or_default();
            live.status = AppStatus::Stopped;
            live.pool.clear();
        })
    }

    async fn restart(&self, app: &AppRecord) -> Result<(), ControlError> {
        self.call("restart", format!("restart {}", app.name), |s| {
            let restarts = s.apps.get(&app.name).map_or(0, |a| a.counters.restarts);
            s.run(app);
            let live = s.apps.get_mut(&app.name).expect("run inserts it");
            live.counters.restarts = restarts + u64::from(app.workers);
        })
    }

    async fn scale(&self, name: &str, workers: u32) -> Result<(), ControlError> {
        self.call("scale", format!("scale {name} {workers}"), |s| s.resize(name, workers))
    }

    async fn reconfigure(&self, app: &AppRecord) -> Result<(), ControlError> {
        self.call("reconfigure", format!("reconfigure {}", app.name), |s| {
            s.resize(&app.name, app.workers)
        })
    }

    async fn undeploy(&self, name: &str) -> Result<(), ControlError> {
        self.call("undeploy", format!("undeploy {name}"), |s| {
            s.apps.remove(name);
        })
    }

    async fn live(&self, name: &str) -> Option<LiveApp> {
        self.lock().apps.get(name).cloned()
    }
}
