//! Benchmarks of the sans-IO balancer on its hot path.
//!
//! Each benchmark drives the [`Balancer`] the way the driver task does: feed
//! one input, then drain `poll_action` and `poll_worker_event` until both
//! are empty. State is built once per benchmark and kept across iterations,
//! and every iteration leaves it in the same shape (checked before measuring),
//! so the figures are steady-state costs.
//!
//! - `dispatch_complete/<policy>[_half_busy]/<workers>`: a request arrives,
//!   its dispatch is polled, the response head and completion are reported.
//!   `_half_busy` keeps half of the workers on long-running requests, so the
//!   idle set and the request table both hold `workers / 2` entries.
//! - `queue_churn/8192`: one busy worker and a full queue of 8192; the worker
//!   completes, takes the queue head, and a new request enqueues at the tail.
//! - `queue_churn/client_gone_mid/8192`: same state; the client of the
//!   request in the middle of the queue goes away and a new request enqueues.
//! - `slab/churn/<n>`: a [`Slab`] holding `n` values; one is removed and
//!   another inserted (the freed place is reused). `slab/get/<n>`: a lookup
//!   by key, cycling over the `n` keys; `slab/btreemap_get/<n>`: the same
//!   lookups in the `BTreeMap` the balancer used before the slab.
//!
//! Run with `cargo bench --bench core` (add `-- --quick` for a shorter run);
//! `cargo test --benches` runs every benchmark once as a smoke test.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rip_server::core::balancer::{Action, Balancer, BalancerConfig, Policy, RequestMeta, WorkerInfo};
use rip_server::core::slab::{Key, Slab};
use rip_server::core::{Pid, RequestId, Slot, Time, Version};

const WORKER_COUNTS: [u32; 3] = [8, 64, 1024];
const QUEUE: usize = 8192;

/// Drains both outputs, as the driver does after every input; returns the
/// last dispatched request, if any.
#[inline]
fn drain(lb: &mut Balancer) -> Option<RequestId> {
    let mut dispatched = None;
    while let Some(action) = lb.poll_action() {
        if let Action::Dispatch { request, .. } = action {
            dispatched = Some(request);
        }
        black_box(action);
    }
    while let Some(event) = lb.poll_worker_event() {
        black_box(event);
    }
    dispatched
}

fn worker(i: u32) -> WorkerInfo {
    WorkerInfo {
        pid: Pid(10_000 + i),
        slot: Slot(i),
        version: Version(1),
        socket: format!("/run/rip/app/w{i}.sock"),
    }
}

fn balancer(policy: Policy, workers: u32, max_queue: usize) -> Balancer {
    let mut lb = Balancer::new(BalancerConfig {
        policy,
        max_queue,
        // Nothing here calls handle_timeout; long deadlines keep the state
        // meaningful however long the run.
        queue_timeout: Duration::from_secs(3600),
        read_timeout: Duration::from_secs(3600),
        desired_workers: workers,
        ..BalancerConfig::default()
    });
    for i in 0..workers {
        lb.handle_join(worker(i), Time::ZERO).expect("fresh pid");
        drain(&mut lb);
    }
    lb
}

/// A balancer plus the driver-side counters a benchmark advances.
struct Rig {
    lb: Balancer,
    next_id: u64,
    now: u64,
}

impl Rig {
    fn new(lb: Balancer) -> Rig {
        Rig { lb, next_id: 1, now: 1 }
    }

    fn fresh_id(&mut self) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        id
    }

    /// Time moves a microsecond per step.
    fn tick(&mut self) -> Time {
        self.now += 1;
        Time::from_micros(self.now)
    }

    /// Starts a request that stays on its worker (no head, no completion).
    fn start_long_request(&mut self) {
        let id = self.fresh_id();
        let now = self.tick();
        self.lb.handle_request(id, RequestMeta::GET, now);
        assert_eq!(drain(&mut self.lb), Some(id), "long request dispatched");
    }

    /// One request from arrival to completion on an idle worker.
    #[inline]
    fn dispatch_complete(&mut self) {
        let id = self.fresh_id();
        let now = self.tick();
        let lb = &mut self.lb;
        lb.handle_request(black_box(id), RequestMeta::GET, now);
        let dispatched = drain(lb);
        debug_assert_eq!(dispatched, Some(id));
        lb.handle_response_head(id, now);
        drain(lb);
        lb.handle_complete(id, true, now);
        drain(lb);
    }

    /// Fills the queue with requests behind a busy worker; returns the
    /// request the worker is on.
    fn fill_queue(&mut self) -> RequestId {
        let running = self.fresh_id();
        let now = self.tick();
        self.lb.handle_request(running, RequestMeta::GET, now);
        assert_eq!(drain(&mut self.lb), Some(running));
        while self.lb.queue_len() < self.lb.config().max_queue {
            let id = self.fresh_id();
            let now = self.tick();
            self.lb.handle_request(id, RequestMeta::GET, now);
            assert_eq!(drain(&mut self.lb), None, "request queued");
        }
        running
    }

    /// The running request completes, the worker takes the queue head, a new
    /// request enqueues. Returns the request the worker is now on.
    #[inline]
    fn complete_and_refill(&mut self, running: RequestId) -> RequestId {
        let now = self.tick();
        let lb = &mut self.lb;
        lb.handle_response_head(running, now);
        drain(lb);
        lb.handle_complete(running, true, now);
        let next = drain(lb).unwrap_or(running);
        let id = RequestId(self.next_id);
        self.next_id += 1;
        self.lb.handle_request(black_box(id), RequestMeta::GET, now);
        drain(&mut self.lb);
        next
    }

    /// The client of a mid-queue request leaves, a new request enqueues.
    ///
    /// With ids 1 (running) and 2..=QUEUE+1 queued at the start, step `k`
    /// removes id `QUEUE/2 + 2 + k`: it is always queued (it arrived `QUEUE/2`
    /// steps ago or was there from the start) and always sits at position
    /// `QUEUE/2` of the queue, behind the `QUEUE/2` oldest requests, which
    /// never leave.
    #[inline]
    fn client_gone_and_refill(&mut self, step: u64) {
        let now = self.tick();
        let victim = RequestId(QUEUE as u64 / 2 + 2 + step);
        let lb = &mut self.lb;
        lb.handle_client_gone(black_box(victim), now);
        drain(lb);
        let id = RequestId(self.next_id);
        self.next_id += 1;
        self.lb.handle_request(black_box(id), RequestMeta::GET, now);
        drain(&mut self.lb);
    }
}

fn policy_name(policy: Policy) -> &'static str {
    match policy {
        Policy::Lifo => "lifo",
        Policy::RoundRobin => "rr",
        Policy::LeastConnections => "lc",
    }
}

fn dispatch_complete(c: &mut Criterion) {
    let mut group = c.benchmark_group("dispatch_complete");
    group.throughput(Throughput::Elements(1));
    for policy in [Policy::Lifo, Policy::RoundRobin, Policy::LeastConnections] {
        for half_busy in [false, true] {
            for n in WORKER_COUNTS {
                let mut rig = Rig::new(balancer(policy, n, QUEUE));
                if half_busy {
                    for _ in 0..n / 2 {
                        rig.start_long_request();
                    }
                }
                let idle = rig.lb.routable();
                assert_eq!(idle, (n - if half_busy { n / 2 } else { 0 }) as usize);
                // The cycle must leave the balancer as it found it.
                for _ in 0..2 * n {
                    rig.dispatch_complete();
                }
                assert_eq!(rig.lb.routable(), idle);
                assert_eq!(rig.lb.queue_len(), 0);
                assert_eq!(rig.lb.in_flight(), n as usize - idle);
                rig.lb.check_invariants().expect("invariants");

                let name = if half_busy {
                    format!("{}_half_busy", policy_name(policy))
                } else {
                    policy_name(policy).to_owned()
                };
                group.bench_function(BenchmarkId::new(name, n), |b| {
                    b.iter(|| rig.dispatch_complete());
                });
                rig.lb.check_invariants().expect("invariants after");
            }
        }
    }
    group.finish();
}

fn queue_churn(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue_churn");
    group.throughput(Throughput::Elements(1));

    let mut rig = Rig::new(balancer(Policy::Lifo, 1, QUEUE));
    let mut running = rig.fill_queue();
    for _ in 0..16 {
        let next = rig.complete_and_refill(running);
        assert_ne!(next, running, "the worker took the queue head");
        running = next;
    }
    assert_eq!(rig.lb.queue_len(), QUEUE);
    rig.lb.check_invariants().expect("invariants");
    group.bench_function(BenchmarkId::from_parameter(QUEUE), |b| {
        b.iter(|| running = rig.complete_and_refill(running));
    });
    assert_eq!(rig.lb.queue_len(), QUEUE);
    rig.lb.check_invariants().expect("invariants after");

    let mut rig = Rig::new(balancer(Policy::Lifo, 1, QUEUE));
    let running = rig.fill_queue();
    assert_eq!(running, RequestId(1));
    let mut step = 0;
    for _ in 0..16 {
        rig.client_gone_and_refill(step);
        step += 1;
    }
    let gone = rig.lb.counters().client_gone;
    assert_eq!(gone, step, "every victim was queued");
    assert_eq!(rig.lb.queue_len(), QUEUE);
    group.bench_function(BenchmarkId::new("client_gone_mid", QUEUE), |b| {
        b.iter(|| {
            rig.client_gone_and_refill(step);
            step += 1;
        });
    });
    assert_eq!(rig.lb.counters().client_gone, step, "every victim was queued");
    assert_eq!(rig.lb.queue_len(), QUEUE);
    rig.lb.check_invariants().expect("invariants after");
    group.finish();
}

fn slab(c: &mut Criterion) {
    let mut group = c.benchmark_group("slab");
    group.throughput(Throughput::Elements(1));
    for n in WORKER_COUNTS {
        let mut slab = Slab::new();
        let mut keys: Vec<Key> = (0..n).map(|i| slab.insert(u64::from(i))).collect();
        let mut next = 0usize;
        group.bench_function(BenchmarkId::new("churn", n), |b| {
            b.iter(|| {
                let at = next % keys.len();
                next = next.wrapping_add(7);
                let value = slab.remove(keys[at]).expect("live key");
                keys[at] = slab.insert(black_box(value));
            });
        });
        assert_eq!(
            (slab.len(), slab.index_bound()),
            (n as usize, n as usize),
            "places reused"
        );

        let mut next = 0usize;
        group.bench_function(BenchmarkId::new("get", n), |b| {
            b.iter(|| {
                next = next.wrapping_add(7);
                black_box(slab.get(black_box(keys[next % keys.len()])))
            });
        });

        let map: std::collections::BTreeMap<Pid, u64> = (0..n).map(|i| (Pid(10_000 + i), u64::from(i))).collect();
        let mut next = 0u32;
        group.bench_function(BenchmarkId::new("btreemap_get", n), |b| {
            b.iter(|| {
                next = next.wrapping_add(7);
                black_box(map.get(&black_box(Pid(10_000 + next % n))))
            });
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = dispatch_complete, queue_churn, slab
}
criterion_main!(benches);
