//! The process manager: carries out the supervisor's spawn and signal
//! decisions with real processes.
//!
//! Each worker runs in its own process group with the contract's
//! environment. Workers must die with the server, even when the server is
//! killed with SIGKILL: the child is started through our own binary
//! (`rip-server __exec <program>`, or `rip-server worker --builtin`), which
//! sets the parent-death signal on itself and then `exec`s the program, so no
//! `unsafe` `pre_exec` hook is needed. The death signal survives `exec`.

pub mod bun;
pub mod watch;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt as _};

use crate::core::{Pid, Slot, Version};
use crate::net::unix_socket::remove_stale;
use crate::runtime::{DriverHandle, Signal, Spawner};

/// What a worker process runs.
#[derive(Clone, Debug)]
pub enum WorkerProgram {
    /// The example app built into this binary.
    Builtin,
    /// An executable that speaks the worker protocol.
    Executable(PathBuf),
    /// The entry (`RIP_ENTRY`) run by Bun through the worker runtime:
    /// `bun --no-install [--preload <preload>] <runtime>`. `--no-install`
    /// keeps Bun from fetching a missing package from the network at import.
    Bun {
        bun: PathBuf,
        runtime: PathBuf,
        preload: Option<PathBuf>,
    },
}

impl WorkerProgram {
    /// The program and its arguments.
    fn command_line(&self, exe: &Path) -> (PathBuf, Vec<std::ffi::OsString>) {
        match self {
            WorkerProgram::Builtin => (exe.to_path_buf(), vec!["worker".into(), "--builtin".into()]),
            WorkerProgram::Executable(path) => (exe.to_path_buf(), vec!["__exec".into(), path.into()]),
            WorkerProgram::Bun { bun, runtime, preload } => {
                let mut args: Vec<std::ffi::OsString> = vec!["__exec".into(), bun.into(), "--no-install".into()];
                if let Some(preload) = preload {
                    args.push("--preload".into());
                    args.push(preload.into());
                }
                args.push(runtime.into());
                (exe.to_path_buf(), args)
            }
        }
    }
}

/// Facts every worker's environment carries.
#[derive(Clone, Debug)]
pub struct WorkerSetup {
    pub program: WorkerProgram,
    pub app: String,
    pub app_dir: PathBuf,
    pub entry: PathBuf,
    pub socket_prefix: PathBuf,
    pub control_socket: PathBuf,
    pub max_requests: Option<u64>,
    /// Passed as `RIP_MAX_AGE_S` (0 = none): the Bun runtime's backstop;
    /// the supervisor recycles at this age first.
    pub max_age: Option<std::time::Duration>,
    pub max_reloads: u32,
    pub hot_reload: &'static str,
    /// `--json-logging`: the workers' own log lines are JSON too
    /// (`RIP_LOG_FORMAT=json`, else `text`).
    pub json_logs: bool,
}

/// Environment variables every worker of an app gets on top of the
/// server's own, swappable while the app runs: a worker started after
/// [`WorkerEnv::replace`] gets the new set, the ones already running keep
/// theirs. That is how the platform's rolling restart applies a changed
/// environment (the new generation starts with it, no worker is stopped
/// before its replacement is ready). Empty for a server started with an
/// app path. Its `Debug` shows the keys, never the values (secrets).
#[derive(Clone, Default)]
pub struct WorkerEnv(Arc<Mutex<Arc<BTreeMap<String, String>>>>);

impl WorkerEnv {
    /// These variables for the workers started from now on.
    pub fn new(vars: BTreeMap<String, String>) -> WorkerEnv {
        WorkerEnv(Arc::new(Mutex::new(Arc::new(vars))))
    }

    /// Workers started from now on get `vars` (exactly: a key left out is
    /// gone from them).
    pub fn replace(&self, vars: BTreeMap<String, String>) {
        *self.lock() = Arc::new(vars);
    }

    /// The variables in force.
    pub fn current(&self) -> Arc<BTreeMap<String, String>> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Arc<BTreeMap<String, String>>> {
        // Only whole maps are stored: a poisoned lock still holds one.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for WorkerEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.current().keys()).finish()
    }
}

/// Receives a worker's output one line at a time (without its line end).
pub type LineSink = Arc<dyn Fn(&str) + Send + Sync>;

/// Where a worker's stdout and stderr go.
#[derive(Clone, Default)]
pub enum WorkerOutput {
    /// The server's own stdout and stderr (a server started with an app path).
    #[default]
    Inherit,
    /// Piped and handed to the sink line by line (the platform: its log
    /// rings). A line longer than [`MAX_OUTPUT_LINE`] is handed over in
    /// pieces, so an endless line costs bounded memory.
    Lines(LineSink),
}

impl fmt::Debug for WorkerOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WorkerOutput::Inherit => "Inherit",
            WorkerOutput::Lines(_) => "Lines",
        })
    }
}

/// The longest piece of worker output handed to a [`LineSink`] at once.
pub const MAX_OUTPUT_LINE: usize = 8 * 1024;

/// Reads `from` to its end, handing each line to `sink`.
async fn forward_lines(mut from: impl AsyncRead + Unpin, sink: LineSink) {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line = &pending[..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            sink(&String::from_utf8_lossy(line));
            pending.drain(..=end);
        }
        if pending.len() > MAX_OUTPUT_LINE {
            sink(&String::from_utf8_lossy(&pending));
            pending.clear();
        }
    }
    if !pending.is_empty() {
        sink(&String::from_utf8_lossy(&pending));
    }
}

/// Spawns and signals real worker processes.
pub struct ProcessSpawner {
    setup: WorkerSetup,
    exe: PathBuf,
    env: WorkerEnv,
    output: WorkerOutput,
    /// Live children.
    children: BTreeMap<Pid, LiveChild>,
    /// Children started so far (each one's start number).
    starts: u64,
}

/// What the spawner remembers of a live child.
struct LiveChild {
    /// The socket path it was given.
    socket: PathBuf,
    slot: Slot,
    /// Its start number: the highest of a slot is its latest process.
    start: u64,
}

impl ProcessSpawner {
    /// A spawner that starts workers through this very binary.
    pub fn new(setup: WorkerSetup) -> io::Result<ProcessSpawner> {
        Ok(ProcessSpawner::with_executable(setup, std::env::current_exe()?))
    }

    /// A spawner that starts workers through `exe`, a `rip-server` binary
    /// (`__exec`, `worker --builtin`): the running one in production, the
    /// built binary in an integration test (whose own executable is the
    /// test harness).
    pub fn with_executable(setup: WorkerSetup, exe: PathBuf) -> ProcessSpawner {
        ProcessSpawner {
            setup,
            exe,
            env: WorkerEnv::default(),
            output: WorkerOutput::Inherit,
            children: BTreeMap::new(),
            starts: 0,
        }
    }

    /// Workers get `env` on top of the server's environment (the
    /// contract's `RIP_*` variables still win).
    pub fn with_env(mut self, env: WorkerEnv) -> ProcessSpawner {
        self.env = env;
        self
    }

    /// Workers' stdout and stderr go to `output`.
    pub fn with_output(mut self, output: WorkerOutput) -> ProcessSpawner {
        self.output = output;
        self
    }

    /// The socket path for a new process of `slot`: the slot's usual path
    /// when no live process holds it, else the first free handover path
    /// (`<prefix>.<id>.r1.sock`, `.r2`, ...). Two live processes never share
    /// a path, so removing a stale file never removes a live socket.
    fn socket_for(&self, slot: Slot) -> PathBuf {
        (0..)
            .map(|n| worker_socket(&self.setup.socket_prefix, slot, n))
            .find(|path| !self.children.values().any(|child| child.socket == *path))
            .expect("an unbounded range has a free path")
    }

    /// The live process a new one of `slot` follows: the slot's latest.
    fn predecessor(&self, slot: Slot) -> Option<Pid> {
        self.children
            .iter()
            .filter(|(_, child)| child.slot == slot)
            .max_by_key(|(_, child)| child.start)
            .map(|(pid, _)| *pid)
    }
}

/// How long a replacement stays on its predecessor's CPU: long enough for
/// the kernel's load averages of a new process (half-life 32 ms) to come
/// down to what it really uses (see `os::placement`).
pub const PLACEMENT_SETTLE: std::time::Duration = std::time::Duration::from_millis(300);

/// `<prefix>.<id>.sock`, or the `n`th handover path `<prefix>.<id>.r<n>.sock`.
pub fn worker_socket(prefix: &Path, slot: Slot, n: u32) -> PathBuf {
    let suffix = if n == 0 {
        format!(".{}.sock", slot.0)
    } else {
        format!(".{}.r{n}.sock", slot.0)
    };
    let mut path = prefix.as_os_str().to_owned();
    path.push(suffix);
    PathBuf::from(path)
}

impl Spawner for ProcessSpawner {
    fn spawn(&mut self, slot: Slot, version: Version, handle: &DriverHandle) -> io::Result<Pid> {
        let socket = self.socket_for(slot);
        remove_stale(&socket)?;
        let predecessor = self.predecessor(slot);
        let (program, args) = self.setup.program.command_line(&self.exe);
        let mut command = tokio::process::Command::new(program);
        command.args(args);
        let s = &self.setup;
        // First, so that the contract's variables below win.
        command.envs(self.env.current().iter());
        // Sockets and notifications handed to the server are not theirs.
        for key in crate::net::inherited::HANDED_OVER_ENV {
            command.env_remove(key);
        }
        command
            .current_dir(&s.app_dir)
            .env("RIP_WORKER_ID", slot.0.to_string())
            .env("RIP_SOCKET", &socket)
            .env("RIP_CONTROL_SOCKET", &s.control_socket)
            .env("RIP_APP", &s.app)
            .env("RIP_APP_DIR", &s.app_dir)
            .env("RIP_ENTRY", &s.entry)
            .env("RIP_VERSION", version.0.to_string())
            .env(
                "RIP_MAX_REQUESTS",
                s.max_requests.map_or_else(|| "0".to_owned(), |n| n.to_string()),
            )
            .env("RIP_MAX_AGE_S", s.max_age.map_or(0, |d| d.as_secs().max(1)).to_string())
            .env("RIP_MAX_RELOADS", s.max_reloads.to_string())
            .env("RIP_HOT_RELOAD", s.hot_reload)
            .env(
                crate::os::log_style::LOG_FORMAT_VAR,
                if s.json_logs { "json" } else { "text" },
            )
            .env("RIP_MANAGER_PID", std::process::id().to_string())
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(false);
        if let WorkerOutput::Lines(_) = self.output {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        let mut child = command.spawn()?;
        if let WorkerOutput::Lines(sink) = &self.output {
            if let Some(out) = child.stdout.take() {
                tokio::spawn(forward_lines(out, sink.clone()));
            }
            if let Some(err) = child.stderr.take() {
                tokio::spawn(forward_lines(err, sink.clone()));
            }
        }
        let pid = Pid(child
            .id()
            .ok_or_else(|| io::Error::other("child exited before it had a pid"))?);
        self.starts += 1;
        self.children.insert(
            pid,
            LiveChild {
                socket: socket.clone(),
                slot,
                start: self.starts,
            },
        );
        if let Some(old) = predecessor
            && let Some(held) = crate::os::placement::start_beside(old.0, pid.0)
        {
            tokio::spawn(async move {
                tokio::time::sleep(PLACEMENT_SETTLE).await;
                held.release();
            });
        }
        let handle = handle.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            match status {
                Ok(s) if s.success() => tracing::info!(pid = pid.0, slot = slot.0, "worker exited"),
                Ok(s) => tracing::warn!(pid = pid.0, slot = slot.0, "worker exited: {s}"),
                Err(e) => tracing::error!(pid = pid.0, "waiting for worker failed: {e}"),
            }
            // The worker removes its socket on a clean exit; a crash leaves it.
            let _ = remove_stale(&socket);
            handle.process_exited(pid);
        });
        tracing::debug!(pid = pid.0, slot = slot.0, version = version.0, "worker started");
        Ok(pid)
    }

    fn signal(&mut self, pid: Pid, signal: Signal) {
        let Some(raw) = rustix::process::Pid::from_raw(pid.0 as i32) else {
            return;
        };
        let result = match signal {
            Signal::Terminate => rustix::process::kill_process(raw, rustix::process::Signal::TERM),
            // protocol::RELOAD_SIGNAL
            Signal::Reload => rustix::process::kill_process(raw, rustix::process::Signal::HUP),
            // The whole group: a worker's own children go too.
            Signal::Kill => rustix::process::kill_process_group(raw, rustix::process::Signal::KILL)
                .or_else(|_| rustix::process::kill_process(raw, rustix::process::Signal::KILL)),
        };
        if let Err(e) = result {
            tracing::debug!(pid = pid.0, ?signal, "signal failed: {e}");
        }
    }

    fn exited(&mut self, pid: Pid) {
        self.children.remove(&pid);
    }

    fn cleanup(&mut self) {
        for (pid, LiveChild { socket, .. }) in std::mem::take(&mut self.children) {
            if let Some(raw) = rustix::process::Pid::from_raw(pid.0 as i32) {
                let _ = rustix::process::kill_process_group(raw, rustix::process::Signal::KILL);
            }
            let _ = remove_stale(&socket);
        }
    }
}

/// The worker side of the parent-death guarantee: called first thing in a
/// worker process started by the manager. Sets SIGKILL as the parent-death
/// signal and exits if the manager is already gone.
pub fn die_with_manager() {
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    if let Ok(expected) = std::env::var("RIP_MANAGER_PID")
        && let Ok(expected) = expected.parse::<i32>()
    {
        let parent = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
        if parent != expected {
            // The manager died between our fork and the prctl above.
            std::process::exit(1);
        }
    }
}

/// `rip-server __exec <program> [args...]`: become the worker program,
/// dying with the manager.
pub fn exec_worker(program: &Path, args: &[String]) -> io::Error {
    use std::os::unix::process::CommandExt;
    die_with_manager();
    std::process::Command::new(program).args(args).exec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(input: &'static [u8]) -> Vec<String> {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink: LineSink = {
            let lines = lines.clone();
            Arc::new(move |line: &str| lines.lock().unwrap().push(line.to_owned()))
        };
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(forward_lines(input, sink));
        lines.lock().unwrap().clone()
    }

    #[test]
    fn output_is_handed_over_line_by_line_without_line_ends() {
        assert_eq!(collect(b"one\r\ntwo\n\nlast"), ["one", "two", "", "last"]);
        assert!(collect(b"").is_empty());
    }

    #[test]
    fn an_endless_line_is_handed_over_in_bounded_pieces() {
        static LONG: [u8; 3 * MAX_OUTPUT_LINE] = [b'x'; 3 * MAX_OUTPUT_LINE];
        let pieces = collect(&LONG);
        assert!(pieces.len() >= 2, "{} pieces", pieces.len());
        assert!(
            pieces.iter().all(|p| p.len() <= MAX_OUTPUT_LINE + 4096),
            "a piece over the bound"
        );
        assert_eq!(pieces.iter().map(String::len).sum::<usize>(), LONG.len());
    }

    #[test]
    fn the_worker_environment_is_swapped_whole_and_shows_no_values() {
        let env = WorkerEnv::new(BTreeMap::from([("A".to_owned(), "secret".to_owned())]));
        let shared = env.clone();
        shared.replace(BTreeMap::from([("B".to_owned(), "2".to_owned())]));
        assert_eq!(*env.current(), BTreeMap::from([("B".to_owned(), "2".to_owned())]));
        env.replace(BTreeMap::from([("C".to_owned(), "hidden".to_owned())]));
        assert_eq!(format!("{env:?}"), r#"["C"]"#);
    }
}
