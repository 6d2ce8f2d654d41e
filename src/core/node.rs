//! One app's whole core: the [`Balancer`] and the [`Supervisor`] wired
//! together, still sans-IO.
//!
//! The balancer's news (a worker served a request, got stuck, drained) feeds
//! the supervisor; the supervisor's `Drain` decisions feed the balancer; a
//! requested stop becomes the supervisor's stop once the balancer has
//! finished every queued and in-flight request. Everything that must leave
//! the core (dispatch, answer, spawn, signal) comes out of [`Node::poll`].
//! The driver task runs exactly this wiring, and so do the property tests.
//!
//! Hot reload is wired here too: file-change notifications
//! ([`Node::handle_files_changed`]) are debounced ([`Debounce`]) and each
//! burst becomes, by [`ReloadMode`], a rolling restart (one more after the
//! roll in progress, if any) or a module reload of the workers.

use std::collections::VecDeque;

use super::balancer::{Action, Balancer, JoinError, WorkerEvent, WorkerInfo};
use super::reload::{Debounce, ReloadMode};
use super::supervisor::{AppErrorPhase, Supervisor, SupervisorAction};
use super::{Pid, Time};

/// Something the caller must carry out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Dispatch or answer a request.
    Request(Action),
    /// Spawn, signal (`Reload` included), or report the stop finished
    /// (never `Drain`: the node carries that out itself).
    Process(SupervisorAction),
    /// News worth logging or cleaning up after (`Removed` frees a worker's
    /// connection).
    Event(WorkerEvent),
}

/// The balancer and the supervisor of one app, wired together.
#[derive(Debug)]
pub struct Node {
    /// The load balancer. Feed request inputs to it directly.
    pub balancer: Balancer,
    /// The supervisor. Feed process inputs to it directly.
    pub supervisor: Supervisor,
    outputs: VecDeque<Output>,
    stop_requested: bool,
    stop_sent: bool,
    /// When a graceful stop stops waiting for requests.
    stop_deadline: Option<Time>,
    now: Time,
    reload_mode: ReloadMode,
    /// Coalesces file-change notifications into reload bursts.
    debounce: Debounce,
    /// A process-mode burst came during a rolling restart: one more roll
    /// starts when that one has ended.
    roll_pending: bool,
}

impl Node {
    /// Wires a balancer and a supervisor.
    pub fn new(balancer: Balancer, supervisor: Supervisor) -> Node {
        Node {
            balancer,
            supervisor,
            outputs: VecDeque::new(),
            stop_requested: false,
            stop_sent: false,
            stop_deadline: None,
            now: Time::ZERO,
            reload_mode: ReloadMode::None,
            debounce: Debounce::new(),
            roll_pending: false,
        }
    }

    /// Sets the time used to route news between the two halves. Call with
    /// the `now` of every input, before draining [`Node::poll`].
    pub fn tick(&mut self, now: Time) {
        self.now = self.now.max(now);
    }

    /// A worker joined: it enters the pool and the supervisor counts it
    /// ready. `accepts_reload`: its join said it handles the module-reload
    /// signal.
    pub fn handle_join(&mut self, info: WorkerInfo, accepts_reload: bool, now: Time) -> Result<(), JoinError> {
        self.tick(now);
        let pid = info.pid;
        // Only a process the manager started may join, and only for its slot.
        match self.supervisor.slot_of(pid) {
            None => return Err(JoinError::Unknown(pid)),
            Some(slot) if slot != info.slot => return Err(JoinError::WrongSlot { pid, slot }),
            Some(_) => {}
        }
        if self.supervisor.is_leaving(pid) {
            // Told to stop while it was booting: it never enters the pool.
            return Err(JoinError::NotWanted(pid));
        }
        self.balancer.handle_join(info, now)?;
        self.supervisor.handle_ready_with_reload(pid, accepts_reload, now);
        Ok(())
    }

    /// A worker reported that its app failed to load or to reload (see
    /// [`Supervisor::handle_app_error`]; unknown pids are ignored).
    pub fn handle_app_error(&mut self, pid: Pid, phase: AppErrorPhase, message: String, now: Time) {
        self.tick(now);
        self.supervisor.handle_app_error(pid, phase, message, now);
    }

    /// A worker reported a successful module reload (see
    /// [`Supervisor::handle_reloaded`]; unknown pids are ignored).
    pub fn handle_reloaded(&mut self, pid: Pid, reloads: u64, now: Time) {
        self.tick(now);
        self.supervisor.handle_reloaded(pid, reloads, now);
    }

    /// How file changes are followed (default [`ReloadMode::None`]).
    /// Switching to `None` forgets a pending burst and a pending roll.
    pub fn set_reload_mode(&mut self, mode: ReloadMode) {
        self.reload_mode = mode;
        if mode == ReloadMode::None {
            self.debounce.clear();
            self.roll_pending = false;
        }
    }

    /// The reload mode in force.
    pub fn reload_mode(&self) -> ReloadMode {
        self.reload_mode
    }

    /// A file of the app changed (the watcher already filtered what does
    /// not count). The reload happens once the burst of changes is over
    /// (see [`Debounce`]); ignored in mode `None` and once stopping.
    pub fn handle_files_changed(&mut self, now: Time) {
        self.tick(now);
        if self.reload_mode == ReloadMode::None || self.stop_requested {
            return;
        }
        // A burst already over ends here, so this change starts the next one.
        self.fire_reload_if_due(now);
        self.debounce.handle_change(now);
    }

    /// Whether a process-mode roll waits for the current one to end.
    pub fn is_roll_pending(&self) -> bool {
        self.roll_pending
    }

    /// A worker quit on its own.
    pub fn handle_quit(&mut self, pid: Pid, now: Time) {
        self.tick(now);
        self.balancer.handle_quit(pid, now);
        self.supervisor.handle_quit(pid, now);
    }

    /// A worker process exited.
    pub fn handle_exit(&mut self, pid: Pid, now: Time) {
        self.tick(now);
        self.balancer.handle_exit(pid, now);
        self.supervisor.handle_exit(pid, now);
    }

    /// Changes the worker count by `delta` (SIGTTIN / SIGTTOU).
    pub fn scale_by(&mut self, delta: i32, now: Time) {
        self.tick(now);
        self.supervisor.scale_by(delta, now);
        self.balancer.set_desired_workers(self.supervisor.desired(), now);
    }

    /// Sets the worker count.
    pub fn scale_to(&mut self, n: u32, now: Time) {
        self.tick(now);
        self.supervisor.scale_to(n, now);
        self.balancer.set_desired_workers(self.supervisor.desired(), now);
    }

    /// Begins a graceful stop: no new requests; queued and in-flight ones
    /// finish; then the workers stop and `Process(Stopped)` comes out.
    ///
    /// The wait for requests is bounded by the supervisor's stop timeout:
    /// past it, queued requests get `503 no_capacity` and the workers are
    /// stopped anyway (a request still running then ends with its worker).
    pub fn begin_stop(&mut self, now: Time) {
        self.tick(now);
        self.debounce.clear();
        self.roll_pending = false;
        if !self.stop_requested {
            self.stop_deadline = Some(now + self.supervisor.config().stop_timeout);
        }
        self.stop_requested = true;
        self.balancer.begin_stop(now);
    }

    /// The balancer (also the public field `balancer`): its
    /// [`Balancer::stats`] feed `/status`, `/metrics` and the dashboard.
    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }

    /// The supervisor (also the public field `supervisor`): its
    /// [`Supervisor::exit_counts`] feed `/metrics` and the dashboard.
    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    /// Illegal transitions of both halves ([`Balancer::illegal_transitions`]
    /// plus [`Supervisor::illegal_transitions`]); 0 unless the core has a bug.
    pub fn illegal_transitions(&self) -> u64 {
        self.balancer.illegal_transitions() + self.supervisor.illegal_transitions()
    }

    /// Whether a stop was requested.
    pub fn is_stopping(&self) -> bool {
        self.stop_requested
    }

    /// Fires both halves' deadlines.
    pub fn handle_timeout(&mut self, now: Time) {
        self.tick(now);
        self.balancer.handle_timeout(now);
        self.supervisor.handle_timeout(now);
        self.fire_reload_if_due(now);
        if !self.stop_sent && self.stop_deadline.is_some_and(|d| d <= now) {
            self.balancer.abandon_queue(now);
            self.stop_sent = true;
            self.supervisor.stop(now);
        }
    }

    /// The earliest deadline of either half, the stop and the reload debounce.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        let stop = if self.stop_sent { None } else { self.stop_deadline };
        let reload = self.debounce.poll_timeout();
        [
            self.balancer.poll_timeout(),
            self.supervisor.poll_timeout(),
            stop,
            reload,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next thing to carry out. Drain until `None` after every input.
    #[must_use]
    pub fn poll(&mut self) -> Option<Output> {
        loop {
            if let Some(output) = self.outputs.pop_front() {
                return Some(output);
            }
            if !self.route() {
                return None;
            }
        }
    }

    /// Reloads if a burst of file changes is over.
    fn fire_reload_if_due(&mut self, now: Time) {
        if !self.debounce.handle_timeout(now) || self.stop_requested {
            return;
        }
        match self.reload_mode {
            ReloadMode::None => {}
            ReloadMode::Process => self.roll_pending = true,
            ReloadMode::Module => self.supervisor.reload_workers(now),
        }
        self.start_pending_roll();
    }

    /// Starts the pending process-mode roll unless one is in progress; true
    /// if it started.
    fn start_pending_roll(&mut self) -> bool {
        if !self.roll_pending || self.supervisor.rolling_to().is_some() {
            return false;
        }
        self.roll_pending = false;
        // Fails only once stopping, and then no roll is wanted anyway.
        self.supervisor.rolling_restart(self.now).is_ok()
    }

    /// Moves news between the halves; true if anything moved.
    fn route(&mut self) -> bool {
        let now = self.now;
        // A roll that ended with the last input lets the pending one start.
        let mut moved = self.start_pending_roll();
        while let Some(action) = self.balancer.poll_action() {
            moved = true;
            self.outputs.push_back(Output::Request(action));
        }
        while let Some(event) = self.balancer.poll_worker_event() {
            moved = true;
            match event {
                WorkerEvent::Served { pid, count } => self.supervisor.handle_served(pid, count, now),
                WorkerEvent::Stuck { pid } => self.supervisor.handle_stuck(pid, now),
                WorkerEvent::Unstuck { pid } => self.supervisor.handle_unstuck(pid, now),
                WorkerEvent::Idle { pid } => self.supervisor.handle_idle(pid, now),
                WorkerEvent::Removed { .. } | WorkerEvent::VersionActivated { .. } => {}
            }
            if !matches!(event, WorkerEvent::Served { .. }) {
                self.outputs.push_back(Output::Event(event));
            }
        }
        while let Some(action) = self.supervisor.poll_action() {
            moved = true;
            match action {
                SupervisorAction::Drain { pid } => self.balancer.handle_drain(pid, now),
                other => self.outputs.push_back(Output::Process(other)),
            }
        }
        if self.stop_requested && !self.stop_sent && self.balancer.is_drained() {
            self.stop_sent = true;
            self.supervisor.stop(now);
            moved = true;
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::balancer::{BalancerConfig, RequestMeta};
    use crate::core::supervisor::{ExitCause, SupervisorConfig};
    use crate::core::{RequestId, Slot, Version};

    fn ms(n: u64) -> Time {
        Time::from_millis(n)
    }

    /// A node with one worker booted and joined as `Pid(7)`.
    /// A default node whose first spawn has started as pid 7 (not joined yet).
    fn node_with_pid_7_started() -> Node {
        let mut node = Node::new(
            Balancer::new(BalancerConfig::default()),
            Supervisor::new(SupervisorConfig::default(), Time::ZERO),
        );
        let spawn = match node.poll() {
            Some(Output::Process(SupervisorAction::Spawn { spawn, .. })) => spawn,
            other => panic!("expected a spawn, got {other:?}"),
        };
        node.supervisor.handle_spawned(spawn, Pid(7), ms(1));
        node
    }

    fn node_with_a_worker() -> Node {
        let mut node = node_with_pid_7_started();
        let info = WorkerInfo {
            pid: Pid(7),
            slot: Slot(0),
            version: Version(1),
            socket: "/tmp/w0.sock".into(),
        };
        node.handle_join(info, false, ms(2)).unwrap();
        while node.poll().is_some() {}
        node
    }

    #[test]
    fn illegal_transitions_of_both_halves_add_up() {
        let mut node = node_with_a_worker();
        node.balancer.handle_request(RequestId(1), RequestMeta::GET, ms(3));
        node.balancer.handle_client_gone(RequestId(1), ms(4));
        node.balancer.handle_response_head(RequestId(1), ms(5));
        assert_eq!(node.illegal_transitions(), 0);
        // The worker answered, so it cannot give the request back unused.
        node.balancer.handle_dispatch_unused(RequestId(1), ms(6));
        assert_eq!(node.balancer().illegal_transitions(), 1);
        assert_eq!(node.supervisor().illegal_transitions(), 0);
        assert_eq!(node.illegal_transitions(), 1);
    }

    #[test]
    fn the_node_shows_both_halves_counts() {
        let mut node = node_with_a_worker();
        node.balancer.handle_request(RequestId(1), RequestMeta::GET, ms(3));
        node.handle_exit(Pid(7), ms(4));
        node.balancer.handle_failed_after_send(RequestId(1), ms(4));
        while node.poll().is_some() {}
        assert_eq!(node.balancer().stats().answered(crate::core::Answer::UpstreamError), 1);
        assert_eq!(node.balancer().stats().dispatches, 1);
        assert_eq!(node.supervisor().exit_counts()[&ExitCause::Crash], 1);
    }

    /// Spawns and joins the worker of `slot` as `pid` on the supervisor's
    /// next `Spawn`.
    fn join_next_spawn(node: &mut Node, pid: u32, slot: u32, now: Time) {
        let spawn = std::iter::from_fn(|| node.poll())
            .find_map(|o| match o {
                Output::Process(SupervisorAction::Spawn { spawn, .. }) => Some(spawn),
                _ => None,
            })
            .expect("a spawn");
        node.supervisor.handle_spawned(spawn, Pid(pid), now);
        let info = WorkerInfo {
            pid: Pid(pid),
            slot: Slot(slot),
            version: Version(1),
            socket: format!("/tmp/w{slot}.sock"),
        };
        node.handle_join(info, false, now).unwrap();
        while node.poll().is_some() {}
    }

    #[test]
    fn only_a_process_the_manager_started_joins_and_only_for_its_slot() {
        let mut node = node_with_pid_7_started();
        let info = |pid: u32, slot: u32| WorkerInfo {
            pid: Pid(pid),
            slot: Slot(slot),
            version: Version(1),
            socket: "/tmp/w0.sock".into(),
        };
        assert_eq!(
            node.handle_join(info(8, 0), false, ms(2)),
            Err(JoinError::Unknown(Pid(8)))
        );
        assert_eq!(
            node.handle_join(info(7, 1), false, ms(2)),
            Err(JoinError::WrongSlot {
                pid: Pid(7),
                slot: Slot(0)
            })
        );
        assert_eq!(node.balancer.registered(), 0, "refused joins never enter the pool");
        assert_eq!(node.handle_join(info(7, 0), false, ms(2)), Ok(()));
        assert_eq!(node.balancer.registered(), 1);
    }

    #[test]
    fn is_stopping_turns_on_with_begin_stop() {
        let mut node = node_with_a_worker();
        assert!(!node.is_stopping());
        node.begin_stop(ms(3));
        assert!(node.is_stopping());
    }

    #[test]
    fn news_routed_from_the_balancer_reaches_the_supervisor_with_the_time_of_the_input() {
        // The driver feeds request outcomes to the balancer directly and
        // ticks the node; a drained worker's `Idle` then reaches the
        // supervisor through `route`, which must stamp it with that time:
        // the stop timeout of the worker runs from when it went idle.
        let mut node = node_with_a_worker();
        node.scale_to(2, ms(3));
        join_next_spawn(&mut node, 8, 1, ms(4));
        for id in 1..=2 {
            node.balancer.handle_request(RequestId(id), RequestMeta::GET, ms(5));
        }
        while node.poll().is_some() {}
        assert_eq!(node.balancer.in_flight(), 2, "both workers busy");
        // Scaling down drains slot 1 (pid 8) while it is busy.
        node.scale_to(1, ms(6));
        while node.poll().is_some() {}
        let id = node.balancer.request_on(Pid(8)).expect("pid 8 is busy");
        let late = ms(60_000);
        node.tick(late);
        node.balancer.handle_complete(id, true, late);
        let outputs: Vec<Output> = std::iter::from_fn(|| node.poll()).collect();
        assert!(
            outputs.contains(&Output::Process(SupervisorAction::Terminate { pid: Pid(8) })),
            "{outputs:?}"
        );
        let stop_timeout = node.supervisor.config().stop_timeout;
        assert_eq!(
            node.supervisor.poll_timeout(),
            Some(late + stop_timeout),
            "the kill deadline runs from the idle time"
        );
    }

    #[test]
    fn a_worker_that_quits_leaves_the_pool_is_replaced_and_its_exit_is_no_crash() {
        let mut node = node_with_a_worker();
        node.handle_quit(Pid(7), ms(3));
        let outputs: Vec<Output> = std::iter::from_fn(|| node.poll()).collect();
        assert!(
            outputs.contains(&Output::Event(WorkerEvent::Removed { pid: Pid(7) })),
            "{outputs:?}"
        );
        assert!(
            outputs
                .iter()
                .any(|o| matches!(o, Output::Process(SupervisorAction::Spawn { .. }))),
            "its slot is refilled at once: {outputs:?}"
        );
        assert_eq!(node.balancer.worker_socket(Pid(7)), None);
        node.handle_exit(Pid(7), ms(4));
        let exits = node.supervisor().exit_counts();
        assert_eq!((exits[&ExitCause::Quit], exits[&ExitCause::Crash]), (1, 0));
    }

    #[test]
    fn scaling_by_one_starts_a_worker_and_raises_the_balancers_quorum() {
        let mut node = node_with_a_worker();
        node.scale_by(1, ms(3));
        assert_eq!(node.supervisor.desired(), 2);
        assert_eq!(node.balancer.config().desired_workers, 2, "the version quorum follows");
        let outputs: Vec<Output> = std::iter::from_fn(|| node.poll()).collect();
        assert!(
            outputs
                .iter()
                .any(|o| matches!(o, Output::Process(SupervisorAction::Spawn { .. }))),
            "{outputs:?}"
        );
        node.scale_by(-1, ms(4));
        assert_eq!(node.balancer.config().desired_workers, 1);
    }

    #[test]
    fn a_second_begin_stop_does_not_push_the_stop_deadline_back() {
        // A repeated SIGTERM must not extend the wait for requests.
        let mut node = node_with_a_worker();
        node.balancer.handle_request(RequestId(1), RequestMeta::GET, ms(3));
        node.balancer.handle_response_head(RequestId(1), ms(3));
        while node.poll().is_some() {}
        node.begin_stop(ms(3));
        while node.poll().is_some() {}
        let deadline = ms(3) + node.supervisor.config().stop_timeout;
        assert_eq!(node.poll_timeout(), Some(deadline), "a request still streams");
        node.begin_stop(ms(4000));
        while node.poll().is_some() {}
        assert_eq!(node.poll_timeout(), Some(deadline));
        node.handle_timeout(deadline);
        let outputs: Vec<Output> = std::iter::from_fn(|| node.poll()).collect();
        assert!(
            outputs.contains(&Output::Process(SupervisorAction::Terminate { pid: Pid(7) })),
            "the workers are stopped at the first deadline: {outputs:?}"
        );
    }

    #[test]
    fn a_process_told_to_stop_while_booting_may_not_join() {
        let mut node = node_with_pid_7_started();
        node.begin_stop(ms(2));
        let outputs: Vec<Output> = std::iter::from_fn(|| node.poll()).collect();
        assert!(
            outputs.contains(&Output::Process(SupervisorAction::Terminate { pid: Pid(7) })),
            "{outputs:?}"
        );
        let info = WorkerInfo {
            pid: Pid(7),
            slot: Slot(0),
            version: Version(1),
            socket: "/tmp/w0.sock".into(),
        };
        assert_eq!(node.handle_join(info, false, ms(3)), Err(JoinError::NotWanted(Pid(7))));
        assert_eq!(node.balancer.registered(), 0);
    }

    #[test]
    fn a_stop_terminates_the_workers_once_the_last_request_has_ended() {
        let terminated =
            |outputs: &[Output]| outputs.contains(&Output::Process(SupervisorAction::Terminate { pid: Pid(7) }));
        let mut node = node_with_a_worker();
        node.begin_stop(ms(3));
        let outputs: Vec<Output> = std::iter::from_fn(|| node.poll()).collect();
        assert!(terminated(&outputs), "nothing in flight: at once: {outputs:?}");

        let mut node = node_with_a_worker();
        node.balancer.handle_request(RequestId(1), RequestMeta::GET, ms(3));
        while node.poll().is_some() {}
        node.begin_stop(ms(4));
        let outputs: Vec<Output> = std::iter::from_fn(|| node.poll()).collect();
        assert!(!terminated(&outputs), "a request in flight: {outputs:?}");
        node.tick(ms(5));
        node.balancer.handle_complete(RequestId(1), true, ms(5));
        let outputs: Vec<Output> = std::iter::from_fn(|| node.poll()).collect();
        assert!(terminated(&outputs), "{outputs:?}");
    }
}
