//! End to end, the command line: bad input exits non-zero before anything
//! starts with one line naming the offending word; `--help` documents every
//! contract flag, token and variable; environment variables are read and a
//! flag beats its variable.

use std::time::Duration;

use crate::common::*;

/// Runs `rip-server args... --socket-prefix=<fresh> http:0` and checks that it
/// refused to start: non-zero exit, nothing on stdout, one line on stderr
/// containing `word`, no socket file created.
async fn refused(args: &[&str], envs: &[(&str, &str)], word: &str) {
    let dir = short_dir();
    let prefix = dir.path().join("c");
    let prefix_arg = format!("--socket-prefix={}", prefix.display());
    let mut all: Vec<&str> = args.to_vec();
    all.push(&prefix_arg);
    let clock = Stopwatch::start();
    let out = run_cli(&all, envs, Duration::from_secs(5)).await;
    let what = format!("rip-server {args:?} (env {envs:?})");
    assert!(out.code.is_some_and(|c| c != 0), "{what} should fail: {out:?}");
    assert!(
        clock.elapsed() < Duration::from_secs(3),
        "{what} took {:?} to fail",
        clock.elapsed()
    );
    assert_eq!(out.stdout, "", "{what} printed on stdout");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: stderr is not one line: {:?}", out.stderr);
    assert!(
        lines[0].contains(word),
        "{what}: stderr {:?} does not name {word:?}",
        lines[0]
    );
    assert!(!lines[0].contains('\u{1b}'), "{what}: escape codes in the error line");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(leftovers.is_empty(), "{what} created {leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_command_lines_exit_non_zero_with_one_line_naming_the_word() {
    within(BUDGET, async {
        let missing = "/nonexistent-rip-e2e/nopeapp";
        let cases: &[(&[&str], &str)] = &[
            (&["builtin:hello", "w:abc", "http:0"], "w:abc"),
            (&["builtin:hello", "w:0", "http:0"], "w:0"),
            (&["builtin:hello", "--max-queue=x", "http:0"], "--max-queue=x"),
            (&["builtin:hello", "--max-queue", "http:0"], "--max-queue"),
            (&["builtin:hello", "http:70000"], "http:70000"),
            (&["builtin:hello", "http:0", "--bogus"], "--bogus"),
            (&["builtin:hello", "http:0", "frobnicate:1"], "frobnicate"),
            (&["builtin:hello", "http:0", "r:abc"], "r:abc"),
            (&["builtin:hello", "http:0", "--lb-policy=random"], "random"),
            (
                &["builtin:hello", "http:0", "--queue-timeout-ms=0"],
                "--queue-timeout-ms",
            ),
            (&["builtin:nope", "http:0"], "nope"),
            (&[missing, "http:0"], "nopeapp"),
            (&["http:0"], "app"),
        ];
        for (args, word) in cases {
            refused(args, &[], word).await;
        }
        // A directory without an entry.
        let empty = short_dir();
        let empty_path = empty.path().to_string_lossy().into_owned();
        refused(&[&empty_path, "http:0"], &[], &empty_path).await;
        // Malformed environment variables are errors too.
        refused(
            &["builtin:hello", "http:0"],
            &[("RIP_MAX_QUEUE", "lots")],
            "RIP_MAX_QUEUE",
        )
        .await;
        refused(
            &["builtin:hello", "http:0"],
            &[("RIP_QUEUE_TIMEOUT_MS", "abc")],
            "RIP_QUEUE_TIMEOUT_MS",
        )
        .await;
        refused(&["builtin:hello"], &[("PORT", "99999")], "PORT").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn help_documents_every_contract_flag_token_and_variable() {
    within(BUDGET, async {
        for arg in ["--help", "-h", "help"] {
            let out = run_cli(&[arg], &[], STEP).await;
            assert_eq!(out.code, Some(0), "{arg}: {out:?}");
            assert_eq!(out.stderr, "", "{arg}");
            for needle in [
                "--max-queue",
                "--queue-timeout-ms",
                "--connect-timeout-ms",
                "--read-timeout-ms",
                "--hot-reload",
                "--max-reloads",
                "--json-logging",
                "--no-access-log",
                "--variant",
                "--socket-prefix",
                "--lb-policy",
                "--upstream-max-idle",
                "--upstream-max-conns-per-socket",
                "w:",
                "r:",
                "http:",
                "https:",
                "cert:",
                "key:",
                "protocol:",
                "PORT",
                "RIP_MAX_QUEUE",
                "RIP_QUEUE_TIMEOUT_MS",
                "RIP_CONNECT_TIMEOUT_MS",
                "RIP_READ_TIMEOUT_MS",
                "RIP_HOT_RELOAD",
                "RIP_MAX_RELOADS",
                "RIP_VARIANT",
                "SIGHUP",
                "SIGTERM",
                "SIGTTIN",
                "SIGTTOU",
                "8192",
                "2000",
                "5000",
                "ctl.sock",
            ] {
                assert!(out.stdout.contains(needle), "{arg}: --help does not mention {needle}");
            }
        }
        let out = run_cli(&["--version"], &[], STEP).await;
        assert_eq!(out.code, Some(0));
        assert!(out.stdout.starts_with("rip-server "), "{out:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flag_beats_its_variable_and_a_variable_beats_the_default() {
    within(BUDGET, async {
        // Variable only.
        let server = Server::builtin().args(&["w:1"]).env("RIP_MAX_QUEUE", "5").start().await;
        assert_eq!(server.status().await["queue"]["max"], 5);
        drop(server);
        // Flag and variable: the flag wins.
        let server = Server::builtin()
            .args(&["w:1", "--max-queue", "7"])
            .env("RIP_MAX_QUEUE", "5")
            .start()
            .await;
        assert_eq!(server.status().await["queue"]["max"], 7);
        // An empty variable counts as unset.
        drop(server);
        let server = Server::builtin().args(&["w:1"]).env("RIP_MAX_QUEUE", "").start().await;
        assert_eq!(server.status().await["queue"]["max"], 8192);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_server_on_a_live_prefix_is_refused() {
    within(BUDGET, async {
        let server = Server::start(&["w:1"]).await;
        let out = run_cli(
            &["builtin:hello", "w:1", "http:0", &server.prefix_arg()],
            &[],
            Duration::from_secs(5),
        )
        .await;
        assert_ne!(out.code, Some(0), "{out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
        assert!(out.stderr.contains("ctl.sock"), "{out:?}");
        // The running server is unharmed.
        assert_eq!(server.get("/ping").await.status, 200);
        assert_eq!(server.status().await["workers"], 1);
        // Subcommands against a prefix where nobody runs fail with one line.
        let dir = short_dir();
        let nobody = format!("--socket-prefix={}", dir.path().join("x").display());
        for sub in ["status", "restart", "stop"] {
            let out = run_cli(&[sub, &nobody], &[], STEP).await;
            assert_ne!(out.code, Some(0), "{sub}: {out:?}");
            assert_eq!(out.stderr.lines().count(), 1, "{sub}: {out:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_non_socket_file_at_a_socket_path_is_left_alone() {
    within(BUDGET, async {
        for name in ["f.ctl.sock", "f.0.sock"] {
            let dir = short_dir();
            let file = dir.path().join(name);
            std::fs::write(&file, b"precious").expect("write");
            let prefix = format!("--socket-prefix={}", dir.path().join("f").display());
            let out = run_cli(
                &["builtin:hello", "w:1", "http:0", &prefix],
                &[],
                Duration::from_secs(5),
            )
            .await;
            assert!(out.code.is_some_and(|c| c != 0), "{name}: {out:?}");
            assert_eq!(out.stdout, "", "{name}: started anyway: {out:?}");
            assert_eq!(out.stderr.lines().count(), 1, "{name}: {out:?}");
            assert!(out.stderr.contains(name), "{name}: {out:?}");
            assert_eq!(std::fs::read(&file).expect("still there"), b"precious");
        }
    })
    .await;
}

/// `--bind` narrows where the HTTP port listens. On 127.0.0.1 only, a
/// connection to another loopback address (127.0.0.2) is refused, where the
/// default (every IPv4 interface) takes it. A bad address, an address the
/// machine lacks or a taken port stops the start with one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bind_limits_the_listening_address() {
    within(BUDGET, async {
        let other_address = |port: u16| std::net::TcpStream::connect(("127.0.0.2", port));
        let server = Server::builtin().args(&["w:1"]).start().await;
        assert!(
            other_address(server.port).is_ok(),
            "by default the port listens on every IPv4 interface"
        );
        drop(server);
        let server = Server::builtin().args(&["w:1", "--bind=127.0.0.1"]).start().await;
        assert_eq!(server.get("/ping").await.status, 200);
        let rejection = other_address(server.port).expect_err("127.0.0.2 must be refused with --bind=127.0.0.1");
        assert_eq!(rejection.kind(), std::io::ErrorKind::ConnectionRefused);
        drop(server);
        refused(
            &["builtin:hello", "http:0", "--bind=localhost"],
            &[],
            "--bind=localhost",
        )
        .await;
        // An address this machine does not have (TEST-NET-1), a port taken.
        refused(&["builtin:hello", "http:0", "--bind=192.0.2.1"], &[], "192.0.2.1").await;
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = format!("http:{}", taken.local_addr().unwrap().port());
        refused(&["builtin:hello", &port, "--bind=127.0.0.1"], &[], &port).await;
    })
    .await;
}
