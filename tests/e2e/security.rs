//! End to end, other users: a socket or symlink another user planted at the
//! server's socket paths is neither removed nor trusted, and a process of
//! another user cannot join (or talk to) the control socket.
//!
//! Acting as another user needs root (to chown and to run a process as
//! `nobody`). CI runs as root, so these tests require it and fail with the
//! reason otherwise (they never pass without checking anything); as another
//! user, leave them out with `cargo test --test e2e -- --skip security::`.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::time::Duration;

use crate::common::*;

/// The uid and gid of `nobody`.
const NOBODY: u32 = 65534;

/// Fails the test unless it runs as root, naming what root is needed for.
fn require_root(why: &str) {
    assert!(
        rustix::process::geteuid().is_root(),
        "needs root {why} (CI runs as root; elsewhere skip with `-- --skip security::`)"
    );
}

fn world_readable_dir() -> tempfile::TempDir {
    let dir = short_dir();
    // So that only the sockets' own modes and owners are in play.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// Starts a server on `prefix` and checks that it refuses to start.
async fn refused_start(prefix: &std::path::Path) -> Output {
    let out = run_cli(
        &[
            "builtin:hello",
            "w:1",
            "http:0",
            &format!("--socket-prefix={}", prefix.display()),
        ],
        &[],
        Duration::from_secs(10),
    )
    .await;
    assert_ne!(out.code, Some(0), "the server must not start: {}", out.stderr);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_users_socket_or_symlink_at_the_prefix_stops_the_server_untouched() {
    require_root("to plant another user's socket");
    within(BUDGET, async {
        let dir = world_readable_dir();

        // Another user's socket where worker 0's socket goes.
        let prefix = dir.path().join("a");
        let planted = dir.path().join("a.0.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&planted).expect("plant a socket");
        std::os::unix::fs::chown(&planted, Some(NOBODY), Some(NOBODY)).expect("chown");
        let out = refused_start(&prefix).await;
        assert!(out.stderr.contains("owned by uid 65534"), "{}", out.stderr);
        assert_eq!(out.stderr.trim().lines().count(), 1, "one clear line: {}", out.stderr);
        let meta = std::fs::symlink_metadata(&planted).expect("the planted socket is still there");
        assert!(meta.file_type().is_socket() && meta.uid() == NOBODY);

        // A symlink where the control socket goes, pointing at a file of ours.
        let prefix = dir.path().join("b");
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep me").expect("write");
        let link = dir.path().join("b.ctl.sock");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let out = refused_start(&prefix).await;
        assert!(out.stderr.contains("not a socket"), "{}", out.stderr);
        assert!(
            std::fs::symlink_metadata(&link)
                .expect("link kept")
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&target).expect("target kept"), "keep me");
    })
    .await;
}

/// Runs a small Python client as `nobody` against the control socket: it
/// prints `EACCES` when it cannot connect, else the status line of its
/// answer to a join request.
async fn join_as_nobody(control: &std::path::Path) -> String {
    let script = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("EACCES"); sys.exit(0)
body = b'{"op":"join","app":"hello","workerId":0,"pid":1,"socket":"/tmp/x.sock","version":1}'
s.sendall(b"POST /worker HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
s.settimeout(5)
print(s.recv(200).split(b"\r\n")[0].decode())
"#;
    let out = tokio::process::Command::new("/usr/bin/python3")
        .uid(NOBODY)
        .gid(NOBODY)
        .arg("-c")
        .arg(script)
        .arg(control)
        .current_dir("/")
        .output()
        .await
        .expect("run python3 as nobody");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_process_of_another_user_cannot_join() {
    require_root("to run a process as another user");
    assert!(
        std::path::Path::new("/usr/bin/python3").exists(),
        "needs /usr/bin/python3: an interpreter `nobody` can run for the other user's client"
    );
    within(BUDGET, async {
        let dir = world_readable_dir();
        let server = Server::builtin()
            .args(&["w:1"])
            .prefix(&dir.path().join("s"))
            .start()
            .await;
        let before = Server::pool_pids(&server.status().await);
        let control = server.ctl_socket();

        // The socket's mode keeps other users out entirely...
        assert_eq!(join_as_nobody(&control).await, "EACCES");
        // ...and with the mode opened up, the peer-credential check still does.
        std::fs::set_permissions(&control, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        let answer = join_as_nobody(&control).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");

        // Nothing changed.
        let status = server.status().await;
        assert_eq!(Server::pool_pids(&status), before, "{status}");
        assert_eq!(server.get("/ping").await.status, 200);
    })
    .await;
}
