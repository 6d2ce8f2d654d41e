//! Property tests of the balancer: arbitrary interleavings of requests,
//! worker joins and exits, dispatch outcomes, client disconnects and time
//! steps, with the shared invariant checker run after every step.
//!
//! `PROPTEST_CASES=5000 cargo test --test core_props` runs a longer sweep.

use proptest::prelude::*;
use rip_server::core::balancer::{Action, Balancer, BalancerConfig, Policy, RequestMeta, WorkerInfo};
use rip_server::core::invariants::{Ending, Observer};
use rip_server::core::{Answer, Pid, RequestId, Slot, Time, Version};
use std::time::Duration;

#[derive(Clone, Debug)]
enum Op {
    Arrive { idempotent: bool, replayable: bool },
    Join { version: u64 },
    Quit(usize),
    Exit(usize),
    Drain(usize),
    Head(usize),
    Complete { which: usize, clean: bool },
    Busy(usize),
    ConnectFailed(usize),
    FailedAfterSend(usize),
    ClientGone(usize),
    Advance(u64),
    Desired(u32),
    Stop,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<bool>(), any::<bool>()).prop_map(|(idempotent, replayable)| Op::Arrive { idempotent, replayable }),
        2 => (1u64..=3).prop_map(|version| Op::Join { version }),
        1 => any::<usize>().prop_map(Op::Quit),
        1 => any::<usize>().prop_map(Op::Exit),
        1 => any::<usize>().prop_map(Op::Drain),
        4 => any::<usize>().prop_map(Op::Head),
        4 => (any::<usize>(), prop::bool::weighted(0.9)).prop_map(|(which, clean)| Op::Complete { which, clean }),
        1 => any::<usize>().prop_map(Op::Busy),
        1 => any::<usize>().prop_map(Op::ConnectFailed),
        1 => any::<usize>().prop_map(Op::FailedAfterSend),
        2 => any::<usize>().prop_map(Op::ClientGone),
        4 => prop_oneof![0u64..50, 0u64..3000, Just(2000), Just(5000)].prop_map(Op::Advance),
        1 => (1u32..=4).prop_map(Op::Desired),
        1 => prop::bool::weighted(0.1).prop_map(|stop| if stop { Op::Stop } else { Op::Advance(1) }),
    ]
}

fn config() -> impl Strategy<Value = BalancerConfig> {
    (
        0usize..6,
        prop_oneof![
            Just(Policy::Lifo),
            Just(Policy::RoundRobin),
            Just(Policy::LeastConnections)
        ],
        prop_oneof![Just(None), (1u64..5).prop_map(Some)],
        1u32..4,
        any::<bool>(),
    )
        .prop_map(
            |(max_queue, policy, budget, desired, retry_after_send)| BalancerConfig {
                max_queue,
                queue_timeout: Duration::from_millis(2000),
                read_timeout: Duration::from_millis(5000),
                quarantine: Duration::from_millis(250),
                policy,
                max_requests_per_worker: budget,
                desired_workers: desired,
                retry_after_send,
            },
        )
}

/// One dispatch the "adapter" still owes an outcome for.
#[derive(Clone, Copy, Debug)]
struct Exchange {
    request: RequestId,
    head: bool,
}

struct Harness {
    lb: Balancer,
    observer: Observer,
    now: Time,
    next_request: u64,
    next_pid: u32,
    live: Vec<Pid>,
    exchanges: Vec<Exchange>,
    requests: Vec<RequestId>,
    rejected_full_with_room: usize,
}

impl Harness {
    fn new(config: BalancerConfig) -> Harness {
        let lb = Balancer::new(config);
        let observer = Observer::new(&lb);
        Harness {
            lb,
            observer,
            now: Time::ZERO,
            next_request: 0,
            next_pid: 100,
            live: Vec::new(),
            exchanges: Vec::new(),
            requests: Vec::new(),
            rejected_full_with_room: 0,
        }
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        self.observer.before(&self.lb);
        let now = self.now;
        match *op {
            Op::Arrive { idempotent, replayable } => {
                let id = RequestId(self.next_request);
                self.next_request += 1;
                let meta = RequestMeta { idempotent, replayable };
                self.observer.on_request(id, meta, now);
                self.requests.push(id);
                self.lb.handle_request(id, meta, now);
            }
            Op::Join { version } => {
                let pid = Pid(self.next_pid);
                self.next_pid += 1;
                let info = WorkerInfo {
                    pid,
                    slot: Slot(pid.0 % 4),
                    version: Version(version),
                    socket: format!("s{}", pid.0),
                };
                self.lb
                    .handle_join(info, now)
                    .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                self.live.push(pid);
            }
            Op::Quit(i) | Op::Exit(i) | Op::Drain(i) => {
                if !self.live.is_empty() {
                    let pid = self.live[i % self.live.len()];
                    match op {
                        Op::Quit(_) => self.lb.handle_quit(pid, now),
                        Op::Exit(_) => self.lb.handle_exit(pid, now),
                        _ => self.lb.handle_drain(pid, now),
                    }
                    if !matches!(op, Op::Drain(_)) {
                        self.live.retain(|&p| p != pid);
                    }
                }
            }
            Op::Head(i) => {
                if let Some(x) = self.pick_exchange(i, false) {
                    self.exchanges[x].head = true;
                    let id = self.exchanges[x].request;
                    self.observer.on_response_head(id);
                    self.lb.handle_response_head(id, now);
                }
            }
            Op::Complete { which, clean } => {
                if let Some(x) = self.pick_exchange(which, true) {
                    let ex = self.exchanges.remove(x);
                    if !ex.head {
                        self.observer.on_response_head(ex.request);
                    }
                    self.lb.handle_complete(ex.request, clean, now);
                }
            }
            Op::Busy(i) | Op::ConnectFailed(i) | Op::FailedAfterSend(i) => {
                if let Some(x) = self.pick_exchange(i, false) {
                    let ex = self.exchanges.remove(x);
                    match op {
                        Op::Busy(_) => self.lb.handle_busy(ex.request, now),
                        Op::ConnectFailed(_) => self.lb.handle_connect_failed(ex.request, now),
                        _ => {
                            self.observer.on_failed_after_send(ex.request);
                            self.lb.handle_failed_after_send(ex.request, now)
                        }
                    }
                }
            }
            Op::ClientGone(i) => {
                if !self.requests.is_empty() {
                    let id = self.requests[i % self.requests.len()];
                    if self.observer.ending(id).is_none() {
                        self.observer.on_client_gone(id);
                    }
                    self.lb.handle_client_gone(id, now);
                }
            }
            Op::Advance(ms) => {
                self.now += Duration::from_millis(ms);
                self.lb.handle_timeout(self.now);
            }
            Op::Desired(n) => self.lb.set_desired_workers(n, now),
            Op::Stop => self.lb.begin_stop(now),
        }
        self.drain()
    }

    /// An exchange to report on; `any_phase` also allows ones past their head.
    fn pick_exchange(&self, i: usize, any_phase: bool) -> Option<usize> {
        let candidates: Vec<usize> = (0..self.exchanges.len())
            .filter(|&x| any_phase || !self.exchanges[x].head)
            .collect();
        (!candidates.is_empty()).then(|| candidates[i % candidates.len()])
    }

    fn drain(&mut self) -> Result<(), TestCaseError> {
        while let Some(action) = self.lb.poll_action() {
            self.observer.on_action(&action, &self.lb, self.now);
            if let Action::Dispatch { request, .. } = action {
                self.exchanges.push(Exchange { request, head: false });
            }
            if let Action::Answer {
                answer: Answer::QueueFull,
                ..
            } = action
                && self.lb.queue_len() < self.lb.config().max_queue
            {
                self.rejected_full_with_room += 1;
            }
        }
        while self.lb.poll_worker_event().is_some() {}
        self.observer.note_queued(&self.lb);
        self.lb.check_invariants().map_err(TestCaseError::fail)?;
        Ok(())
    }

    /// Finishes every exchange and lets every deadline pass: afterwards every
    /// request must have ended exactly once.
    fn settle(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..1000 {
            if !self.exchanges.is_empty() {
                self.step(&Op::Complete { which: 0, clean: true })?;
                continue;
            }
            match self.lb.poll_timeout() {
                Some(deadline) => {
                    let wait = deadline.saturating_since(self.now).as_millis() as u64;
                    self.step(&Op::Advance(wait.max(1)))?;
                }
                None => break,
            }
        }
        // Whatever is still queued has no worker: let it time out.
        self.step(&Op::Advance(10_000))?;
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, max_shrink_iters: 4096, ..ProptestConfig::default() })]

    #[test]
    fn balancer_keeps_its_promises(config in config(), ops in prop::collection::vec(op(), 1..200)) {
        let mut h = Harness::new(config);
        for op in &ops {
            h.step(op)?;
            if let Some(v) = h.observer.violations().first() {
                return Err(TestCaseError::fail(format!("after {op:?}: {v}")));
            }
        }
        h.settle()?;
        h.observer.finish(true).map_err(TestCaseError::fail)?;
        prop_assert_eq!(h.rejected_full_with_room, 0);
        prop_assert!(h.lb.is_drained() || h.lb.queue_len() == 0);
    }

    /// Every request that arrives while capacity exists and the queue has room
    /// eventually gets a worker's response when workers keep answering.
    #[test]
    fn healthy_pool_answers_everything(workers in 1u32..5, max_queue in 1usize..50, burst in 1usize..80) {
        let config = BalancerConfig { max_queue, ..BalancerConfig::default() };
        let mut h = Harness::new(config);
        for _ in 0..workers {
            h.step(&Op::Join { version: 1 })?;
        }
        for _ in 0..burst {
            h.step(&Op::Arrive { idempotent: true, replayable: true })?;
        }
        h.settle()?;
        h.observer.finish(true).map_err(TestCaseError::fail)?;
        let full = h.lb.counters().queue_full as usize;
        let capacity = workers as usize + max_queue;
        prop_assert_eq!(full, burst.saturating_sub(capacity), "exact 503 accounting");
        prop_assert_eq!(h.lb.counters().queue_timeout, 0);
        let answered = h.requests.iter().filter(|id| h.observer.ending(**id) == Some(Ending::Response)).count();
        prop_assert_eq!(answered, burst.min(capacity));
    }
}

/// The checker is not vacuous: a balancer fed an outcome it must reject, or
/// an observer shown a forged action, reports a violation.
#[test]
fn the_observer_catches_forged_actions() {
    let mut lb = Balancer::new(BalancerConfig::default());
    let mut observer = Observer::new(&lb);
    lb.handle_join(
        WorkerInfo {
            pid: Pid(1),
            slot: Slot(0),
            version: Version(1),
            socket: "s".into(),
        },
        Time::ZERO,
    )
    .unwrap();
    observer.on_request(RequestId(1), RequestMeta::GET, Time::ZERO);
    observer.before(&lb);
    // A 504 queue timeout before the deadline is a lie.
    observer.on_action(
        &Action::Answer {
            request: RequestId(1),
            answer: Answer::QueueTimeout,
        },
        &lb,
        Time::ZERO,
    );
    assert!(observer.finish(false).is_err());

    let mut observer = Observer::new(&lb);
    observer.on_request(RequestId(2), RequestMeta::GET, Time::ZERO);
    observer.before(&lb);
    // A dispatch to a worker that does not hold the request.
    observer.on_action(
        &Action::Dispatch {
            request: RequestId(2),
            pid: Pid(1),
            attempt: 0,
        },
        &lb,
        Time::ZERO,
    );
    assert!(observer.finish(false).is_err());
    // A 503 while the queue had room.
    let mut observer = Observer::new(&lb);
    observer.on_request(RequestId(3), RequestMeta::GET, Time::ZERO);
    observer.before(&lb);
    observer.on_action(
        &Action::Answer {
            request: RequestId(3),
            answer: Answer::QueueFull,
        },
        &lb,
        Time::ZERO,
    );
    assert!(observer.finish(false).is_err());
}

#[test]
fn the_observer_catches_a_retry_after_send_that_is_switched_off() {
    let violations = |retry_after_send: bool| {
        let mut lb = Balancer::new(BalancerConfig {
            retry_after_send,
            ..BalancerConfig::default()
        });
        let info = WorkerInfo {
            pid: Pid(1),
            slot: Slot(0),
            version: Version(1),
            socket: "s".into(),
        };
        lb.handle_join(info, Time::ZERO).unwrap();
        let mut observer = Observer::new(&lb);
        observer.before(&lb);
        observer.on_request(RequestId(1), RequestMeta::GET, Time::ZERO);
        lb.handle_request(RequestId(1), RequestMeta::GET, Time::ZERO);
        let first = lb.poll_action().expect("dispatched");
        observer.on_action(&first, &lb, Time::ZERO);
        // The connection breaks after the request was sent, and a forged
        // second dispatch follows.
        observer.on_failed_after_send(RequestId(1));
        let retry = Action::Dispatch {
            request: RequestId(1),
            pid: Pid(1),
            attempt: 1,
        };
        observer.on_action(&retry, &lb, Time::ZERO);
        observer.violations().to_vec()
    };
    let off = violations(false);
    assert!(off.iter().any(|v| v.contains("retry_after_send off")), "{off:?}");
    let on = violations(true);
    assert!(!on.iter().any(|v| v.contains("retry_after_send")), "{on:?}");
}

#[test]
fn the_observer_catches_a_retry_after_send_of_a_request_that_cannot_be_replayed() {
    // With retry_after_send on, only an idempotent request with a replayable
    // body may be sent again after it reached a worker.
    let violations = |meta: RequestMeta| {
        let mut lb = Balancer::new(BalancerConfig {
            retry_after_send: true,
            ..BalancerConfig::default()
        });
        let info = WorkerInfo {
            pid: Pid(1),
            slot: Slot(0),
            version: Version(1),
            socket: "s".into(),
        };
        lb.handle_join(info, Time::ZERO).unwrap();
        let mut observer = Observer::new(&lb);
        observer.before(&lb);
        observer.on_request(RequestId(1), meta, Time::ZERO);
        lb.handle_request(RequestId(1), meta, Time::ZERO);
        let first = lb.poll_action().expect("dispatched");
        observer.on_action(&first, &lb, Time::ZERO);
        observer.on_failed_after_send(RequestId(1));
        let retry = Action::Dispatch {
            request: RequestId(1),
            pid: Pid(1),
            attempt: 1,
        };
        observer.on_action(&retry, &lb, Time::ZERO);
        observer.violations().to_vec()
    };
    let refused = "is not idempotent+replayable";
    for (idempotent, replayable) in [(true, false), (false, true), (false, false)] {
        let v = violations(RequestMeta { idempotent, replayable });
        assert!(
            v.iter().any(|v| v.contains(refused)),
            "idempotent {idempotent}, replayable {replayable}: {v:?}"
        );
    }
    let v = violations(RequestMeta::GET);
    assert!(!v.iter().any(|v| v.contains(refused)), "{v:?}");
}

#[test]
fn the_observer_catches_a_dispatch_out_of_arrival_order() {
    // Two requests wait for a worker; when one joins, the balancer sends it
    // the first. A forged dispatch of the second instead breaks FIFO.
    let violations = |forged: Option<RequestId>| {
        let mut lb = Balancer::new(BalancerConfig::default());
        let mut observer = Observer::new(&lb);
        for id in 1..=2 {
            observer.before(&lb);
            observer.on_request(RequestId(id), RequestMeta::GET, Time::ZERO);
            lb.handle_request(RequestId(id), RequestMeta::GET, Time::ZERO);
            assert_eq!(lb.poll_action(), None, "no worker yet: queued");
            observer.note_queued(&lb);
        }
        let info = WorkerInfo {
            pid: Pid(1),
            slot: Slot(0),
            version: Version(1),
            socket: "s".into(),
        };
        observer.before(&lb);
        lb.handle_join(info, Time::ZERO).unwrap();
        let real = lb.poll_action().expect("the first request is dispatched");
        let action = match forged {
            None => real,
            Some(request) => Action::Dispatch {
                request,
                pid: Pid(1),
                attempt: 0,
            },
        };
        observer.on_action(&action, &lb, Time::ZERO);
        observer.violations().to_vec()
    };
    assert_eq!(violations(None), Vec::<String>::new(), "arrival order is fine");
    let out_of_order = violations(Some(RequestId(2)));
    assert!(
        out_of_order
            .iter()
            .any(|v| v.contains("RequestId2 dispatched before the earlier queued RequestId1")),
        "{out_of_order:?}"
    );
}
