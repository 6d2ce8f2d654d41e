//! Exits counted by cause, and illegal transitions counted instead of
//! dropped.

use super::*;

/// The causes counted so far, with their counts (zeros left out).
fn exits(h: &H) -> Vec<(&'static str, u64)> {
    h.s.exit_counts()
        .iter()
        .filter(|&(_, &n)| n > 0)
        .map(|(c, &n)| (c.as_str(), n))
        .collect()
}

#[test]
fn every_cause_is_listed_from_the_start_and_serialises_by_name() {
    let (h, _) = H::new(config(1));
    assert_eq!(h.s.exit_counts().len(), ExitCause::ALL.len());
    assert!(exits(&h).is_empty());
    let v = serde_json::to_value(h.s.exit_counts()).unwrap();
    let names: Vec<&str> = ExitCause::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        names,
        [
            "crash",
            "spawn_failed",
            "ready_timeout",
            "stuck",
            "recycled",
            "rolling_restart",
            "scale_down",
            "quit",
            "stop"
        ]
    );
    for name in names {
        assert_eq!(v[name], 0, "{v}");
    }
}

#[test]
fn an_exit_nobody_asked_for_is_a_crash_before_or_after_joining() {
    let (mut h, a) = H::new(config(1));
    let (pid, _) = h.boot(one_spawn(&a));
    assert!(exits(&h).is_empty(), "nothing counted before the exit is known");
    let _ = h.exit(pid);
    assert_eq!(exits(&h), [("crash", 1)]);
    let respawn = one_spawn(&h.next_timeout());
    let (pid, _) = h.spawned(respawn);
    let _ = h.exit(pid);
    assert_eq!(exits(&h), [("crash", 2)], "died before joining");
    // An exit reported twice, or for a pid never started, counts nothing.
    let _ = h.exit(pid);
    let _ = h.exit(Pid(9999));
    assert_eq!(exits(&h), [("crash", 2)]);
}

#[test]
fn a_failed_spawn_is_counted_when_reported() {
    let (mut h, a) = H::new(config(1));
    h.s.handle_spawn_failed(one_spawn(&a), h.now);
    let _ = h.drain();
    assert_eq!(exits(&h), [("spawn_failed", 1)]);
}

#[test]
fn a_missed_ready_timeout_is_counted_at_the_exit_of_the_killed_process() {
    let (mut h, a) = H::new(config(1));
    let (pid, _) = h.spawned(one_spawn(&a));
    assert_eq!(h.next_timeout(), vec![Kill { pid }]);
    assert!(exits(&h).is_empty(), "killed, not yet reaped");
    let _ = h.exit(pid);
    assert_eq!(exits(&h), [("ready_timeout", 1)]);
}

#[test]
fn a_stuck_worker_killed_after_the_grace_is_counted_as_stuck() {
    let (mut h, a) = H::new(config(1));
    let (pid, _) = h.boot(one_spawn(&a));
    h.s.handle_stuck(pid, h.now);
    let _ = h.drain();
    assert_eq!(h.next_timeout()[0], Kill { pid });
    let _ = h.exit(pid);
    assert_eq!(exits(&h), [("stuck", 1)]);
}

#[test]
fn a_recycled_worker_is_counted_as_recycled() {
    let c = SupervisorConfig {
        max_requests: Some(10),
        ..config(1)
    };
    let (mut h, a) = H::new(c);
    let (old, _) = h.boot(one_spawn(&a));
    let replacement = one_spawn(&h.served(old, 9));
    let (new, _) = h.spawned(replacement);
    let _ = h.ready(new);
    let _ = h.idle(old);
    let _ = h.exit(old);
    assert_eq!(exits(&h), [("recycled", 1)]);
}

#[test]
fn workers_replaced_by_a_rolling_restart_are_counted_as_rolling_restart() {
    let (mut h, a) = H::new(config(2));
    let olds = boot_all(&mut h, &a);
    h.s.rolling_restart(h.now).unwrap();
    for (spawn, _, _) in spawns(&h.drain()) {
        let _ = h.boot(spawn);
    }
    for pid in olds {
        let _ = h.idle(pid);
        let _ = h.exit(pid);
    }
    assert_eq!(exits(&h), [("rolling_restart", 2)]);
    // An aborted roll: the new generation's siblings are stopped by the roll
    // too, while the one that died is a crash.
    h.s.rolling_restart(h.now).unwrap();
    let s = spawns(&h.drain());
    let (died, _) = h.spawned(s[0].0);
    let (sibling, _) = h.spawned(s[1].0);
    assert!(h.exit(died).contains(&Terminate { pid: sibling }));
    let _ = h.exit(sibling);
    assert_eq!(exits(&h), [("crash", 1), ("rolling_restart", 3)]);
}

#[test]
fn a_worker_whose_slot_is_no_longer_wanted_is_counted_as_scale_down() {
    let (mut h, a) = H::new(config(2));
    let pids = boot_all(&mut h, &a);
    h.s.scale_to(1, h.now);
    let _ = h.drain();
    let _ = h.idle(pids[1]);
    let _ = h.exit(pids[1]);
    assert_eq!(exits(&h), [("scale_down", 1)]);
}

#[test]
fn a_worker_that_quit_on_its_own_is_counted_as_quit() {
    let (mut h, a) = H::new(config(1));
    let (pid, _) = h.boot(one_spawn(&a));
    h.s.handle_quit(pid, h.now);
    let _ = h.drain();
    let _ = h.exit(pid);
    assert_eq!(exits(&h), [("quit", 1)]);
}

#[test]
fn workers_ended_by_a_graceful_stop_are_counted_as_stop() {
    let (mut h, a) = H::new(config(2));
    let pids = boot_all(&mut h, &a);
    h.s.stop(h.now);
    let _ = h.drain();
    // The worker's own quit after SIGTERM is a late input, not a new cause.
    h.s.handle_quit(pids[0], h.now);
    let _ = h.drain();
    for pid in pids {
        let _ = h.exit(pid);
    }
    assert_eq!(exits(&h), [("stop", 2)]);
    assert_eq!(h.s.illegal_transitions(), 0, "a quit after SIGTERM is not illegal");
}

#[test]
fn a_refused_transition_is_counted_and_changes_nothing() {
    let (mut h, a) = H::new(config(1));
    let (pid, _) = h.boot(one_spawn(&a));
    let id = h.s.by_pid[&pid];
    // `kill` is only ever called on a process that may be killed; calling it
    // on one already killed is the bookkeeping slip this counter exists for.
    h.s.kill(id);
    assert_eq!(h.s.poll_action(), Some(Kill { pid }));
    assert_eq!(h.s.illegal_transitions(), 0);
    h.s.kill(id);
    assert_eq!(h.s.illegal_transitions(), 1);
    assert_eq!(h.s.poll_action(), None, "no second Kill");
    assert_eq!(h.s.procs[&id].state, ProcState::Killed);
    let e = h.s.check_invariants().unwrap_err();
    assert_eq!(e, "1 illegal transitions");
}

#[test]
fn a_pid_started_again_for_another_spawn_means_its_first_owner_exited_unreported() {
    let (mut h, a) = H::new(config(2));
    let s = spawns(&a);
    let (p0, _) = h.boot(s[0].0);
    // The same start reported twice changes nothing.
    h.s.handle_spawned(s[0].0, p0, h.now);
    assert!(h.drain().is_empty());
    assert!(exits(&h).is_empty());
    assert_eq!(h.s.slot_of(p0), Some(Slot(0)));
    // The kernel hands p0's pid to slot 1's new process: p0 has died and
    // its exit was never reported.
    h.s.handle_spawned(s[1].0, p0, h.now);
    let _ = h.drain();
    assert_eq!(exits(&h), [("crash", 1)]);
    assert_eq!(h.s.slot_of(p0), Some(Slot(1)));
    assert_eq!(h.s.live_pids(), [p0]);
}

#[test]
fn a_node_reports_the_refused_transitions_of_both_halves() {
    use crate::core::balancer::{Balancer, BalancerConfig, RequestMeta, WorkerInfo};
    use crate::core::node::{Node, Output};
    use crate::core::{RequestId, Slot, Version};
    let mut node = Node::new(
        Balancer::new(BalancerConfig::default()),
        Supervisor::new(config(1), ms(0)),
    );
    let spawn = match node.poll() {
        Some(Output::Process(Spawn { spawn, .. })) => spawn,
        other => panic!("expected a spawn, got {other:?}"),
    };
    node.supervisor.handle_spawned(spawn, Pid(7), ms(1));
    let info = WorkerInfo {
        pid: Pid(7),
        slot: Slot(0),
        version: Version(1),
        socket: "/tmp/w0.sock".into(),
    };
    node.handle_join(info, false, ms(2)).unwrap();
    while node.poll().is_some() {}
    // One slip in each half (see the tests above and the balancer's).
    node.supervisor.kill(spawn);
    node.supervisor.kill(spawn);
    node.balancer.handle_request(RequestId(1), RequestMeta::GET, ms(3));
    node.balancer.handle_client_gone(RequestId(1), ms(3));
    node.balancer.handle_response_head(RequestId(1), ms(3));
    node.balancer.handle_dispatch_unused(RequestId(1), ms(3));
    assert_eq!(node.supervisor().illegal_transitions(), 1);
    assert_eq!(node.balancer().illegal_transitions(), 1);
    assert_eq!(node.illegal_transitions(), 2);
}

#[test]
#[cfg_attr(
    debug_assertions,
    should_panic(expected = "event spawned is illegal in state starting")
)]
fn a_refused_transition_that_debug_builds_assert_on_is_counted_in_release() {
    let (mut h, a) = H::new(config(1));
    let spawn = one_spawn(&a);
    // Corrupt the bookkeeping: a process without a pid marked as booting.
    h.s.procs.get_mut(&spawn).unwrap().state = ProcState::Booting { deadline: ms(1) };
    h.s.handle_spawned(spawn, Pid(7), h.now);
    assert_eq!(h.s.illegal_transitions(), 1);
    assert_eq!(h.s.slot_of(Pid(7)), None, "the refused start is not recorded");
}
