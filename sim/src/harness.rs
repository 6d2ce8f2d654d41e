//! The harness: builds the turmoil world, runs the real server on `lb`, and
//! steps the simulation, carrying out process deaths and scheduled faults
//! between steps.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use rip_server::core::balancer::{Balancer, BalancerConfig, Policy};
use rip_server::core::node::Node;
use rip_server::core::supervisor::{Supervisor, SupervisorConfig};
use rip_server::core::{Pid, Version};
use rip_server::frontdoor::{FrontDoor, FrontDoorConfig};
use rip_server::os::clock::Clock;
use rip_server::runtime::{Admin, Driver, Identity};
use turmoil::Sim;

use crate::client::{ClientPlan, client_main, sleep_until};
use crate::config::Config;
use crate::net::{CONTROL_PORT, HTTP_PORT, SOCKET_PREFIX, SimListener, SimTransport};
use crate::report::Report;
use crate::rng::{Rng, mix};
use crate::spawner::SimSpawner;
use crate::state::{Command, LbSnapshot, ProcState, Shared, SharedRef, lock, now_us, us};
use crate::worker::{APP, pool_host};

/// The simulation's epoch: 2026-01-01T00:00:00Z (never the real clock).
pub const EPOCH_SECS: u64 = 1_767_225_600;

/// Most violations recorded per run (the first ones matter).
const MAX_VIOLATIONS: usize = 200;

/// How long the driver has to answer the final `/status` request.
const FINAL_STATUS_WAIT: Duration = Duration::from_secs(1);

/// A fault the test loop applies at a scheduled time.
#[derive(Clone, Debug)]
pub enum Fault {
    /// SIGKILL from outside (an OOM killer): the live process of `slot`, or a
    /// random live one.
    Kill { slot: Option<u32> },
    /// Partitions `lb` from the host of `slot`'s process, at the first moment
    /// it has had no open connection for longer than the network latency (so
    /// no byte is in flight and the partition shows as connect failures).
    Partition { slot: u32 },
    /// Repairs every partition.
    Repair,
    /// Sets a fixed latency on the link between `lb` and the host of `slot`'s
    /// live process (a slow worker, as seen from the network).
    SlowLink { slot: u32, latency: Duration },
}

/// An admin command sent through `DriverHandle::admin`.
#[derive(Clone, Copy, Debug)]
pub enum AdminCmd {
    RollingRestart,
    ScaleTo(u32),
}

/// One simulation run.
pub struct Harness {
    sim: Sim<'static>,
    shared: SharedRef,
    config: Config,
    faults: Vec<(Duration, Fault)>,
    rng: Rng,
    partitioned: Vec<String>,
    pending_partition: Option<u32>,
    admins: usize,
}

impl Harness {
    /// Builds the world: `lb` and the pool hosts.
    pub fn new(config: Config) -> Harness {
        let mut builder = turmoil::Builder::new();
        builder
            .rng_seed(config.seed)
            .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_SECS))
            .tick_duration(Duration::from_millis(1))
            .simulation_duration(config.limit)
            .min_message_latency(Duration::ZERO)
            .max_message_latency(config.max_latency)
            .enable_random_order();
        let mut sim = builder.build();
        let pool = config.pool_size();
        let shared: SharedRef = Arc::new(Mutex::new(Shared::new(config.seed, pool, config.behavior.clone())));
        {
            let shared = shared.clone();
            let config = config.clone();
            sim.host("lb", move || lb_main(shared.clone(), config.clone()));
        }
        for index in 0..pool {
            let shared = shared.clone();
            sim.host(format!("p{index}"), move || pool_host(shared.clone(), index));
        }
        Harness {
            sim,
            shared,
            rng: Rng::new(mix(config.seed, 0xFA17)),
            config,
            faults: Vec::new(),
            partitioned: Vec::new(),
            pending_partition: None,
            admins: 0,
        }
    }

    /// Adds a client host.
    pub fn client(&mut self, name: &str, plan: ClientPlan) -> &mut Self {
        let shared = self.shared.clone();
        self.sim.client(name, client_main(shared, name.to_owned(), plan));
        self
    }

    /// Schedules a fault.
    pub fn fault_at(&mut self, at: Duration, fault: Fault) -> &mut Self {
        self.faults.push((at, fault));
        self
    }

    /// Sends an admin command at `at` (from an `ops` client host).
    pub fn admin_at(&mut self, at: Duration, command: AdminCmd) -> &mut Self {
        let shared = self.shared.clone();
        let name = format!("ops{}", self.admins);
        self.admins += 1;
        self.sim.client(name, async move {
            sleep_until(at).await;
            let handle = loop {
                if let Some(h) = lock(&shared).handle.clone() {
                    break h;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            log(&shared, format!("admin {command:?}"));
            let result = handle
                .admin(match command {
                    AdminCmd::RollingRestart => Admin::RollingRestart,
                    AdminCmd::ScaleTo(n) => Admin::ScaleTo(n),
                })
                .await;
            log(&shared, format!("admin {command:?} -> {result:?}"));
            Ok(())
        });
        self
    }

    /// The shared state (for scenario-specific probes).
    pub fn shared(&self) -> &SharedRef {
        &self.shared
    }

    /// Steps until the clients are done and the settle time has passed.
    pub fn run(mut self) -> Report {
        self.faults.sort_by_key(|(at, _)| *at);
        let mut next_fault = 0;
        let mut done_at: Option<Duration> = None;
        loop {
            match self.sim.step() {
                Ok(finished) => {
                    if finished && done_at.is_none() {
                        let now = self.sim.elapsed();
                        done_at = Some(now);
                        lock(&self.shared).log(us(now), "clients done");
                    }
                }
                Err(e) => {
                    let t = us(self.sim.elapsed());
                    lock(&self.shared).violation(t, format!("simulation error: {e}"));
                    break;
                }
            }
            self.carry_out_commands();
            let now = self.sim.elapsed();
            while next_fault < self.faults.len() && self.faults[next_fault].0 <= now {
                let fault = self.faults[next_fault].1.clone();
                next_fault += 1;
                self.apply(fault);
            }
            self.try_partition();
            if let Some(done) = done_at
                && self.sim.elapsed() >= done + self.config.settle
            {
                self.take_final_status();
                break;
            }
        }
        self.finish()
    }

    /// Asks the driver for its `/status` document (the pool, the supervisor's
    /// slots, the counters) from one more client host, and steps until it
    /// answers. Nothing is logged, so the trace ends where the settle ended.
    fn take_final_status(&mut self) {
        let handle = lock(&self.shared).handle.clone();
        let Some(handle) = handle else {
            let t = us(self.sim.elapsed());
            lock(&self.shared).violation(t, "no driver to ask for the final /status");
            return;
        };
        let shared = self.shared.clone();
        self.sim.client("final-status", async move {
            let status = handle.status().await;
            lock(&shared).final_status = serde_json::to_value(&status).unwrap_or_default();
            Ok(())
        });
        let deadline = self.sim.elapsed() + FINAL_STATUS_WAIT;
        loop {
            let stepped = self.sim.step();
            self.carry_out_commands();
            let t = us(self.sim.elapsed());
            match stepped {
                Ok(true) => return,
                Ok(false) if self.sim.elapsed() < deadline => {}
                Ok(false) => {
                    let wait = FINAL_STATUS_WAIT.as_millis();
                    lock(&self.shared).violation(t, format!("the driver did not answer /status within {wait}ms"));
                    return;
                }
                Err(e) => {
                    lock(&self.shared).violation(t, format!("simulation error while asking for /status: {e}"));
                    return;
                }
            }
        }
    }

    fn carry_out_commands(&mut self) {
        loop {
            let command = lock(&self.shared).commands.pop_front();
            let Some(command) = command else { break };
            match command {
                Command::Kill(pid) => self.end_process(pid, "sigkill"),
                Command::SelfCrash(pid) => self.end_process(pid, "crash"),
                Command::Exited(pid) => self.end_process(pid, "exit"),
            }
        }
    }

    /// The process is gone: its host's software is crashed (every socket
    /// closes) and restarted idle, and the driver learns of the exit.
    fn end_process(&mut self, pid: u32, how: &'static str) {
        let t = us(self.sim.elapsed());
        let (host, handle) = {
            let mut s = lock(&self.shared);
            let Some(p) = s.procs.get_mut(&pid) else { return };
            if p.state == ProcState::Dead {
                return;
            }
            p.state = ProcState::Dead;
            p.died_at = Some(t);
            p.end = Some(how);
            let host = p.host;
            let in_flight = p.in_flight.take();
            s.hosts[host].pid = None;
            let name = s.hosts[host].name.clone();
            let what = match &in_flight {
                Some(tag) => format!(" with {tag} in flight"),
                None => String::new(),
            };
            if let Some(tag) = in_flight {
                s.crashed_inflight.insert(tag);
            }
            s.log(t, format!("{how}: pid {pid} on {name} is gone{what}"));
            (name, s.handle.clone())
        };
        self.sim.crash(host.as_str());
        self.sim.bounce(host.as_str());
        if let Some(handle) = handle {
            handle.process_exited(Pid(pid));
        }
    }

    fn apply(&mut self, fault: Fault) {
        let t = us(self.sim.elapsed());
        match fault {
            Fault::Kill { slot } => {
                let victims: Vec<u32> = {
                    let s = lock(&self.shared);
                    s.procs
                        .values()
                        .filter(|p| p.state == ProcState::Running && p.joined_at.is_some())
                        .filter(|p| slot.is_none_or(|slot| p.slot == slot))
                        .map(|p| p.pid)
                        .collect()
                };
                if victims.is_empty() {
                    lock(&self.shared).log(t, format!("fault kill {slot:?}: no live process"));
                    return;
                }
                let pid = victims[self.rng.below(victims.len() as u64) as usize];
                lock(&self.shared).log(t, format!("fault: external SIGKILL of pid {pid}"));
                self.end_process(pid, "sigkill");
            }
            Fault::Partition { slot } => {
                lock(&self.shared).log(t, format!("fault: partition lb from slot {slot} when it is idle"));
                self.pending_partition = Some(slot);
            }
            Fault::SlowLink { slot, latency } => {
                let host = lock(&self.shared).live_of_slot(slot).map(|p| format!("p{}", p.host));
                match host {
                    Some(host) => {
                        self.sim.set_link_latency("lb", host.as_str(), latency);
                        lock(&self.shared).log(
                            t,
                            format!("fault: link lb <-> {host} now takes {}ms", latency.as_millis()),
                        );
                    }
                    None => lock(&self.shared).log(t, format!("fault: slow link: slot {slot} has no live process")),
                }
            }
            Fault::Repair => {
                self.pending_partition = None;
                for host in std::mem::take(&mut self.partitioned) {
                    self.sim.repair("lb", host.as_str());
                    lock(&self.shared).log(t, format!("fault: repair lb <-> {host}"));
                }
            }
        }
    }

    fn try_partition(&mut self) {
        let Some(slot) = self.pending_partition else { return };
        let t = us(self.sim.elapsed());
        let quiet = us(self.config.max_latency + Duration::from_millis(3));
        let host = {
            let s = lock(&self.shared);
            match s.live_of_slot(slot) {
                Some(p) if p.current == 0 && p.live_conns == 0 && t >= p.last_activity_us + quiet => {
                    let host = s.hosts[p.host].name.clone();
                    if s.connecting.get(&host).copied().unwrap_or(0) > 0 {
                        return;
                    }
                    host
                }
                _ => return,
            }
        };
        self.sim.partition("lb", host.as_str());
        lock(&self.shared).log(t, format!("fault: partition lb <-> {host} (slot {slot})"));
        self.partitioned.push(host);
        self.pending_partition = None;
    }

    fn finish(self) -> Report {
        let Harness {
            sim, shared, config, ..
        } = self;
        let elapsed = sim.elapsed();
        drop(sim);
        let mut s = lock(&shared);
        Report {
            scenario: config.scenario,
            seed: config.seed,
            elapsed_us: us(elapsed),
            trace: std::mem::take(&mut s.trace),
            violations: std::mem::take(&mut s.violations),
            requests: std::mem::take(&mut s.requests),
            procs: std::mem::take(&mut s.procs),
            received: std::mem::take(&mut s.received),
            crashed_inflight: std::mem::take(&mut s.crashed_inflight),
            spawns: std::mem::take(&mut s.spawns),
            signals: std::mem::take(&mut s.signals),
            capacity_log: std::mem::take(&mut s.capacity_log),
            lb: std::mem::take(&mut s.lb),
            final_status: std::mem::take(&mut s.final_status),
            inspections: s.steps,
            config,
        }
    }
}

fn log(shared: &SharedRef, message: impl std::fmt::Display) {
    let t = now_us();
    lock(shared).log(t, message);
}

/// Looks at the core after every driver step.
fn inspect(shared: &SharedRef, node: &Node) {
    let t = now_us();
    let mut s = lock(shared);
    s.steps += 1;
    if s.violations.len() < MAX_VIOLATIONS {
        if let Err(e) = node.balancer.check_invariants() {
            s.violation(t, format!("balancer invariant: {e}"));
        }
        if let Err(e) = node.supervisor.check_invariants() {
            s.violation(t, format!("supervisor invariant: {e}"));
        }
    }
    let b = &node.balancer;
    let snapshot = LbSnapshot {
        counters: b.counters().clone(),
        queue_len: b.queue_len(),
        in_flight: b.in_flight(),
        registered: b.registered(),
        capacity: b.capacity(),
        routable: b.routable(),
        active_version: b.active_version().map(|v: Version| v.0),
    };
    if s.capacity_log.last().map(|&(_, c)| c) != Some(snapshot.capacity) {
        s.capacity_log.push((t, snapshot.capacity));
        s.log(
            t,
            format!(
                "lb capacity {} (registered {}, active v{}, queued {})",
                snapshot.capacity,
                snapshot.registered,
                snapshot.active_version.unwrap_or(0),
                snapshot.queue_len
            ),
        );
    }
    s.lb = snapshot;
}

/// The `lb` host: the real driver, front door and control plane.
async fn lb_main(shared: SharedRef, config: Config) -> turmoil::Result {
    let clock = Clock::start();
    let now = clock.now();
    let balancer = Balancer::new(BalancerConfig {
        max_queue: config.max_queue,
        queue_timeout: config.queue_timeout,
        read_timeout: config.read_timeout,
        quarantine: config.quarantine,
        policy: Policy::Lifo,
        max_requests_per_worker: config.supervisor.max_requests,
        desired_workers: config.workers,
        retry_after_send: false,
    });
    let supervisor = Supervisor::new(
        SupervisorConfig {
            workers: config.workers,
            ..config.supervisor.clone()
        },
        now,
    );
    let identity = Identity {
        app: APP.to_owned(),
        ports: vec![HTTP_PORT],
        socket_prefix: PathBuf::from(SOCKET_PREFIX),
        check_sockets: false,
    };
    let inspector_shared = shared.clone();
    let driver = Driver::new(
        Node::new(balancer, supervisor),
        SimSpawner::new(shared.clone()),
        clock,
        identity,
    )
    .with_inspector(Box::new(move |node, _now| inspect(&inspector_shared, node)));
    let handle = driver.handle();
    lock(&shared).handle = Some(handle.clone());
    let http = SimListener::public(HTTP_PORT).await?;
    let control = SimListener::control(CONTROL_PORT).await?;
    let front_door = Arc::new(FrontDoor::new(
        FrontDoorConfig {
            connect_timeout: config.connect_timeout,
            read_timeout: config.read_timeout,
            ..FrontDoorConfig::default()
        },
        SimTransport::observed(shared.clone()),
        handle.clone(),
        clock,
        None,
        0x5EED_0000_0000_0000 ^ config.seed,
    ));
    // Without `--cfg tokio_unstable` a panicking task is swallowed: watch the driver.
    let driver_task = tokio::spawn(driver.run());
    let watcher = shared.clone();
    tokio::spawn(async move {
        let result = driver_task.await;
        let t = now_us();
        let message = match result {
            Err(e) if e.is_panic() => format!("the driver task panicked: {e}"),
            Err(e) => format!("the driver task failed: {e}"),
            Ok(()) => "the driver task ended".to_owned(),
        };
        lock(&watcher).violation(t, message);
    });
    let on_stop: rip_server::control::OnStop = Arc::new(|| {});
    tokio::spawn(rip_server::control::run(
        control,
        handle,
        on_stop,
        std::future::pending::<()>(),
    ));
    rip_server::frontdoor::run(http, front_door, std::future::pending::<()>()).await;
    Ok(())
}
