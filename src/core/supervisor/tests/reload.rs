//! Module reloads (signal or replace, `max_reloads`, bursts while booting)
//! and the app errors workers report.

use super::*;
use SupervisorAction::Reload;

impl H {
    /// Answers a spawn and makes the process ready, accepting reloads.
    fn boot_accepting(&mut self, spawn: SpawnId) -> Pid {
        let (pid, a) = self.spawned(spawn);
        assert!(a.is_empty(), "{a:?}");
        self.s.handle_ready_with_reload(pid, true, self.now);
        let a = self.drain();
        assert!(a.is_empty(), "{a:?}");
        pid
    }

    fn reload(&mut self) -> Vec<SupervisorAction> {
        self.s.reload_workers(self.now);
        self.drain()
    }

    fn reloads_of(&self, pid: Pid) -> u32 {
        let st = self.s.status(self.now);
        let p = st
            .slots
            .iter()
            .flat_map(|s| s.processes.iter())
            .find(|p| p.pid == Some(pid));
        p.expect("a live process").reloads
    }
}

fn with_max_reloads(workers: u32, max_reloads: Option<u32>) -> SupervisorConfig {
    SupervisorConfig {
        max_reloads,
        ..config(workers)
    }
}

#[test]
fn max_reloads_decides_between_signal_and_replacement() {
    let c = |m| with_max_reloads(1, m);
    for never in [None, Some(0)] {
        assert!((0..1_000).all(|n| !c(never).reload_replaces(n)), "{never:?}");
    }
    assert!(c(Some(1)).reload_replaces(0), "every reload replaces");
    let three: Vec<bool> = (0..4).map(|n| c(Some(3)).reload_replaces(n)).collect();
    assert_eq!(three, vec![false, false, true, true]);
    assert!(c(Some(u32::MAX)).reload_replaces(u32::MAX));
    assert_eq!(SupervisorConfig::default().max_reloads, None);
}

#[test]
fn a_module_reload_signals_only_the_workers_that_accept_it() {
    let (mut h, a) = H::new(config(3));
    let s = spawns(&a);
    let p0 = h.boot_accepting(s[0].0);
    let (p1, _) = h.boot(s[1].0);
    let p2 = h.boot_accepting(s[2].0);
    h.at(1_000);
    let a = h.reload();
    assert_eq!(&a[..2], &[Reload { pid: p0 }, Reload { pid: p2 }]);
    // The one that cannot reload is replaced, replacement first.
    assert_eq!(spawns(&a[2..]).iter().map(|s| s.1).collect::<Vec<_>>(), vec![Slot(1)]);
    assert_eq!(a.len(), 3, "{a:?}");
    assert_eq!((h.reloads_of(p0), h.reloads_of(p1), h.reloads_of(p2)), (1, 0, 1));
    let (new1, a) = h.boot(one_spawn(&a));
    assert_eq!(a, vec![Drain { pid: p1 }]);
    assert_eq!(h.slot(1).pid, Some(new1));
    assert_eq!(h.idle(p1), vec![Terminate { pid: p1 }]);
    assert!(h.exit(p1).is_empty());
    assert_eq!(h.s.exit_counts()[&ExitCause::Recycled], 1);
    assert_eq!(h.slot(1).crashes, 0);
}

#[test]
fn max_reloads_three_signals_twice_then_hands_over_replacement_first() {
    let (mut h, a) = H::new(with_max_reloads(1, Some(3)));
    let old = h.boot_accepting(one_spawn(&a));
    // The slot always has a ready process: checked after every step below.
    let ready = |h: &H| assert_eq!(h.slot(0).state, "ready", "at {:?}", h.now);
    for (n, t) in [(1, 1_000), (2, 2_000)] {
        assert_eq!(h.at(t).reload(), vec![Reload { pid: old }]);
        assert_eq!(h.reloads_of(old), n);
        ready(&h);
    }
    let a = h.at(3_000).reload();
    let (_, slot, version) = spawns(&a)[0];
    assert_eq!((a.len(), slot, version), (1, Slot(0), Version(1)), "{a:?}");
    assert_eq!(h.reloads_of(old), 2, "no third signal");
    ready(&h);
    let (new, a) = h.at(3_010).spawned(one_spawn(&a));
    assert!(a.is_empty(), "the old worker keeps serving while the replacement boots");
    assert_eq!(h.slot(0).pid, Some(old));
    ready(&h);
    h.at(3_050);
    h.s.handle_ready_with_reload(new, true, h.now);
    assert_eq!(
        h.drain(),
        vec![Drain { pid: old }],
        "drained only once the new one serves"
    );
    assert_eq!(h.slot(0).pid, Some(new));
    ready(&h);
    assert_eq!(h.idle(old), vec![Terminate { pid: old }]);
    assert!(h.exit(old).is_empty());
    ready(&h);
    // The fresh worker starts its own count.
    assert_eq!(h.reloads_of(new), 0);
    assert_eq!(h.at(4_000).reload(), vec![Reload { pid: new }]);
}

#[test]
fn without_max_reloads_an_accepting_worker_is_never_replaced() {
    for max in [None, Some(0)] {
        let (mut h, a) = H::new(with_max_reloads(1, max));
        let pid = h.boot_accepting(one_spawn(&a));
        for _ in 0..50 {
            assert_eq!(h.reload(), vec![Reload { pid }], "{max:?}");
        }
        assert_eq!(h.reloads_of(pid), 50);
    }
}

#[test]
fn a_booting_worker_gets_the_reload_once_it_is_ready() {
    let (mut h, a) = H::new(config(2));
    let s = spawns(&a);
    // Slot 0 has started, slot 1 has not even been answered yet.
    let (p0, _) = h.spawned(s[0].0);
    assert!(h.reload().is_empty(), "nobody is ready to reload");
    assert!(h.reload().is_empty(), "two bursts while booting still make one");
    h.s.handle_ready_with_reload(p0, true, h.now);
    assert_eq!(h.drain(), vec![Reload { pid: p0 }]);
    assert_eq!(h.reloads_of(p0), 1);
    // Slot 1 cannot reload: it is replaced once it serves.
    let (p1, a) = h.boot(s[1].0);
    let (_, slot, _) = spawns(&a)[0];
    assert_eq!((a.len(), slot), (1, Slot(1)), "{a:?}");
    // The pending burst was used up: its replacement joins quietly.
    let (_, a) = h.boot(one_spawn(&a));
    assert_eq!(a, vec![Drain { pid: p1 }]);
    assert!(h.reload().contains(&Reload { pid: p0 }));
}

#[test]
fn workers_on_their_way_out_and_a_stopping_supervisor_get_no_reload() {
    let (mut h, a) = H::new(config(2));
    let pids: Vec<Pid> = spawns(&a).iter().map(|s| h.boot_accepting(s.0)).collect();
    h.s.scale_to(1, h.now);
    assert_eq!(h.drain(), vec![Drain { pid: pids[1] }]);
    assert_eq!(
        h.reload(),
        vec![Reload { pid: pids[0] }],
        "the draining one is left alone"
    );
    h.s.stop(h.now);
    let _ = h.drain();
    assert!(h.reload().is_empty());
    assert_eq!(h.reloads_of(pids[0]), 1);
}

#[test]
fn during_a_roll_reloads_are_signalled_and_replacements_wait_for_its_end() {
    let (mut h, a) = H::new(config(2));
    let s = spawns(&a);
    let old0 = h.boot_accepting(s[0].0);
    let (old1, _) = h.boot(s[1].0);
    h.s.rolling_restart(h.now).unwrap();
    let roll = spawns(&h.drain());
    let (new0, _) = h.spawned(roll[0].0);
    let a = h.reload();
    assert_eq!(a, vec![Reload { pid: old0 }], "no recycling during a roll: {a:?}");
    // The new generation was booting: it gets the burst when it joins.
    h.s.handle_ready_with_reload(new0, true, h.now);
    assert_eq!(h.drain(), vec![Reload { pid: new0 }]);
    // The second v2 worker had not started: it gets the burst as it joins,
    // the roll completes and the old generation goes. The old worker that
    // could not reload is rolled over, not replaced a second time.
    let (new1, _) = h.spawned(roll[1].0);
    h.s.handle_ready_with_reload(new1, true, h.now);
    let a = h.drain();
    assert_eq!(a, vec![Reload { pid: new1 }, Drain { pid: old0 }, Drain { pid: old1 }]);
    assert_eq!(h.s.generation(), Version(2));
    for old in [old0, old1] {
        assert_eq!(h.idle(old), vec![Terminate { pid: old }]);
        assert!(h.exit(old).is_empty());
    }
    assert_eq!(h.s.status(h.now).recycling, 0);
}

#[test]
fn a_replacement_for_a_reload_waits_until_the_roll_ends() {
    let (mut h, a) = H::new(config(1));
    let (old, _) = h.boot(one_spawn(&a));
    h.s.rolling_restart(h.now).unwrap();
    let a = h.drain();
    let (new, _) = h.spawned(one_spawn(&a));
    assert!(h.reload().is_empty());
    // The v2 worker cannot reload and dies at boot: the roll aborts and
    // the old worker, which cannot reload either, is replaced now.
    let a = h.exit(new);
    assert!(h.s.status(h.now).last_roll.unwrap().starts_with("aborted"));
    let (_, slot, version) = spawns(&a)[0];
    assert_eq!((a.len(), slot, version), (1, Slot(0), Version(1)), "{a:?}");
    assert_eq!(h.slot(0).pid, Some(old));
}

#[test]
fn an_app_error_is_recorded_until_a_worker_joins_or_reloads() {
    let (mut h, a) = H::new(config(2));
    let s = spawns(&a);
    let (p0, _) = h.spawned(s[0].0);
    h.at(1_500);
    h.s.handle_app_error(Pid(999), AppErrorPhase::Load, "unknown".into(), h.now);
    assert_eq!(h.s.app_error(), None, "unknown pids are ignored");
    h.s.handle_app_error(
        p0,
        AppErrorPhase::Load,
        "SyntaxError: oops\n  at app.ts:1".into(),
        h.now,
    );
    assert!(h.drain().is_empty(), "a report changes nothing else");
    let recorded = AppError {
        slot: Slot(0),
        pid: p0,
        version: Version(1),
        phase: AppErrorPhase::Load,
        message: "SyntaxError: oops\n  at app.ts:1".into(),
        at_ms: 1_500,
    };
    assert_eq!(h.s.app_error(), Some(&recorded));
    let v = serde_json::to_value(h.s.status(h.now)).unwrap();
    assert_eq!(v["app_error"]["phase"], "load");
    assert_eq!(v["app_error"]["pid"], p0.0);
    assert_eq!(v["app_error"]["slot"], 0);
    assert_eq!(v["app_error"]["version"], 1);
    assert_eq!(v["app_error"]["at_ms"], 1_500);
    assert_eq!(v["slots"][0]["processes"][0]["reloads"], 0);
    // Another worker joining clears it.
    let p1 = h.boot_accepting(s[1].0);
    assert_eq!(h.s.app_error(), None);
    assert_eq!(
        serde_json::to_value(h.s.status(h.now)).unwrap()["app_error"],
        serde_json::Value::Null
    );
    // A failed module reload is recorded; a successful one clears it.
    let _ = h.reload();
    h.s.handle_app_error(p1, AppErrorPhase::Reload, "TypeError".into(), h.now);
    assert_eq!(h.s.app_error().map(|e| e.phase), Some(AppErrorPhase::Reload));
    h.s.handle_reloaded(Pid(999), 1, h.now);
    assert!(h.s.app_error().is_some(), "unknown pids are ignored");
    h.s.handle_reloaded(p1, 1, h.now);
    assert!(h.drain().is_empty());
    assert_eq!(h.s.app_error(), None);
    assert_eq!(AppErrorPhase::Reload.as_str(), "reload");
    assert_eq!(serde_json::to_value(AppErrorPhase::Load).unwrap(), "load");
}

#[test]
fn an_aborted_roll_names_the_app_error_of_the_worker_that_died() {
    let (mut h, a) = H::new(config(2));
    let olds = boot_all(&mut h, &a);
    h.s.rolling_restart(h.now).unwrap();
    let s = spawns(&h.drain());
    let (new0, _) = h.spawned(s[0].0);
    let (new1, _) = h.spawned(s[1].0);
    h.s.handle_app_error(
        new1,
        AppErrorPhase::Load,
        "\nSyntaxError: Unexpected token\n  at x.ts".into(),
        h.now,
    );
    assert!(h.drain().is_empty(), "the report alone does not abort the roll");
    assert_eq!(h.s.rolling_to(), Some(Version(2)));
    // It exits before joining, as today: the roll aborts and says why.
    let a = h.exit(new1);
    assert_eq!(a, vec![Terminate { pid: new0 }]);
    let last = h.s.status(h.now).last_roll.unwrap();
    assert_eq!(
        last.reason.as_deref(),
        Some("slot 1 v2 died before joining: app error: SyntaxError: Unexpected token")
    );
    assert!(last.message.contains("SyntaxError: Unexpected token"));
    assert_eq!(h.s.app_error().map(|e| e.pid), Some(new1), "still shown");
    assert!(olds.iter().all(|&pid| h.s.live_pids().contains(&pid)));
    // A worker that died without a report gives the plain reason.
    let _ = h.exit(new0);
    h.s.rolling_restart(h.now).unwrap();
    let a = h.drain();
    let (late, _) = h.spawned(spawns(&a)[0].0);
    let _ = h.exit(late);
    let reason = h.s.status(h.now).last_roll.unwrap().reason;
    assert_eq!(reason.as_deref(), Some("slot 0 v3 died before joining"));
}

#[test]
fn a_long_app_error_line_is_cut_in_the_roll_reason_on_a_char_boundary() {
    let (mut h, a) = H::new(config(1));
    let _ = boot_all(&mut h, &a);
    h.s.rolling_restart(h.now).unwrap();
    let a = h.drain();
    let (new, _) = h.spawned(one_spawn(&a));
    h.s.handle_app_error(new, AppErrorPhase::Load, "é".repeat(400), h.now);
    let _ = h.exit(new);
    let reason = h.s.status(h.now).last_roll.unwrap().reason.unwrap();
    let tail = reason
        .strip_prefix("slot 0 v2 died before joining: app error: ")
        .unwrap();
    assert_eq!(tail, "é".repeat(150));
}
