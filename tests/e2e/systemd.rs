//! End to end, the systemd hooks: socket activation through Debian's
//! `systemd-socket-activate` (the server serves on the handed socket and
//! binds nothing itself), the notifications a `Type=notify` unit reads
//! (a test datagram socket as `NOTIFY_SOCKET`: `READY=1` after the first
//! join, `RELOADING=1` then `READY=1` around `SIGHUP`, `WATCHDOG=1` at the
//! asked interval, `STOPPING=1` on `SIGTERM`), and the shipped unit files,
//! checked by `systemd-analyze verify` and against the binary's flags.
//!
//! The systemd tools come with Debian's `systemd` package; when one is
//! missing and the tests run as root it is installed, else the test fails
//! saying what to install (never skipped).

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http::Method;

use crate::common::*;

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_activation_serves_on_the_handed_socket_and_binds_nothing() {
    within(BUDGET, async {
        let activate = debian_tool("systemd-socket-activate", "systemd");
        let port = free_port();
        let home = fresh_home();
        let dir = short_dir();
        let prefix = dir.path().join("s");
        // `http:<the same port>`: binding it itself would fail (the port is
        // in use by the handed socket), so serving proves the hand-over.
        let mut child = tokio::process::Command::new(activate)
            .args(["-l", &format!("127.0.0.1:{port}"), "--fdname=http", "-E", "RIP_HOME"])
            .arg(bin())
            .args([
                "builtin:hello",
                "w:1",
                &format!("http:{port}"),
                &format!("--socket-prefix={}", prefix.display()),
            ])
            .env("RIP_HOME", home.path())
            .env_remove("PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn systemd-socket-activate");
        let pid = child.id().expect("pid");
        // The first connection makes systemd-socket-activate exec the server.
        let pong = eventually("a pong through the handed socket", STEP, || async {
            let r = request(port, Method::GET, "/ping", &[], Bytes::new()).await?;
            if r.status == 200 {
                Ok(r)
            } else {
                Err(format!("{}", r.status))
            }
        })
        .await;
        assert_eq!(pong.text(), "pong");
        // The server is the same process (exec'd), and it stops cleanly.
        send_signal(pid, "TERM");
        let status = tokio::time::timeout(STEP, child.wait())
            .await
            .expect("the server exits after SIGTERM")
            .expect("wait");
        let mut out = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            use tokio::io::AsyncReadExt as _;
            let _ = stdout.read_to_string(&mut out).await;
        }
        assert_eq!(status.code(), Some(0), "stdout: {out}");
        assert!(
            out.contains(&format!("http://localhost:{port}")),
            "the start line names the handed port: {out}"
        );
    })
    .await;
}

/// Reads the notifications the server sends, each datagram as one string.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    _dir: tempfile::TempDir,
    seen: Vec<String>,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = short_dir();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        NotifySocket {
            socket,
            path,
            _dir: dir,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for a datagram containing `line` as one of its
    /// lines; returns that datagram. Everything received is kept in order.
    async fn wait_for(&mut self, line: &str) -> String {
        self.wait_for_nth(line, 1).await
    }

    /// Waits (bounded) for the `n`th datagram containing `line`.
    async fn wait_for_nth(&mut self, line: &str, n: usize) -> String {
        let clock = Stopwatch::start();
        let mut buffer = vec![0u8; 4096];
        loop {
            if let Some(found) = self.seen.iter().filter(|d| d.lines().any(|l| l == line)).nth(n - 1) {
                return found.clone();
            }
            assert!(
                clock.elapsed() < STEP,
                "no {line:?} within {STEP:?}; received: {:?}",
                self.seen
            );
            let socket = self.socket.try_clone().expect("clone");
            let received = tokio::task::spawn_blocking(move || {
                let n = socket.recv(&mut buffer).ok()?;
                Some((String::from_utf8_lossy(&buffer[..n]).into_owned(), buffer))
            })
            .await
            .expect("receive task");
            buffer = vec![0u8; 4096];
            if let Some((datagram, _)) = received {
                self.seen.push(datagram);
            }
        }
    }

    fn index_of(&self, line: &str) -> Option<usize> {
        self.seen.iter().position(|d| d.lines().any(|l| l == line))
    }

    fn forget(&mut self) {
        self.seen.clear();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notify_unit_hears_ready_reloading_watchdog_and_stopping() {
    within(BUDGET, async {
        let mut notify = NotifySocket::bind();
        let path = notify.path.to_string_lossy().into_owned();
        let mut server = Server::builtin()
            .args(&["w:2"])
            .env("NOTIFY_SOCKET", &path)
            .env("WATCHDOG_USEC", "300000")
            .start()
            .await;
        let ready = notify.wait_for("READY=1").await;
        assert!(ready.contains("STATUS=serving hello with"), "{ready}");
        // Once a worker had joined: the status at READY named a worker.
        assert!(!ready.contains("with 0 workers"), "{ready}");
        let watchdog = notify.wait_for("WATCHDOG=1").await;
        assert_eq!(watchdog.trim_end(), "WATCHDOG=1");
        // It repeats at the interval.
        notify.wait_for_nth("WATCHDOG=1", 3).await;
        let status = server.status().await;
        let before = Server::pool_pids(&status);

        // SIGHUP: RELOADING=1 (with MONOTONIC_USEC), then READY=1 once the
        // new workers serve.
        notify.forget();
        server.signal("HUP");
        let reloading = notify.wait_for("RELOADING=1").await;
        assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
        notify.wait_for("READY=1").await;
        assert!(
            notify.index_of("RELOADING=1") < notify.index_of("READY=1"),
            "{:?}",
            notify.seen
        );
        let after = server.status().await;
        assert!(
            after["supervisor"]["rolling"].is_null(),
            "READY=1 before the roll ended: {after}"
        );
        assert!(Server::pool_pids(&after).is_disjoint(&before), "{after}");

        // SIGTERM: STOPPING=1, then exit 0.
        server.signal("TERM");
        notify.wait_for("STOPPING=1").await;
        let exit = server.wait_exit(STEP).await.expect("exit after SIGTERM");
        assert_eq!(exit.code(), Some(0));
    })
    .await;
}

/// The unit files in `deploy/systemd/`, with `ExecStart` pointed at the
/// binary under test.
fn units_with_this_binary(dir: &Path) -> (PathBuf, PathBuf) {
    let source = crate_dir().join("deploy/systemd");
    let service = std::fs::read_to_string(source.join("rip-server.service")).expect("rip-server.service");
    assert!(
        service.contains("/usr/local/bin/rip-server "),
        "ExecStart names /usr/local/bin/rip-server"
    );
    let service_path = dir.join("rip-server.service");
    std::fs::write(
        &service_path,
        service.replace("/usr/local/bin/rip-server ", &format!("{} ", bin())),
    )
    .unwrap();
    let socket_path = dir.join("rip-server.socket");
    std::fs::copy(source.join("rip-server.socket"), &socket_path).expect("rip-server.socket");
    (service_path, socket_path)
}

#[tokio::test]
async fn the_shipped_unit_files_verify_and_match_the_binary() {
    let analyze = debian_tool("systemd-analyze", "systemd");
    let dir = tempfile::tempdir().unwrap();
    let (service, socket) = units_with_this_binary(dir.path());
    let out = std::process::Command::new(&analyze)
        .args(["verify", "--man=no"])
        .arg(&service)
        .arg(&socket)
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );

    let text = std::fs::read_to_string(&service).unwrap();
    let setting = |key: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(setting("Type"), ["notify"]);
    assert_eq!(setting("NotifyAccess"), ["all"], "the upgraded process notifies too");
    assert_eq!(setting("ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert_eq!(setting("KillMode"), ["mixed"]);
    assert_eq!(setting("StateDirectory"), ["rip-server"]);
    assert_eq!(setting("RuntimeDirectory"), ["rip-server"]);
    assert_eq!(
        setting("Environment"),
        ["RIP_HOME=%S/rip-server"],
        "RIP_HOME in the state directory"
    );
    for hardening in ["NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes"] {
        assert!(text.lines().any(|l| l == hardening), "{hardening}");
    }
    // ExecStart's words are the binary's: parsed as the binary parses them
    // (the app path replaced by the built-in app, %t by a directory).
    let exec = setting("ExecStart").pop().expect("ExecStart");
    let words: Vec<String> = exec
        .split_whitespace()
        .skip(1)
        .map(|w| w.replace("/srv/app", "builtin:hello").replace("%t", "/run"))
        .collect();
    let env = |_: &str| None;
    match rip_server::cli::parse(&words, &env) {
        Ok(rip_server::cli::Command::Serve(config)) => {
            assert_eq!(config.http_port, 5002);
            let socket_text = std::fs::read_to_string(&socket).unwrap();
            assert!(
                socket_text.lines().any(|l| l == "ListenStream=5002"),
                "the socket's port is ExecStart's"
            );
            assert!(socket_text.lines().any(|l| l == "FileDescriptorName=http"));
        }
        other => panic!("ExecStart's words do not parse as a serve command: {other:?}"),
    }
}
