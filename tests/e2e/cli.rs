//! End to end, the command line: bad input exits before anything starts
//! with one line naming the offending word and the contract's exit status
//! (2 for a mistake, 1 for what is not in this version); `--help` documents
//! every contract flag, token and variable; environment variables are read
//! and a flag beats its variable; a running server is found through its run
//! file in `$RIP_HOME` when a subcommand names none.
//!
//! Every process spawned here gets `RIP_HOME` set to a temporary directory.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// A fresh `$RIP_HOME` (short, under /tmp; removed at the end).
fn home() -> tempfile::TempDir {
    short_dir()
}

/// `rip-server args...` with `RIP_HOME=home` (and `envs`).
async fn cli_in(home: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let home = home.to_string_lossy().into_owned();
    let mut all: Vec<(&str, &str)> = vec![("RIP_HOME", &home)];
    all.extend_from_slice(envs);
    run_cli(args, &all, STEP).await
}

/// The built-in app with `RIP_HOME=home`.
fn server_in(home: &Path) -> ServerBuilder {
    Server::builtin().env("RIP_HOME", &home.to_string_lossy())
}

/// The `.json` files in `$RIP_HOME/run`.
fn run_files(home: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(home.join("run"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Asserts exit status `code`, nothing on stdout and exactly `line` on stderr.
fn assert_one_line(out: &Output, code: i32, line: &str, what: &str) {
    assert_eq!(out.code, Some(code), "{what}: {out:?}");
    assert_eq!(out.stdout, "", "{what}: {out:?}");
    assert_eq!(out.stderr, format!("{line}\n"), "{what}");
}

/// Runs `rip-server args... --socket-prefix=<fresh>` (with `RIP_HOME` in the
/// same fresh directory) and checks that it refused to start: exit status
/// `code`, nothing on stdout, one line on stderr containing `word`, no file
/// created (no socket, no home, no run file).
async fn refused(code: i32, args: &[&str], envs: &[(&str, &str)], word: &str) {
    let dir = short_dir();
    let prefix = dir.path().join("c");
    let prefix_arg = format!("--socket-prefix={}", prefix.display());
    let mut all: Vec<&str> = args.to_vec();
    all.push(&prefix_arg);
    let home = dir.path().join("home").to_string_lossy().into_owned();
    let mut envs_with_home: Vec<(&str, &str)> = vec![("RIP_HOME", &home)];
    envs_with_home.extend_from_slice(envs);
    let clock = Stopwatch::start();
    let out = run_cli(&all, &envs_with_home, Duration::from_secs(5)).await;
    let what = format!("rip-server {args:?} (env {envs:?})");
    assert_eq!(out.code, Some(code), "{what}: {out:?}");
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
            refused(2, args, &[], word).await;
        }
        // A directory without an entry.
        let empty = short_dir();
        let empty_path = empty.path().to_string_lossy().into_owned();
        refused(2, &[&empty_path, "http:0"], &[], &empty_path).await;
        // Malformed environment variables are errors too.
        refused(
            2,
            &["builtin:hello", "http:0"],
            &[("RIP_MAX_QUEUE", "lots")],
            "RIP_MAX_QUEUE",
        )
        .await;
        refused(
            2,
            &["builtin:hello", "http:0"],
            &[("RIP_QUEUE_TIMEOUT_MS", "abc")],
            "RIP_QUEUE_TIMEOUT_MS",
        )
        .await;
        refused(2, &["builtin:hello"], &[("PORT", "99999")], "PORT").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn help_documents_every_contract_flag_token_and_variable() {
    within(BUDGET, async {
        let home = home();
        for arg in ["--help", "-h", "help"] {
            let out = cli_in(home.path(), &[arg], &[]).await;
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
        let out = cli_in(home.path(), &["--version"], &[]).await;
        assert_eq!(out.code, Some(0));
        assert!(out.stdout.starts_with("rip-server "), "{out:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flag_beats_its_variable_and_a_variable_beats_the_default() {
    within(BUDGET, async {
        let home = home();
        let home = home.path();
        // Variable only.
        let server = server_in(home).args(&["w:1"]).env("RIP_MAX_QUEUE", "5").start().await;
        assert_eq!(server.status().await["queue"]["max"], 5);
        drop(server);
        // Flag and variable: the flag wins.
        let server = server_in(home)
            .args(&["w:1", "--max-queue", "7"])
            .env("RIP_MAX_QUEUE", "5")
            .start()
            .await;
        assert_eq!(server.status().await["queue"]["max"], 7);
        // An empty variable counts as unset.
        drop(server);
        let server = server_in(home).args(&["w:1"]).env("RIP_MAX_QUEUE", "").start().await;
        assert_eq!(server.status().await["queue"]["max"], 8192);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_server_on_a_live_prefix_is_refused() {
    within(BUDGET, async {
        let home = home();
        let server = server_in(home.path()).args(&["w:1"]).start().await;
        let out = cli_in(
            home.path(),
            &["builtin:hello", "w:1", "http:0", &server.prefix_arg()],
            &[],
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
            let out = cli_in(home.path(), &[sub, &nobody], &[]).await;
            assert_eq!(out.code, Some(1), "{sub}: {out:?}");
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
            let out = cli_in(dir.path(), &["builtin:hello", "w:1", "http:0", &prefix], &[]).await;
            assert_eq!(out.code, Some(1), "{name}: {out:?}");
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
        let home = home();
        let server = server_in(home.path()).args(&["w:1"]).start().await;
        assert!(
            other_address(server.port).is_ok(),
            "by default the port listens on every IPv4 interface"
        );
        drop(server);
        let server = server_in(home.path()).args(&["w:1", "--bind=127.0.0.1"]).start().await;
        assert_eq!(server.get("/ping").await.status, 200);
        let rejection = other_address(server.port).expect_err("127.0.0.2 must be refused with --bind=127.0.0.1");
        assert_eq!(rejection.kind(), std::io::ErrorKind::ConnectionRefused);
        drop(server);
        refused(
            2,
            &["builtin:hello", "http:0", "--bind=localhost"],
            &[],
            "--bind=localhost",
        )
        .await;
        // An address this machine does not have (TEST-NET-1), a port taken.
        refused(1, &["builtin:hello", "http:0", "--bind=192.0.2.1"], &[], "192.0.2.1").await;
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = format!("http:{}", taken.local_addr().unwrap().port());
        refused(1, &["builtin:hello", &port, "--bind=127.0.0.1"], &[], &port).await;
    })
    .await;
}

/// A malformed variable stops the start with exit status 2 and one line
/// naming it; so does a missing certificate file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_variables_and_missing_certificates_exit_2() {
    within(BUDGET, async {
        let start = ["builtin:hello", "http:0"];
        for (name, value) in [
            ("RIP_THREADS", "abc"),
            ("RIP_THREADS", "0"),
            ("RIP_LOG", "info,rip_server=loud"),
            ("RIP_RETRY_SENT", "yes"),
            ("RIP_HOME", "relative/home"),
            ("RIP_BIND", "nowhere"),
            ("RIP_VARIANT", "a b"),
        ] {
            refused(2, &start, &[(name, value)], &format!("{name}={value}")).await;
        }
        let home = home();
        let out = cli_in(home.path(), &start, &[("RIP_THREADS", "abc")]).await;
        assert_one_line(
            &out,
            2,
            "rip-server: RIP_THREADS=abc: expected a thread count in 1..=1024",
            "RIP_THREADS=abc",
        );
        // HTTPS words whose files are missing: exit 2, naming the file.
        for (words, file) in [
            (
                &["cert:/nonexistent/app.pem", "key:/nonexistent/app.key"][..],
                "/nonexistent/app.pem",
            ),
            (
                &["--cert=/nonexistent/a.pem", "--key=/nonexistent/a.key", "https:0"][..],
                "/nonexistent/a.pem",
            ),
        ] {
            let mut args = vec!["builtin:hello", "http:0"];
            args.extend(words);
            let out = cli_in(home.path(), &args, &[]).await;
            assert_eq!(out.code, Some(2), "{out:?}");
            assert!(out.stderr.contains(file) && out.stderr.lines().count() == 1, "{out:?}");
        }
        // Valid values start the server.
        let server = server_in(home.path())
            .args(&["w:1"])
            .env("RIP_THREADS", "2")
            .env("RIP_LOG", "warn")
            .env("RIP_RETRY_SENT", "1")
            .start()
            .await;
        assert_eq!(server.get("/ping").await.status, 200);
    })
    .await;
}

/// `status` without an app path finds the one running server through its
/// run file, prints a table for people, and `--json` the JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_without_an_app_path_finds_the_one_running_server() {
    within(BUDGET, async {
        let home = home();
        let server = server_in(home.path()).args(&["w:2"]).start().await;
        // The run file: where the contract says, private, with the real port.
        let file = home.path().join("run/hello.json");
        assert_eq!(run_files(home.path()), vec![file.clone()]);
        let run: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(run["pid"], server.pid);
        assert_eq!(run["app"], "hello");
        assert_eq!(run["ports"]["http"], server.port);
        assert_eq!(run["controlSocket"], server.ctl_socket().to_string_lossy().as_ref());
        assert!(run["started"].as_str().is_some_and(|s| s.ends_with('Z')), "{run}");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&home.path().join("run")), 0o700);

        let out = cli_in(home.path(), &["status"], &[]).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        assert_eq!(out.stderr, "", "{out:?}");
        let status = server.status().await;
        assert!(out.stdout.starts_with("App:"), "{}", out.stdout);
        for needle in [
            "hello".to_string(),
            "healthy".to_string(),
            server.port.to_string(),
            "PID".to_string(),
            "SERVED".to_string(),
            "Counters:".to_string(),
        ] {
            assert!(out.stdout.contains(&needle), "no {needle:?} in\n{}", out.stdout);
        }
        for pid in Server::pool_pids(&status) {
            assert!(
                out.stdout.contains(&pid.to_string()),
                "no worker {pid} in\n{}",
                out.stdout
            );
        }

        let out = cli_in(home.path(), &["status", "--json"], &[]).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        let json: Value = serde_json::from_str(&out.stdout).expect("status --json prints JSON");
        assert_eq!(json["app"], "hello");
        assert_eq!(json["workers"], 2);
        assert_eq!(json["ports"][0], server.port);

        // The other subcommands find it too.
        let out = cli_in(home.path(), &["scale", "3"], &[]).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        server.wait_workers(3).await;
    })
    .await;
}

/// Two running servers: the subcommand lists them (app, pid, port, socket
/// prefix) and exits 1 without acting on either.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_running_servers_are_listed_and_exit_1() {
    within(BUDGET, async {
        let home = home();
        let first = server_in(home.path()).args(&["w:1"]).start().await;
        let second = server_in(home.path()).args(&["w:1"]).start().await;
        assert_eq!(
            run_files(home.path()).len(),
            2,
            "two servers of one app keep two run files"
        );
        for sub in [&["status"][..], &["stop"], &["scale", "+1"]] {
            let out = cli_in(home.path(), sub, &[]).await;
            assert_eq!(out.code, Some(1), "{sub:?}: {out:?}");
            assert_eq!(out.stdout, "", "{sub:?}");
            let lines: Vec<&str> = out.stderr.lines().collect();
            assert_eq!(
                lines[0],
                format!(
                    "rip-server: {}: 2 rip-servers are running; name one with its app path or --socket-prefix:",
                    sub[0]
                )
            );
            assert_eq!(lines.len(), 4, "{sub:?}: a header and one line per server: {lines:?}");
            for server in [&first, &second] {
                let row = lines
                    .iter()
                    .find(|l| l.contains(&format!(" {} ", server.pid)))
                    .unwrap_or_else(|| panic!("pid {} not listed: {lines:?}", server.pid));
                assert!(row.contains("hello"), "{row}");
                assert!(row.contains(&format!("http:{}", server.port)), "{row}");
                assert!(row.contains(&server.prefix.to_string_lossy().into_owned()), "{row}");
            }
        }
        // Neither was stopped or scaled.
        assert_eq!(first.get("/ping").await.status, 200);
        assert_eq!(second.get("/ping").await.status, 200);
        assert_eq!(first.status().await["supervisor"]["desired"], 1);
    })
    .await;
}

/// No running server (no run file, a stale one, a corrupt one): the
/// subcommand says so and exits 1; a corrupt file is named and left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_running_server_exits_1() {
    within(BUDGET, async {
        let home = home();
        let none = |sub: &str| {
            format!(
                "rip-server: {sub}: no running rip-server found (no live run file in {}); give an app path or --socket-prefix",
                home.path().join("run").display()
            )
        };
        for sub in [&["status"][..], &["status", "--json"], &["restart"], &["stop"], &["scale", "-1"]] {
            let out = cli_in(home.path(), sub, &[]).await;
            assert_one_line(&out, 1, &none(sub[0]), &format!("{sub:?}"));
        }
        // A run file whose server is gone (SIGKILL leaves it behind) is stale.
        let mut server = server_in(home.path()).args(&["w:1"]).start().await;
        server.kill_server_only();
        assert_eq!(run_files(home.path()).len(), 1);
        let out = cli_in(home.path(), &["status"], &[]).await;
        assert_one_line(&out, 1, &none("status"), "stale run file");
        // A corrupt one is named, and never overwritten.
        let corrupt = home.path().join("run/broken.json");
        std::fs::write(&corrupt, b"{half").unwrap();
        let out = cli_in(home.path(), &["status"], &[]).await;
        assert_eq!(out.code, Some(1), "{out:?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with(&format!("rip-server: {}: not a valid run file", corrupt.display())),
            "{lines:?}"
        );
        assert_eq!(lines[1], none("status"));
        assert_eq!(std::fs::read(&corrupt).unwrap(), b"{half");
    })
    .await;
}

/// `stop` without an app path stops the one running server, which exits 0
/// and removes its run file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stop_without_an_app_path_stops_it_and_the_run_file_is_gone() {
    within(BUDGET, async {
        let home = home();
        let mut server = server_in(home.path()).args(&["w:2"]).start().await;
        assert_eq!(run_files(home.path()).len(), 1);
        let out = cli_in(home.path(), &["stop"], &[]).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        let exit = server.wait_exit(STEP).await.expect("the server exits after stop");
        assert_eq!(exit.code(), Some(0));
        assert!(run_files(home.path()).is_empty(), "{:?}", run_files(home.path()));
        // And now there is none.
        let out = cli_in(home.path(), &["status"], &[]).await;
        assert_eq!(out.code, Some(1), "{out:?}");
    })
    .await;
}
