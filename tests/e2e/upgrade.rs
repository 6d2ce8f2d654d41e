//! End to end, the hitless binary upgrade (`SIGUSR2`): a server started
//! from a copy of the binary; a different build is put at that path (the
//! same program with bytes appended: another file, another build id); the
//! signal under load from keep-alive clients and from clients opening a new
//! connection per request. Nothing is refused and nothing fails; `/status`
//! shows the new build; the old process exits 0; the new one's workers use
//! socket names of their own; the CLI finds the new server by the old
//! socket prefix once the old one is gone.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::Value;

use crate::common::*;

/// Clients opening a new connection for every request until stopped;
/// every outcome that is not a 200 is kept (at most 20 000 requests each).
pub(crate) fn connection_per_request_load(
    port: u16,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(usize, Vec<String>)>> {
    (0..clients)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0, Vec::new());
                while !stop.load(Ordering::Relaxed) && ok + failed.len() < 20_000 {
                    match request(port, Method::GET, "/ping", &[("connection", "close")], Bytes::new()).await {
                        Ok(r) if r.status == 200 => ok += 1,
                        Ok(r) => failed.push(format!("{} {}", r.status, r.text())),
                        Err(e) => failed.push(e),
                    }
                }
                (ok, failed)
            })
        })
        .collect()
}

/// Every file in the prefix's directory whose name starts with the
/// prefix's (the old generation's `<prefix>.*`, the new one's `<prefix>-u<pid>.*`).
fn socket_files(prefix: &std::path::Path) -> Vec<String> {
    let base = prefix.file_name().unwrap().to_string_lossy().into_owned();
    let mut files: Vec<String> = std::fs::read_dir(prefix.parent().unwrap())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&base))
        .collect();
    files.sort();
    files
}

/// The new server and its workers, SIGKILLed if the test ends early (it
/// is not the harness's child: the harness's `Server` only knows the old).
pub(crate) struct KillOnDrop(pub(crate) u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if pid_alive(self.0) {
            for pid in children_of(self.0).into_iter().chain([self.0]) {
                send_signal(pid, "KILL");
            }
        }
    }
}

fn build_id(status: &Value) -> String {
    status["build"]["id"].as_str().expect("build.id in /status").to_owned()
}

/// A copy of the built binary in `dir`, executable: a path a test may
/// replace with another build before a `SIGUSR2`.
pub(crate) fn copy_of_binary(dir: &std::path::Path) -> std::path::PathBuf {
    let exe = dir.join("rip-server");
    std::fs::copy(bin(), &exe).expect("copy the binary");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    exe
}

/// The pids of live servers with a run file in `home`.
pub(crate) fn run_file_pids(home: &std::path::Path) -> BTreeSet<u32> {
    std::fs::read_dir(home.join("run"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path()).ok()?;
            let json: Value = serde_json::from_str(&text).ok()?;
            json["pid"].as_u64().map(|p| p as u32)
        })
        .filter(|&pid| pid_alive(pid))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigusr2_hands_the_port_to_the_new_binary_without_a_failed_request() {
    within(Duration::from_secs(90), async {
        let place = tempfile::tempdir().unwrap();
        let exe = copy_of_binary(place.path());
        let mut server = Server::builtin().exe(&exe).args(&["w:2"]).start().await;
        let port = server.port;
        let old_pid = server.pid;
        let before = server.status().await;
        let old_build = build_id(&before);
        let old_workers = Server::pool_pids(&before);

        // Another build at the same path: the bytes of this one and a tail
        // (a different file, so a different build id; still the program).
        let mut bytes = std::fs::read(bin()).unwrap();
        bytes.extend_from_slice(b"\nrip-server upgrade test build\n");
        let next = place.path().join("rip-server.next");
        std::fs::write(&next, bytes).unwrap();
        std::fs::set_permissions(&next, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&next, &exe).expect("put the new build in place");

        let keep_alive = Load::start(port, 4, "/ping", Duration::ZERO);
        let stop = Arc::new(AtomicBool::new(false));
        let fresh = connection_per_request_load(port, 4, stop.clone());
        server.wait_for_traffic(200).await;

        server.signal("USR2");
        // The new server: the old one's child with a run file of its own.
        let new_pid = eventually("the new server's run file", STEP, || async {
            run_file_pids(server.home.path())
                .into_iter()
                .find(|&p| p != old_pid)
                .ok_or_else(|| "none yet".to_owned())
        })
        .await;
        let _new_server = KillOnDrop(new_pid);
        // The new build answers /status, and the old process is gone.
        let after = eventually("the new build serving", Duration::from_secs(30), || async {
            let status = request(port, Method::GET, "/status", &[], Bytes::new()).await?.json();
            if build_id(&status) != old_build && status["workers"] == 2 {
                Ok(status)
            } else {
                Err(status.to_string())
            }
        })
        .await;
        let exit = server
            .wait_exit(Duration::from_secs(30))
            .await
            .expect("the old server exits");
        assert_eq!(exit.code(), Some(0), "the old server's exit");
        // Traffic goes on against the new one for a while.
        let served = after["counters"]["dispatched"].as_u64().unwrap_or(0);
        eventually("traffic on the new server", STEP, || async {
            let status = request(port, Method::GET, "/status", &[], Bytes::new()).await?.json();
            let now = status["counters"]["dispatched"].as_u64().unwrap_or(0);
            if now >= served + 200 {
                Ok(())
            } else {
                Err(now.to_string())
            }
        })
        .await;

        stop.store(true, Ordering::Relaxed);
        let report = keep_alive.stop().await;
        let mut fresh_ok = 0;
        let mut failures: Vec<String> = report
            .failures()
            .into_iter()
            .map(|f| format!("keep-alive: {f}"))
            .collect();
        for task in fresh {
            let (ok, failed) = task.await.expect("load task");
            fresh_ok += ok;
            failures.extend(failed.into_iter().map(|f| format!("new connection: {f}")));
        }
        assert!(
            failures.is_empty(),
            "{} requests failed: {:?}",
            failures.len(),
            &failures[..failures.len().min(10)]
        );
        assert!(
            report.total() > 200 && fresh_ok > 200,
            "keep-alive {} new-connection {fresh_ok}",
            report.total()
        );

        // New workers, on socket names of the new generation.
        let new_workers = Server::pool_pids(&after);
        assert!(new_workers.is_disjoint(&old_workers), "{after}");
        let base = server.prefix.file_name().unwrap().to_string_lossy().into_owned();
        let own = format!("{base}-u{new_pid}.");
        let files = socket_files(&server.prefix);
        let workers: Vec<&String> = files
            .iter()
            .filter(|f| f.ends_with(".sock") && !f.ends_with(".ctl.sock"))
            .collect();
        assert!(
            workers.len() == 2 && workers.iter().all(|f| f.starts_with(&own)),
            "the new workers' sockets are not all named {own}*: {files:?}"
        );
        // The old generation's are gone; the known control socket is the new server's.
        assert!(files.contains(&format!("{base}.ctl.sock")), "{files:?}");
        // The CLI finds it where it found the old one.
        let out = run_cli(&["status", "--json", &server.prefix_arg()], &[], STEP).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        let status: Value = serde_json::from_str(&out.stdout).expect("JSON");
        assert_eq!(build_id(&status), build_id(&after));

        // And it stops cleanly, leaving no socket behind.
        send_signal(new_pid, "TERM");
        eventually("the new server to exit", STEP, || async {
            if pid_alive(new_pid) {
                Err("alive".to_owned())
            } else {
                Ok(())
            }
        })
        .await;
        for pid in new_workers {
            assert!(!pid_alive(pid), "worker {pid} outlived the server");
        }
        let left = socket_files(&server.prefix);
        assert!(left.is_empty(), "{left:?}");
    })
    .await;
}
