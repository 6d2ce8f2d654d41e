//! Unit tests of the supervisor, driven through its public inputs by a tiny
//! harness that checks the invariants after every step.

mod exits;
mod reload;

use std::time::Duration;

use super::status::millis;
use super::*;
use SupervisorAction::{Drain, Kill, Spawn, Stopped, Terminate};

fn ms(n: u64) -> Time {
    Time::from_millis(n)
}

/// A tiny driver: keeps the clock, hands out pids, drains actions and
/// checks the invariants after every step.
struct H {
    s: Supervisor,
    now: Time,
    next_pid: u32,
}

impl H {
    fn new(config: SupervisorConfig) -> (H, Vec<SupervisorAction>) {
        let s = Supervisor::new(config, Time::ZERO);
        let mut h = H {
            s,
            now: Time::ZERO,
            next_pid: 100,
        };
        let a = h.drain();
        (h, a)
    }

    fn drain(&mut self) -> Vec<SupervisorAction> {
        if let Err(e) = self.s.check_invariants() {
            panic!("invariant broken at {:?}: {e}\n{:#?}", self.now, self.s);
        }
        std::iter::from_fn(|| self.s.poll_action()).collect()
    }

    fn at(&mut self, t: u64) -> &mut Self {
        assert!(ms(t) >= self.now);
        self.now = ms(t);
        self
    }

    fn timeout(&mut self) -> Vec<SupervisorAction> {
        self.s.handle_timeout(self.now);
        self.drain()
    }

    /// Jumps to the next timeout and fires it.
    fn next_timeout(&mut self) -> Vec<SupervisorAction> {
        let t = self.s.poll_timeout().expect("a timeout is pending");
        assert!(t > self.now);
        self.now = t;
        self.timeout()
    }

    fn spawned(&mut self, spawn: SpawnId) -> (Pid, Vec<SupervisorAction>) {
        let pid = Pid(self.next_pid);
        self.next_pid += 1;
        self.s.handle_spawned(spawn, pid, self.now);
        (pid, self.drain())
    }

    /// Answers a spawn and makes the process ready.
    fn boot(&mut self, spawn: SpawnId) -> (Pid, Vec<SupervisorAction>) {
        let (pid, mut a) = self.spawned(spawn);
        self.s.handle_ready(pid, self.now);
        a.extend(self.drain());
        (pid, a)
    }

    fn ready(&mut self, pid: Pid) -> Vec<SupervisorAction> {
        self.s.handle_ready(pid, self.now);
        self.drain()
    }

    fn exit(&mut self, pid: Pid) -> Vec<SupervisorAction> {
        self.s.handle_exit(pid, self.now);
        self.drain()
    }

    fn served(&mut self, pid: Pid, n: u64) -> Vec<SupervisorAction> {
        self.s.handle_served(pid, n, self.now);
        self.drain()
    }

    fn idle(&mut self, pid: Pid) -> Vec<SupervisorAction> {
        self.s.handle_idle(pid, self.now);
        self.drain()
    }

    fn slot(&self, n: u32) -> SlotStatus {
        self.s
            .status(self.now)
            .slots
            .into_iter()
            .find(|s| s.slot == Slot(n))
            .expect("slot listed")
    }
}

fn spawns(actions: &[SupervisorAction]) -> Vec<(SpawnId, Slot, Version)> {
    actions
        .iter()
        .filter_map(|a| match *a {
            Spawn { spawn, slot, version } => Some((spawn, slot, version)),
            _ => None,
        })
        .collect()
}

fn one_spawn(actions: &[SupervisorAction]) -> SpawnId {
    let s = spawns(actions);
    assert_eq!(s.len(), 1, "expected one spawn in {actions:?}");
    s[0].0
}

fn config(workers: u32) -> SupervisorConfig {
    SupervisorConfig {
        workers,
        ..SupervisorConfig::default()
    }
}

/// Boots every spawn in `actions`; returns the pids in order.
fn boot_all(h: &mut H, actions: &[SupervisorAction]) -> Vec<Pid> {
    spawns(actions)
        .into_iter()
        .map(|(id, _, _)| {
            let (pid, a) = h.boot(id);
            assert!(a.is_empty(), "booting {id:?} gave {a:?}");
            pid
        })
        .collect()
}

#[test]
fn new_spawns_every_slot_at_version_one() {
    let (h, a) = H::new(config(3));
    assert_eq!(
        spawns(&a),
        vec![
            (SpawnId(1), Slot(0), Version(1)),
            (SpawnId(2), Slot(1), Version(1)),
            (SpawnId(3), Slot(2), Version(1)),
        ]
    );
    assert_eq!(h.s.desired(), 3);
    assert_eq!(h.s.generation(), Version(1));
    assert_eq!(h.slot(0).state, "starting");
}

#[test]
fn config_helpers() {
    let c = SupervisorConfig {
        backoff_max: Duration::from_millis(1000),
        ..config(1)
    };
    let delays: Vec<u128> = (0..8).map(|n| c.backoff_delay(n).as_millis()).collect();
    assert_eq!(delays, vec![0, 100, 200, 400, 800, 1000, 1000, 1000]);
    assert_eq!(c.backoff_delay(u32::MAX), Duration::from_millis(1000));
    let t = |m| {
        SupervisorConfig {
            max_requests: Some(m),
            ..config(1)
        }
        .recycle_threshold()
    };
    assert_eq!(t(1000), Some(900));
    assert_eq!(t(10), Some(9));
    assert_eq!(t(5), Some(4));
    assert_eq!(t(1), Some(1));
    assert_eq!(SupervisorConfig::default().recycle_threshold(), None);
}

#[test]
fn crash_loop_backoff_grows_and_caps() {
    let c = SupervisorConfig {
        backoff_max: Duration::from_millis(1600),
        ..config(1)
    };
    let (mut h, a) = H::new(c);
    let mut spawn = one_spawn(&a);
    let mut delays = Vec::new();
    for _ in 0..8 {
        let (pid, a) = h.spawned(spawn);
        assert!(a.is_empty());
        h.at(h.now.as_micros() / 1000 + 7);
        let crashed_at = h.now;
        assert!(h.exit(pid).is_empty(), "no respawn before the backoff");
        assert_eq!(h.slot(0).state, "backoff");
        let next = h.s.poll_timeout().unwrap();
        assert_eq!(
            h.slot(0).next_attempt_in_ms,
            Some(millis(next.saturating_since(crashed_at)))
        );
        let a = h.next_timeout();
        spawn = one_spawn(&a);
        delays.push(h.now.saturating_since(crashed_at).as_millis());
    }
    assert_eq!(delays, vec![100, 200, 400, 800, 1600, 1600, 1600, 1600]);
    assert_eq!(h.slot(0).crashes, 8);
    assert_eq!(h.slot(0).restarts, 8);
}

#[test]
fn crash_count_resets_only_after_a_stable_run() {
    let (mut h, a) = H::new(config(1));
    let mut spawn = one_spawn(&a);
    // Three crashes at boot: 100, 200, 400.
    for _ in 0..3 {
        let (pid, _) = h.spawned(spawn);
        let _ = h.exit(pid);
        spawn = one_spawn(&h.next_timeout());
    }
    assert_eq!(h.slot(0).crashes, 3);
    // Ready for 4.9 s, then crash: no reset, next delay 800 ms.
    let (pid, _) = h.boot(spawn);
    let t = h.now.as_micros() / 1000;
    h.at(t + 4_900);
    let _ = h.exit(pid);
    assert_eq!(h.slot(0).crashes, 4);
    assert_eq!(h.slot(0).next_attempt_in_ms, Some(800));
    spawn = one_spawn(&h.next_timeout());
    // Ready for 5 s: the count resets on the timer.
    let (pid, _) = h.boot(spawn);
    let ready_at = h.now;
    assert_eq!(h.s.poll_timeout(), Some(ready_at + Duration::from_secs(5)));
    let _ = h.next_timeout();
    assert_eq!(h.slot(0).crashes, 0);
    // The next crash starts over at 100 ms.
    let t = h.now.as_micros() / 1000;
    h.at(t + 1);
    let _ = h.exit(pid);
    assert_eq!(h.slot(0).crashes, 1);
    assert_eq!(h.slot(0).next_attempt_in_ms, Some(100));
}

#[test]
fn spawn_failure_and_missed_ready_timeout_are_crashes() {
    let (mut h, a) = H::new(config(1));
    h.s.handle_spawn_failed(one_spawn(&a), h.now);
    assert!(h.drain().is_empty());
    assert_eq!(h.slot(0).crashes, 1);
    let spawn = one_spawn(&h.next_timeout());
    assert_eq!(h.now, ms(100));
    let (pid, _) = h.spawned(spawn);
    // No join within 30 s of the spawn request: killed, crash 2, 200 ms.
    let a = h.next_timeout();
    assert_eq!(h.now, ms(30_100));
    assert_eq!(a, vec![Kill { pid }]);
    assert_eq!(h.slot(0).crashes, 2);
    assert_eq!(h.slot(0).state, "backoff");
    // The killed process's exit is expected: no extra crash.
    assert!(h.exit(pid).is_empty());
    assert_eq!(h.slot(0).crashes, 2);
    let a = h.next_timeout();
    assert_eq!(h.now, ms(30_300));
    assert_eq!(spawns(&a).len(), 1);
}

#[test]
fn a_crash_looping_slot_does_not_block_the_others() {
    let (mut h, a) = H::new(config(2));
    let s = spawns(&a);
    let (p1, _) = h.boot(s[1].0);
    let mut spawn = s[0].0;
    for _ in 0..5 {
        let (pid, _) = h.spawned(spawn);
        let _ = h.exit(pid);
        spawn = one_spawn(&h.next_timeout());
    }
    let st = h.s.status(h.now);
    assert_eq!(st.slots[1].state, "ready");
    assert_eq!(st.slots[1].pid, Some(p1));
    assert_eq!(st.slots[0].crashes, 5);
    assert_eq!(h.s.live_pids(), vec![p1]);
}

#[test]
fn planned_quit_respawns_at_once_without_crash() {
    let (mut h, a) = H::new(config(1));
    let (pid, _) = h.boot(one_spawn(&a));
    h.at(50);
    h.s.handle_quit(pid, h.now);
    let a = h.drain();
    let (_, slot, version) = spawns(&a)[0];
    assert_eq!((slot, version), (Slot(0), Version(1)));
    assert!(h.exit(pid).is_empty());
    assert_eq!(h.slot(0).crashes, 0);
    assert_eq!(h.slot(0).restarts, 1);
}

#[test]
fn recycle_starts_the_replacement_before_draining_the_old_worker() {
    let c = SupervisorConfig {
        max_requests: Some(10),
        ..config(1)
    };
    let (mut h, a) = H::new(c);
    let (old, _) = h.boot(one_spawn(&a));
    assert!(h.served(old, 8).is_empty());
    let a = h.served(old, 9);
    let (new_spawn, slot, version) = spawns(&a)[0];
    assert_eq!((a.len(), slot, version), (1, Slot(0), Version(1)));
    assert_eq!(h.s.status(h.now).recycling, 1);
    let (new, a) = h.spawned(new_spawn);
    assert!(a.is_empty(), "the old worker keeps serving while the replacement boots");
    assert_eq!(h.s.live_pids(), vec![old, new]);
    assert_eq!(h.ready(new), vec![Drain { pid: old }]);
    assert_eq!(h.slot(0).pid, Some(new));
    assert_eq!(h.idle(old), vec![Terminate { pid: old }]);
    assert!(h.exit(old).is_empty());
    assert_eq!(h.s.status(h.now).recycling, 0);
    assert_eq!(h.slot(0).crashes, 0);
    assert_eq!(h.slot(0).restarts, 1);
}

#[test]
fn recycle_terminated_worker_is_killed_after_stop_timeout() {
    let c = SupervisorConfig {
        max_requests: Some(10),
        ..config(1)
    };
    let (mut h, a) = H::new(c);
    let (old, _) = h.boot(one_spawn(&a));
    let a = h.served(old, 9);
    let (new, _) = h.spawned(one_spawn(&a));
    let _ = h.ready(new);
    let _ = h.idle(old);
    assert_eq!(h.next_timeout(), vec![Kill { pid: old }]);
    assert_eq!(h.now, ms(10_000));
}

#[test]
fn recycle_replacement_crash_keeps_the_old_worker_and_backs_off() {
    let c = SupervisorConfig {
        max_age: Some(Duration::from_secs(60)),
        ..config(1)
    };
    let (mut h, a) = H::new(c);
    let (old, _) = h.boot(one_spawn(&a));
    assert_eq!(h.s.poll_timeout(), Some(ms(60_000)));
    let a = h.next_timeout();
    let (new, _) = h.spawned(one_spawn(&a));
    assert!(h.exit(new).is_empty(), "no drain, no immediate retry");
    assert_eq!(h.slot(0).state, "ready");
    assert_eq!(h.slot(0).pid, Some(old));
    assert_eq!(h.slot(0).crashes, 1);
    assert_eq!(h.slot(0).next_attempt_in_ms, Some(100));
    let a = h.next_timeout();
    assert_eq!(h.now, ms(60_100));
    let (new, _) = h.spawned(one_spawn(&a));
    assert_eq!(h.ready(new), vec![Drain { pid: old }]);
}

#[test]
fn recycles_are_one_at_a_time_by_default() {
    let c = SupervisorConfig {
        max_age: Some(Duration::from_secs(10)),
        ..config(3)
    };
    let (mut h, a) = H::new(c);
    let olds = boot_all(&mut h, &a);
    let a = h.at(10_000).timeout();
    assert_eq!(spawns(&a).len(), 1, "one handover at a time");
    let (new, _) = h.boot(spawns(&a)[0].0);
    let _ = new;
    let _ = h.idle(olds[0]);
    // Still one handover in progress until the old process exits.
    assert!(h.at(10_500).timeout().is_empty());
    let a = h.exit(olds[0]);
    assert_eq!(spawns(&a).iter().map(|s| s.1).collect::<Vec<_>>(), vec![Slot(1)]);
}

#[test]
fn the_worker_quitting_at_its_budget_hands_over_to_the_booting_replacement() {
    let c = SupervisorConfig {
        max_requests: Some(10),
        ..config(1)
    };
    let (mut h, a) = H::new(c);
    let (old, _) = h.boot(one_spawn(&a));
    let a = h.served(old, 9);
    let (new, _) = h.spawned(one_spawn(&a));
    let _ = h.served(old, 10);
    h.s.handle_quit(old, h.now);
    assert!(h.drain().is_empty(), "the replacement already boots: no extra spawn");
    assert_eq!(h.slot(0).state, "starting");
    assert!(h.exit(old).is_empty());
    assert!(h.ready(new).is_empty());
    assert_eq!(h.slot(0).state, "ready");
}

#[test]
fn stuck_worker_is_killed_after_the_grace_and_replaced_at_once() {
    let (mut h, a) = H::new(config(1));
    let (pid, _) = h.boot(one_spawn(&a));
    h.at(1_000);
    h.s.handle_stuck(pid, h.now);
    assert!(h.drain().is_empty());
    assert_eq!(h.slot(0).state, "stuck");
    h.at(2_000);
    h.s.handle_unstuck(pid, h.now);
    assert!(h.drain().is_empty());
    assert_eq!(h.s.poll_timeout(), None);
    h.s.handle_stuck(pid, h.now);
    let _ = h.drain();
    let a = h.next_timeout();
    assert_eq!(h.now, ms(7_000));
    assert_eq!(a[0], Kill { pid });
    assert_eq!(spawns(&a).len(), 1);
    assert!(h.exit(pid).is_empty());
    assert_eq!(h.slot(0).crashes, 0);
    assert_eq!(h.slot(0).restarts, 1);
}

#[test]
fn rolling_restart_never_drains_old_workers_before_all_new_are_ready() {
    let (mut h, a) = H::new(config(3));
    let olds = boot_all(&mut h, &a);
    h.at(1_000);
    h.s.rolling_restart(h.now).unwrap();
    assert_eq!(
        h.s.rolling_restart(h.now),
        Err("a rolling restart is already in progress")
    );
    let a = h.drain();
    let s = spawns(&a);
    assert_eq!(
        s.iter().map(|s| (s.1, s.2)).collect::<Vec<_>>(),
        vec![(Slot(0), Version(2)), (Slot(1), Version(2))]
    );
    assert_eq!(a.len(), 2);
    assert_eq!(h.s.generation(), Version(1));
    assert_eq!(h.s.rolling_to(), Some(Version(2)));
    let (_, a) = h.boot(s[0].0);
    let s2 = spawns(&a);
    assert_eq!(
        s2.iter().map(|s| (s.1, s.2)).collect::<Vec<_>>(),
        vec![(Slot(2), Version(2))]
    );
    assert_eq!(a.len(), 1, "no drain yet: {a:?}");
    let (_, a) = h.boot(s[1].0);
    assert!(a.is_empty());
    let st = h.s.status(h.now).rolling.unwrap();
    assert_eq!((st.ready, st.total), (2, 3));
    let (_, a) = h.boot(s2[0].0);
    assert_eq!(a, olds.iter().map(|&pid| Drain { pid }).collect::<Vec<_>>());
    assert_eq!(h.s.generation(), Version(2));
    assert_eq!(h.s.status(h.now).last_roll.as_deref(), Some("completed: v1 -> v2"));
    for &pid in &olds {
        assert_eq!(h.idle(pid), vec![Terminate { pid }]);
        assert!(h.exit(pid).is_empty());
    }
    assert!(
        h.s.status(h.now)
            .slots
            .iter()
            .all(|s| s.state == "ready" && s.version == Some(Version(2)))
    );
}

#[test]
fn rolling_restart_abort_keeps_the_old_generation() {
    let (mut h, a) = H::new(config(3));
    let olds = boot_all(&mut h, &a);
    h.s.rolling_restart(h.now).unwrap();
    let s = spawns(&h.drain());
    assert_eq!(s.len(), 2, "two spawns at a time");
    let (ready_new, a) = h.boot(s[0].0);
    let s2 = spawns(&a);
    assert_eq!(s2.len(), 1, "slot 2's turn");
    let (booting_new, _) = h.spawned(s[1].0);
    // The v2 worker of slot 1 dies at boot: abort.
    let a = h.exit(booting_new);
    assert!(a.contains(&Drain { pid: ready_new }), "{a:?}");
    assert!(
        olds.iter()
            .all(|&pid| !a.contains(&Drain { pid }) && !a.contains(&Terminate { pid }))
    );
    assert!(spawns(&a).is_empty());
    assert_eq!(h.s.generation(), Version(1));
    assert_eq!(h.s.rolling_to(), None);
    let st = h.s.status(h.now);
    assert!(
        st.last_roll
            .as_deref()
            .unwrap()
            .starts_with("aborted: slot 1 v2 died before joining"),
        "{:?}",
        st.last_roll
    );
    assert!(
        st.slots
            .iter()
            .all(|s| s.state == "ready" && s.version == Some(Version(1)))
    );
    assert_eq!(
        st.slots[1].crashes, 0,
        "a failed new generation is not a crash of the slot"
    );
    // Slot 2's v2 spawn is cancelled, then terminated once it has started.
    let (late, a) = h.spawned(s2[0].0);
    assert_eq!(a, vec![Terminate { pid: late }]);
    assert!(h.exit(late).is_empty());
    // A later roll uses a fresh version.
    h.s.rolling_restart(h.now).unwrap();
    assert!(spawns(&h.drain()).iter().all(|s| s.2 == Version(3)));
}

#[test]
fn a_timer_handled_late_still_fires() {
    // The driver's sleep can overshoot (a busy machine, a suspended VM): a
    // deadline already past when the timeout is handled must fire all the same.
    let (mut h, a) = H::new(config(1));
    let (pid, _) = h.spawned(one_spawn(&a));
    let deadline = h.s.poll_timeout().expect("the ready timeout");
    h.at(deadline.as_micros() / 1_000 + 5_000);
    assert_eq!(h.timeout(), vec![Kill { pid }]);
    assert_eq!(h.slot(0).crashes, 1);
}

#[test]
fn rolling_restart_missing_the_ready_timeout_aborts() {
    let (mut h, a) = H::new(config(1));
    let old = boot_all(&mut h, &a)[0];
    h.s.rolling_restart(h.now).unwrap();
    let a = h.drain();
    let (new, _) = h.spawned(one_spawn(&a));
    let a = h.next_timeout();
    assert_eq!(a, vec![Kill { pid: new }]);
    assert_eq!(h.slot(0).pid, Some(old));
    assert_eq!(h.s.generation(), Version(1));
    assert!(
        h.s.status(h.now)
            .last_roll
            .unwrap()
            .contains("missed the ready timeout")
    );
}

#[test]
fn an_old_worker_crashing_during_a_roll_is_replaced_at_the_new_version() {
    let c = SupervisorConfig {
        max_concurrent_spawns: 1,
        ..config(2)
    };
    let (mut h, a) = H::new(c);
    let olds = boot_all(&mut h, &a);
    h.s.rolling_restart(h.now).unwrap();
    let s = spawns(&h.drain());
    assert_eq!(s.len(), 1);
    let (_new0, a) = h.boot(s[0].0);
    assert_eq!(
        spawns(&a).iter().map(|s| (s.1, s.2)).collect::<Vec<_>>(),
        vec![(Slot(1), Version(2))]
    );
    assert_eq!(h.s.status(h.now).slots[1].processes.len(), 2);
    // The old worker of slot 1 crashes: its v2 replacement takes the slot.
    let a = h.at(10).exit(olds[1]);
    assert!(spawns(&a).is_empty(), "{a:?}");
    assert_eq!(h.slot(1).state, "starting");
    assert_eq!(h.slot(1).version, Some(Version(2)));
}

#[test]
fn old_worker_crash_without_replacement_respawns_at_the_new_version() {
    let c = SupervisorConfig {
        max_concurrent_spawns: 1,
        ..config(2)
    };
    let (mut h, a) = H::new(c);
    let olds = boot_all(&mut h, &a);
    h.s.rolling_restart(h.now).unwrap();
    let _ = h.drain();
    let _ = h.at(10).exit(olds[1]);
    let a = h.next_timeout();
    assert_eq!(
        spawns(&a).iter().map(|s| (s.1, s.2)).collect::<Vec<_>>(),
        vec![(Slot(1), Version(2))]
    );
}

#[test]
fn scale_up_and_down() {
    let (mut h, a) = H::new(config(2));
    let pids = boot_all(&mut h, &a);
    h.s.scale_by(1, h.now);
    let a = h.drain();
    assert_eq!(spawns(&a).iter().map(|s| s.1).collect::<Vec<_>>(), vec![Slot(2)]);
    let p2 = boot_all(&mut h, &a)[0];
    h.s.scale_to(1, h.now);
    assert_eq!(h.drain(), vec![Drain { pid: p2 }, Drain { pid: pids[1] }]);
    assert_eq!(h.s.desired(), 1);
    assert_eq!(h.slot(2).state, "draining");
    assert_eq!(h.idle(p2), vec![Terminate { pid: p2 }]);
    assert_eq!(h.slot(2).state, "stopping");
    let _ = h.exit(p2);
    h.s.scale_by(-5, h.now);
    assert!(h.drain().is_empty());
    assert_eq!(h.s.desired(), 1);
    assert_eq!(h.s.status(h.now).slots.len(), 2, "slot 1 still drains");
}

#[test]
fn stop_terminates_everything_and_emits_stopped_once() {
    let (mut h, a) = H::new(config(3));
    let s = spawns(&a);
    let (p0, _) = h.boot(s[0].0);
    let (p1, _) = h.spawned(s[1].0);
    // s[2] not answered yet.
    h.at(5);
    assert!(!h.s.is_stopping() && !h.s.is_stopped());
    assert!(!h.s.is_leaving(p0) && !h.s.is_leaving(p1));
    h.s.stop(h.now);
    assert_eq!(h.drain(), vec![Terminate { pid: p0 }, Terminate { pid: p1 }]);
    assert!(h.s.is_stopping());
    assert!(!h.s.is_stopped(), "workers still alive");
    // A process told to stop while booting is refused when it joins.
    assert!(h.s.is_leaving(p0) && h.s.is_leaving(p1));
    assert_eq!(h.s.rolling_restart(h.now), Err("stopping"));
    let (p2, a) = h.spawned(s[2].0);
    assert_eq!(a, vec![Terminate { pid: p2 }]);
    assert!(h.exit(p0).is_empty());
    assert!(h.exit(p2).is_empty());
    assert_eq!(h.next_timeout(), vec![Kill { pid: p1 }]);
    assert_eq!(h.now, ms(10_005));
    assert_eq!(h.exit(p1), vec![Stopped]);
    h.s.stop(h.now);
    assert!(h.timeout().is_empty());
    assert!(h.s.is_stopped());
    assert!(h.s.live_pids().is_empty());
}

#[test]
fn stop_with_nothing_alive_is_immediate() {
    let (mut h, a) = H::new(config(1));
    h.s.handle_spawn_failed(one_spawn(&a), h.now);
    let _ = h.drain();
    h.s.stop(h.now);
    assert_eq!(h.drain(), vec![Stopped]);
    h.s.scale_by(1, h.now);
    assert!(h.timeout().is_empty());
}

#[test]
fn status_serialises_for_the_status_page() {
    let (mut h, a) = H::new(config(2));
    let s = spawns(&a);
    let (p0, _) = h.boot(s[0].0);
    h.s.handle_spawn_failed(s[1].0, h.now);
    let _ = h.drain();
    h.s.rolling_restart(h.now).unwrap();
    let a = h.drain();
    let (new, _) = h.spawned(one_spawn(&a));
    let _ = h.exit(new);
    let v = serde_json::to_value(h.s.status(h.now)).unwrap();
    assert_eq!(v["desired"], 2);
    assert_eq!(v["generation"], 1);
    assert_eq!(v["rolling"], serde_json::Value::Null);
    assert_eq!(v["last_roll"]["outcome"], "aborted");
    assert_eq!(v["last_roll"]["from"], 1);
    assert_eq!(v["last_roll"]["to"], 2);
    assert_eq!(v["last_roll"]["message"], "aborted: slot 0 v2 died before joining");
    assert_eq!(v["slots"][0]["state"], "ready");
    assert_eq!(v["slots"][0]["pid"], p0.0);
    assert_eq!(v["slots"][0]["processes"][0]["role"], "primary");
    assert_eq!(v["slots"][1]["state"], "backoff");
    assert_eq!(v["slots"][1]["crashes"], 1);
    assert_eq!(v["slots"][1]["next_attempt_in_ms"], 100);
    assert_eq!(v["slots"][1]["backoff_ms"], 100);
    let last = h.s.status(h.now).last_roll.unwrap();
    assert!(last.starts_with("aborted"));
    assert_eq!(last.to_string(), last.message);
}

#[test]
fn illegal_transitions_are_rejected() {
    let mut s = ProcState::Spawning {
        deadline: ms(1),
        cancelled: false,
    };
    assert!(s.on_ready(ms(0)).is_err());
    assert!(s.on_idle(ms(0), Duration::ZERO).is_err());
    assert_eq!(s.on_spawned(ms(0), Duration::ZERO), Ok(false));
    assert!(s.on_spawned(ms(0), Duration::ZERO).is_err());
    assert!(s.on_drain().is_err());
    s.on_ready(ms(0)).unwrap();
    assert!(!s.exit_is_planned());
    s.on_drain().unwrap();
    assert!(s.exit_is_planned());
    let e = s.on_ready(ms(0)).unwrap_err();
    assert_eq!(e.to_string(), "event ready is illegal in state draining");
    s.on_kill().unwrap();
    assert!(s.on_kill().is_err());
    let mut slot = SlotState::Vacant;
    assert!(slot.on_replacement_ready().is_err());
    assert!(slot.on_primary_lost().is_err());
    slot.on_spawn_primary(SpawnId(1)).unwrap();
    assert!(slot.on_spawn_primary(SpawnId(2)).is_err());
    assert!(slot.on_wait_backoff().is_err());
}
