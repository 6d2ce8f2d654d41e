//! The state shared by the test loop, the `lb` host (driver, spawner,
//! inspector), the worker process hosts and the clients.
//!
//! Every host runs on the test thread (turmoil steps them one after the
//! other), so one `Arc<Mutex<..>>` is enough and never contended; it is a
//! `Mutex` rather than a `RefCell` only because the [`Spawner`] and the
//! inspector must be `Send`. Locks are held for a few statements and never
//! across an `.await` or a call into turmoil (crashing a host drops its tasks,
//! whose guards take the lock).
//!
//! [`Spawner`]: rip_server::runtime::Spawner

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rip_server::core::balancer::Counters;
use rip_server::runtime::DriverHandle;

use crate::rng::Rng;

/// The shared state of one simulation run.
pub type SharedRef = Arc<Mutex<Shared>>;

/// Locks the shared state (a panic elsewhere does not hide the state).
pub fn lock(shared: &SharedRef) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Simulated time since the start of the run, in microseconds (the same
/// clock for every host; 0 outside the simulation).
pub fn now_us() -> u64 {
    turmoil::sim_elapsed().map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Formats a trace time as milliseconds with microseconds.
pub fn fmt_t(us: u64) -> String {
    format!("{:>6}.{:03}", us / 1000, us % 1000)
}

/// Microseconds of a duration.
pub fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// How long a worker takes to answer.
#[derive(Clone, Debug)]
pub enum Service {
    Fixed(Duration),
    /// Uniform in whole milliseconds.
    Uniform(Duration, Duration),
    /// Mostly fast, sometimes slow.
    Bimodal {
        fast: (Duration, Duration),
        slow: (Duration, Duration),
        slow_chance: f64,
    },
}

impl Service {
    pub fn sample(&self, rng: &mut Rng) -> Duration {
        match *self {
            Service::Fixed(d) => d,
            Service::Uniform(lo, hi) => rng.millis(lo, hi),
            Service::Bimodal {
                fast,
                slow,
                slow_chance,
            } => {
                if rng.chance(slow_chance) {
                    rng.millis(slow.0, slow.1)
                } else {
                    rng.millis(fast.0, fast.1)
                }
            }
        }
    }
}

/// How one simulated worker process behaves (the fault knobs).
#[derive(Clone, Debug)]
pub struct WorkerBehavior {
    pub service: Service,
    /// Time between the spawn and the join (a slow boot).
    pub boot_delay: Duration,
    /// Dies before joining.
    pub crash_at_boot: bool,
    /// Joins but never listens: every connect is refused.
    pub refuse: bool,
    /// Never answers its n-th request (1-based).
    pub hang_on: Option<u64>,
    /// Dies while handling its n-th request (1-based).
    pub crash_on: Option<u64>,
    /// Chance to die while handling any request.
    pub crash_chance: f64,
    /// Chance to never answer a request.
    pub hang_chance: f64,
    /// Closes the connection after every response (no keep-alive).
    pub close_after_response: bool,
}

impl Default for WorkerBehavior {
    fn default() -> Self {
        WorkerBehavior {
            service: Service::Uniform(Duration::from_millis(5), Duration::from_millis(50)),
            boot_delay: Duration::from_millis(20),
            crash_at_boot: false,
            refuse: false,
            hang_on: None,
            crash_on: None,
            crash_chance: 0.0,
            hang_chance: 0.0,
            close_after_response: false,
        }
    }
}

impl fmt::Display for WorkerBehavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "boot {}ms", self.boot_delay.as_millis())?;
        if self.crash_at_boot {
            f.write_str(" crash-at-boot")?;
        }
        if self.refuse {
            f.write_str(" refuse")?;
        }
        if let Some(n) = self.hang_on {
            write!(f, " hang-on-{n}")?;
        }
        if let Some(n) = self.crash_on {
            write!(f, " crash-on-{n}")?;
        }
        if self.crash_chance > 0.0 {
            write!(f, " crash~{}", self.crash_chance)?;
        }
        if self.hang_chance > 0.0 {
            write!(f, " hang~{}", self.hang_chance)?;
        }
        if self.close_after_response {
            f.write_str(" close")?;
        }
        Ok(())
    }
}

/// What the behavior function is told about a new process.
#[derive(Clone, Copy, Debug)]
pub struct Incarnation {
    pub pid: u32,
    pub slot: u32,
    pub version: u64,
    /// How many processes this slot had before this one.
    pub nth_of_slot: u32,
}

/// Chooses the behavior of every process the spawner starts.
pub type BehaviorFn = Arc<dyn Fn(&Incarnation, &mut Rng) -> WorkerBehavior + Send + Sync>;

/// A process's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcState {
    /// Spawned; its host has not picked it up yet.
    Assigned,
    Running,
    Dead,
}

/// One simulated worker process.
#[derive(Clone, Debug)]
pub struct Proc {
    pub pid: u32,
    pub slot: u32,
    pub version: u64,
    /// Index of its host in the pool (`p<host>`).
    pub host: usize,
    pub behavior: WorkerBehavior,
    pub state: ProcState,
    pub rng: Rng,
    /// Requests in its handler right now, counted before the busy check.
    pub current: u32,
    /// The most requests it ever had at once.
    pub peak: u32,
    /// Requests that reached its handler.
    pub received: u64,
    /// Requests it answered with 200.
    pub served: u64,
    /// SIGTERM received.
    pub terminate: bool,
    /// Open connections.
    pub live_conns: u32,
    /// The tag of the request it is running.
    pub in_flight: Option<String>,
    /// The last time a connection or request of this process began or ended.
    pub last_activity_us: u64,
    pub spawned_at: u64,
    pub joined_at: Option<u64>,
    pub died_at: Option<u64>,
    /// How it ended: "sigkill", "crash", "exit".
    pub end: Option<&'static str>,
}

/// A request from the test loop's queue of things to carry out between steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// The driver sent SIGKILL.
    Kill(u32),
    /// The worker died on its own (crash mid-request or at boot).
    SelfCrash(u32),
    /// The worker finished its graceful exit.
    Exited(u32),
}

/// How a client request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pending,
    Response {
        status: u16,
        reason: Option<String>,
        /// The worker that produced it (`x-sim-pid`), if a worker did.
        pid: Option<u32>,
    },
    /// The client dropped the request on purpose.
    Abandoned,
    /// The connection failed without a response.
    TransportError(String),
    /// No answer within the client's safety limit.
    Hung,
}

/// One request as its client saw it.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    pub tag: String,
    pub client: String,
    pub method: String,
    pub sent_us: u64,
    pub done_us: Option<u64>,
    pub outcome: Outcome,
}

impl RequestRecord {
    pub fn status(&self) -> Option<u16> {
        match self.outcome {
            Outcome::Response { status, .. } => Some(status),
            _ => None,
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Response { reason, .. } => reason.as_deref(),
            _ => None,
        }
    }

    /// Time from send to answer.
    pub fn latency_us(&self) -> Option<u64> {
        self.done_us.map(|d| d.saturating_sub(self.sent_us))
    }
}

/// A spawn the driver asked for.
#[derive(Clone, Debug)]
pub struct SpawnRecord {
    pub t_us: u64,
    pub slot: u32,
    pub version: u64,
    pub pid: Option<u32>,
}

/// What the inspector saw last.
#[derive(Clone, Debug, Default)]
pub struct LbSnapshot {
    pub counters: Counters,
    pub queue_len: usize,
    pub in_flight: usize,
    pub registered: usize,
    pub capacity: usize,
    pub routable: usize,
    pub active_version: Option<u64>,
}

/// One pool host.
#[derive(Clone, Debug)]
pub struct HostSlot {
    pub name: String,
    /// The process living on it (assigned, running, or not yet reaped).
    pub pid: Option<u32>,
}

/// Everything the run records and shares.
pub struct Shared {
    pub seed: u64,
    pub trace: Vec<String>,
    /// Broken promises (invariant checker, harness checks).
    pub violations: Vec<String>,
    pub handle: Option<DriverHandle>,
    pub hosts: Vec<HostSlot>,
    pub procs: BTreeMap<u32, Proc>,
    pub next_pid: u32,
    pub commands: VecDeque<Command>,
    pub behavior: BehaviorFn,
    pub per_slot: BTreeMap<u32, u32>,
    pub requests: Vec<RequestRecord>,
    /// Request tag → (pid, time) of every handler it reached.
    pub received: BTreeMap<String, Vec<(u32, u64)>>,
    /// Tags of requests in flight on a process when it died.
    pub crashed_inflight: BTreeSet<String>,
    pub spawns: Vec<SpawnRecord>,
    pub signals: Vec<(u64, u32, &'static str)>,
    /// (time, capacity) at every change of `balancer.capacity()`.
    pub capacity_log: Vec<(u64, usize)>,
    pub lb: LbSnapshot,
    /// The driver's `/status` document, asked for once every client is done
    /// and the settle time has passed (`Null` until then).
    pub final_status: serde_json::Value,
    /// Inspector calls.
    pub steps: u64,
    /// Connects from the front door in progress, by worker host.
    pub connecting: BTreeMap<String, u32>,
}

impl Shared {
    pub fn new(seed: u64, pool: usize, behavior: BehaviorFn) -> Shared {
        Shared {
            seed,
            trace: Vec::new(),
            violations: Vec::new(),
            handle: None,
            hosts: (0..pool)
                .map(|i| HostSlot {
                    name: format!("p{i}"),
                    pid: None,
                })
                .collect(),
            procs: BTreeMap::new(),
            next_pid: 1000,
            commands: VecDeque::new(),
            behavior,
            per_slot: BTreeMap::new(),
            requests: Vec::new(),
            received: BTreeMap::new(),
            crashed_inflight: BTreeSet::new(),
            spawns: Vec::new(),
            signals: Vec::new(),
            capacity_log: Vec::new(),
            lb: LbSnapshot::default(),
            final_status: serde_json::Value::Null,
            steps: 0,
            connecting: BTreeMap::new(),
        }
    }

    /// Appends a trace line at simulated time `t`.
    pub fn log(&mut self, t: u64, message: impl fmt::Display) {
        self.trace.push(format!("{} {message}", fmt_t(t)));
    }

    /// Records a broken promise (also in the trace).
    pub fn violation(&mut self, t: u64, message: impl fmt::Display) {
        let line = format!("{} VIOLATION {message}", fmt_t(t));
        self.trace.push(line.clone());
        self.violations.push(line);
    }

    /// The live process of a slot that has joined, newest first.
    pub fn live_of_slot(&self, slot: u32) -> Option<&Proc> {
        self.procs
            .values()
            .rev()
            .find(|p| p.slot == slot && p.state == ProcState::Running && p.joined_at.is_some() && !p.terminate)
    }
}
