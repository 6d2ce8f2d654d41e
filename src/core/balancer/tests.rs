use super::*;

mod queries;

fn ms(n: u64) -> Time {
    Time::from_millis(n)
}

fn info(pid: u32, version: u64) -> WorkerInfo {
    WorkerInfo {
        pid: Pid(pid),
        slot: Slot(pid),
        version: Version(version),
        socket: format!("/tmp/w{pid}.sock"),
    }
}

fn lb(max_queue: usize) -> Balancer {
    Balancer::new(BalancerConfig {
        max_queue,
        ..BalancerConfig::default()
    })
}

fn drain(b: &mut Balancer) -> Vec<Action> {
    b.check_invariants().unwrap();
    std::iter::from_fn(|| b.poll_action()).collect()
}

/// Worker events other than version activation.
fn events(b: &mut Balancer) -> Vec<WorkerEvent> {
    std::iter::from_fn(|| b.poll_worker_event())
        .filter(|e| !matches!(e, WorkerEvent::VersionActivated { .. }))
        .collect()
}

fn dispatch(request: u64, pid: u32, attempt: u8) -> Action {
    Action::Dispatch {
        request: RequestId(request),
        pid: Pid(pid),
        attempt,
    }
}

fn answer(request: u64, answer: Answer) -> Action {
    Action::Answer {
        request: RequestId(request),
        answer,
    }
}

#[test]
fn dispatches_to_the_warmest_idle_worker() {
    let mut b = lb(10);
    for pid in 1..=3 {
        b.handle_join(info(pid, 1), ms(0)).unwrap();
    }
    b.handle_request(RequestId(1), RequestMeta::GET, ms(1));
    assert_eq!(drain(&mut b), [dispatch(1, 3, 0)]);
    b.handle_response_head(RequestId(1), ms(2));
    b.handle_complete(RequestId(1), true, ms(2));
    b.handle_request(RequestId(2), RequestMeta::GET, ms(3));
    assert_eq!(drain(&mut b), [dispatch(2, 3, 0)], "LIFO reuses the worker just freed");
}

#[test]
fn queues_when_all_busy_and_answers_503_when_full() {
    let mut b = lb(2);
    b.handle_join(info(1, 1), ms(0)).unwrap();
    for id in 1..=4 {
        b.handle_request(RequestId(id), RequestMeta::GET, ms(0));
    }
    assert_eq!(drain(&mut b), [dispatch(1, 1, 0), answer(4, Answer::QueueFull)]);
    assert_eq!(b.queue_len(), 2);
    b.handle_complete(RequestId(1), true, ms(5));
    assert_eq!(drain(&mut b), [dispatch(2, 1, 0)], "FIFO");
}

#[test]
fn queue_timeout_fires_without_any_worker() {
    // The original hung here: no worker registered, no timer.
    let mut b = lb(10);
    b.handle_request(RequestId(1), RequestMeta::GET, ms(0));
    assert_eq!(drain(&mut b), []);
    assert_eq!(b.poll_timeout(), Some(ms(2000)));
    b.handle_timeout(ms(1999));
    assert_eq!(drain(&mut b), []);
    b.handle_timeout(ms(2000));
    assert_eq!(drain(&mut b), [answer(1, Answer::QueueTimeout)]);
    assert!(b.is_drained());
}

#[test]
fn read_timeout_answers_504_and_keeps_the_worker_out_until_it_finishes() {
    let mut b = lb(10);
    b.handle_join(info(1, 1), ms(0)).unwrap();
    b.handle_request(RequestId(1), RequestMeta::GET, ms(0));
    assert_eq!(drain(&mut b), [dispatch(1, 1, 0)]);
    // A slow handler is normal work: nothing happens before the read timeout.
    b.handle_timeout(ms(300));
    assert_eq!(drain(&mut b), []);
    b.handle_timeout(ms(5000));
    assert_eq!(drain(&mut b), [answer(1, Answer::UpstreamTimeout)]);
    assert_eq!(events(&mut b), [WorkerEvent::Stuck { pid: Pid(1) }]);
    b.handle_request(RequestId(2), RequestMeta::GET, ms(5001));
    assert_eq!(drain(&mut b), [], "stuck worker gets nothing");
    b.handle_complete(RequestId(1), true, ms(6000));
    assert_eq!(drain(&mut b), [dispatch(2, 1, 0)]);
}

#[test]
fn busy_reply_retries_once_on_another_worker() {
    let mut b = lb(10);
    b.handle_join(info(1, 1), ms(0)).unwrap();
    b.handle_join(info(2, 1), ms(0)).unwrap();
    b.handle_request(RequestId(1), RequestMeta::POST, ms(0));
    assert_eq!(drain(&mut b), [dispatch(1, 2, 0)]);
    b.handle_busy(RequestId(1), ms(1));
    assert_eq!(drain(&mut b), [dispatch(1, 1, 1)]);
    b.handle_busy(RequestId(1), ms(2));
    assert_eq!(drain(&mut b), [answer(1, Answer::NoCapacity)]);
}

#[test]
fn connect_failure_retries_then_502() {
    let mut b = lb(10);
    b.handle_join(info(1, 1), ms(0)).unwrap();
    b.handle_request(RequestId(1), RequestMeta::POST, ms(0));
    assert_eq!(drain(&mut b), [dispatch(1, 1, 0)]);
    b.handle_connect_failed(RequestId(1), ms(1));
    assert_eq!(drain(&mut b), [], "the only worker is quarantined: back to the queue");
    assert_eq!(b.queue_len(), 1);
    b.handle_timeout(ms(251));
    assert_eq!(
        drain(&mut b),
        [dispatch(1, 1, 1)],
        "quarantine over: the live worker comes back"
    );
    b.handle_connect_failed(RequestId(1), ms(252));
    assert_eq!(drain(&mut b), [answer(1, Answer::UpstreamError)]);
}

#[test]
fn a_request_whose_worker_failed_after_it_was_sent_is_not_retried_by_default() {
    // `GET /crash`: replaying it would kill a second worker.
    let mut b = lb(10);
    assert!(!b.config().retry_after_send);
    b.handle_join(info(1, 1), ms(0)).unwrap();
    b.handle_join(info(2, 1), ms(0)).unwrap();
    b.handle_request(RequestId(1), RequestMeta::GET, ms(0));
    assert_eq!(drain(&mut b), [dispatch(1, 2, 0)]);
    b.handle_failed_after_send(RequestId(1), ms(1));
    assert_eq!(drain(&mut b), [answer(1, Answer::UpstreamError)]);
    assert_eq!(b.stats().retries, 0);
    // A worker that never took the request is still worth one retry.
    b.handle_request(RequestId(2), RequestMeta::GET, ms(2));
    assert_eq!(drain(&mut b), [dispatch(2, 1, 0)]);
    b.handle_connect_failed(RequestId(2), ms(3));
    b.handle_timeout(ms(300));
    assert_eq!(drain(&mut b), [dispatch(2, 1, 1)], "connect failure: retried");
}

#[test]
fn with_retry_after_send_only_an_idempotent_replayable_request_is_retried_once() {
    let mut b = Balancer::new(BalancerConfig {
        retry_after_send: true,
        ..BalancerConfig::default()
    });
    b.handle_join(info(1, 1), ms(0)).unwrap();
    b.handle_join(info(2, 1), ms(0)).unwrap();
    b.handle_request(RequestId(1), RequestMeta::POST, ms(0));
    b.handle_request(RequestId(2), RequestMeta::GET, ms(0));
    assert_eq!(drain(&mut b), [dispatch(1, 2, 0), dispatch(2, 1, 0)]);
    b.handle_failed_after_send(RequestId(1), ms(1));
    assert_eq!(drain(&mut b), [answer(1, Answer::UpstreamError)], "a POST never");
    b.handle_failed_after_send(RequestId(2), ms(1));
    b.handle_timeout(ms(300));
    assert_eq!(drain(&mut b), [dispatch(2, 2, 1)], "an idempotent GET is retried");
    b.handle_failed_after_send(RequestId(2), ms(301));
    assert_eq!(drain(&mut b), [answer(2, Answer::UpstreamError)], "once");
    let unreplayable = RequestMeta {
        idempotent: true,
        replayable: false,
    };
    b.handle_timeout(ms(600));
    b.handle_request(RequestId(3), unreplayable, ms(600));
    assert_eq!(drain(&mut b).len(), 1);
    b.handle_failed_after_send(RequestId(3), ms(601));
    assert_eq!(
        drain(&mut b),
        [answer(3, Answer::UpstreamError)],
        "a streamed body cannot be sent again"
    );
}

#[test]
fn client_gone_leaves_the_queue_without_taking_a_worker() {
    let mut b = lb(10);
    b.handle_join(info(1, 1), ms(0)).unwrap();
    for id in 1..=3 {
        b.handle_request(RequestId(id), RequestMeta::GET, ms(0));
    }
    assert_eq!(drain(&mut b), [dispatch(1, 1, 0)]);
    b.handle_client_gone(RequestId(2), ms(1));
    b.handle_complete(RequestId(1), true, ms(2));
    assert_eq!(drain(&mut b), [dispatch(3, 1, 0)]);
}

#[test]
fn client_gone_in_flight_keeps_the_worker_until_it_finishes() {
    let mut b = lb(10);
    b.handle_join(info(1, 1), ms(0)).unwrap();
    b.handle_request(RequestId(1), RequestMeta::GET, ms(0));
    b.handle_request(RequestId(2), RequestMeta::GET, ms(0));
    assert_eq!(drain(&mut b), [dispatch(1, 1, 0)]);
    b.handle_client_gone(RequestId(1), ms(1));
    assert_eq!(drain(&mut b), []);
    b.handle_complete(RequestId(1), true, ms(10));
    assert_eq!(drain(&mut b), [dispatch(2, 1, 0)]);
}

#[test]
fn new_version_takes_over_only_with_a_quorum() {
    let mut b = Balancer::new(BalancerConfig {
        desired_workers: 3,
        ..BalancerConfig::default()
    });
    for pid in 1..=3 {
        b.handle_join(info(pid, 1), ms(0)).unwrap();
    }
    assert_eq!(b.active_version(), Some(Version(1)));
    b.handle_join(info(11, 2), ms(1)).unwrap();
    assert_eq!(
        b.active_version(),
        Some(Version(1)),
        "one new worker cannot carry three workers' load"
    );
    b.handle_join(info(12, 2), ms(1)).unwrap();
    assert_eq!(b.active_version(), Some(Version(1)));
    b.handle_join(info(13, 2), ms(1)).unwrap();
    assert_eq!(b.active_version(), Some(Version(2)));
    b.handle_request(RequestId(1), RequestMeta::GET, ms(2));
    let actions = drain(&mut b);
    assert!(
        matches!(actions[..], [Action::Dispatch { pid, .. }] if pid.0 > 10),
        "{actions:?}"
    );
}

#[test]
fn draining_worker_reports_idle_once_and_gets_nothing() {
    let mut b = lb(10);
    b.handle_join(info(1, 1), ms(0)).unwrap();
    b.handle_join(info(2, 1), ms(0)).unwrap();
    b.handle_request(RequestId(1), RequestMeta::GET, ms(0));
    assert_eq!(drain(&mut b), [dispatch(1, 2, 0)]);
    b.handle_drain(Pid(2), ms(1));
    assert_eq!(events(&mut b), []);
    b.handle_complete(RequestId(1), true, ms(2));
    assert_eq!(
        events(&mut b),
        [
            WorkerEvent::Served { pid: Pid(2), count: 1 },
            WorkerEvent::Idle { pid: Pid(2) }
        ]
    );
    b.handle_request(RequestId(2), RequestMeta::GET, ms(3));
    assert_eq!(drain(&mut b), [dispatch(2, 1, 0)]);
}

#[test]
fn request_budget_caps_dispatches() {
    let mut b = Balancer::new(BalancerConfig {
        max_requests_per_worker: Some(2),
        ..BalancerConfig::default()
    });
    b.handle_join(info(1, 1), ms(0)).unwrap();
    for id in 1..=3 {
        b.handle_request(RequestId(id), RequestMeta::GET, ms(0));
        let _ = drain(&mut b);
        b.handle_complete(RequestId(id), true, ms(1));
    }
    assert_eq!(b.queue_len(), 1, "the third request waits for a replacement");
    b.handle_join(info(2, 1), ms(2)).unwrap();
    assert_eq!(drain(&mut b), [dispatch(3, 2, 0)]);
}

#[test]
fn exit_mid_request_frees_the_slot_after_the_outcome() {
    let mut b = lb(10);
    b.handle_join(info(1, 1), ms(0)).unwrap();
    b.handle_request(RequestId(1), RequestMeta::POST, ms(0));
    let _ = drain(&mut b);
    b.handle_exit(Pid(1), ms(1));
    assert_eq!(b.registered(), 1, "kept until its request's outcome arrives");
    b.handle_failed_after_send(RequestId(1), ms(1));
    assert_eq!(drain(&mut b), [answer(1, Answer::UpstreamError)]);
    assert_eq!(b.registered(), 0);
}

#[test]
fn stopping_refuses_new_requests_and_finishes_queued_ones() {
    let mut b = lb(10);
    b.handle_join(info(1, 1), ms(0)).unwrap();
    b.handle_request(RequestId(1), RequestMeta::GET, ms(0));
    b.handle_request(RequestId(2), RequestMeta::GET, ms(0));
    let _ = drain(&mut b);
    b.begin_stop(ms(1));
    b.handle_request(RequestId(3), RequestMeta::GET, ms(1));
    assert_eq!(drain(&mut b), [answer(3, Answer::NoCapacity)]);
    b.handle_complete(RequestId(1), true, ms(2));
    assert_eq!(drain(&mut b), [dispatch(2, 1, 0)]);
    b.handle_complete(RequestId(2), true, ms(3));
    assert!(b.is_drained());
}

#[test]
fn quit_with_only_a_slot_resolves_to_the_draining_process() {
    let mut b = lb(10);
    b.handle_join(
        WorkerInfo {
            pid: Pid(1),
            slot: Slot(0),
            version: Version(1),
            socket: "a".into(),
        },
        ms(0),
    )
    .unwrap();
    b.handle_join(
        WorkerInfo {
            pid: Pid(2),
            slot: Slot(0),
            version: Version(1),
            socket: "b".into(),
        },
        ms(0),
    )
    .unwrap();
    assert_eq!(b.pid_for_slot(Slot(0)), Some(Pid(1)));
    b.handle_drain(Pid(1), ms(0));
    assert_eq!(b.pid_for_slot(Slot(0)), Some(Pid(1)));
    b.handle_drain(Pid(2), ms(0));
    b.handle_quit(Pid(1), ms(0));
    assert_eq!(b.pid_for_slot(Slot(0)), Some(Pid(2)));
}

#[test]
fn join_conflicts_are_refused() {
    let mut b = lb(10);
    b.handle_join(info(1, 1), ms(0)).unwrap();
    b.handle_join(info(1, 1), ms(0)).unwrap();
    assert_eq!(b.handle_join(info(1, 2), ms(0)), Err(JoinError::Conflict(Pid(1))));
}

#[test]
fn busy_retry_waits_in_the_queue_for_the_quarantined_worker() {
    let mut b = lb(2);
    b.handle_join(info(1, 1), ms(0)).unwrap();
    b.handle_request(RequestId(5), RequestMeta::POST, ms(0));
    assert_eq!(drain(&mut b), [dispatch(5, 1, 0)]);
    b.handle_busy(RequestId(5), ms(0));
    assert_eq!(drain(&mut b), []);
    assert_eq!(b.queue_len(), 1, "{b:?}");
    b.handle_request(RequestId(6), RequestMeta::POST, ms(0));
    b.handle_request(RequestId(7), RequestMeta::POST, ms(0));
    assert_eq!(drain(&mut b), [answer(7, Answer::QueueFull)]);
    assert_eq!(b.poll_timeout(), Some(ms(250)));
    b.handle_timeout(ms(250));
    assert_eq!(drain(&mut b), [dispatch(5, 1, 1)]);
}

#[test]
fn a_worker_that_keeps_refusing_connections_is_reported_for_replacement() {
    let mut b = lb(10);
    b.handle_join(info(1, 1), ms(0)).unwrap();
    let _ = events(&mut b);
    let mut t = 0;
    for id in 1..=REFUSALS_BEFORE_UNHEALTHY as u64 {
        b.handle_request(RequestId(id), RequestMeta::GET, ms(t));
        let _ = drain(&mut b);
        t += 300;
        b.handle_timeout(ms(t));
        let _ = drain(&mut b);
        // Whichever attempt is on the worker now fails to connect.
        let on = b.request_on(Pid(1)).expect("the worker has an attempt");
        b.handle_connect_failed(on, ms(t));
        let _ = drain(&mut b);
    }
    assert!(events(&mut b).contains(&WorkerEvent::Stuck { pid: Pid(1) }));
    // It comes back: the next exchange succeeds and clears the report.
    t += 300;
    b.handle_timeout(ms(t));
    let _ = drain(&mut b);
    let on = b.request_on(Pid(1)).expect("a queued request reached the worker");
    b.handle_complete(on, true, ms(t));
    assert!(events(&mut b).contains(&WorkerEvent::Unstuck { pid: Pid(1) }));
}

#[test]
fn a_worker_whose_client_left_is_still_caught_by_the_read_timeout() {
    let mut b = lb(10);
    b.handle_join(info(1, 1), ms(0)).unwrap();
    let _ = events(&mut b);
    b.handle_request(RequestId(1), RequestMeta::GET, ms(0));
    assert_eq!(drain(&mut b), [dispatch(1, 1, 0)]);
    b.handle_client_gone(RequestId(1), ms(100));
    b.handle_timeout(ms(5000));
    assert_eq!(drain(&mut b), [], "nobody to answer");
    assert_eq!(
        events(&mut b),
        [WorkerEvent::Stuck { pid: Pid(1) }],
        "but the hung worker is reported"
    );
    b.handle_complete(RequestId(1), true, ms(6000));
    assert!(events(&mut b).contains(&WorkerEvent::Unstuck { pid: Pid(1) }));
}

#[test]
fn an_abandoned_request_whose_worker_answers_is_not_stuck() {
    let mut b = lb(10);
    b.handle_join(info(1, 1), ms(0)).unwrap();
    let _ = events(&mut b);
    b.handle_request(RequestId(1), RequestMeta::GET, ms(0));
    let _ = drain(&mut b);
    b.handle_client_gone(RequestId(1), ms(100));
    b.handle_response_head(RequestId(1), ms(200));
    b.handle_timeout(ms(5000));
    assert_eq!(events(&mut b), []);
    b.handle_complete(RequestId(1), true, ms(5001));
    b.handle_request(RequestId(2), RequestMeta::GET, ms(5002));
    assert_eq!(drain(&mut b), [dispatch(2, 1, 0)]);
}

#[test]
fn a_worker_transition_the_balancer_cannot_make_is_counted() {
    let mut b = lb(10);
    b.handle_join(info(1, 1), ms(0)).unwrap();
    b.handle_request(RequestId(1), RequestMeta::GET, ms(0));
    assert_eq!(drain(&mut b), [dispatch(1, 1, 0)]);
    b.handle_client_gone(RequestId(1), ms(1));
    b.handle_response_head(RequestId(1), ms(2));
    assert_eq!(b.illegal_transitions(), 0);
    // An adapter that says the dispatch was never carried out after the
    // worker answered it: the worker cannot give back a request it answered.
    b.handle_dispatch_unused(RequestId(1), ms(3));
    assert_eq!(b.illegal_transitions(), 1);
    let e = b.check_invariants().unwrap_err();
    assert_eq!(e, "1 illegal worker transitions");
}

#[test]
fn synthesized_answers_are_counted_by_reason_where_they_are_decided() {
    let mut b = Balancer::new(BalancerConfig {
        max_queue: 1,
        ..BalancerConfig::default()
    });
    let reasons: Vec<&str> = b.stats().answers.keys().copied().collect();
    assert_eq!(
        reasons,
        [
            "no_capacity",
            "queue_full",
            "queue_timeout",
            "upstream_error",
            "upstream_timeout"
        ],
        "every reason listed from the start"
    );
    assert!(b.stats().answers.values().all(|&n| n == 0));
    b.handle_join(info(1, 1), ms(0)).unwrap();
    for id in 1..=3 {
        b.handle_request(RequestId(id), RequestMeta::GET, ms(0));
    }
    // 1 on the worker, 2 queued, 3 refused: queue_full.
    b.handle_timeout(ms(2000));
    // 2 waited too long: queue_timeout.
    b.handle_timeout(ms(5000));
    // 1 had no head within the read timeout: upstream_timeout.
    b.handle_complete(RequestId(1), true, ms(5001));
    b.handle_request(RequestId(4), RequestMeta::POST, ms(5002));
    b.handle_failed_after_send(RequestId(4), ms(5003));
    // 4 died on its worker: upstream_error.
    b.begin_stop(ms(5004));
    b.handle_request(RequestId(5), RequestMeta::GET, ms(5004));
    // 5 came during the stop: no_capacity.
    let answers: Vec<Answer> = drain(&mut b)
        .into_iter()
        .filter_map(|a| match a {
            Action::Answer { answer, .. } => Some(answer),
            Action::Dispatch { .. } => None,
        })
        .collect();
    assert_eq!(
        answers,
        [
            Answer::QueueFull,
            Answer::QueueTimeout,
            Answer::UpstreamTimeout,
            Answer::UpstreamError,
            Answer::NoCapacity
        ]
    );
    for answer in Answer::ALL {
        assert_eq!(b.stats().answers[answer.reason()], 1, "{answer:?}");
        assert_eq!(b.stats().answered(answer), 1);
    }
    let c = b.counters();
    assert_eq!(
        (
            c.queue_full,
            c.queue_timeout,
            c.upstream_timeout,
            c.upstream_error,
            c.no_capacity
        ),
        (1, 1, 1, 1, 1),
        "/status reads the same counts"
    );
}

#[test]
fn queue_wait_is_observed_once_per_request_at_its_first_dispatch() {
    let mut b = lb(10);
    b.handle_join(info(1, 1), ms(0)).unwrap();
    b.handle_join(info(2, 1), ms(0)).unwrap();
    b.handle_request(RequestId(1), RequestMeta::GET, ms(10));
    b.handle_request(RequestId(2), RequestMeta::GET, ms(10));
    b.handle_request(RequestId(3), RequestMeta::GET, ms(10));
    assert_eq!(drain(&mut b), [dispatch(1, 2, 0), dispatch(2, 1, 0)]);
    // 3 waits 30 ms for worker 2.
    b.handle_complete(RequestId(1), true, ms(40));
    assert_eq!(drain(&mut b), [dispatch(3, 2, 0)]);
    // 2 is refused (busy) and retried: a second dispatch, no second wait.
    b.handle_busy(RequestId(2), ms(41));
    b.handle_complete(RequestId(3), true, ms(42));
    assert_eq!(drain(&mut b), [dispatch(2, 2, 1)]);
    let stats = b.stats();
    assert_eq!((stats.dispatches, stats.retries), (4, 1));
    assert_eq!(stats.queue_wait.count(), 3, "one per request");
    assert_eq!(stats.queue_wait.sum_micros(), 30_000);
    let le = |bound: u64| stats.queue_wait.buckets().find(|&(b, _)| b == bound).map(|(_, n)| n);
    assert_eq!(
        [le(100), le(1_000), le(10_000), le(25_000)],
        [Some(2); 4],
        "two at once, one of 30 ms"
    );
    assert_eq!(le(50_000), Some(3));
    let c = b.counters();
    assert_eq!((c.dispatched, c.retries, c.requests, c.queued), (4, 1, 3, 1));
    let v = serde_json::to_value(stats).unwrap();
    assert_eq!(v["answers"]["queue_full"], 0);
    assert_eq!(v["queue_wait"]["count"], 3);
}

#[test]
fn responses_and_departed_clients_are_counted_once_where_they_are_decided() {
    // /status: every request ends as a response, a synthesized answer or a
    // departed client, and the three add up to the requests.
    let mut b = lb(10);
    b.handle_join(info(1, 1), ms(0)).unwrap();
    b.handle_join(info(2, 1), ms(0)).unwrap();
    // 1: a head, then the end of the exchange: one response.
    b.handle_request(RequestId(1), RequestMeta::GET, ms(0));
    b.handle_response_head(RequestId(1), ms(1));
    b.handle_complete(RequestId(1), true, ms(2));
    // 2: an exchange that ends without a head counts as answered by the worker.
    b.handle_request(RequestId(2), RequestMeta::GET, ms(3));
    b.handle_complete(RequestId(2), true, ms(4));
    assert_eq!(b.counters().responses, 2);
    // 3: the client leaves while its request is on a worker; 4 while queued;
    // 5 before its dispatch was carried out.
    b.handle_request(RequestId(3), RequestMeta::GET, ms(5));
    b.handle_request(RequestId(5), RequestMeta::GET, ms(5));
    b.handle_request(RequestId(4), RequestMeta::GET, ms(5));
    assert_eq!(drain(&mut b).len(), 4, "1, 2, 3 and 5 dispatched; 4 queued");
    b.handle_client_gone(RequestId(3), ms(6));
    b.handle_client_gone(RequestId(4), ms(6));
    b.handle_dispatch_unused(RequestId(5), ms(6));
    let c = b.counters();
    assert_eq!((c.responses, c.client_gone), (2, 3));
    b.handle_response_head(RequestId(3), ms(7));
    b.handle_complete(RequestId(3), true, ms(8));
    let c = b.counters();
    assert_eq!(
        (c.responses, c.client_gone),
        (2, 3),
        "a departed client's response is not one"
    );
    let answered = c.queue_full + c.no_capacity + c.queue_timeout + c.upstream_timeout + c.upstream_error;
    assert_eq!(c.requests, c.responses + answered + c.client_gone);
}

#[test]
fn request_duration_is_observed_once_per_worker_answer_and_slots_keep_their_count() {
    let mut b = lb(10);
    b.handle_join(info(1, 1), ms(0)).unwrap();
    // Request 1: arrives at 10, head at 11, complete at 13 ms: 3 ms.
    b.handle_request(RequestId(1), RequestMeta::GET, ms(10));
    b.handle_response_head(RequestId(1), ms(11));
    b.handle_complete(RequestId(1), true, ms(13));
    // Request 2: complete without a head (treated as one): 200 µs.
    b.handle_request(RequestId(2), RequestMeta::GET, Time::from_micros(20_000));
    b.handle_complete(RequestId(2), true, Time::from_micros(20_200));
    // Request 3: its client leaves first; the worker's late end is not a duration.
    b.handle_request(RequestId(3), RequestMeta::GET, ms(30));
    b.handle_client_gone(RequestId(3), ms(31));
    b.handle_complete(RequestId(3), true, ms(40));
    drain(&mut b);
    let d = &b.stats().request_duration;
    assert_eq!(d.count(), 2, "one per answer a client got from a worker");
    assert_eq!(d.sum_micros(), 3_200);
    let le = |bound: u64| d.buckets().find(|&(b, _)| b == bound).map(|(_, n)| n);
    assert_eq!((le(250), le(2_500), le(5_000)), (Some(1), Some(1), Some(2)));

    // Slot 1's worker leaves and another process takes slot 1: the slot's
    // count goes on from 3, where the new worker's own `served` starts at 0.
    assert_eq!(b.stats().served_by_slot, [0, 3]);
    b.handle_exit(Pid(1), ms(50));
    b.handle_join(
        WorkerInfo {
            pid: Pid(7),
            slot: Slot(1),
            version: Version(1),
            socket: "/tmp/w7.sock".into(),
        },
        ms(51),
    )
    .unwrap();
    b.handle_request(RequestId(4), RequestMeta::GET, ms(52));
    b.handle_complete(RequestId(4), true, ms(53));
    drain(&mut b);
    assert_eq!(b.stats().served_by_slot, [0, 4]);
    assert_eq!(b.status().workers[0].served, 1, "the process's own count");
}
