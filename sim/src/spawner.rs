//! [`SimSpawner`]: "processes" are pre-registered turmoil hosts.
//!
//! turmoil needs every host registered before the run, so the harness
//! registers a pool `p0..pK` whose software idles until the spawner assigns
//! it a (pid, slot, version). A spawn picks the lowest free host and
//! fabricates a pid (1000, 1001, ...). SIGTERM is a flag the worker polls;
//! SIGKILL is a [`Command`] the test loop carries out between steps
//! (`sim.crash` + `sim.bounce` of the host, then
//! `DriverHandle::process_exited`).

use std::io;

use rip_server::core::{Pid, Slot, Version};
use rip_server::runtime::{DriverHandle, Signal, Spawner};

use crate::rng::{Rng, mix};
use crate::state::{Command, Incarnation, Proc, ProcState, SharedRef, SpawnRecord, lock, now_us};

/// Starts simulated worker processes on the pool hosts.
pub struct SimSpawner {
    shared: SharedRef,
}

impl SimSpawner {
    pub fn new(shared: SharedRef) -> SimSpawner {
        SimSpawner { shared }
    }
}

impl Spawner for SimSpawner {
    fn spawn(&mut self, slot: Slot, version: Version, handle: &DriverHandle) -> io::Result<Pid> {
        let t = now_us();
        let mut s = lock(&self.shared);
        if s.handle.is_none() {
            s.handle = Some(handle.clone());
        }
        let Some(host) = s.hosts.iter().position(|h| h.pid.is_none()) else {
            s.spawns.push(SpawnRecord {
                t_us: t,
                slot: slot.0,
                version: version.0,
                pid: None,
            });
            s.violation(
                t,
                format!("harness: process pool exhausted spawning slot {slot} v{version}; raise the pool size"),
            );
            return Err(io::Error::other("simulated process pool exhausted"));
        };
        let pid = s.next_pid;
        s.next_pid += 1;
        let nth_of_slot = {
            let n = s.per_slot.entry(slot.0).or_insert(0);
            *n += 1;
            *n - 1
        };
        let mut rng = Rng::new(mix(s.seed, u64::from(pid)));
        let incarnation = Incarnation {
            pid,
            slot: slot.0,
            version: version.0,
            nth_of_slot,
        };
        let behavior = (s.behavior)(&incarnation, &mut rng);
        let host_name = s.hosts[host].name.clone();
        s.log(
            t,
            format!("spawn pid {pid} slot {slot} v{version} on {host_name} ({behavior})"),
        );
        s.hosts[host].pid = Some(pid);
        s.spawns.push(SpawnRecord {
            t_us: t,
            slot: slot.0,
            version: version.0,
            pid: Some(pid),
        });
        s.procs.insert(
            pid,
            Proc {
                pid,
                slot: slot.0,
                version: version.0,
                host,
                behavior,
                state: ProcState::Assigned,
                rng,
                current: 0,
                peak: 0,
                received: 0,
                served: 0,
                terminate: false,
                live_conns: 0,
                in_flight: None,
                last_activity_us: t,
                spawned_at: t,
                joined_at: None,
                died_at: None,
                end: None,
            },
        );
        Ok(Pid(pid))
    }

    fn signal(&mut self, pid: Pid, signal: Signal) {
        let t = now_us();
        let mut s = lock(&self.shared);
        let name = match signal {
            Signal::Terminate => "SIGTERM",
            Signal::Kill => "SIGKILL",
            Signal::Reload => "SIGHUP",
        };
        s.signals.push((t, pid.0, name));
        let alive = s.procs.get(&pid.0).is_some_and(|p| p.state != ProcState::Dead);
        s.log(
            t,
            format!("signal {name} pid {pid}{}", if alive { "" } else { " (already dead)" }),
        );
        if !alive {
            return;
        }
        match signal {
            Signal::Terminate => {
                if let Some(p) = s.procs.get_mut(&pid.0) {
                    p.terminate = true;
                }
            }
            Signal::Kill => s.commands.push_back(Command::Kill(pid.0)),
            // Simulated workers have no code to reload (and the simulation
            // never turns hot reload on): the signal is only recorded.
            Signal::Reload => {}
        }
    }
}
