//! What a run left behind, the end-to-end checks every scenario runs, and
//! the seed sweep (`SIM_SEEDS`, `SIM_SEED`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::config::Config;
use crate::state::{LbSnapshot, Outcome, Proc, RequestRecord, SpawnRecord, fmt_t, us};

/// Everything recorded by one run.
pub struct Report {
    pub scenario: &'static str,
    pub seed: u64,
    pub elapsed_us: u64,
    /// The event trace (deterministic for a seed).
    pub trace: Vec<String>,
    /// Broken invariants recorded during the run.
    pub violations: Vec<String>,
    pub requests: Vec<RequestRecord>,
    pub procs: BTreeMap<u32, Proc>,
    /// Request tag → (pid, time) of every handler it reached.
    pub received: BTreeMap<String, Vec<(u32, u64)>>,
    pub crashed_inflight: BTreeSet<String>,
    pub spawns: Vec<SpawnRecord>,
    pub signals: Vec<(u64, u32, &'static str)>,
    pub capacity_log: Vec<(u64, usize)>,
    /// What the inspector saw after the last driver step: the counters and
    /// the balancer's queue, busy workers and capacity.
    pub lb: LbSnapshot,
    /// The driver's `/status` document at the end (the pool as `/status`
    /// shows it, the supervisor's slots, the counters, the tracked requests).
    pub final_status: serde_json::Value,
    /// Driver steps the inspector looked at.
    pub inspections: u64,
    pub config: Config,
}

/// Options of the end-to-end checks.
#[derive(Clone, Copy, Debug, Default)]
pub struct Expect {
    /// Any `503 queue_full` is a failure (the clients never exceed capacity + queue).
    pub no_queue_full: bool,
    /// A 502 is allowed for a request that was not in flight on a dying worker.
    pub any_502: bool,
}

impl Report {
    /// The command that replays this run.
    pub fn replay(&self) -> String {
        format!(
            "SIM_SEED={} cargo test -p rip-sim --test scenarios {}",
            self.seed, self.scenario
        )
    }

    /// Requests that got this status.
    pub fn with_status(&self, status: u16) -> impl Iterator<Item = &RequestRecord> {
        self.requests.iter().filter(move |r| r.status() == Some(status))
    }

    /// Requests answered with this `Rip-Reason`.
    pub fn with_reason<'a>(&'a self, reason: &'a str) -> impl Iterator<Item = &'a RequestRecord> {
        self.requests.iter().filter(move |r| r.reason() == Some(reason))
    }

    /// Requests whose client abandoned them.
    pub fn abandoned(&self) -> impl Iterator<Item = &RequestRecord> {
        self.requests.iter().filter(|r| r.outcome == Outcome::Abandoned)
    }

    /// The most requests outstanding at once, as the clients saw it (an
    /// abandoned request counts until 100 ms after it was dropped, while the
    /// server may not know yet).
    pub fn max_outstanding(&self) -> usize {
        let mut edges: Vec<(u64, i32)> = Vec::new();
        for r in &self.requests {
            let end = match (&r.outcome, r.done_us) {
                (Outcome::Abandoned, Some(d)) => d + 100_000,
                (_, Some(d)) => d,
                (_, None) => u64::MAX,
            };
            edges.push((r.sent_us, 1));
            edges.push((end, -1));
        }
        edges.sort_by_key(|&(t, d)| (t, d));
        let (mut now, mut max) = (0i32, 0i32);
        for (_, d) in edges {
            now += d;
            max = max.max(now);
        }
        usize::try_from(max).unwrap_or(0)
    }

    /// Whether a request was in flight on a worker that died: in its handler
    /// when it died, or on the wire to it (sent, never reached a handler,
    /// and a worker died while the request was outstanding).
    pub fn lost_with_a_worker(&self, r: &RequestRecord) -> bool {
        if self.crashed_inflight.contains(&r.tag) {
            return true;
        }
        let done = r.done_us.unwrap_or(u64::MAX);
        !self.received.contains_key(&r.tag)
            && self.procs.values().any(|p| {
                matches!(p.end, Some("crash" | "sigkill")) && p.died_at.is_some_and(|d| (r.sent_us..=done).contains(&d))
            })
    }

    /// The checks every scenario must pass. Returns the failures.
    pub fn check_common(&self, expect: Expect) -> Vec<String> {
        let mut failures: Vec<String> = self.violations.clone();
        let c = &self.config;
        for p in self.procs.values() {
            if p.peak > 1 {
                failures.push(format!(
                    "pid {} (slot {}) had {} requests at once (single in-flight broken)",
                    p.pid, p.slot, p.peak
                ));
            }
        }
        let hang_bound = c.queue_timeout + 2 * (c.read_timeout + c.connect_timeout) + Duration::from_secs(1);
        for r in &self.requests {
            let latency = r.latency_us().unwrap_or(0);
            match &r.outcome {
                Outcome::Pending | Outcome::Hung => {
                    failures.push(format!("{} never answered (sent at {})", r.tag, fmt_t(r.sent_us)));
                }
                Outcome::TransportError(e) => {
                    failures.push(format!("{} got no HTTP answer: {e}", r.tag));
                }
                Outcome::Abandoned => {}
                Outcome::Response { status, reason, .. } => {
                    if latency > us(hang_bound) {
                        failures.push(format!(
                            "{} answered {status} after {}ms (bound {}ms)",
                            r.tag,
                            latency / 1000,
                            hang_bound.as_millis()
                        ));
                    }
                    match (status, reason.as_deref()) {
                        (504, Some("queue_timeout")) if latency < us(c.queue_timeout) => {
                            failures.push(format!(
                                "{} got 504 queue_timeout after {}us, before the {}ms deadline",
                                r.tag,
                                latency,
                                c.queue_timeout.as_millis()
                            ));
                        }
                        (504, Some("upstream_timeout")) if latency < us(c.read_timeout) => {
                            failures.push(format!(
                                "{} got 504 upstream_timeout after {}us, before the {}ms read timeout",
                                r.tag,
                                latency,
                                c.read_timeout.as_millis()
                            ));
                        }
                        (502, _) if !expect.any_502 && !self.lost_with_a_worker(r) => {
                            failures.push(format!(
                                "{} got 502 {:?} but was not in flight on a worker that died",
                                r.tag, reason
                            ));
                        }
                        (503, Some("queue_full")) if expect.no_queue_full => {
                            failures.push(format!(
                                "{} got 503 queue_full although clients never exceed workers + max_queue",
                                r.tag
                            ));
                        }
                        (200, _) => {
                            let pid = match &r.outcome {
                                Outcome::Response { pid, .. } => *pid,
                                _ => None,
                            };
                            let reached = pid.is_some_and(|pid| {
                                self.received
                                    .get(&r.tag)
                                    .is_some_and(|got| got.iter().any(|&(p, _)| p == pid))
                            });
                            if !reached {
                                failures.push(format!("{} got 200 from {pid:?}, which never received it", r.tag));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        let queue_full = self.with_reason("queue_full").count();
        if queue_full > 0 && self.max_outstanding() <= c.max_queue {
            failures.push(format!(
                "{queue_full} × 503 queue_full with at most {} requests outstanding and max_queue {}",
                self.max_outstanding(),
                c.max_queue
            ));
        }
        let k = &self.lb.counters;
        let ended = k.responses
            + k.queue_full
            + k.no_capacity
            + k.queue_timeout
            + k.upstream_timeout
            + k.upstream_error
            + k.client_gone;
        if k.requests != ended {
            failures.push(format!(
                "the balancer counted {} requests but {ended} endings: {k:?}",
                k.requests
            ));
        }
        if self.lb.queue_len != 0 {
            failures.push(format!("{} requests still queued at the end", self.lb.queue_len));
        }
        // Every client is done and the settle time has passed: a worker the
        // balancer still counts as busy was leaked.
        if self.lb.in_flight != 0 {
            failures.push(format!(
                "{} worker(s) still busy in the balancer after every client finished (a leaked in-flight slot)",
                self.lb.in_flight
            ));
        }
        // The driver holds a decision channel per request until it ends: one
        // still tracked at the end belongs to a request that never ended for it.
        match self.final_status.get("tracked").and_then(serde_json::Value::as_u64) {
            Some(0) => {}
            Some(tracked) => failures.push(format!(
                "the driver still tracks {tracked} request(s) after every client finished (a leaked decision channel)"
            )),
            None => failures.push(format!(
                "the final /status has no \"tracked\" count: {}",
                self.final_status
            )),
        }
        failures
    }

    /// Everything the run recorded, as lines: the trace, then the end state
    /// (every request's outcome, every process, what each handler received,
    /// spawns, signals, the capacity log, the inspector's last snapshot with
    /// the counters, the final `/status` document, the violations, the
    /// simulated time and the number of driver steps). Two runs of one seed
    /// must give equal transcripts, line for line.
    pub fn transcript(&self) -> Vec<String> {
        let mut lines = self.trace.clone();
        lines.push(format!(
            "== end state: {}us simulated, {} driver steps inspected",
            self.elapsed_us, self.inspections
        ));
        lines.extend(self.violations.iter().map(|v| format!("violation {v}")));
        lines.extend(self.requests.iter().map(|r| format!("request {r:?}")));
        lines.extend(self.procs.values().map(|p| format!("process {p:?}")));
        lines.extend(self.received.iter().map(|(tag, at)| format!("received {tag} {at:?}")));
        lines.push(format!("crashed in flight {:?}", self.crashed_inflight));
        lines.extend(self.spawns.iter().map(|s| format!("spawn {s:?}")));
        lines.extend(self.signals.iter().map(|s| format!("signal {s:?}")));
        lines.push(format!("capacity log {:?}", self.capacity_log));
        lines.push(format!("balancer {:?}", self.lb));
        let status = serde_json::to_string_pretty(&self.final_status).unwrap_or_else(|e| format!("unprintable: {e}"));
        lines.extend(status.lines().map(|l| format!("status {l}")));
        lines
    }

    /// The last `n` trace lines.
    pub fn tail(&self, n: usize) -> &[String] {
        &self.trace[self.trace.len().saturating_sub(n)..]
    }

    /// A one-line summary: statuses and reasons.
    pub fn summary(&self) -> String {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for r in &self.requests {
            let key = match &r.outcome {
                Outcome::Response { status, reason, .. } => match reason {
                    Some(reason) => format!("{status} {reason}"),
                    None => status.to_string(),
                },
                Outcome::Abandoned => "abandoned".into(),
                Outcome::TransportError(_) => "transport-error".into(),
                Outcome::Hung => "hung".into(),
                Outcome::Pending => "pending".into(),
            };
            *counts.entry(key).or_default() += 1;
        }
        let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{v}× {k}")).collect();
        format!(
            "seed {}: {} requests [{}], {} processes, {:.1}s simulated",
            self.seed,
            self.requests.len(),
            parts.join(", "),
            self.procs.len(),
            self.elapsed_us as f64 / 1e6
        )
    }
}

/// Failing seeds of one sweep printed with their trace tail.
const DETAILED_FAILURES: usize = 3;

/// The seeds to run: `SIM_SEED=S` for exactly one, else `SIM_SEEDS=N` (or
/// `default`) seeds `1..=N`.
pub fn seeds(default: u64) -> Vec<u64> {
    if let Ok(seed) = std::env::var("SIM_SEED") {
        let seed = seed.trim().parse().expect("SIM_SEED must be a number");
        return vec![seed];
    }
    let n = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default);
    (1..=n).collect()
}

/// Runs one seed in a fresh thread (turmoil keeps its world in a
/// thread-local); a panic becomes a failure.
pub fn run_isolated<T: Send + 'static>(seed: u64, f: fn(u64) -> T) -> Result<T, String> {
    std::thread::Builder::new()
        .name(format!("sim-seed-{seed}"))
        .stack_size(16 * 1024 * 1024)
        .spawn(move || f(seed))
        .map_err(|e| format!("cannot start a thread: {e}"))?
        .join()
        .map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panic".into())
        })
}

/// Runs a scenario over the seeds and fails with the replay command of
/// every failing seed. `scenario` returns the run and its failures.
pub fn sweep(test: &str, default_seeds: u64, scenario: fn(u64) -> (Report, Vec<String>)) {
    let seeds = seeds(default_seeds);
    let verbose = std::env::var("SIM_TRACE").is_ok_and(|v| v != "0");
    let mut failed = Vec::new();
    for &seed in &seeds {
        match run_isolated(seed, scenario) {
            Ok((report, failures)) => {
                if verbose {
                    eprintln!("--- trace of {test} seed {seed} ---");
                    for line in &report.trace {
                        eprintln!("{line}");
                    }
                }
                if failures.is_empty() {
                    if verbose || seeds.len() == 1 {
                        eprintln!("{test}: {}", report.summary());
                    }
                    continue;
                }
                failed.push(seed);
                if failed.len() > DETAILED_FAILURES && !verbose {
                    // The first failures have the details; the rest, one line each.
                    eprintln!(
                        "==== {test} FAILED for seed {seed}: {} (first: {})",
                        report.summary(),
                        failures[0]
                    );
                    continue;
                }
                eprintln!("\n==== {test} FAILED for seed {seed}: {}", report.summary());
                for f in failures.iter().take(20) {
                    eprintln!("  - {f}");
                }
                if failures.len() > 20 {
                    eprintln!("  ... and {} more", failures.len() - 20);
                }
                if !verbose {
                    eprintln!("  last trace lines (SIM_TRACE=1 prints all):");
                    for line in report.tail(60) {
                        eprintln!("    {line}");
                    }
                }
                eprintln!("  replay: {}\n", report.replay());
            }
            Err(panic) => {
                eprintln!("\n==== {test} PANICKED for seed {seed}: {panic}");
                eprintln!("  replay: SIM_SEED={seed} cargo test -p rip-sim --test scenarios {test}\n");
                failed.push(seed);
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{test}: {} of {} seeds failed: {:?}; replay one with SIM_SEED={} cargo test -p rip-sim --test scenarios {test}",
        failed.len(),
        seeds.len(),
        failed,
        failed.first().copied().unwrap_or_default()
    );
}
