//! Where a replacement worker starts: on the CPU its predecessor last ran
//! on, for its first moments only.
//!
//! On a small machine the kernel's choice of which processes share a CPU
//! decides throughput more than any front-door code (docs/benchmarking.md,
//! "The placement noise"). Once a server runs, that choice settles: workers
//! that are never replaced migrate a few times a minute. A new process
//! upsets it. Its load averages start at "always running" and take a few
//! hundred milliseconds to come down to what it really uses, and until then
//! every wake-up may move it: a recycled built-in worker was measured
//! migrating 200 to 440 times in its 0.4 s life at `w:2`, against 12
//! migrations in 4 s for the whole server without recycling. Starting the
//! replacement where its predecessor ran, and letting the kernel place it
//! freely once its averages have settled, keeps the old worker's place:
//! measured, 3–12% more throughput with recycling on two cores, though the
//! load balancer still moves the other processes after each start
//! (docs/benchmarking.md, "Recycling costs throughput"). The mask set aside is the one the child inherited (the
//! server's own: `taskset` on the server still bounds every worker), and it
//! is restored in full, so nothing stays pinned.
//!
//! Every call is best effort: a process that is gone, a CPU outside the
//! allowed set or a kernel that refuses leaves the child where the kernel
//! put it.

use rustix::process::Pid as RawPid;
use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

/// The CPU a process last ran on (field 39 of `/proc/PID/stat`).
pub fn last_cpu(pid: u32) -> Option<usize> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_last_cpu(&stat)
}

/// Field 39 (`processor`) of a `/proc/PID/stat` line. The command name
/// (field 2) is in parentheses and may hold spaces and parentheses itself,
/// so fields are counted from the last `)`.
fn parse_last_cpu(stat: &str) -> Option<usize> {
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    // Field 3 is the first after the name; field 39 is the 37th.
    after_name.split_ascii_whitespace().nth(36)?.parse().ok()
}

/// A process held on one CPU; [`Held::release`] gives it back its mask.
#[must_use = "release it, or the process stays on one CPU"]
#[derive(Debug)]
pub struct Held {
    pid: RawPid,
    mask: CpuSet,
}

impl Held {
    /// Restores the mask the process had before (the one it inherited).
    pub fn release(self) {
        // The process may have exited meanwhile: nothing to restore.
        let _ = sched_setaffinity(Some(self.pid), &self.mask);
    }
}

/// Holds `process` on the CPU `predecessor` last ran on. `None` (and
/// `process` untouched) when either is gone, the CPU is outside the mask
/// `process` has, or the kernel refuses.
pub fn start_beside(predecessor: u32, process: u32) -> Option<Held> {
    let cpu = last_cpu(predecessor)?;
    let pid = RawPid::from_raw(i32::try_from(process).ok()?)?;
    let mask = sched_getaffinity(Some(pid)).ok()?;
    if cpu >= CpuSet::MAX_CPU || !mask.is_set(cpu) {
        return None;
    }
    let mut one = CpuSet::new();
    one.set(cpu);
    sched_setaffinity(Some(pid), &one).ok()?;
    Some(Held { pid, mask })
}

/// The CPUs a process may run on, ascending.
pub fn allowed_cpus(pid: u32) -> Option<Vec<usize>> {
    let pid = RawPid::from_raw(i32::try_from(pid).ok()?)?;
    let mask = sched_getaffinity(Some(pid)).ok()?;
    Some((0..CpuSet::MAX_CPU).filter(|&cpu| mask.is_set(cpu)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_processor_field_is_counted_from_the_last_parenthesis() {
        // A command name with spaces and a ')' of its own.
        let mut fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        fields[39 - 3] = "7".into();
        let line = format!("4242 (a) b (c) {}\n", fields.join(" "));
        assert_eq!(parse_last_cpu(&line), Some(7));
        assert_eq!(parse_last_cpu("4242 (short) S 1 2"), None);
        assert_eq!(parse_last_cpu("no parenthesis"), None);
    }

    #[test]
    fn this_process_has_a_last_cpu_within_its_mask() {
        let me = std::process::id();
        let cpu = last_cpu(me).expect("our own /proc/PID/stat");
        assert!(allowed_cpus(me).expect("our own mask").contains(&cpu), "{cpu}");
    }

    /// A child held beside another runs on that CPU only, and gets its
    /// whole inherited mask back on release.
    #[test]
    fn a_held_child_runs_beside_its_predecessor_until_released() {
        let mut old = std::process::Command::new("sleep").arg("30").spawn().expect("sleep");
        let mut new = std::process::Command::new("sleep").arg("30").spawn().expect("sleep");
        let inherited = allowed_cpus(new.id()).expect("the child's mask");
        let held = start_beside(old.id(), new.id()).expect("held");
        let cpu = last_cpu(old.id()).expect("the predecessor's CPU");
        assert_eq!(allowed_cpus(new.id()), Some(vec![cpu]));
        held.release();
        assert_eq!(allowed_cpus(new.id()), Some(inherited));
        for child in [&mut old, &mut new] {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Gone: nothing to hold.
        assert!(start_beside(old.id(), std::process::id()).is_none());
    }
}
