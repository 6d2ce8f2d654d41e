//! The driver with front-door replicas: a worker connection goes back only
//! to requests of the replica whose event loop opened it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::*;
use crate::core::balancer::{Balancer, BalancerConfig};
use crate::core::supervisor::{Supervisor, SupervisorConfig};

/// Starts every worker as pid 4242 and remembers the version asked for.
struct OneWorker(Arc<Mutex<Option<Version>>>);

impl Spawner for OneWorker {
    fn spawn(&mut self, _slot: Slot, version: Version, _handle: &DriverHandle) -> std::io::Result<Pid> {
        *self.0.lock().unwrap() = Some(version);
        Ok(Pid(4242))
    }

    fn signal(&mut self, _pid: Pid, _signal: Signal) {}
}

/// A running driver with one joined worker, for `replicas` front-door
/// replicas (`None`: a driver told nothing of replicas, as the platform's).
async fn driver_with_one_worker(replicas: Option<usize>) -> DriverHandle {
    let clock = Clock::start();
    let balancer = Balancer::new(BalancerConfig {
        desired_workers: 1,
        ..BalancerConfig::default()
    });
    let supervisor = Supervisor::new(
        SupervisorConfig {
            workers: 1,
            ..SupervisorConfig::default()
        },
        clock.now(),
    );
    let identity = Identity {
        app: "app".into(),
        ports: vec![0],
        socket_prefix: PathBuf::from("/tmp/replica-test"),
        check_sockets: false,
    };
    let spawned = Arc::new(Mutex::new(None));
    let mut driver = Driver::new(
        Node::new(balancer, supervisor),
        OneWorker(spawned.clone()),
        clock,
        identity,
    );
    if let Some(replicas) = replicas {
        driver = driver.with_replicas(AcceptCounts::new(replicas));
    }
    let handle = driver.handle();
    tokio::spawn(driver.run());
    // The supervisor asks for the worker as soon as the driver runs.
    let version = loop {
        if let Some(version) = *spawned.lock().unwrap() {
            break version;
        }
        tokio::task::yield_now().await;
    };
    let reply = handle
        .worker_message(WorkerMessage::Join {
            app: "app".into(),
            worker_id: 0,
            pid: 4242,
            socket: "/tmp/replica-test.0.sock".into(),
            version: Some(version.0),
            reload: false,
        })
        .await;
    assert!(reply.ok, "{reply:?}");
    handle
}

/// Sends one request through `handle` and returns the connection its
/// dispatch carried (the request is then completed with `give_back`).
async fn one_request(handle: &DriverHandle, give_back: Option<Upstream>) -> Option<Upstream> {
    let (id, mut rx) = handle.arrive(RequestMeta::GET);
    let Some(Decision::Dispatch { conn, .. }) = rx.recv().await else {
        panic!("expected a dispatch");
    };
    handle.complete_whole(id, 200, give_back);
    conn
}

fn a_connection() -> Upstream {
    let (ours, _theirs) = tokio::io::duplex(64);
    Upstream::from_stream(ours)
}

#[tokio::test]
async fn a_connection_is_handed_only_to_requests_of_the_replica_that_opened_it() {
    let driver = driver_with_one_worker(Some(2)).await;
    let (zero, one) = (driver.for_replica(0), driver.for_replica(1));
    // Replica 1 opens a connection and gives it back to be kept.
    assert!(one_request(&one, Some(a_connection())).await.is_none());
    // Replica 0's request must not get it (it belongs to replica 1's loop)...
    assert!(one_request(&zero, None).await.is_none());
    // ...replica 1's next request does, and gives it back again.
    let kept = one_request(&one, None).await;
    assert!(kept.is_some(), "replica 1's connection was not kept for it");
    // Each replica keeps its own: replica 0 gives one back too, and both
    // are there for their own replicas.
    assert!(one_request(&zero, Some(a_connection())).await.is_none());
    assert!(one_request(&one, kept).await.is_none());
    assert!(one_request(&zero, None).await.is_some());
    assert!(one_request(&one, None).await.is_some());
    // A replica that does not exist keeps nothing (and breaks nothing).
    let stray = driver.for_replica(7);
    assert!(one_request(&stray, Some(a_connection())).await.is_none());
    assert!(one_request(&stray, None).await.is_none());

    let status = driver.status().await.expect("status");
    assert_eq!(status.lb_replicas, 2);
    assert_eq!(status.replicas.len(), 2);
    assert_eq!(status.tracked, 0, "every request was forgotten");
}

#[tokio::test]
async fn without_replicas_the_one_connection_is_reused_as_before() {
    let driver = driver_with_one_worker(None).await;
    assert_eq!(driver.replica(), 0);
    assert!(one_request(&driver, Some(a_connection())).await.is_none());
    assert!(one_request(&driver, None).await.is_some());
    let status = driver.status().await.expect("status");
    assert_eq!(status.lb_replicas, 1);
    assert!(status.replicas.is_empty(), "nobody counts accepts here");
    assert!(!crate::observe::status::to_json(Some(&status)).contains("\"replicas\""));
}
