//! insta snapshots of the core's action traces in named scenarios. A change
//! in behaviour shows up as a reviewable diff (`cargo insta review`).

use std::fmt::Write as _;
use std::time::Duration;

use rip_server::core::balancer::{Balancer, BalancerConfig, RequestMeta, WorkerInfo};
use rip_server::core::node::{Node, Output};
use rip_server::core::supervisor::{Supervisor, SupervisorAction, SupervisorConfig};
use rip_server::core::{Pid, RequestId, Slot, Time, Version};

/// Records inputs and the outputs they caused.
struct Trace {
    node: Node,
    now: Time,
    text: String,
    next_pid: u32,
    spawned: Vec<(Pid, Slot, Version)>,
}

impl Trace {
    fn new(workers: u32, max_queue: usize) -> Trace {
        Trace::with_retry_after_send(workers, max_queue, false)
    }

    fn with_retry_after_send(workers: u32, max_queue: usize, retry_after_send: bool) -> Trace {
        let balancer = Balancer::new(BalancerConfig {
            max_queue,
            queue_timeout: Duration::from_millis(1000),
            read_timeout: Duration::from_millis(3000),
            desired_workers: workers,
            retry_after_send,
            ..BalancerConfig::default()
        });
        let supervisor = Supervisor::new(
            SupervisorConfig {
                workers,
                ..SupervisorConfig::default()
            },
            Time::ZERO,
        );
        let mut trace = Trace {
            node: Node::new(balancer, supervisor),
            now: Time::ZERO,
            text: String::new(),
            next_pid: 100,
            spawned: Vec::new(),
        };
        trace.input("start", |_, _| {});
        trace
    }

    fn at(&mut self, ms: u64) -> &mut Trace {
        self.now = Time::from_millis(ms);
        self
    }

    fn input(&mut self, what: &str, f: impl FnOnce(&mut Node, Time)) {
        let now = self.now;
        let _ = writeln!(self.text, "{now:?} {what}");
        self.node.tick(now);
        f(&mut self.node, now);
        while let Some(output) = self.node.poll() {
            if let Output::Process(SupervisorAction::Spawn { spawn, slot, version }) = output {
                let pid = Pid(self.next_pid);
                self.next_pid += 1;
                self.spawned.push((pid, slot, version));
                self.node.supervisor.handle_spawned(spawn, pid, now);
                let _ = writeln!(self.text, "    -> spawn {slot:?} {version:?} as {pid:?}");
                continue;
            }
            let _ = writeln!(self.text, "    -> {output:?}");
        }
        self.node.balancer.check_invariants().expect("balancer invariants");
        self.node.supervisor.check_invariants().expect("supervisor invariants");
    }

    fn join_all(&mut self) {
        for (pid, slot, version) in std::mem::take(&mut self.spawned) {
            self.input(&format!("join {pid:?}"), |n, now| {
                let info = WorkerInfo {
                    pid,
                    slot,
                    version,
                    socket: format!("/tmp/w{}", pid.0),
                };
                n.handle_join(info, false, now).expect("join");
            });
        }
    }

    fn request(&mut self, id: u64) {
        self.input(&format!("request {id}"), |n, now| {
            n.balancer.handle_request(RequestId(id), RequestMeta::GET, now)
        });
    }

    fn respond(&mut self, id: u64) {
        self.input(&format!("response {id}"), |n, now| {
            n.balancer.handle_response_head(RequestId(id), now);
            n.balancer.handle_complete(RequestId(id), true, now);
        });
    }

    fn timeout(&mut self) {
        self.input("timeout", |n, now| n.handle_timeout(now));
    }
}

#[test]
fn burst_over_capacity() {
    let mut t = Trace::new(2, 3);
    t.at(1).join_all();
    for id in 1..=7 {
        t.at(10).request(id);
    }
    t.at(50).respond(1);
    t.at(1010).timeout();
    insta::assert_snapshot!(t.text);
}

#[test]
fn worker_crash_mid_request() {
    let mut t = Trace::new(2, 8);
    t.at(1).join_all();
    t.at(10).request(1);
    t.at(10).request(2);
    t.at(10).request(3);
    t.at(20).input("worker Pid101 dies: its connection breaks", |n, now| {
        n.balancer.handle_failed_after_send(RequestId(2), now);
        n.handle_exit(Pid(101), now);
    });
    t.at(30).respond(1);
    t.at(40).respond(3);
    t.at(120).join_all();
    insta::assert_snapshot!(t.text);
}

/// `GET /crash`: the worker dies while it handles request 2 (the
/// connection breaks after the request was sent), then its replacement joins.
fn crash_during_request(retry_after_send: bool) -> Trace {
    let mut t = Trace::with_retry_after_send(2, 8, retry_after_send);
    t.at(1).join_all();
    t.at(10).request(1);
    t.at(10).request(2);
    t.at(20).input("Pid100 dies while handling request 2", |n, now| {
        n.balancer.handle_failed_after_send(RequestId(2), now);
        n.handle_exit(Pid(100), now);
    });
    t.at(30).respond(1);
    t.at(120).timeout();
    t.at(130).join_all();
    t
}

#[test]
fn crash_during_request_is_answered_502_by_default() {
    let t = crash_during_request(false);
    insta::assert_snapshot!(t.text);
}

#[test]
fn crash_during_request_is_retried_once_with_retry_after_send() {
    let t = crash_during_request(true);
    insta::assert_snapshot!(t.text);
}

#[test]
fn rolling_restart_under_load() {
    let mut t = Trace::new(2, 8);
    t.at(1).join_all();
    t.at(10).request(1);
    t.at(11).input("SIGHUP", |n, now| {
        n.supervisor.rolling_restart(now).expect("roll starts")
    });
    t.at(12).request(2);
    t.at(13).request(3);
    t.at(20).join_all();
    t.at(25).request(4);
    t.at(30).respond(1);
    t.at(31).respond(2);
    t.at(32).respond(4);
    t.at(33).input("old workers quit and exit", |n, now| {
        for pid in [Pid(100), Pid(101)] {
            n.handle_quit(pid, now);
            n.handle_exit(pid, now);
        }
    });
    insta::assert_snapshot!(t.text);
}

#[test]
fn crash_loop_backs_off() {
    let mut t = Trace::new(1, 8);
    t.at(5).request(1);
    for round in 0..5u64 {
        let (pid, _, _) = t.spawned.pop().expect("a spawn is pending");
        t.input(&format!("{pid:?} dies at boot (crash {})", round + 1), |n, now| {
            n.handle_exit(pid, now)
        });
        while t.spawned.is_empty() {
            let Some(next) = t.node.poll_timeout() else {
                panic!("no deadline pending:\n{}", t.text)
            };
            t.now = next;
            t.input("timeout", |n, now| n.handle_timeout(now));
        }
    }
    let status = t.node.supervisor.status(t.now);
    assert_eq!(status.slots[0].crashes, 5);
    insta::assert_snapshot!(t.text);
}
