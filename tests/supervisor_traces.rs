//! Snapshot tests: the supervisor's decisions, with times, for named
//! scenarios. Each trace line is an input (`<-`), an action (`->`), or a
//! one-line status summary (`==`) printed whenever it changes: the routed
//! generation, then per slot its state, its primary's pid, its consecutive
//! crashes, when a backoff ends, and `+n` for other processes of the slot
//! (a replacement booting, or an old process on its way out).
//!
//! A tiny scripted world answers the actions: a spawned process forks in
//! 1 ms, then joins or dies as its scenario says; a drained worker is idle
//! 20 ms later; SIGTERM ends a process in 5 ms, SIGKILL in 1 ms; a module
//! reload signal changes nothing the supervisor sees.

use std::collections::BTreeMap;
use std::time::Duration;

use rip_server::core::supervisor::{SpawnId, Supervisor, SupervisorAction, SupervisorConfig};
use rip_server::core::{Pid, Slot, Time, Version};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// How one started process behaves.
#[derive(Debug, Clone, Copy)]
struct Behaviour {
    /// Joins this long after it started; `None`: never joins.
    joins_after: Option<Duration>,
    /// Dies on its own this long after it started.
    dies_after: Option<Duration>,
    /// Ignores SIGTERM.
    ignores_term: bool,
    /// Its join accepts the module-reload signal.
    accepts_reload: bool,
}

const HEALTHY: Behaviour = Behaviour {
    joins_after: Some(Duration::from_millis(50)),
    dies_after: None,
    ignores_term: false,
    accepts_reload: false,
};

#[derive(Debug, Clone, Copy)]
enum Input {
    Spawned(SpawnId),
    Ready(Pid),
    Exit(Pid),
    Idle(Pid),
    Traffic,
    Roll,
    ModuleReload,
    Stop,
}

/// Decides how the `nth` process of a slot (counting from 0) behaves.
type Script = Box<dyn FnMut(Slot, Version, u32) -> Behaviour>;

struct World {
    sup: Supervisor,
    now: Time,
    trace: Vec<String>,
    next_pid: u32,
    agenda: BTreeMap<(Time, u64), Input>,
    seq: u64,
    script: Script,
    started: BTreeMap<Slot, u32>,
    spawns: BTreeMap<SpawnId, (Slot, Version)>,
    behaviour: BTreeMap<Pid, Behaviour>,
    /// Workers the balancer routes to, with their served counts.
    serving: BTreeMap<Pid, u64>,
    /// Requests per worker per traffic tick, when traffic runs.
    max_requests: Option<u64>,
    last_summary: String,
}

impl World {
    fn new(config: SupervisorConfig, script: Script) -> World {
        let max_requests = config.max_requests;
        let sup = Supervisor::new(config, Time::ZERO);
        let mut w = World {
            sup,
            now: Time::ZERO,
            trace: Vec::new(),
            next_pid: 100,
            agenda: BTreeMap::new(),
            seq: 0,
            script,
            started: BTreeMap::new(),
            spawns: BTreeMap::new(),
            behaviour: BTreeMap::new(),
            serving: BTreeMap::new(),
            max_requests,
            last_summary: String::new(),
        };
        w.trace.push(format!("{:>12} <- start", format!("{:?}", w.now)));
        w.after_input();
        w
    }

    fn at(&mut self, t: Time, input: Input) {
        self.seq += 1;
        self.agenda.insert((t, self.seq), input);
    }

    fn log(&mut self, arrow: &str, what: String) {
        self.trace
            .push(format!("{:>12} {arrow} {what}", format!("{:?}", self.now)));
    }

    fn summary(&self) -> String {
        let st = self.sup.status(self.now);
        let mut parts = vec![format!("gen {}", st.generation.0)];
        if let Some(r) = &st.rolling {
            parts.push(format!("rolling v{} {}/{}", r.to.0, r.ready, r.total));
        }
        if let Some(r) = &st.last_roll {
            parts.push(format!("last roll {r}"));
        }
        if st.stopped {
            parts.push("stopped".to_string());
        } else if st.stopping {
            parts.push("stopping".to_string());
        }
        for s in &st.slots {
            let mut p = format!("{}:{}", s.slot.0, s.state);
            if let Some(pid) = s.pid {
                p.push_str(&format!(" {pid:?}"));
            }
            if s.crashes > 0 {
                p.push_str(&format!(" crashes={}", s.crashes));
            }
            let reloads = s.processes.iter().find(|q| q.pid == s.pid).map_or(0, |q| q.reloads);
            if reloads > 0 {
                p.push_str(&format!(" reloads={reloads}"));
            }
            if let Some(n) = s.next_attempt_in_ms {
                p.push_str(&format!(" retry at {:?}", self.now + ms(n)));
            }
            let others = s
                .processes
                .iter()
                .filter(|q| q.pid != s.pid || q.role != "primary")
                .count();
            if others > 0 {
                p.push_str(&format!(" +{others}"));
            }
            parts.push(p);
        }
        parts.join(", ")
    }

    fn after_input(&mut self) {
        while let Some(a) = self.sup.poll_action() {
            self.log("->", format!("{a:?}"));
            match a {
                SupervisorAction::Spawn { spawn, slot, version } => {
                    self.spawns.insert(spawn, (slot, version));
                    self.at(self.now + ms(1), Input::Spawned(spawn));
                }
                SupervisorAction::Drain { pid } => {
                    self.serving.remove(&pid);
                    self.at(self.now + ms(20), Input::Idle(pid));
                }
                SupervisorAction::Terminate { pid } => {
                    self.serving.remove(&pid);
                    if !self.behaviour[&pid].ignores_term {
                        self.at(self.now + ms(5), Input::Exit(pid));
                    }
                }
                SupervisorAction::Kill { pid } => {
                    self.serving.remove(&pid);
                    self.at(self.now + ms(1), Input::Exit(pid));
                }
                SupervisorAction::Stopped | SupervisorAction::Reload { .. } => {}
            }
        }
        if let Err(e) = self.sup.check_invariants() {
            panic!("invariant broken at {:?}: {e}\n{}", self.now, self.trace.join("\n"));
        }
        let summary = self.summary();
        if summary != self.last_summary {
            self.log("==", summary.clone());
            self.last_summary = summary;
        }
    }

    fn input(&mut self, input: Input) {
        let now = self.now;
        match input {
            Input::Spawned(spawn) => {
                let (slot, version) = self.spawns[&spawn];
                let n = self.started.entry(slot).or_default();
                let b = (self.script)(slot, version, *n);
                *n += 1;
                let pid = Pid(self.next_pid);
                self.next_pid += 1;
                self.behaviour.insert(pid, b);
                self.log("<-", format!("spawned {spawn:?} as {pid:?}"));
                self.sup.handle_spawned(spawn, pid, now);
                match (b.joins_after, b.dies_after) {
                    (_, Some(d)) if b.joins_after.is_none_or(|j| d < j) => self.at(now + d, Input::Exit(pid)),
                    (Some(j), d) => {
                        self.at(now + j, Input::Ready(pid));
                        if let Some(d) = d {
                            self.at(now + d, Input::Exit(pid));
                        }
                    }
                    (None, _) => {}
                }
            }
            Input::Ready(pid) => {
                if !self.sup.live_pids().contains(&pid) {
                    return;
                }
                self.log("<-", format!("ready {pid:?}"));
                self.serving.insert(pid, 0);
                let accepts_reload = self.behaviour[&pid].accepts_reload;
                self.sup.handle_ready_with_reload(pid, accepts_reload, now);
            }
            Input::Exit(pid) => {
                if !self.sup.live_pids().contains(&pid) {
                    return;
                }
                self.log("<-", format!("exit {pid:?}"));
                self.serving.remove(&pid);
                self.sup.handle_exit(pid, now);
            }
            Input::Idle(pid) => {
                self.log("<-", format!("idle {pid:?}"));
                self.sup.handle_idle(pid, now);
            }
            Input::Traffic => {
                // One request to every routable worker under its budget.
                let pids: Vec<Pid> = self.serving.keys().copied().collect();
                for pid in pids {
                    let count = self.serving[&pid];
                    if self.max_requests.is_some_and(|m| count >= m) {
                        continue;
                    }
                    self.serving.insert(pid, count + 1);
                    self.log("<-", format!("served {pid:?} {}", count + 1));
                    self.sup.handle_served(pid, count + 1, now);
                    self.after_input();
                }
                return;
            }
            Input::Roll => {
                let r = self.sup.rolling_restart(now);
                self.log("<-", format!("rolling restart: {r:?}"));
            }
            Input::ModuleReload => {
                self.log("<-", "module reload".to_string());
                self.sup.reload_workers(now);
            }
            Input::Stop => {
                self.log("<-", "stop".to_string());
                self.sup.stop(now);
            }
        }
        self.after_input();
    }

    /// Runs every scheduled input and timeout up to `until`.
    fn run_until(&mut self, until: Time) {
        loop {
            let next_input = self.agenda.keys().next().map(|&(t, _)| t);
            let next_timeout = self.sup.poll_timeout();
            let next = match (next_input, next_timeout) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > until {
                break;
            }
            self.now = next;
            if next_timeout == Some(next) && next_input != Some(next) {
                self.log("<-", "timeout".to_string());
                self.sup.handle_timeout(next);
                self.after_input();
                continue;
            }
            let (&key, &input) = self.agenda.iter().next().expect("an input is due");
            self.agenda.remove(&key);
            self.input(input);
        }
        self.now = until;
    }

    fn traffic_every(&mut self, every: Duration, from: Time, until: Time) {
        let mut t = from;
        while t <= until {
            self.at(t, Input::Traffic);
            t += every;
        }
    }
}

#[test]
fn crash_loop() {
    // Slot 0 dies 10 ms into boot six times, then comes up; slot 1 is fine.
    let config = SupervisorConfig {
        workers: 2,
        backoff_max: ms(2_000),
        ..SupervisorConfig::default()
    };
    let script: Script = Box::new(|slot, _, n| {
        if slot == Slot(0) && n < 6 {
            Behaviour {
                joins_after: None,
                dies_after: Some(ms(10)),
                ..HEALTHY
            }
        } else {
            HEALTHY
        }
    });
    let mut w = World::new(config, script);
    w.run_until(Time::from_millis(20_000));
    let st = w.sup.status(w.now);
    assert_eq!(st.slots[0].state, "ready");
    assert_eq!(st.slots[0].crashes, 0, "reset after a stable run");
    assert_eq!(st.slots[0].restarts, 6);
    insta::assert_yaml_snapshot!(w.trace);
}

#[test]
fn recycle_after_n_requests() {
    // r:5 → the replacement starts at 4 requests; the old worker serves its
    // fifth while the replacement boots, then drains. One handover at a time.
    let config = SupervisorConfig {
        workers: 2,
        max_requests: Some(5),
        ..SupervisorConfig::default()
    };
    let mut w = World::new(config, Box::new(|_, _, _| HEALTHY));
    w.traffic_every(ms(100), Time::from_millis(100), Time::from_millis(1_000));
    w.run_until(Time::from_millis(1_200));
    let st = w.sup.status(w.now);
    assert_eq!(st.recycling, 0);
    assert!(st.slots.iter().all(|s| s.state == "ready" && s.restarts >= 1));
    insta::assert_yaml_snapshot!(w.trace);
}

#[test]
fn rolling_restart() {
    // Three workers, two new ones booting at a time; the old ones drain only
    // once all three new ones have joined.
    let config = SupervisorConfig {
        workers: 3,
        ..SupervisorConfig::default()
    };
    let script: Script = Box::new(|_, version, _| Behaviour {
        joins_after: Some(ms(if version == Version(1) { 50 } else { 200 })),
        ..HEALTHY
    });
    let mut w = World::new(config, script);
    w.at(Time::from_millis(1_000), Input::Roll);
    w.run_until(Time::from_millis(3_000));
    assert_eq!(w.sup.generation(), Version(2));
    assert_eq!(w.sup.live_pids().len(), 3);
    insta::assert_yaml_snapshot!(w.trace);
}

#[test]
fn rolling_restart_aborted() {
    // The new version of slot 1 dies at boot: the roll stops, the new
    // workers go, the old generation never stops serving.
    let config = SupervisorConfig {
        workers: 3,
        ..SupervisorConfig::default()
    };
    let script: Script = Box::new(|slot, version, _| {
        if version == Version(2) && slot == Slot(1) {
            Behaviour {
                joins_after: None,
                dies_after: Some(ms(150)),
                ..HEALTHY
            }
        } else if version == Version(2) {
            Behaviour {
                joins_after: Some(ms(100)),
                ..HEALTHY
            }
        } else {
            HEALTHY
        }
    });
    let mut w = World::new(config, script);
    w.at(Time::from_millis(1_000), Input::Roll);
    w.run_until(Time::from_millis(3_000));
    assert_eq!(w.sup.generation(), Version(1));
    let st = w.sup.status(w.now);
    assert!(st.last_roll.as_deref().is_some_and(|r| r.starts_with("aborted")));
    assert!(
        st.slots
            .iter()
            .all(|s| s.state == "ready" && s.version == Some(Version(1)))
    );
    insta::assert_yaml_snapshot!(w.trace);
}

#[test]
fn stuck_worker_and_graceful_stop() {
    // A worker is stuck past the grace: killed and replaced. Then a stop
    // where one worker ignores SIGTERM and is killed after the stop timeout.
    let config = SupervisorConfig {
        workers: 2,
        ..SupervisorConfig::default()
    };
    let script: Script = Box::new(|slot, _, n| {
        if slot == Slot(1) && n == 0 {
            Behaviour {
                ignores_term: true,
                ..HEALTHY
            }
        } else {
            HEALTHY
        }
    });
    let mut w = World::new(config, script);
    w.run_until(Time::from_millis(1_000));
    let stuck = w.sup.status(w.now).slots[0].pid.expect("slot 0 serves");
    w.log("<-", format!("stuck {stuck:?}"));
    w.sup.handle_stuck(stuck, w.now);
    w.after_input();
    w.at(Time::from_millis(7_000), Input::Stop);
    w.run_until(Time::from_millis(30_000));
    assert!(w.sup.is_stopped());
    insta::assert_yaml_snapshot!(w.trace);
}

#[test]
fn module_reloads_up_to_max_reloads_then_replacement_first() {
    // --max-reloads=3. Slot 0 accepts reloads: the first two bursts signal
    // it, the third replaces it (the old process serves until the
    // replacement has joined). Slot 1 cannot reload: every burst replaces
    // it, one handover at a time. A burst during slot 0's boot after the
    // replacement waits for its join.
    let config = SupervisorConfig {
        workers: 2,
        max_reloads: Some(3),
        ..SupervisorConfig::default()
    };
    let script: Script = Box::new(|slot, _, _| Behaviour {
        accepts_reload: slot == Slot(0),
        ..HEALTHY
    });
    let mut w = World::new(config, script);
    for t in [1_000, 2_000, 3_000, 3_020] {
        w.at(Time::from_millis(t), Input::ModuleReload);
    }
    w.run_until(Time::from_millis(5_000));
    let st = w.sup.status(w.now);
    assert!(st.slots.iter().all(|s| s.state == "ready"), "{st:?}");
    assert_eq!(st.slots[0].restarts, 1, "replaced once, at the third burst");
    assert_eq!(
        st.slots[0].processes[0].reloads, 1,
        "the replacement got the burst that came while it booted"
    );
    let reloads = w.trace.iter().filter(|l| l.contains("-> Reload")).count();
    assert_eq!(reloads, 3);
    insta::assert_yaml_snapshot!(w.trace);
}
