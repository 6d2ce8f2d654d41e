//! The queries the driver and the supervisor act on, and the consistency
//! check shown states it must reject.

use super::*;

// ----- the queries the driver and the supervisor act on -------------------

#[test]
fn in_flight_counts_workers_on_a_request_until_they_finish_it() {
    // `/status` and the simulations read this: a timed-out or abandoned
    // request still holds its worker.
    let mut b = lb(10);
    for pid in 1..=3 {
        b.handle_join(info(pid, 1), ms(0)).unwrap();
    }
    assert_eq!(b.in_flight(), 0);
    for id in 1..=3 {
        b.handle_request(RequestId(id), RequestMeta::GET, ms(0));
    }
    assert_eq!(drain(&mut b).len(), 3);
    assert_eq!(b.in_flight(), 3);
    b.handle_client_gone(RequestId(1), ms(1));
    b.handle_response_head(RequestId(2), ms(1));
    b.handle_timeout(ms(5000));
    assert_eq!(drain(&mut b), [answer(3, Answer::UpstreamTimeout)]);
    assert_eq!(
        b.in_flight(),
        3,
        "abandoned, streaming and timed out: all still on their workers"
    );
    assert_eq!(b.status().in_flight, 3);
    b.handle_complete(RequestId(2), true, ms(5001));
    assert_eq!(b.in_flight(), 2);
    b.handle_complete(RequestId(1), true, ms(5002));
    b.handle_complete(RequestId(3), true, ms(5003));
    assert_eq!(b.in_flight(), 0);
}

#[test]
fn routable_and_capacity_count_the_workers_behind_new_requests() {
    let mut b = Balancer::new(BalancerConfig {
        desired_workers: 3,
        ..BalancerConfig::default()
    });
    assert_eq!((b.routable(), b.capacity()), (0, 0));
    for pid in 1..=3 {
        b.handle_join(info(pid, 1), ms(0)).unwrap();
    }
    assert_eq!((b.routable(), b.capacity()), (3, 3));
    b.handle_request(RequestId(1), RequestMeta::GET, ms(0));
    assert_eq!(drain(&mut b), [dispatch(1, 3, 0)]);
    assert_eq!(
        (b.routable(), b.capacity()),
        (2, 3),
        "a busy worker is capacity, not routable"
    );
    b.handle_drain(Pid(2), ms(1));
    assert_eq!((b.routable(), b.capacity()), (1, 2), "a draining worker is neither");
    // A worker of a version short of its quorum is ready but not active.
    b.handle_join(info(11, 2), ms(2)).unwrap();
    assert_eq!(b.active_version(), Some(Version(1)));
    assert_eq!(
        (b.routable(), b.capacity()),
        (1, 2),
        "another version's worker counts for neither"
    );
    assert_eq!(b.status().routable, b.routable());
}

#[test]
fn lowering_the_desired_workers_lets_a_smaller_new_version_take_over() {
    let mut b = Balancer::new(BalancerConfig {
        desired_workers: 2,
        ..BalancerConfig::default()
    });
    b.handle_join(info(1, 1), ms(0)).unwrap();
    b.handle_join(info(2, 1), ms(0)).unwrap();
    b.handle_join(info(11, 2), ms(1)).unwrap();
    assert_eq!(b.active_version(), Some(Version(1)), "one new worker is short of two");
    b.set_desired_workers(0, ms(2));
    assert_eq!(b.config().desired_workers, 1, "at least one");
    assert_eq!(b.active_version(), Some(Version(2)), "the quorum is now one");
    b.handle_request(RequestId(1), RequestMeta::GET, ms(3));
    assert_eq!(drain(&mut b), [dispatch(1, 11, 0)]);
}

#[test]
fn is_drained_waits_for_requests_on_workers_not_only_the_queue() {
    // The graceful stop proceeds on `is_drained`: a request still streaming
    // must hold it back.
    let mut b = lb(10);
    b.handle_join(info(1, 1), ms(0)).unwrap();
    assert!(b.is_drained());
    b.handle_request(RequestId(1), RequestMeta::GET, ms(0));
    assert_eq!(drain(&mut b), [dispatch(1, 1, 0)]);
    assert_eq!(b.queue_len(), 0);
    assert!(!b.is_drained(), "dispatched");
    b.handle_response_head(RequestId(1), ms(1));
    assert!(!b.is_drained(), "streaming");
    b.handle_complete(RequestId(1), true, ms(2));
    assert!(b.is_drained());
}

#[test]
fn is_stopping_turns_on_with_begin_stop_only() {
    let mut b = lb(10);
    assert!(!b.is_stopping());
    b.handle_join(info(1, 1), ms(0)).unwrap();
    b.handle_request(RequestId(1), RequestMeta::GET, ms(0));
    assert!(!b.is_stopping());
    b.begin_stop(ms(1));
    assert!(b.is_stopping());
}

#[test]
fn worker_socket_is_the_joined_workers_socket_until_it_leaves() {
    // The driver connects to this path, and refuses a `quit` for a pid
    // without one.
    let mut b = lb(10);
    assert_eq!(b.worker_socket(Pid(1)), None);
    b.handle_join(info(1, 1), ms(0)).unwrap();
    b.handle_join(info(2, 1), ms(0)).unwrap();
    assert_eq!(b.worker_socket(Pid(1)), Some("/tmp/w1.sock"));
    assert_eq!(b.worker_socket(Pid(2)), Some("/tmp/w2.sock"));
    assert_eq!(b.worker_socket(Pid(3)), None);
    b.handle_quit(Pid(1), ms(1));
    assert_eq!(b.worker_socket(Pid(1)), None);
}

#[test]
fn pid_for_slot_looks_only_at_that_slots_live_processes() {
    let mut b = lb(10);
    b.handle_join(info(1, 1), ms(0)).unwrap();
    b.handle_join(info(2, 1), ms(0)).unwrap();
    assert_eq!(b.pid_for_slot(Slot(1)), Some(Pid(1)));
    assert_eq!(b.pid_for_slot(Slot(2)), Some(Pid(2)), "not slot 1's process");
    assert_eq!(b.pid_for_slot(Slot(3)), None);
    b.handle_request(RequestId(1), RequestMeta::GET, ms(0));
    assert_eq!(drain(&mut b), [dispatch(1, 2, 0)]);
    b.handle_quit(Pid(2), ms(1));
    assert_eq!(b.registered(), 2, "kept until its request ends");
    assert_eq!(b.pid_for_slot(Slot(2)), None, "a leaving process is not a candidate");
}

#[test]
fn awaits_decision_and_worker_of_follow_a_request_through_its_phases() {
    // The driver reads both before reporting an outcome: whether the client
    // has its answer already, and which worker connection to keep or drop.
    let mut b = lb(10);
    assert!(!b.awaits_decision(RequestId(1)), "unknown");
    assert_eq!(b.worker_of(RequestId(1)), None);
    b.handle_join(info(1, 1), ms(0)).unwrap();
    b.handle_request(RequestId(1), RequestMeta::GET, ms(0));
    b.handle_request(RequestId(2), RequestMeta::GET, ms(0));
    assert_eq!(drain(&mut b), [dispatch(1, 1, 0)]);
    assert!(b.awaits_decision(RequestId(1)), "dispatched");
    assert_eq!(b.worker_of(RequestId(1)), Some(Pid(1)));
    assert!(b.awaits_decision(RequestId(2)), "queued");
    assert_eq!(b.worker_of(RequestId(2)), None, "queued: on no worker");
    b.handle_response_head(RequestId(1), ms(1));
    assert!(!b.awaits_decision(RequestId(1)), "streaming: answered by the worker");
    assert_eq!(b.worker_of(RequestId(1)), Some(Pid(1)));
    b.handle_complete(RequestId(1), true, ms(2));
    assert!(!b.awaits_decision(RequestId(1)), "ended");
    assert_eq!(b.worker_of(RequestId(1)), None);
    assert_eq!(drain(&mut b), [dispatch(2, 1, 0)]);
    b.handle_timeout(ms(5002));
    assert_eq!(drain(&mut b), [answer(2, Answer::UpstreamTimeout)]);
    assert!(!b.awaits_decision(RequestId(2)), "timed out: answered 504");
    assert_eq!(b.worker_of(RequestId(2)), Some(Pid(1)), "its worker is still on it");
    b.handle_complete(RequestId(2), true, ms(5003));
    b.handle_request(RequestId(3), RequestMeta::GET, ms(5004));
    assert_eq!(drain(&mut b), [dispatch(3, 1, 0)]);
    b.handle_client_gone(RequestId(3), ms(5005));
    assert!(!b.awaits_decision(RequestId(3)), "abandoned: nobody to answer");
    assert_eq!(b.worker_of(RequestId(3)), Some(Pid(1)));
}

#[test]
fn a_dispatch_to_a_worker_that_is_not_routable_fails_the_invariants() {
    // The check at the moment of dispatch is the safety net behind the idle
    // set; break the idle set the way a bug would to see it catch one: the
    // worker is marked draining without being taken out of the set.
    let mut b = lb(10);
    b.handle_join(info(1, 1), ms(0)).unwrap();
    b.workers.get_mut(&Pid(1)).unwrap().draining = true;
    b.handle_request(RequestId(1), RequestMeta::GET, ms(0));
    assert_eq!(b.poll_action(), Some(dispatch(1, 1, 0)));
    let e = b.check_invariants().unwrap_err();
    assert!(
        e.starts_with("dispatch to an ineligible worker: RequestId1 dispatched to Pid1"),
        "{e}"
    );
    assert_eq!(
        b.illegal_transitions(),
        1,
        "counted, so /status shows it in release builds"
    );
}

// ----- the consistency check is not vacuous --------------------------------
//
// `check_invariants` runs after every step of every balancer test; these
// corrupt the state behind the balancer's back, the way a bug would, and
// check that it says so.

/// A request the balancer never saw, in `phase`.
fn forged_request(phase: Phase) -> Request {
    Request {
        meta: RequestMeta::GET,
        arrived: ms(0),
        queue_deadline: ms(2000),
        dispatches: 0,
        phase,
    }
}

#[test]
fn the_consistency_check_catches_a_request_queued_while_a_worker_sits_idle() {
    let mut b = lb(10);
    b.handle_join(info(1, 1), ms(0)).unwrap();
    b.requests
        .insert(RequestId(9), forged_request(Phase::Queued { seq: 0 }));
    b.enqueue(RequestId(9));
    assert_eq!(
        b.check_invariants(),
        Err("1 queued while 1 workers sit idle".to_string())
    );
}

#[test]
fn the_consistency_check_catches_a_request_on_a_worker_that_does_not_hold_it() {
    let mut b = lb(10);
    b.handle_join(info(1, 1), ms(0)).unwrap();
    b.requests
        .insert(RequestId(9), forged_request(Phase::Streaming { pid: Pid(1) }));
    assert_eq!(
        b.check_invariants(),
        Err("RequestId9 says it is on Pid1, which does not have it".to_string())
    );
}
