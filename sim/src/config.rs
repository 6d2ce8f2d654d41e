//! What a scenario chooses: the server's settings, the pool, the network and
//! the workers' behavior ([`Config`]).
//!
//! Both the harness (which builds the world from it) and the report (whose
//! checks read its timeouts) need it, so it lives below both.

use std::sync::Arc;
use std::time::Duration;

use rip_server::core::supervisor::SupervisorConfig;

use crate::rng::Rng;
use crate::state::{BehaviorFn, Incarnation, WorkerBehavior};

/// Everything a scenario chooses.
#[derive(Clone)]
pub struct Config {
    /// The test's name, for the replay command.
    pub scenario: &'static str,
    pub seed: u64,
    pub workers: u32,
    pub max_queue: usize,
    pub queue_timeout: Duration,
    pub read_timeout: Duration,
    pub connect_timeout: Duration,
    pub quarantine: Duration,
    pub supervisor: SupervisorConfig,
    /// Pool hosts `p0..p<pool-1>` available to the spawner.
    pub pool: usize,
    /// Largest one-way network latency (turmoil draws each message's latency up to it).
    pub max_latency: Duration,
    /// The simulation fails if the clients are not done by then.
    pub limit: Duration,
    /// How long to keep stepping after the clients are done.
    pub settle: Duration,
    pub behavior: BehaviorFn,
}

impl Config {
    /// Defaults: 2 workers, a queue of 16, 2 s queue timeout, 5 s read timeout,
    /// a network of 2, 5 or 10 ms latency at most (by seed).
    pub fn new(scenario: &'static str, seed: u64) -> Config {
        Config {
            scenario,
            seed,
            workers: 2,
            max_queue: 16,
            queue_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_millis(200),
            quarantine: Duration::from_millis(250),
            supervisor: SupervisorConfig {
                backoff_initial: Duration::from_millis(100),
                backoff_max: Duration::from_secs(2),
                backoff_reset_after: Duration::from_secs(5),
                ready_timeout: Duration::from_secs(5),
                stop_timeout: Duration::from_secs(2),
                stuck_grace: Duration::from_millis(500),
                ..SupervisorConfig::default()
            },
            pool: 0,
            // Vary the network with the seed: 2, 5 or 10 ms at most per message.
            max_latency: Duration::from_millis([2, 5, 10][(seed % 3) as usize]),
            limit: Duration::from_secs(90),
            settle: Duration::from_secs(1),
            behavior: Arc::new(|_, _| WorkerBehavior::default()),
        }
    }

    /// Sets the behavior of every process.
    pub fn behavior(mut self, f: impl Fn(&Incarnation, &mut Rng) -> WorkerBehavior + Send + Sync + 'static) -> Config {
        self.behavior = Arc::new(f);
        self
    }

    /// Slack for an answer that depends on the network: a few one-way trips
    /// (connect, request, response) plus a tick.
    pub fn network_slack(&self) -> Duration {
        4 * self.max_latency + Duration::from_millis(10)
    }

    /// The pool size: enough for a handover of every slot plus spares.
    pub fn pool_size(&self) -> usize {
        if self.pool > 0 {
            self.pool
        } else {
            2 * self.workers as usize + 2
        }
    }
}
