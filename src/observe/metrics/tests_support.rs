//! A status snapshot for the tests of `/metrics` and the admin port.

use std::collections::BTreeMap;

use crate::core::balancer::{Counters, WorkerStatus};
use crate::core::stats::Histogram;
use crate::core::supervisor::{ExitCause, Supervisor, SupervisorConfig};
use crate::core::{Answer, Pid, Slot, Time, Version};
use crate::observe::status::{Health, PoolWorker, QueueStatus, ResponseClasses, StatusSnapshot};

fn worker(pid: u32, slot: u32, state: &'static str) -> PoolWorker {
    PoolWorker {
        worker: WorkerStatus {
            pid: Pid(pid),
            slot: Slot(slot),
            version: Version(1),
            state,
            served: 0,
            socket: format!("/tmp/w{slot}.sock"),
        },
        age_ms: Some(5),
    }
}

/// A snapshot of an app with two workers (slot 0 busy, slot 1 idle), some
/// traffic and one crash.
pub(crate) fn snapshot(app: &str) -> StatusSnapshot {
    let supervisor = Supervisor::new(
        SupervisorConfig {
            workers: 2,
            ..SupervisorConfig::default()
        },
        Time::ZERO,
    );
    let mut responses = ResponseClasses::default();
    for status in [200, 200, 200, 404, 503] {
        responses.count(status);
    }
    let mut rejections: BTreeMap<&'static str, u64> = Answer::ALL.iter().map(|a| (a.reason(), 0)).collect();
    rejections.insert(Answer::QueueFull.reason(), 1);
    let mut worker_exits: BTreeMap<&'static str, u64> = ExitCause::ALL.iter().map(|c| (c.as_str(), 0)).collect();
    worker_exits.insert("crash", 1);
    worker_exits.insert("stop", 4);
    let mut request_duration = Histogram::default();
    for micros in [80, 900, 40_000_000] {
        request_duration.observe(micros);
    }
    StatusSnapshot {
        status: Health::Healthy,
        app: app.to_owned(),
        workers: 2,
        ports: vec![5002],
        uptime: 1.5,
        version: Some(Version(1)),
        queue: QueueStatus { depth: 3, max: 8192 },
        inflight: 1,
        routable: 1,
        stopping: false,
        pool: vec![worker(10, 0, "busy"), worker(11, 1, "idle")],
        supervisor: supervisor.status(Time::ZERO),
        build: crate::observe::build::current().clone(),
        hot_reload: "none",
        bun: None,
        counters: Counters {
            requests: 6,
            retries: 2,
            client_gone: 1,
            ..Counters::default()
        },
        responses,
        rejections,
        worker_exits,
        queue_wait: Histogram::default(),
        request_duration,
        served_by_slot: vec![7, 9],
        illegal_transitions: 0,
        tracked: 0,
        lb_replicas: 1,
        replicas: Vec::new(),
    }
}
