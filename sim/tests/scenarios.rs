//! The simulation scenarios, each over many seeds.
//!
//! `cargo test -p rip-sim --test scenarios` runs the default seed counts;
//! `SIM_SEEDS=500` sweeps longer; `SIM_SEED=1234` replays one seed (add
//! `SIM_TRACE=1 -- --nocapture` to print its trace). A failing seed prints
//! its replay command.

use std::time::Duration;

use rip_sim::report::run_isolated;
use rip_sim::{
    AdminCmd, ClientPlan, Config, Expect, Fault, Harness, Outcome, Report, Req, Rng, Service, WorkerBehavior, sweep,
};

/// Seeds per scenario by default (`SIM_SEEDS` overrides): the whole suite
/// takes about a minute in a debug build on 2 cores.
const SEEDS: u64 = 40;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// Steady load from `start` to `stop`.
fn steady(start: u64, stop: u64, think: (u64, u64), post_chance: f64, abandon_chance: f64) -> ClientPlan {
    ClientPlan::Steady {
        start: ms(start),
        stop: ms(stop),
        think: (ms(think.0), ms(think.1)),
        post_chance,
        abandon_chance,
        abandon_after: (ms(5), ms(150)),
    }
}

// ---------------------------------------------------------------------------
// (1) A burst far over capacity: exact 503/504 accounting against max_queue.
// ---------------------------------------------------------------------------

/// 2 workers, max_queue 4, 20 simultaneous requests whose service (2 s)
/// outlasts the burst.
fn burst(seed: u64, queue_timeout: Duration, scenario: &'static str) -> Report {
    // The burst must all arrive before the first request finishes.
    let mut config = Config::new(scenario, seed);
    config.workers = 2;
    config.max_queue = 4;
    config.queue_timeout = queue_timeout;
    config.read_timeout = Duration::from_secs(5);
    let config = config.behavior(|_, _| WorkerBehavior {
        service: Service::Fixed(Duration::from_secs(2)),
        ..WorkerBehavior::default()
    });
    let mut h = Harness::new(config);
    for c in 0..4 {
        let reqs = (0..5).map(|_| Req::get(ms(1000))).collect();
        h.client(&format!("c{c}"), ClientPlan::Fixed(reqs));
    }
    h.run()
}

/// A long queue timeout: the 4 queued requests are served too.
fn burst_over_capacity_run(seed: u64) -> (Report, Vec<String>) {
    let report = burst(seed, Duration::from_secs(10), "burst_over_capacity");
    let mut failures = report.check_common(Expect::default());
    let ok = report.with_status(200).count();
    let full = report.with_reason("queue_full").count();
    if report.requests.len() != 20 || ok != 6 || full != 14 {
        failures.push(format!(
            "expected exactly 2 + 4 = 6 × 200 and 14 × 503 queue_full; got {}",
            report.summary()
        ));
    }
    (report, failures)
}

/// A short queue timeout: the 4 queued requests get 504, never before 500 ms.
fn burst_queue_timeout_run(seed: u64) -> (Report, Vec<String>) {
    let report = burst(seed, ms(500), "burst_queue_timeout");
    let mut failures = report.check_common(Expect::default());
    let ok = report.with_status(200).count();
    let full = report.with_reason("queue_full").count();
    let timed_out: Vec<_> = report.with_reason("queue_timeout").collect();
    if report.requests.len() != 20 || ok != 2 || full != 14 || timed_out.len() != 4 {
        failures.push(format!(
            "expected 2 × 200, 4 × 504 queue_timeout and 14 × 503 queue_full; got {}",
            report.summary()
        ));
    }
    let slack = report.config.network_slack();
    for r in timed_out {
        let latency = r.latency_us().unwrap_or(0);
        // Answered at the deadline, not long after it (network and a tick).
        if latency > us(ms(500) + slack) {
            failures.push(format!("{} got its queue_timeout late: after {latency}us", r.tag));
        }
    }
    (report, failures)
}

#[test]
fn burst_over_capacity() {
    sweep("burst_over_capacity", SEEDS, burst_over_capacity_run);
}

#[test]
fn burst_queue_timeout() {
    sweep("burst_queue_timeout", SEEDS, burst_queue_timeout_run);
}

// ---------------------------------------------------------------------------
// (2) Slow workers and read timeouts: a hung worker is timed out, treated as
//     stuck, killed after the stuck grace and replaced.
// ---------------------------------------------------------------------------

fn hung_worker_run(seed: u64) -> (Report, Vec<String>) {
    let mut config = Config::new("hung_worker", seed);
    config.workers = 3;
    config.max_queue = 16;
    config.queue_timeout = Duration::from_secs(3);
    config.read_timeout = Duration::from_secs(1);
    config.supervisor.stuck_grace = ms(500);
    let hang_on = 2 + Rng::new(seed).below(3);
    let config = config.behavior(move |inc, _| WorkerBehavior {
        // Slow sometimes, but always within the read timeout (even over the slow link).
        service: Service::Bimodal {
            fast: (ms(5), ms(40)),
            slow: (ms(200), ms(500)),
            slow_chance: 0.15,
        },
        hang_on: (inc.slot == 0 && inc.nth_of_slot == 0).then_some(hang_on),
        ..WorkerBehavior::default()
    });
    let read_timeout = config.read_timeout;
    let grace = config.supervisor.stuck_grace;
    let slack = config.network_slack();
    let mut h = Harness::new(config);
    for c in 0..4 {
        h.client(&format!("c{c}"), steady(300, 4500, (0, 60), 0.0, 0.0));
    }
    // And slot 1 sits behind a slow link (100 ms each way).
    h.fault_at(
        ms(200),
        Fault::SlowLink {
            slot: 1,
            latency: ms(100),
        },
    );
    let report = h.run();
    let mut failures = report.check_common(Expect {
        no_queue_full: true,
        ..Expect::default()
    });
    let Some(hung) = report.procs.values().find(|p| p.slot == 0).cloned() else {
        failures.push("no process for slot 0".into());
        return (report, failures);
    };
    if hung.received < hang_on {
        failures.push(format!(
            "pid {} got {} requests, never its hanging request #{hang_on}; the scenario did not exercise a hang",
            hung.pid, hung.received
        ));
        return (report, failures);
    }
    let timeouts: Vec<_> = report.with_reason("upstream_timeout").collect();
    if timeouts.len() != 1 {
        failures.push(format!(
            "expected exactly one 504 upstream_timeout; got {}",
            report.summary()
        ));
    }
    for r in &timeouts {
        let got = report.received.get(&r.tag).cloned().unwrap_or_default();
        let [(pid, at)] = got[..] else {
            failures.push(format!("{} timed out but reached {got:?}", r.tag));
            continue;
        };
        if pid != hung.pid {
            failures.push(format!(
                "{} timed out but ran on pid {pid}, not the hung pid {}",
                r.tag, hung.pid
            ));
        }
        // At the read timeout, counted from the dispatch (give or take the network).
        let after = r.done_us.unwrap_or(u64::MAX).saturating_sub(at);
        if after > us(read_timeout + slack) {
            failures.push(format!(
                "{} got its 504 late: {after}us after it reached the worker",
                r.tag
            ));
        }
    }
    let others = report
        .requests
        .iter()
        .filter(|r| r.reason() != Some("upstream_timeout") && r.status() != Some(200))
        .count();
    if others > 0 {
        failures.push(format!("requests other than the hung one failed: {}", report.summary()));
    }
    // Killed after the stuck grace, never before.
    let kill = report
        .signals
        .iter()
        .find(|&&(_, pid, signal)| pid == hung.pid && signal == "SIGKILL")
        .map(|&(t, _, _)| t);
    let hung_at = timeouts.first().map(|r| r.sent_us);
    match (kill, hung_at) {
        (Some(kill), Some(sent)) => {
            if kill < sent + us(read_timeout + grace) {
                failures.push(format!(
                    "pid {} was killed at {kill}us, before read timeout + stuck grace after {sent}us",
                    hung.pid
                ));
            }
        }
        _ => failures.push(format!("the hung pid {} was never sent SIGKILL", hung.pid)),
    }
    // Replaced: slot 0 has a newer process that joined, and capacity is back.
    let replaced = report
        .procs
        .values()
        .any(|p| p.slot == 0 && p.pid != hung.pid && p.joined_at.is_some());
    if !replaced {
        failures.push("slot 0 was never replaced".into());
    }
    if report.lb.capacity != 3 {
        failures.push(format!("capacity is {} at the end, not 3", report.lb.capacity));
    }
    (report, failures)
}

#[test]
fn hung_worker() {
    sweep("hung_worker", SEEDS, hung_worker_run);
}

// ---------------------------------------------------------------------------
// (3) Worker crashes and bounces under load: only requests in flight on a
//     dying worker may fail, with 502; nothing hangs.
// ---------------------------------------------------------------------------

fn crashes_under_load_run(seed: u64) -> (Report, Vec<String>) {
    let mut config = Config::new("crashes_under_load", seed);
    config.workers = 3;
    config.max_queue = 32;
    config.queue_timeout = Duration::from_secs(3);
    config.read_timeout = Duration::from_secs(2);
    let config = config.behavior(|_, _| WorkerBehavior {
        service: Service::Uniform(ms(5), ms(60)),
        crash_chance: 0.04,
        ..WorkerBehavior::default()
    });
    let mut h = Harness::new(config);
    for c in 0..5 {
        h.client(&format!("c{c}"), steady(300, 5000, (0, 40), 0.3, 0.03));
    }
    // External SIGKILLs (an OOM killer) at seeded times.
    let mut rng = Rng::new(seed ^ 0xC0FFEE);
    for _ in 0..4 {
        h.fault_at(ms(rng.range(800, 4500)), Fault::Kill { slot: None });
    }
    let report = h.run();
    let mut failures = report.check_common(Expect::default());
    for r in &report.requests {
        match r.status() {
            None | Some(200) => {}
            Some(502) => {} // checked by check_common: only if it was in flight on a dying worker
            Some(status) => failures.push(format!("{} got {status} {:?}", r.tag, r.reason())),
        }
    }
    let deaths = report.procs.values().filter(|p| p.end.is_some()).count();
    if deaths == 0 {
        failures.push("no worker died; the scenario exercised nothing".into());
    }
    (report, failures)
}

#[test]
fn crashes_under_load() {
    sweep("crashes_under_load", SEEDS, crashes_under_load_run);
}

// ---------------------------------------------------------------------------
// (4) A partition between lb and one worker host: connects fail, requests
//     go to another worker, idempotent GETs never fail.
// ---------------------------------------------------------------------------

fn partition_run(seed: u64) -> (Report, Vec<String>) {
    let mut config = Config::new("partition", seed);
    config.workers = 3;
    config.max_queue = 32;
    let config = config.behavior(|_, _| WorkerBehavior {
        service: Service::Uniform(ms(5), ms(40)),
        // No idle keep-alive connection can straddle the partition (see docs/simulation.md).
        close_after_response: true,
        ..WorkerBehavior::default()
    });
    let mut h = Harness::new(config);
    for c in 0..4 {
        h.client(&format!("c{c}"), steady(300, 4500, (0, 40), 0.0, 0.0));
    }
    let mut rng = Rng::new(seed ^ 0xBADD);
    let first = rng.below(3) as u32;
    let second = (first + 1 + rng.below(2) as u32) % 3;
    h.fault_at(ms(800), Fault::Partition { slot: first });
    h.fault_at(ms(2200), Fault::Repair);
    h.fault_at(ms(2600), Fault::Partition { slot: second });
    h.fault_at(ms(3800), Fault::Repair);
    let report = h.run();
    let mut failures = report.check_common(Expect {
        no_queue_full: true,
        ..Expect::default()
    });
    for r in &report.requests {
        if r.status() != Some(200) {
            failures.push(format!("{} {} failed: {:?}", r.tag, r.method, r.outcome));
        }
    }
    if !report.trace.iter().any(|l| l.contains("fault: partition lb <->")) {
        failures.push("no partition happened".into());
    }
    if report.lb.counters.retries == 0 {
        failures.push("no request was retried: the partition was never hit".into());
    }
    (report, failures)
}

#[test]
fn partition() {
    sweep("partition", SEEDS, partition_run);
}

// ---------------------------------------------------------------------------
// (4b) A worker that joins but never listens: every connect to it is refused,
//      and since nothing was sent, even POSTs go to another worker.
// ---------------------------------------------------------------------------

fn refusing_worker_run(seed: u64) -> (Report, Vec<String>) {
    let mut config = Config::new("refusing_worker", seed);
    config.workers = 3;
    config.max_queue = 32;
    let refuser = Rng::new(seed).below(3) as u32;
    let config = config.behavior(move |inc, _| WorkerBehavior {
        service: Service::Uniform(ms(5), ms(40)),
        refuse: inc.slot == refuser,
        ..WorkerBehavior::default()
    });
    let mut h = Harness::new(config);
    for c in 0..4 {
        h.client(&format!("c{c}"), steady(300, 3500, (0, 40), 0.3, 0.0));
    }
    let report = h.run();
    let mut failures = report.check_common(Expect {
        no_queue_full: true,
        ..Expect::default()
    });
    for r in &report.requests {
        if r.status() != Some(200) {
            failures.push(format!("{} {} failed: {:?}", r.tag, r.method, r.outcome));
        }
    }
    if !report.trace.iter().any(|l| l.contains("lb: connect to")) {
        failures.push("the refusing worker was never tried".into());
    }
    (report, failures)
}

#[test]
fn refusing_worker() {
    sweep("refusing_worker", SEEDS, refusing_worker_run);
}

// ---------------------------------------------------------------------------
// (5) A rolling restart under load: no failed request, capacity ≥ N−1 at
//     every driver step.
// ---------------------------------------------------------------------------

fn rolling_restart_run(seed: u64) -> (Report, Vec<String>) {
    let mut config = Config::new("rolling_restart", seed);
    config.workers = 3;
    config.max_queue = 32;
    let config = config.behavior(|inc, rng| WorkerBehavior {
        service: Service::Uniform(ms(5), ms(80)),
        // New generations boot slowly and join late.
        boot_delay: if inc.version > 1 {
            ms(rng.range(50, 400))
        } else {
            ms(20)
        },
        ..WorkerBehavior::default()
    });
    let workers = config.workers as usize;
    let mut h = Harness::new(config);
    for c in 0..4 {
        h.client(&format!("c{c}"), steady(300, 5000, (0, 40), 0.2, 0.0));
    }
    h.admin_at(ms(1200), AdminCmd::RollingRestart);
    h.admin_at(ms(3000), AdminCmd::RollingRestart);
    let report = h.run();
    let mut failures = report.check_common(Expect {
        no_queue_full: true,
        ..Expect::default()
    });
    for r in &report.requests {
        if r.status() != Some(200) && r.outcome != Outcome::Abandoned {
            failures.push(format!("{} {} failed: {:?}", r.tag, r.method, r.outcome));
        }
    }
    // Capacity: once the pool is full, never below N−1.
    if let Some(full) = report.capacity_log.iter().position(|&(_, c)| c >= workers) {
        for &(t, c) in &report.capacity_log[full..] {
            if c + 1 < workers {
                failures.push(format!("capacity {c} < N−1 = {} at {t}us", workers - 1));
            }
        }
    } else {
        failures.push("the pool never reached its full capacity".into());
    }
    let generations = report.procs.values().map(|p| p.version).max().unwrap_or(0);
    if generations < 3 {
        failures.push(format!(
            "expected two completed restarts (v3); newest version is v{generations}"
        ));
    }
    if report.lb.active_version != Some(generations) {
        failures.push(format!(
            "active version is {:?}, not the newest v{generations}",
            report.lb.active_version
        ));
    }
    for p in report.procs.values().filter(|p| p.version < generations) {
        if p.end != Some("exit") {
            failures.push(format!("old pid {} ended {:?}, not by a graceful exit", p.pid, p.end));
        }
    }
    if report.lb.capacity != workers {
        failures.push(format!("capacity is {} at the end", report.lb.capacity));
    }
    (report, failures)
}

#[test]
fn rolling_restart() {
    sweep("rolling_restart", SEEDS, rolling_restart_run);
}

// ---------------------------------------------------------------------------
// (5b) Recycling after N requests under load: replacement first, the old
//      process drains and exits; no request fails, none goes over budget.
// ---------------------------------------------------------------------------

fn recycle_run(seed: u64) -> (Report, Vec<String>) {
    let mut config = Config::new("recycle", seed);
    config.workers = 3;
    config.max_queue = 32;
    config.supervisor.max_requests = Some(25);
    let config = config.behavior(|_, rng| WorkerBehavior {
        service: Service::Uniform(ms(5), ms(50)),
        boot_delay: ms(rng.range(10, 150)),
        ..WorkerBehavior::default()
    });
    let mut h = Harness::new(config);
    for c in 0..4 {
        h.client(&format!("c{c}"), steady(300, 4500, (0, 30), 0.2, 0.0));
    }
    let report = h.run();
    let mut failures = report.check_common(Expect {
        no_queue_full: true,
        ..Expect::default()
    });
    for r in &report.requests {
        if r.status() != Some(200) && r.outcome != Outcome::Abandoned {
            failures.push(format!("{} {} failed: {:?}", r.tag, r.method, r.outcome));
        }
    }
    for p in report.procs.values() {
        if p.received > 25 {
            failures.push(format!(
                "pid {} got {} requests, over its budget of 25",
                p.pid, p.received
            ));
        }
        if p.end.is_some_and(|end| end != "exit") {
            failures.push(format!("pid {} ended by {:?}, not a graceful exit", p.pid, p.end));
        }
    }
    let recycled = report.procs.values().filter(|p| p.end == Some("exit")).count();
    if recycled < 3 {
        failures.push(format!("only {recycled} processes were recycled"));
    }
    (report, failures)
}

#[test]
fn recycle() {
    sweep("recycle", SEEDS, recycle_run);
}

// ---------------------------------------------------------------------------
// (6) A crash loop: workers crash at boot, backoff delays grow, requests get
//     504 queue_timeout (never hang), and service resumes once they boot.
// ---------------------------------------------------------------------------

fn crash_loop_run(seed: u64) -> (Report, Vec<String>) {
    let mut config = Config::new("crash_loop", seed);
    config.workers = 2;
    config.max_queue = 16;
    config.queue_timeout = Duration::from_secs(1);
    config.supervisor.backoff_initial = ms(100);
    config.supervisor.backoff_max = ms(1600);
    let crashes = 5 + Rng::new(seed).below(2) as u32;
    let config = config.behavior(move |inc, _| WorkerBehavior {
        boot_delay: ms(10),
        crash_at_boot: inc.nth_of_slot < crashes,
        service: Service::Uniform(ms(5), ms(30)),
        ..WorkerBehavior::default()
    });
    let supervisor = config.supervisor.clone();
    let mut h = Harness::new(config);
    for c in 0..3 {
        h.client(&format!("c{c}"), steady(100, 6000, (20, 150), 0.0, 0.0));
    }
    let report = h.run();
    let mut failures = report.check_common(Expect {
        no_queue_full: true,
        ..Expect::default()
    });
    for slot in 0..2 {
        let spawns: Vec<u64> = report
            .spawns
            .iter()
            .filter(|s| s.slot == slot)
            .map(|s| s.t_us)
            .collect();
        if spawns.len() < crashes as usize + 1 {
            failures.push(format!("slot {slot} was spawned {} times", spawns.len()));
            continue;
        }
        let gaps: Vec<u64> = spawns.windows(2).map(|w| w[1] - w[0]).collect();
        for (i, &gap) in gaps.iter().take(crashes as usize).enumerate() {
            let backoff = supervisor.backoff_delay(i as u32 + 1);
            if gap < us(backoff) {
                failures.push(format!(
                    "slot {slot}: restart {} came {gap}us after the previous start, under the {}ms backoff",
                    i + 1,
                    backoff.as_millis()
                ));
            }
            if i > 0 && gap <= gaps[i - 1] && backoff > supervisor.backoff_delay(i as u32) {
                failures.push(format!("slot {slot}: backoff did not grow: gaps {gaps:?}"));
            }
        }
    }
    let mut served_after = false;
    for r in &report.requests {
        match (r.status(), r.reason()) {
            (Some(504), Some("queue_timeout")) => {
                if served_after {
                    failures.push(format!("{} timed out after service resumed", r.tag));
                }
            }
            (Some(200), _) => served_after = true,
            (None, _) => {}
            (status, reason) => failures.push(format!("{} got {status:?} {reason:?}", r.tag)),
        }
    }
    if report.with_reason("queue_timeout").count() == 0 {
        failures.push("no request timed out in the queue during the crash loop".into());
    }
    if !served_after {
        failures.push("service never resumed".into());
    }
    (report, failures)
}

#[test]
fn crash_loop() {
    sweep("crash_loop", SEEDS, crash_loop_run);
}

// ---------------------------------------------------------------------------
// (7) Clients abandoning queued requests: the queue entries are dropped and
//     a later request is served promptly.
// ---------------------------------------------------------------------------

fn abandoned_queue_run(seed: u64) -> (Report, Vec<String>) {
    let mut config = Config::new("abandoned_queue", seed);
    config.workers = 1;
    config.max_queue = 8;
    config.queue_timeout = Duration::from_secs(5);
    let config = config.behavior(|_, _| WorkerBehavior {
        service: Service::Fixed(ms(20)),
        ..WorkerBehavior::default()
    });
    let mut rng = Rng::new(seed ^ 0xAB);
    let quitters = 3 + rng.below(5) as usize;
    let mut h = Harness::new(config);
    h.client("long", ClientPlan::Fixed(vec![Req::get(ms(500)).work(1000)]));
    let reqs = (0..quitters)
        .map(|_| Req::get(ms(rng.range(550, 700))).abandon(ms(rng.range(20, 250))))
        .collect();
    h.client("quit", ClientPlan::Fixed(reqs));
    h.client("later", ClientPlan::Fixed(vec![Req::get(ms(1000)), Req::get(ms(1050))]));
    let report = h.run();
    let mut failures = report.check_common(Expect {
        no_queue_full: true,
        ..Expect::default()
    });
    for r in report.abandoned() {
        if let Some(got) = report.received.get(&r.tag) {
            failures.push(format!("abandoned {} still reached (pid, time) {got:?}", r.tag));
        }
    }
    let abandoned = report.abandoned().count();
    if abandoned != quitters {
        failures.push(format!("{abandoned} of {quitters} quitters abandoned"));
    }
    if report.lb.counters.client_gone < quitters as u64 {
        failures.push(format!(
            "the balancer saw {} clients leave, not {quitters}",
            report.lb.counters.client_gone
        ));
    }
    let find = |tag: &str| report.requests.iter().find(|r| r.tag == tag);
    match (find("long-0"), find("later-0"), find("later-1")) {
        (Some(long), Some(a), Some(b)) => {
            for r in [long, a, b] {
                if r.status() != Some(200) {
                    failures.push(format!("{} was not served: {:?}", r.tag, r.outcome));
                }
            }
            // Served right after the long request, not after the quitters' ghosts.
            let long_done = long.done_us.unwrap_or(u64::MAX);
            for r in [a, b] {
                let done = r.done_us.unwrap_or(u64::MAX);
                if done > long_done.saturating_add(us(ms(150) + report.config.network_slack())) {
                    failures.push(format!(
                        "{} answered {}ms after the worker freed up",
                        r.tag,
                        (done.saturating_sub(long_done)) / 1000
                    ));
                }
            }
        }
        _ => failures.push("missing requests".into()),
    }
    (report, failures)
}

#[test]
fn abandoned_queue() {
    sweep("abandoned_queue", SEEDS, abandoned_queue_run);
}

// ---------------------------------------------------------------------------
// (7b) Clients leaving just as their response arrives: the worker must be
//      freed (the response drained) and serve the next request.
// ---------------------------------------------------------------------------

fn abandon_at_response_run(seed: u64) -> (Report, Vec<String>) {
    let mut config = Config::new("abandon_at_response", seed);
    config.workers = 1;
    config.max_queue = 8;
    config.queue_timeout = Duration::from_secs(1);
    let config = config.behavior(|_, _| WorkerBehavior {
        service: Service::Fixed(ms(30)),
        ..WorkerBehavior::default()
    });
    let slack = config.network_slack();
    let mut rng = Rng::new(seed ^ 0xD15C);
    let mut h = Harness::new(config);
    // Each request is dropped around the time its response comes back.
    let mut at = 300;
    let mut reqs = Vec::new();
    for _ in 0..12 {
        let window = 30 + rng.range(0, us(slack) / 1000);
        reqs.push(Req::get(ms(at)).abandon(ms(window)));
        at += 150;
    }
    h.client("quit", ClientPlan::Fixed(reqs));
    h.client(
        "check",
        ClientPlan::Fixed(vec![Req::get(ms(at + 200)), Req::get(ms(at + 400))]),
    );
    let report = h.run();
    let mut failures = report.check_common(Expect {
        no_queue_full: true,
        ..Expect::default()
    });
    for r in report.requests.iter().filter(|r| r.client == "check") {
        if r.status() != Some(200) {
            failures.push(format!(
                "{} was not served after the quitters left: {:?}",
                r.tag, r.outcome
            ));
        }
    }
    (report, failures)
}

#[test]
fn abandon_at_response() {
    sweep("abandon_at_response", SEEDS, abandon_at_response_run);
}

// ---------------------------------------------------------------------------
// Determinism (the checks are in `scenarios/determinism.rs`) and the pinned
// trace of one run.
// ---------------------------------------------------------------------------

#[path = "scenarios/determinism.rs"]
mod determinism;

type Scenario = fn(u64) -> (Report, Vec<String>);

const ALL: [(&str, Scenario); 11] = [
    ("burst_over_capacity", burst_over_capacity_run),
    ("burst_queue_timeout", burst_queue_timeout_run),
    ("hung_worker", hung_worker_run),
    ("crashes_under_load", crashes_under_load_run),
    ("partition", partition_run),
    ("refusing_worker", refusing_worker_run),
    ("rolling_restart", rolling_restart_run),
    ("recycle", recycle_run),
    ("crash_loop", crash_loop_run),
    ("abandoned_queue", abandoned_queue_run),
    ("abandon_at_response", abandon_at_response_run),
];

fn trace_of(seed: u64, scenario: Scenario) -> Vec<String> {
    match run_isolated(seed, scenario) {
        Ok((report, _)) => report.trace,
        Err(panic) => vec![format!("panicked: {panic}")],
    }
}

#[test]
fn trace_snapshot() {
    let trace = trace_of(1, burst_queue_timeout_run);
    insta::assert_snapshot!("burst_queue_timeout_seed_1", trace.join("\n"));
}

#[test]
fn outcomes_are_recorded() {
    // A sanity check of the recorder itself: every request of a calm run ends with a response.
    let (report, failures) = run_isolated(1, burst_over_capacity_run).expect("runs");
    assert!(failures.is_empty(), "{failures:?}");
    assert!(
        report
            .requests
            .iter()
            .all(|r| matches!(r.outcome, Outcome::Response { .. }))
    );
}
