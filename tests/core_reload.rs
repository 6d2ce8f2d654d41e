//! Hot reload through `core::Node`: file-change notifications are debounced
//! into bursts, and each burst becomes a rolling restart (process mode, one
//! more after the roll in progress) or a module reload of the workers
//! (module mode), never anything in mode `none` or once stopping.
//!
//! A tiny world answers the node: spawns start at once, every started
//! process joins when the test says so, a terminated or killed process exits
//! at once. The invariants of both halves are checked after every step.

use std::collections::BTreeSet;
use std::time::Duration;

use rip_server::core::balancer::{Balancer, BalancerConfig, WorkerInfo};
use rip_server::core::node::{Node, Output};
use rip_server::core::reload::{DEBOUNCE_MAX_WAIT, DEBOUNCE_QUIET, ReloadMode};
use rip_server::core::supervisor::{Supervisor, SupervisorAction, SupervisorConfig};
use rip_server::core::{Pid, Slot, Time, Version};

fn ms(n: u64) -> Time {
    Time::from_millis(n)
}

struct World {
    node: Node,
    now: Time,
    next_pid: u32,
    /// Started, not joined yet.
    booting: Vec<(Pid, Slot, Version)>,
    /// Every generation a process was started at.
    versions: BTreeSet<Version>,
    /// `Reload` signals, in order.
    reloads: Vec<Pid>,
}

impl World {
    fn new(workers: u32, mode: ReloadMode) -> World {
        let balancer = Balancer::new(BalancerConfig {
            desired_workers: workers,
            ..BalancerConfig::default()
        });
        let supervisor = Supervisor::new(
            SupervisorConfig {
                workers,
                ..SupervisorConfig::default()
            },
            Time::ZERO,
        );
        let mut node = Node::new(balancer, supervisor);
        assert_eq!(node.reload_mode(), ReloadMode::None, "the default");
        node.set_reload_mode(mode);
        let mut w = World {
            node,
            now: Time::ZERO,
            next_pid: 100,
            booting: Vec::new(),
            versions: BTreeSet::new(),
            reloads: Vec::new(),
        };
        w.pump();
        w
    }

    /// Carries out everything the node asks for.
    fn pump(&mut self) {
        let now = self.now;
        while let Some(output) = self.node.poll() {
            match output {
                Output::Process(SupervisorAction::Spawn { spawn, slot, version }) => {
                    let pid = Pid(self.next_pid);
                    self.next_pid += 1;
                    self.node.supervisor.handle_spawned(spawn, pid, now);
                    self.booting.push((pid, slot, version));
                    self.versions.insert(version);
                }
                Output::Process(SupervisorAction::Terminate { pid } | SupervisorAction::Kill { pid }) => {
                    self.booting.retain(|b| b.0 != pid);
                    self.node.handle_exit(pid, now);
                }
                Output::Process(SupervisorAction::Reload { pid }) => self.reloads.push(pid),
                Output::Process(SupervisorAction::Drain { .. }) => panic!("Drain leaked out of the node"),
                Output::Process(SupervisorAction::Stopped) | Output::Request(_) | Output::Event(_) => {}
            }
        }
        self.node.balancer.check_invariants().expect("balancer invariants");
        self.node.supervisor.check_invariants().expect("supervisor invariants");
        if let Some(t) = self.node.poll_timeout() {
            assert!(t > now, "deadline {t:?} not after {now:?}");
        }
    }

    /// Moves the clock to `t`, firing every deadline on its time.
    fn advance_to(&mut self, t: u64) {
        let target = ms(t);
        while let Some(due) = self.node.poll_timeout()
            && due <= target
        {
            self.now = due;
            self.node.handle_timeout(due);
            self.pump();
        }
        self.now = target;
        self.node.handle_timeout(target);
        self.pump();
    }

    fn change_at(&mut self, t: u64) {
        self.advance_to(t);
        self.node.handle_files_changed(self.now);
        self.pump();
    }

    /// Every started process joins (`accepts_reload` as given).
    fn join_all(&mut self, accepts_reload: bool) {
        for (pid, slot, version) in std::mem::take(&mut self.booting) {
            let info = WorkerInfo {
                pid,
                slot,
                version,
                socket: format!("/tmp/w{}", pid.0),
            };
            self.node.handle_join(info, accepts_reload, self.now).expect("join");
            self.pump();
        }
    }

    /// Generations started after the first.
    fn rolls_started(&self) -> Vec<u64> {
        self.versions.iter().map(|v| v.0).filter(|&v| v > 1).collect()
    }
}

#[test]
fn twenty_changes_within_100_ms_start_exactly_one_roll() {
    let mut w = World::new(2, ReloadMode::Process);
    w.join_all(false);
    for i in 0..20 {
        w.change_at(1_000 + i * 5);
    }
    let last = ms(1_095);
    assert_eq!(
        w.node.poll_timeout(),
        Some(last + DEBOUNCE_QUIET),
        "the debounce deadline is polled"
    );
    w.advance_to(1_294);
    assert!(w.rolls_started().is_empty(), "not before the quiet period");
    w.advance_to(1_295);
    assert_eq!(w.node.supervisor.rolling_to(), Some(Version(2)));
    w.join_all(false);
    w.advance_to(30_000);
    assert_eq!(w.rolls_started(), vec![2]);
    assert_eq!(w.node.supervisor.generation(), Version(2));
    assert!(w.reloads.is_empty());
}

#[test]
fn bursts_during_a_roll_give_exactly_one_more_roll_after_it() {
    let mut w = World::new(2, ReloadMode::Process);
    w.join_all(false);
    w.change_at(1_000);
    w.advance_to(1_200);
    assert_eq!(w.node.supervisor.rolling_to(), Some(Version(2)));
    // Three separate bursts while v2 boots.
    for t in [1_500, 2_000, 2_500] {
        w.change_at(t);
        w.advance_to(t + 300);
        assert!(w.node.is_roll_pending());
        assert_eq!(w.node.supervisor.rolling_to(), Some(Version(2)), "one roll at a time");
    }
    // v2 joins: the roll completes and the pending one starts at once.
    w.join_all(false);
    assert_eq!(w.node.supervisor.generation(), Version(2));
    assert_eq!(w.node.supervisor.rolling_to(), Some(Version(3)));
    assert!(!w.node.is_roll_pending());
    w.join_all(false);
    w.advance_to(60_000);
    assert_eq!(w.rolls_started(), vec![2, 3], "exactly one more roll");
    assert_eq!(w.node.supervisor.generation(), Version(3));
}

#[test]
fn a_pending_roll_starts_when_the_roll_in_progress_aborts() {
    let mut w = World::new(1, ReloadMode::Process);
    w.join_all(false);
    w.change_at(1_000);
    w.advance_to(1_200);
    w.change_at(1_300);
    w.advance_to(1_500);
    assert!(w.node.is_roll_pending());
    // The v2 worker dies before joining: the roll aborts, the next starts.
    let (pid, _, version) = w.booting.pop().expect("v2 boots");
    assert_eq!(version, Version(2));
    w.node.handle_exit(pid, w.now);
    w.pump();
    let last = w.node.supervisor.status(w.now).last_roll.expect("ended");
    assert_eq!(last.outcome, "aborted");
    assert_eq!(w.node.supervisor.rolling_to(), Some(Version(3)));
    w.join_all(false);
    assert_eq!(w.node.supervisor.generation(), Version(3));
}

#[test]
fn module_mode_sends_one_reload_per_burst_through_poll() {
    let mut w = World::new(2, ReloadMode::Module);
    w.join_all(true);
    let pids = w.node.supervisor.live_pids();
    for t in (1_000..1_150).step_by(10) {
        w.change_at(t);
    }
    w.advance_to(1_339);
    assert!(w.reloads.is_empty(), "not before the quiet period");
    w.advance_to(1_340);
    assert_eq!(w.reloads, pids, "one Reload per worker, as Output::Process");
    assert!(w.rolls_started().is_empty());
    w.advance_to(10_000);
    assert_eq!(w.reloads.len(), 2, "nothing more without a change");
}

#[test]
fn a_file_rewritten_without_pause_reloads_every_max_wait() {
    let mut w = World::new(1, ReloadMode::Module);
    w.join_all(true);
    let cap = DEBOUNCE_MAX_WAIT.as_millis() as u64;
    let mut fired_at = Vec::new();
    for t in (0..5_000).step_by(100) {
        w.change_at(t);
        if w.reloads.len() > fired_at.len() {
            fired_at.push(w.now.as_micros() / 1_000);
        }
    }
    w.advance_to(10_000);
    assert_eq!(fired_at, vec![cap, 2 * cap]);
    assert_eq!(w.reloads.len(), 3, "and the last burst once the writes stop");
}

#[test]
fn mode_none_ignores_changes() {
    let mut w = World::new(1, ReloadMode::None);
    w.join_all(true);
    let before = w.node.poll_timeout();
    w.change_at(1_000);
    assert_eq!(w.node.poll_timeout(), before, "no debounce timer");
    w.advance_to(10_000);
    assert!(w.rolls_started().is_empty() && w.reloads.is_empty());

    // Switching to none forgets a pending burst.
    let mut w = World::new(1, ReloadMode::Module);
    w.join_all(true);
    w.change_at(1_000);
    assert_eq!(w.node.poll_timeout(), Some(ms(1_200)));
    w.node.set_reload_mode(ReloadMode::None);
    w.advance_to(10_000);
    assert!(w.reloads.is_empty());
}

#[test]
fn changes_are_ignored_once_stopping() {
    let mut w = World::new(1, ReloadMode::Process);
    w.join_all(false);
    // A burst pending when the stop begins is dropped too.
    w.change_at(1_000);
    w.node.begin_stop(w.now);
    w.pump();
    w.change_at(1_050);
    w.advance_to(60_000);
    assert!(w.node.supervisor.is_stopped());
    assert!(w.rolls_started().is_empty());
    assert!(!w.node.is_roll_pending());
}

#[test]
fn a_change_after_a_missed_deadline_fires_the_old_burst_first() {
    // The driver was late: the first burst's end has passed unhandled
    // when the next change comes. That burst reloads now; the change starts
    // a new one.
    let mut w = World::new(1, ReloadMode::Module);
    w.join_all(true);
    w.node.handle_files_changed(ms(1_000));
    w.now = ms(5_000);
    w.node.handle_files_changed(w.now);
    w.pump();
    assert_eq!(w.reloads.len(), 1);
    assert_eq!(w.node.poll_timeout(), Some(ms(5_000) + Duration::from_millis(200)));
    w.advance_to(5_200);
    assert_eq!(w.reloads.len(), 2);
}
