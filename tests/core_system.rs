//! Property tests of the whole core (`Node`: balancer + supervisor wired as
//! the driver runs them) against simulated worker processes and clients.
//!
//! A tiny discrete-event simulation: processes boot after a delay and join,
//! serve requests for a random time, obey Terminate (finish, quit, exit) and
//! Kill (die at once, breaking their request); clients arrive in bursts and
//! sometimes leave. After every event the shared invariant checkers run, and
//! at the end every request must have ended exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use rip_server::core::balancer::{Action, Balancer, BalancerConfig, JoinError, RequestMeta, WorkerInfo};
use rip_server::core::invariants::Observer;
use rip_server::core::node::{Node, Output};
use rip_server::core::supervisor::{Supervisor, SupervisorAction, SupervisorConfig};
use rip_server::core::{Pid, RequestId, Slot, Time, Version};

#[derive(Clone, Copy, Debug)]
enum Op {
    /// `n` requests arrive now.
    Burst(u8),
    /// Time passes (events due run in order).
    Advance(u16),
    RollingRestart,
    ScaleBy(i8),
    /// SIGKILL a live worker (chosen by index).
    Crash(u8),
    /// A queued or in-flight client leaves (chosen by index).
    ClientGone(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (1u8..6).prop_map(Op::Burst),
        6 => (1u16..400).prop_map(Op::Advance),
        1 => Just(Op::RollingRestart),
        1 => prop_oneof![Just(1i8), Just(-1i8)].prop_map(Op::ScaleBy),
        1 => any::<u8>().prop_map(Op::Crash),
        1 => any::<u8>().prop_map(Op::ClientGone),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// The process finished booting and joins.
    Join(Pid),
    /// The worker's response head is ready (and the body follows at once).
    Respond(Pid, RequestId),
    /// A terminated process exits.
    Exit(Pid),
}

#[derive(Clone, Debug)]
struct Process {
    slot: Slot,
    version: Version,
    joined: bool,
    terminating: bool,
    request: Option<RequestId>,
}

struct Sim {
    node: Node,
    observer: Observer,
    now: Time,
    seq: u64,
    events: BTreeMap<(Time, u64), Event>,
    processes: BTreeMap<Pid, Process>,
    next_pid: u32,
    next_request: u64,
    open_requests: Vec<RequestId>,
    boot: Duration,
    service: Duration,
    /// Versions whose workers crash at boot (to exercise roll aborts).
    bad_versions: BTreeSet<Version>,
    crashed: bool,
    scaled: bool,
    desired_at_start: u32,
    min_capacity_in_roll: Option<usize>,
    stopped: bool,
}

impl Sim {
    fn new(workers: u32, max_queue: usize, boot_ms: u64, service_ms: u64, bad_roll: bool) -> Sim {
        let balancer = Balancer::new(BalancerConfig {
            max_queue,
            queue_timeout: Duration::from_millis(2000),
            read_timeout: Duration::from_millis(1500),
            desired_workers: workers,
            ..BalancerConfig::default()
        });
        let supervisor = Supervisor::new(
            SupervisorConfig {
                workers,
                ready_timeout: Duration::from_secs(5),
                stuck_grace: Duration::from_millis(500),
                stop_timeout: Duration::from_secs(2),
                ..SupervisorConfig::default()
            },
            Time::ZERO,
        );
        let node = Node::new(balancer, supervisor);
        let observer = Observer::new(&node.balancer);
        let mut sim = Sim {
            node,
            observer,
            now: Time::ZERO,
            seq: 0,
            events: BTreeMap::new(),
            processes: BTreeMap::new(),
            next_pid: 1000,
            next_request: 1,
            open_requests: Vec::new(),
            boot: Duration::from_millis(boot_ms),
            service: Duration::from_millis(service_ms),
            bad_versions: if bad_roll { [Version(2)].into() } else { BTreeSet::new() },
            crashed: false,
            scaled: false,
            desired_at_start: workers,
            min_capacity_in_roll: None,
            stopped: false,
        };
        sim.drain().expect("initial drain");
        sim
    }

    fn schedule(&mut self, after: Duration, event: Event) {
        self.seq += 1;
        self.events.insert((self.now + after, self.seq), event);
    }

    fn apply(&mut self, op: Op) -> Result<(), String> {
        match op {
            Op::Burst(n) => {
                for _ in 0..n {
                    let id = RequestId(self.next_request);
                    self.next_request += 1;
                    self.observer.before(&self.node.balancer);
                    self.observer.on_request(id, RequestMeta::GET, self.now);
                    self.node.tick(self.now);
                    self.node.balancer.handle_request(id, RequestMeta::GET, self.now);
                    self.open_requests.push(id);
                    self.drain()?;
                }
            }
            Op::Advance(ms) => self.advance_to(self.now + Duration::from_millis(u64::from(ms)))?,
            Op::RollingRestart => {
                self.observer.before(&self.node.balancer);
                self.node.tick(self.now);
                let _ = self.node.supervisor.rolling_restart(self.now);
                self.drain()?;
            }
            Op::ScaleBy(delta) => {
                self.scaled = true;
                self.observer.before(&self.node.balancer);
                self.node.scale_by(i32::from(delta), self.now);
                self.drain()?;
            }
            Op::Crash(i) => {
                let live: Vec<Pid> = self.processes.keys().copied().collect();
                if !live.is_empty() {
                    self.crashed = true;
                    let pid = live[usize::from(i) % live.len()];
                    self.die(pid)?;
                }
            }
            Op::ClientGone(i) => {
                if !self.open_requests.is_empty() {
                    let id = self.open_requests[usize::from(i) % self.open_requests.len()];
                    self.observer.before(&self.node.balancer);
                    if self.observer.ending(id).is_none() {
                        self.observer.on_client_gone(id);
                    }
                    self.node.tick(self.now);
                    self.node.balancer.handle_client_gone(id, self.now);
                    self.drain()?;
                }
            }
        }
        Ok(())
    }

    /// A process dies at once (crash or SIGKILL); its request breaks.
    fn die(&mut self, pid: Pid) -> Result<(), String> {
        let Some(process) = self.processes.remove(&pid) else {
            return Ok(());
        };
        self.observer.before(&self.node.balancer);
        self.node.tick(self.now);
        if let Some(id) = process.request {
            self.observer.on_failed_after_send(id);
            self.node.balancer.handle_failed_after_send(id, self.now);
        }
        self.node.handle_exit(pid, self.now);
        self.drain()
    }

    fn advance_to(&mut self, target: Time) -> Result<(), String> {
        loop {
            let next_event = self.events.keys().next().map(|&(t, _)| t);
            let next_timer = self.node.poll_timeout();
            let next = [next_event, next_timer].into_iter().flatten().min();
            match next {
                Some(t) if t <= target => {
                    self.now = self.now.max(t);
                    if next_event == Some(t) {
                        let (_, event) = self.events.pop_first().expect("an event is due");
                        self.run_event(event)?;
                    } else {
                        self.observer.before(&self.node.balancer);
                        self.node.handle_timeout(self.now);
                        self.drain()?;
                    }
                }
                _ => break,
            }
        }
        self.now = self.now.max(target);
        Ok(())
    }

    fn run_event(&mut self, event: Event) -> Result<(), String> {
        self.observer.before(&self.node.balancer);
        self.node.tick(self.now);
        match event {
            Event::Join(pid) => {
                let Some(p) = self.processes.get_mut(&pid) else {
                    return Ok(());
                };
                if self.bad_versions.contains(&p.version) {
                    // Dies at boot.
                    return self.die(pid);
                }
                p.joined = true;
                let terminating = p.terminating;
                let info = WorkerInfo {
                    pid,
                    slot: p.slot,
                    version: p.version,
                    socket: format!("w{}", pid.0),
                };
                match self.node.handle_join(info, false, self.now) {
                    Ok(()) if terminating => {
                        // Told to stop while booting: quit right away.
                        self.node.handle_quit(pid, self.now);
                        self.schedule(Duration::from_millis(1), Event::Exit(pid));
                    }
                    Ok(()) => {}
                    // A refused join: the worker gives up and exits.
                    Err(JoinError::NotWanted(_)) => self.schedule(Duration::from_millis(1), Event::Exit(pid)),
                    Err(e) => return Err(format!("{e:?}")),
                }
            }
            Event::Respond(pid, id) => {
                let Some(p) = self.processes.get_mut(&pid) else {
                    return Ok(());
                };
                if p.request != Some(id) {
                    return Ok(());
                }
                p.request = None;
                let terminating = p.terminating;
                self.observer.on_response_head(id);
                self.node.balancer.handle_response_head(id, self.now);
                self.node.balancer.handle_complete(id, true, self.now);
                if terminating {
                    self.node.handle_quit(pid, self.now);
                    self.schedule(Duration::from_millis(1), Event::Exit(pid));
                }
            }
            Event::Exit(pid) => {
                if self.processes.remove(&pid).is_some() {
                    self.node.handle_exit(pid, self.now);
                }
            }
        }
        self.drain()
    }

    fn drain(&mut self) -> Result<(), String> {
        self.node.tick(self.now);
        while let Some(output) = self.node.poll() {
            match output {
                Output::Request(action) => {
                    self.observer.on_action(&action, &self.node.balancer, self.now);
                    match action {
                        Action::Dispatch { request, pid, .. } => {
                            let p = self.processes.get_mut(&pid).ok_or("dispatch to a dead process")?;
                            if p.request.is_some() {
                                return Err(format!("{pid:?} got a second request"));
                            }
                            p.request = Some(request);
                            let service = self.service;
                            self.schedule(service, Event::Respond(pid, request));
                        }
                        Action::Answer { request, .. } => {
                            self.open_requests.retain(|&r| r != request);
                        }
                    }
                }
                Output::Process(action) => match action {
                    SupervisorAction::Spawn { spawn, slot, version } => {
                        let pid = Pid(self.next_pid);
                        self.next_pid += 1;
                        self.processes.insert(
                            pid,
                            Process {
                                slot,
                                version,
                                joined: false,
                                terminating: false,
                                request: None,
                            },
                        );
                        self.node.supervisor.handle_spawned(spawn, pid, self.now);
                        let boot = self.boot;
                        self.schedule(boot, Event::Join(pid));
                    }
                    SupervisorAction::Terminate { pid } => {
                        if let Some(p) = self.processes.get_mut(&pid) {
                            p.terminating = true;
                            if p.joined && p.request.is_none() {
                                self.node.handle_quit(pid, self.now);
                                self.schedule(Duration::from_millis(1), Event::Exit(pid));
                            }
                        }
                    }
                    SupervisorAction::Kill { pid } => {
                        if let Some(process) = self.processes.remove(&pid) {
                            if let Some(id) = process.request {
                                self.observer.on_failed_after_send(id);
                                self.node.balancer.handle_failed_after_send(id, self.now);
                            }
                            self.node.handle_exit(pid, self.now);
                        }
                    }
                    SupervisorAction::Stopped => {
                        if self.stopped {
                            return Err("Stopped twice".into());
                        }
                        if !self.processes.is_empty() {
                            return Err(format!("Stopped with live processes {:?}", self.processes.keys()));
                        }
                        self.stopped = true;
                    }
                    SupervisorAction::Drain { .. } => return Err("Drain leaked out of the node".into()),
                    SupervisorAction::Reload { pid } => return Err(format!("Reload of {pid:?} with hot reload off")),
                },
                Output::Event(_) => {}
            }
        }
        self.node.balancer.check_invariants()?;
        self.node.supervisor.check_invariants()?;
        if let Some(v) = self.observer.violations().first() {
            return Err(v.clone());
        }
        self.observer.note_queued(&self.node.balancer);
        // Capacity during a rolling restart, once the pool was full.
        if self.node.supervisor.rolling_to().is_some() && !self.crashed && !self.scaled {
            let capacity = self.node.balancer.capacity();
            self.min_capacity_in_roll = Some(self.min_capacity_in_roll.map_or(capacity, |m| m.min(capacity)));
        }
        Ok(())
    }

    /// Stops gracefully and checks that everything ends.
    fn finish(&mut self) -> Result<(), String> {
        self.observer.before(&self.node.balancer);
        self.node.begin_stop(self.now);
        self.drain()?;
        let deadline = self.now + Duration::from_secs(120);
        while !self.stopped && self.now < deadline {
            let step = self.now + Duration::from_millis(100);
            self.advance_to(step)?;
        }
        if !self.stopped {
            return Err(format!("graceful stop never finished; processes {:?}", self.processes));
        }
        self.observer.finish(true)
    }
}

fn run(
    workers: u32,
    max_queue: usize,
    boot_ms: u64,
    service_ms: u64,
    bad_roll: bool,
    ops: &[Op],
) -> Result<Sim, String> {
    let mut sim = Sim::new(workers, max_queue, boot_ms, service_ms, bad_roll);
    // Let the pool come up before the load starts.
    sim.advance_to(Time::ZERO + Duration::from_millis(boot_ms + 1))?;
    for (i, op) in ops.iter().enumerate() {
        sim.apply(*op).map_err(|e| format!("step {i} {op:?}: {e}"))?;
    }
    sim.finish()?;
    Ok(sim)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, max_shrink_iters: 2048, ..ProptestConfig::default() })]

    #[test]
    fn whole_core_keeps_its_promises(
        workers in 1u32..5,
        max_queue in 0usize..20,
        boot_ms in 1u64..200,
        service_ms in 1u64..300,
        bad_roll in prop::bool::weighted(0.2),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(workers, max_queue, boot_ms, service_ms, bad_roll, &ops).map_err(TestCaseError::fail)?;
    }

    /// Without crashes or scaling, a rolling restart never leaves fewer than
    /// N−1 workers behind new requests (ours keeps all N: it starts the new
    /// generation before draining the old), and afterwards every worker is new.
    #[test]
    fn rolling_restart_keeps_capacity(
        workers in 2u32..6,
        boot_ms in 1u64..300,
        service_ms in 1u64..200,
        load in prop::collection::vec((1u8..4, 1u16..100), 1..40),
    ) {
        let mut ops = vec![Op::RollingRestart];
        for (n, ms) in load {
            ops.push(Op::Burst(n));
            ops.push(Op::Advance(ms));
        }
        ops.push(Op::Advance(2000));
        let mut sim = Sim::new(workers, 64, boot_ms, service_ms, false);
        sim.advance_to(Time::ZERO + Duration::from_millis(boot_ms + 1)).map_err(TestCaseError::fail)?;
        for op in &ops {
            sim.apply(*op).map_err(TestCaseError::fail)?;
        }
        let min = sim.min_capacity_in_roll.unwrap_or(workers as usize);
        prop_assert!(min + 1 >= sim.desired_at_start as usize, "capacity fell to {min} of {workers}");
        prop_assert_eq!(sim.node.supervisor.generation(), Version(2));
        let versions: BTreeSet<Version> = sim.processes.values().map(|p| p.version).collect();
        prop_assert_eq!(versions, [Version(2)].into());
        prop_assert_eq!(sim.node.balancer.counters().upstream_error, 0);
        prop_assert_eq!(sim.node.balancer.counters().no_capacity, 0);
        sim.finish().map_err(TestCaseError::fail)?;
    }
}

#[test]
fn failed_roll_keeps_the_old_generation_serving() {
    let ops = [Op::RollingRestart, Op::Advance(400), Op::Burst(3), Op::Advance(400)];
    let sim = run(3, 10, 50, 20, true, &ops).expect("runs");
    assert_eq!(sim.node.supervisor.generation(), Version(1));
    assert!(
        sim.node
            .supervisor
            .status(sim.now)
            .last_roll
            .is_some_and(|r| r.starts_with("aborted"))
    );
}
