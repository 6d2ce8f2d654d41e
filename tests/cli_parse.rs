//! The command line: `rip_server::cli::parse`. Every refusal is checked
//! with its exit status (2: cannot be carried out as written; 1: not in this
//! version) and, for the new ones, its exact line.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rip_server::cli::*;
use rip_server::config::defaults::*;
use rip_server::config::{BunLocation, EntryKind, HotReload, HttpsMode, LbPolicy, Protocol, ServeConfig, auto_workers};

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// Parses with no environment.
fn run(list: &[&str]) -> Result<Command, CliError> {
    parse(&words(list), &no_env)
}

/// Parses with the given environment.
fn run_env(list: &[&str], vars: &[(&str, &str)]) -> Result<Command, CliError> {
    let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let env = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    parse(&words(list), &env)
}

fn serve(list: &[&str]) -> ServeConfig {
    serve_env(list, &[])
}

fn serve_env(list: &[&str], vars: &[(&str, &str)]) -> ServeConfig {
    match run_env(list, vars) {
        Ok(Command::Serve(cfg)) => *cfg,
        other => panic!("{list:?}: expected Serve, got {other:?}"),
    }
}

/// Asserts an error about `word`, returns it; checks the one-line Display.
fn fails(list: &[&str], word: &str) -> CliError {
    fails_env(list, &[], word)
}

fn fails_env(list: &[&str], vars: &[(&str, &str)], word: &str) -> CliError {
    let err = match run_env(list, vars) {
        Err(e) => e,
        Ok(c) => panic!("{list:?}: expected an error about {word:?}, got {c:?}"),
    };
    assert_eq!(err.word, word, "{list:?}: {err}");
    let line = err.to_string();
    assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
    assert_eq!(line, format!("rip-server: {}: {}", err.word, err.message));
    assert!(err.message.contains("expected"), "{line}");
    assert_eq!((err.kind, err.exit_code()), (ErrorKind::Usage, 2), "{line}");
    err
}

/// A temporary directory holding an app directory named `api`.
struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    app: PathBuf,
}

impl Fixture {
    fn empty() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(tmp.path()).unwrap();
        let app = root.join("api");
        fs::create_dir(&app).unwrap();
        Fixture { _tmp: tmp, root, app }
    }

    /// An `api` dir with `index.rip`.
    fn rip() -> Fixture {
        let f = Fixture::empty();
        f.file("index.rip", false);
        f
    }

    fn file(&self, name: &str, executable: bool) -> PathBuf {
        let p = self.app.join(name);
        fs::write(&p, "#!/bin/sh\n").unwrap();
        let mode = if executable { 0o755 } else { 0o644 };
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn dir(&self) -> &str {
        self.app.to_str().unwrap()
    }
}

// ---------------------------------------------------------------------------
// Defaults and order
// ---------------------------------------------------------------------------

#[test]
fn defaults() {
    let f = Fixture::rip();
    let c = serve(&[f.dir()]);
    assert_eq!(
        c,
        ServeConfig {
            app_name: "api".into(),
            app_dir: f.app.clone(),
            entry: f.app.join("index.rip"),
            entry_kind: EntryKind::Rip,
            workers: auto_workers(),
            max_requests: Some(10_000),
            max_age: None,
            max_reloads: 10,
            bind: "0.0.0.0".parse().unwrap(),
            http_port: 5002,
            https_port: None,
            cert: None,
            key: None,
            https_mode: HttpsMode::Smart,
            protocol: Protocol::Http,
            redirect_http: true,
            hsts: false,
            tls_handshake_timeout: Duration::from_secs(10),
            max_queue: 8192,
            queue_timeout: Duration::from_millis(2000),
            connect_timeout: Duration::from_millis(200),
            read_timeout: Duration::from_millis(5000),
            hot_reload: HotReload::None,
            bun: BunLocation::Missing,
            bun_preload: None,
            json_logging: false,
            access_log: true,
            variant: "server".into(),
            socket_prefix: PathBuf::from("/tmp/rip_server_api"),
            lb_policy: LbPolicy::Lifo,
            upstream_max_idle: 8,
            upstream_max_conns_per_socket: 1,
            header_timeout: Duration::from_millis(10_000),
            response_buffer: 1024 * 1024,
            stuck_grace: Duration::from_millis(5000),
            stop_timeout: Duration::from_millis(10_000),
            admin_bind: "127.0.0.1".parse().unwrap(),
            metrics_port: None,
            drain_delay: Duration::ZERO,
            retry_sent: false,
            lb_replicas: 1,
            threads: 1,
            log_filter: "info".into(),
            home: None,
        }
    );
    // The constants say the same.
    assert_eq!(c.max_requests, DEFAULT_MAX_REQUESTS);
    assert_eq!(c.max_age, DEFAULT_MAX_AGE);
    assert_eq!(c.max_reloads, DEFAULT_MAX_RELOADS);
    assert_eq!(c.http_port, DEFAULT_HTTP_PORT);
    assert_eq!(c.protocol, DEFAULT_PROTOCOL);
    assert_eq!(c.max_queue, DEFAULT_MAX_QUEUE);
    assert_eq!(c.queue_timeout, DEFAULT_QUEUE_TIMEOUT);
    assert_eq!(c.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
    assert_eq!(c.read_timeout, DEFAULT_READ_TIMEOUT);
    assert_eq!(c.hot_reload, DEFAULT_HOT_RELOAD);
    assert_eq!(c.variant, DEFAULT_VARIANT);
    assert_eq!(c.lb_policy, DEFAULT_LB_POLICY);
    assert_eq!(c.upstream_max_idle, DEFAULT_UPSTREAM_MAX_IDLE);
    assert_eq!(c.upstream_max_conns_per_socket, DEFAULT_UPSTREAM_MAX_CONNS_PER_SOCKET);
    assert_eq!(c.header_timeout, DEFAULT_HEADER_TIMEOUT);
    assert_eq!(c.stuck_grace, DEFAULT_STUCK_GRACE);
    assert_eq!(c.stop_timeout, DEFAULT_STOP_TIMEOUT);
    assert_eq!(c.retry_sent, DEFAULT_RETRY_SENT);
    assert_eq!(c.threads, DEFAULT_THREADS);
    assert_eq!(c.log_filter, DEFAULT_LOG_FILTER);
    assert_eq!(c.control_socket(), Path::new("/tmp/rip_server_api.ctl.sock"));
    assert_eq!(c.worker_socket(0), Path::new("/tmp/rip_server_api.0.sock"));
    assert!((MIN_WORKERS..=MAX_WORKERS).contains(&c.workers));
}

#[test]
fn any_order() {
    let f = Fixture::rip();
    let d = f.dir();
    let a = serve(&[d, "w:2", "http:5700", "--max-queue=7", "--json-logging"]);
    let b = serve(&["--json-logging", "http:5700", "w:2", d, "--max-queue", "7"]);
    let c = serve(&["w:2", "--max-queue", "7", "http:5700", "--json-logging", d]);
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(a.workers, 2);
    assert_eq!(a.http_port, 5700);
    assert_eq!(a.max_queue, 7);
    assert!(a.json_logging);
}

#[test]
fn later_setting_wins() {
    let f = Fixture::rip();
    let c = serve(&[f.dir(), "w:2", "w:5", "--max-queue=1", "--max-queue=9"]);
    assert_eq!(c.workers, 5);
    assert_eq!(c.max_queue, 9);
    let c = serve(&[f.dir(), "r:1,3r", "--max-reloads=4"]);
    assert_eq!(c.max_reloads, 4);
    let c = serve(&[f.dir(), "--max-reloads=4", "r:1,3r"]);
    assert_eq!(c.max_reloads, 3);
}

#[test]
fn double_dash_ends_flags() {
    let f = Fixture::rip();
    let c = serve(&["w:3", "--", f.dir()]);
    assert_eq!(c.workers, 3);
    assert_eq!(c.app_name, "api");
}

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

#[test]
fn workers_token() {
    let f = Fixture::rip();
    assert_eq!(serve(&[f.dir(), "w:1"]).workers, 1);
    assert_eq!(serve(&[f.dir(), "w:1024"]).workers, 1024);
    assert_eq!(serve(&[f.dir(), "w:auto"]).workers, auto_workers());
    fails(&[f.dir(), "w:0"], "w:0");
    fails(&[f.dir(), "w:1025"], "w:1025");
    fails(&[f.dir(), "w:"], "w:");
    fails(&[f.dir(), "w:two"], "w:two");
    fails(&[f.dir(), "w:-1"], "w:-1");
    fails(&[f.dir(), "w:99999999999999999999999"], "w:99999999999999999999999");
}

#[test]
fn recycle_token() {
    let f = Fixture::rip();
    let d = f.dir();
    let c = serve(&[d, "r:20000,1800s,20r"]);
    assert_eq!(c.max_requests, Some(20000));
    assert_eq!(c.max_age, Some(Duration::from_secs(1800)));
    assert_eq!(c.max_reloads, 20);

    let c = serve(&[d, "r:500"]);
    assert_eq!((c.max_requests, c.max_age, c.max_reloads), (Some(500), None, 10));
    let c = serve(&[d, "r:500,60s"]);
    assert_eq!(
        (c.max_requests, c.max_age, c.max_reloads),
        (Some(500), Some(Duration::from_secs(60)), 10)
    );
    let c = serve(&[d, "r:500,3r"]);
    assert_eq!((c.max_requests, c.max_age, c.max_reloads), (Some(500), None, 3));
    let c = serve(&[d, "r:20000,900s,10r"]);
    assert_eq!(c.max_age, Some(Duration::from_secs(900)));
    // Parts may be left out or reordered; 0 means never.
    let c = serve(&[d, "r:60s"]);
    assert_eq!(
        (c.max_requests, c.max_age),
        (Some(10_000), Some(Duration::from_secs(60)))
    );
    let c = serve(&[d, "r:0"]);
    assert_eq!(c.max_requests, None);
    let c = serve(&[d, "r:2r,5"]);
    assert_eq!((c.max_requests, c.max_reloads), (Some(5), 2));

    for bad in ["r:", "r:abc", "r:10,", "r:10,20", "r:10,5x", "r:1s,2s", "r:-1"] {
        let e = fails(&[d, bad], bad);
        assert!(e.message.contains("r:<requests>"), "{e}");
    }
}

#[test]
fn port_tokens() {
    let f = Fixture::rip();
    let d = f.dir();
    assert_eq!(serve(&[d, "http:8080"]).http_port, 8080);
    assert_eq!(serve(&[d, "http:0"]).http_port, 0);
    assert_eq!(serve(&[d, "http:65535"]).http_port, 65535);
    fails(&[d, "http:65536"], "http:65536");
    fails(&[d, "http:-1"], "http:-1");
    fails(&[d, "http:abc"], "http:abc");
    fails(&[d, "http:"], "http:");

    // A malformed HTTPS port is a mistake (2) like any other ...
    fails(&[d, "https:99999"], "https:99999");
    fails(&[d, "https:"], "https:");
    let e = fails(&[d, "70000"], "70000");
    assert!(e.message.contains("0..=65535"), "{e}");
    fails(&[d, "--https-port=70000"], "--https-port=70000");
    fails(&[d, "--https-port=x", "5700"], "--https-port=x");
}

/// The HTTPS words of the contract: each turns HTTPS on (protocol https,
/// the HTTP port redirecting); a mistake anywhere is reported as one.
#[test]
fn https_words_turn_https_on() {
    let f = Fixture::rip();
    let d = f.dir();
    for (word, port) in [
        ("https:8443", 8443),
        ("8443", 8443),
        ("https:0", 0),
        ("https:quick", 5700),
        ("https:ca", 5700),
        ("https:smart", 5700),
        ("--https-port=5701", 5701),
        ("protocol:https", 5700),
        ("--protocol=https", 5700),
    ] {
        let c = serve(&[d, word]);
        assert_eq!((c.protocol, c.https_port), (Protocol::Https, Some(port)), "{word}");
        assert_eq!(c.http_port, 5002, "{word}");
    }
    let c = serve(&[d, "http:8080", "protocol:http+https", "https:8443"]);
    assert_eq!(
        (c.protocol, c.http_port, c.https_port),
        (Protocol::HttpAndHttps, 8080, Some(8443))
    );
    // protocol:http is plain HTTP and fine.
    assert_eq!(serve(&[d, "protocol:http"]).protocol, Protocol::Http);
    // A mistake anywhere is reported first, as a mistake.
    fails(&["5700", "/nonexistent-rip/app"], "/nonexistent-rip/app");
    fails(&[d, "5700", "w:0"], "w:0");
    fails_env(&[d, "5700"], &[("RIP_MAX_QUEUE", "x")], "RIP_MAX_QUEUE=x");
    // The same kind twice.
    fails(&[d, "5700", "https:5701"], "https:5701");
    fails(&[d, "https:quick", "https:smart"], "https:smart");
}

#[test]
fn protocol_follows_ports() {
    let f = Fixture::rip();
    let d = f.dir();
    assert_eq!(serve(&[d]).protocol, Protocol::Http);
    fails(&[d, "protocol:ftp"], "protocol:ftp");
    let e = fails(&[d, "protocol:http", "5700"], "5700");
    assert!(e.message.contains("protocol:https"), "{e}");
    // Both listeners cannot share a port.
    fails(&[d, "http:8080", "https:8080"], "https:8080");
}

#[test]
fn cert_and_key_come_together() {
    let f = Fixture::rip();
    let d = f.dir();
    let c = serve(&[d, "cert:/etc/app.pem", "key:/etc/app.key"]);
    assert_eq!(c.cert, Some(PathBuf::from("/etc/app.pem")));
    assert_eq!(c.protocol, Protocol::Https);
    let c = serve(&[d, "--cert=/a.pem", "--key", "/a.key"]);
    assert_eq!(c.key, Some(PathBuf::from("/a.key")));
    fails(&[d, "key:/etc/app.key"], "key:/etc/app.key");
    fails(&[d, "--cert=/a.pem"], "--cert=/a.pem");
    fails(&[d, "https:quick", "cert:/a", "key:/b"], "https:quick");
    // Without a path: a mistake.
    fails(&[d, "cert:"], "cert:");
    fails(&[d, "key:"], "key:");
    fails(&[d, "--cert"], "--cert");
}

#[test]
fn unknown_tokens() {
    let f = Fixture::rip();
    let d = f.dir();
    let e = fails(&[d, "x:1"], "x:1");
    assert!(e.message.contains("w:"), "{e}");
    fails(&[d, "workers:2"], "workers:2");
    fails(&["W:2", d], "W:2");
}

#[test]
fn existing_path_with_a_colon_is_an_app_path() {
    let f = Fixture::empty();
    let odd = f.root.join("odd:app");
    fs::create_dir(&odd).unwrap();
    fs::write(odd.join("index.ts"), "").unwrap();
    let c = serve(&[odd.to_str().unwrap()]);
    assert_eq!(c.app_name, "odd:app");
    assert_eq!(c.entry_kind, EntryKind::TypeScript);
}

// ---------------------------------------------------------------------------
// Flags
// ---------------------------------------------------------------------------

#[test]
fn every_value_flag_both_forms() {
    let f = Fixture::rip();
    let d = f.dir();
    let cases: &[(&str, &str)] = &[
        ("--max-queue", "0"),
        ("--queue-timeout-ms", "150"),
        ("--connect-timeout-ms", "50"),
        ("--read-timeout-ms", "750"),
        ("--hot-reload", "module"),
        ("--reload", "process"),
        ("--max-reloads", "3"),
        ("--variant", "dev"),
        ("--socket-prefix", "/tmp/ripx_test"),
        ("--lb-policy", "rr"),
        ("--upstream-max-idle", "0"),
        ("--upstream-max-conns-per-socket", "4"),
        ("--header-timeout-ms", "1234"),
        ("--response-buffer-kb", "0"),
        ("--stuck-grace-ms", "0"),
        ("--stop-timeout-ms", "99"),
        ("--bind", "127.0.0.1"),
        ("--metrics-port", "9100"),
        ("--admin-bind", "0.0.0.0"),
        ("--drain-delay-ms", "5000"),
    ];
    for (flag, value) in cases {
        let joined = format!("{flag}={value}");
        let a = serve(&[d, &joined]);
        let b = serve(&[flag, value, d]);
        assert_eq!(a, b, "{flag}");
        assert_ne!(a, serve(&[d]), "{flag} changed nothing");
    }
    let c = serve(&[
        d,
        "--max-queue=0",
        "--queue-timeout-ms=150",
        "--connect-timeout-ms=50",
        "--read-timeout-ms=750",
        "--hot-reload=module",
        "--max-reloads=3",
        "--variant=dev",
        "--lb-policy=lc",
        "--upstream-max-idle=0",
        "--upstream-max-conns-per-socket=4",
        "--header-timeout-ms=1234",
        "--response-buffer-kb=64",
        "--stuck-grace-ms=0",
        "--stop-timeout-ms=99",
        "--no-access-log",
        "--json-logging",
    ]);
    assert_eq!(c.max_queue, 0);
    assert_eq!(c.queue_timeout, Duration::from_millis(150));
    assert_eq!(c.connect_timeout, Duration::from_millis(50));
    assert_eq!(c.read_timeout, Duration::from_millis(750));
    assert_eq!(c.hot_reload, HotReload::Module);
    assert_eq!(c.max_reloads, 3);
    assert_eq!(c.variant, "dev");
    assert_eq!(c.socket_prefix, PathBuf::from("/tmp/rip_dev_api"));
    assert_eq!(c.lb_policy, LbPolicy::LeastConnections);
    assert_eq!(c.upstream_max_idle, 0);
    assert_eq!(c.upstream_max_conns_per_socket, 4);
    assert_eq!(c.header_timeout, Duration::from_millis(1234));
    assert_eq!(c.response_buffer, 64 * 1024);
    assert_eq!(c.stuck_grace, Duration::ZERO);
    assert_eq!(c.stop_timeout, Duration::from_millis(99));
    assert!(!c.access_log);
    assert!(c.json_logging);
    // The HTTPS flags parse in both forms.
    let c = serve(&[d, "--https-port=8443", "--cert", "/c.pem", "--key=/c.key", "--hsts"]);
    assert_eq!(c.https_port, Some(8443));
    assert_eq!(c.cert, Some(PathBuf::from("/c.pem")));
    assert_eq!(c.key, Some(PathBuf::from("/c.key")));
    assert!(c.hsts && c.redirect_http);
    let c = serve(&["--https-port", "8443", d, "--no-redirect-http", "--protocol", "https"]);
    assert_eq!(c.https_port, Some(8443));
    assert!(!c.redirect_http);
}

#[test]
fn metrics_port_admin_bind_and_drain_delay() {
    let f = Fixture::rip();
    let d = f.dir();
    let c = serve(&[d, "--metrics-port=0", "--admin-bind=::", "--drain-delay-ms=1500"]);
    assert_eq!(c.metrics_port, Some(0), "0 = any free port");
    assert_eq!(c.admin_bind, "::".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(c.drain_delay, Duration::from_millis(1500));
    let c = serve(&[d]);
    assert_eq!(c.metrics_port, None, "no metrics port unless asked");
    assert_eq!(c.admin_bind, DEFAULT_ADMIN_BIND);
    assert_eq!(c.drain_delay, DEFAULT_DRAIN_DELAY);
    assert_eq!(serve(&[d, "--drain-delay-ms=0"]).drain_delay, Duration::ZERO);
    // The seeds' --json is the same switch as --json-logging.
    assert_eq!(serve(&[d, "--json"]), serve(&[d, "--json-logging"]));
    assert!(serve(&[d, "--json"]).json_logging);
    fails(&[d, "--metrics-port=65536"], "--metrics-port=65536");
    fails(&[d, "--metrics-port", "x"], "--metrics-port x");
    fails(&[d, "--admin-bind=localhost"], "--admin-bind=localhost");
    fails(&[d, "--drain-delay-ms=-1"], "--drain-delay-ms=-1");
    fails(&[d, "--json=yes"], "--json=yes");
    // Never on the app's port (0 is any free port, so two 0s are fine).
    fails(&[d, "http:9000", "--metrics-port=9000"], "--metrics-port=9000");
    assert_eq!(serve(&[d, "http:0", "--metrics-port=0"]).metrics_port, Some(0));
}

#[test]
fn retry_sent_flag_and_variable() {
    let f = Fixture::rip();
    let d = f.dir();
    assert!(!serve(&[d]).retry_sent);
    assert!(serve(&[d, "--retry-sent"]).retry_sent);
    assert!(serve_env(&[d], &[("RIP_RETRY_SENT", "1")]).retry_sent);
    assert!(!serve_env(&[d], &[("RIP_RETRY_SENT", "0")]).retry_sent);
    // The flag beats the variable, even a malformed one.
    assert!(serve_env(&[d, "--retry-sent"], &[("RIP_RETRY_SENT", "0")]).retry_sent);
    assert!(serve_env(&[d, "--retry-sent"], &[("RIP_RETRY_SENT", "yes")]).retry_sent);
    let e = fails_env(&[d], &[("RIP_RETRY_SENT", "yes")], "RIP_RETRY_SENT=yes");
    assert_eq!(
        e.to_string(),
        "rip-server: RIP_RETRY_SENT=yes: expected 0 (off) or 1 (on)"
    );
    fails(&[d, "--retry-sent=1"], "--retry-sent=1");
}

#[test]
fn threads_log_and_home_come_from_the_environment() {
    let f = Fixture::rip();
    let d = f.dir();
    let c = serve_env(
        &[d],
        &[
            ("RIP_THREADS", "4"),
            ("RIP_LOG", "warn,rip_server=debug"),
            ("RIP_HOME", "/srv/rip"),
        ],
    );
    assert_eq!(c.threads, 4);
    assert_eq!(c.log_filter, "warn,rip_server=debug");
    assert_eq!(c.home, Some(PathBuf::from("/srv/rip")));
    assert_eq!(
        serve_env(&[d], &[("HOME", "/home/u")]).home,
        Some(PathBuf::from("/home/u/.rip-server"))
    );
    assert_eq!(
        serve_env(&[d], &[("HOME", "/home/u"), ("RIP_HOME", "/srv/rip")]).home,
        Some(PathBuf::from("/srv/rip"))
    );
}

#[test]
fn enum_values() {
    let f = Fixture::rip();
    let d = f.dir();
    for (v, want) in [
        ("lifo", LbPolicy::Lifo),
        ("rr", LbPolicy::RoundRobin),
        ("lc", LbPolicy::LeastConnections),
    ] {
        assert_eq!(serve(&[d, &format!("--lb-policy={v}")]).lb_policy, want);
        assert_eq!(want.as_str(), v);
    }
    for (v, want) in [
        ("none", HotReload::None),
        ("process", HotReload::Process),
        ("module", HotReload::Module),
    ] {
        assert_eq!(serve(&[d, &format!("--hot-reload={v}")]).hot_reload, want);
        assert_eq!(want.to_string(), v);
    }
    assert_eq!(
        serve(&[d, "--hot-reload=module", "--no-hot-reload"]).hot_reload,
        HotReload::None
    );
    fails(&[d, "--lb-policy=random"], "--lb-policy=random");
    fails(&[d, "--lb-policy", "random"], "--lb-policy random");
    let e = fails(&[d, "--hot-reload=sometimes"], "--hot-reload=sometimes");
    assert!(e.message.contains("none, process or module"), "{e}");
    fails(&[d, "--reload=yes"], "--reload=yes");
}

#[test]
fn socket_prefix_flag() {
    let f = Fixture::rip();
    let d = f.dir();
    let c = serve(&[d, "--socket-prefix=/tmp/custom_x", "--variant=dev"]);
    assert_eq!(c.socket_prefix, PathBuf::from("/tmp/custom_x"));
    assert_eq!(c.variant, "dev");
    assert_eq!(c.control_socket(), PathBuf::from("/tmp/custom_x.ctl.sock"));
    let rel = serve(&[d, "--socket-prefix=run/app"]).socket_prefix;
    assert!(rel.is_absolute() && rel.ends_with("run/app"), "{rel:?}");
    fails(&[d, "--socket-prefix=/tmp/dir/"], "--socket-prefix=/tmp/dir/");
    let long = format!("--socket-prefix=/tmp/{}", "x".repeat(120));
    let e = fails(&[d, &long], &long);
    assert!(e.message.contains("bytes"), "{e}");
    fails(&[d, "--variant=a/b"], "--variant=a/b");
    fails(&[d, "--variant", ""], "--variant");
}

#[test]
fn long_app_name_needs_a_prefix() {
    let f = Fixture::empty();
    let long = f.root.join("a".repeat(100));
    fs::create_dir(&long).unwrap();
    fs::write(long.join("index.rip"), "").unwrap();
    let p = long.to_str().unwrap();
    let e = fails(&[p], p);
    assert!(e.message.contains("--socket-prefix"), "{e}");
    let c = serve(&[p, "--socket-prefix=/tmp/short"]);
    assert_eq!(c.socket_prefix, PathBuf::from("/tmp/short"));
}

#[test]
fn flag_errors() {
    let f = Fixture::rip();
    let d = f.dir();
    let e = fails(&[d, "--max-queue=abc"], "--max-queue=abc");
    assert!(e.message.contains("non-negative integer"), "{e}");
    assert_eq!(e.to_string().lines().count(), 1, "Display must be one line: {e}");
    assert!(
        e.to_string().starts_with("rip-server: --max-queue=abc: expected"),
        "{e}"
    );
    fails(&[d, "--max-queue", "abc"], "--max-queue abc");
    fails(&[d, "--max-queue=-1"], "--max-queue=-1");
    fails(&[d, "--max-queue=1000001"], "--max-queue=1000001");
    fails(&[d, "--queue-timeout-ms=0"], "--queue-timeout-ms=0");
    fails(&[d, "--read-timeout-ms=1.5"], "--read-timeout-ms=1.5");
    fails(&[d, "--connect-timeout-ms= 5"], "--connect-timeout-ms= 5");
    fails(
        &[d, "--read-timeout-ms=99999999999999999999"],
        "--read-timeout-ms=99999999999999999999",
    );
    fails(&[d, "--max-reloads=x"], "--max-reloads=x");
    fails(&[d, "--upstream-max-idle=1025"], "--upstream-max-idle=1025");
    fails(&[d, "--response-buffer-kb=1048577"], "--response-buffer-kb=1048577");
    fails(&[d, "--response-buffer-kb=1M"], "--response-buffer-kb=1M");
    fails(
        &[d, "--upstream-max-conns-per-socket=0"],
        "--upstream-max-conns-per-socket=0",
    );
    // Unknown flags.
    let e = fails(&[d, "--nope"], "--nope");
    assert!(e.message.contains("unknown flag"), "{e}");
    fails(&[d, "--nope=3"], "--nope=3");
    fails(&[d, "-x"], "-x");
    fails(&["--max-queue-x=1", d], "--max-queue-x=1");
    // Missing values.
    let e = fails(&[d, "--max-queue"], "--max-queue");
    assert!(e.message.contains("value"), "{e}");
    fails(&[d, "--max-queue", "--json-logging"], "--max-queue");
    fails(&[d, "--max-queue="], "--max-queue=");
    // Boolean flags take no value.
    fails(&[d, "--json-logging=yes"], "--json-logging=yes");
    fails(&[d, "--no-access-log=1"], "--no-access-log=1");
}

// ---------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------

#[test]
fn env_fallback() {
    let f = Fixture::rip();
    let d = f.dir();
    let env = [
        ("PORT", "7001"),
        ("RIP_MAX_QUEUE", "12"),
        ("RIP_QUEUE_TIMEOUT_MS", "13"),
        ("RIP_CONNECT_TIMEOUT_MS", "14"),
        ("RIP_READ_TIMEOUT_MS", "15"),
        ("RIP_HOT_RELOAD", "process"),
        ("RIP_MAX_RELOADS", "16"),
        ("RIP_VARIANT", "staging"),
    ];
    let c = serve_env(&[d], &env);
    assert_eq!(c.http_port, 7001);
    assert_eq!(c.max_queue, 12);
    assert_eq!(c.queue_timeout, Duration::from_millis(13));
    assert_eq!(c.connect_timeout, Duration::from_millis(14));
    assert_eq!(c.read_timeout, Duration::from_millis(15));
    assert_eq!(c.hot_reload, HotReload::Process);
    assert_eq!(c.max_reloads, 16);
    assert_eq!(c.variant, "staging");
    assert_eq!(c.socket_prefix, PathBuf::from("/tmp/rip_staging_api"));
    assert_eq!(c.protocol, Protocol::Http);
}

#[test]
fn flag_beats_env() {
    let f = Fixture::rip();
    let d = f.dir();
    let env = [
        ("PORT", "7001"),
        ("RIP_MAX_QUEUE", "12"),
        ("RIP_QUEUE_TIMEOUT_MS", "13"),
        ("RIP_CONNECT_TIMEOUT_MS", "14"),
        ("RIP_READ_TIMEOUT_MS", "15"),
        ("RIP_HOT_RELOAD", "process"),
        ("RIP_MAX_RELOADS", "16"),
        ("RIP_VARIANT", "staging"),
    ];
    let c = serve_env(
        &[
            d,
            "http:9001",
            "--max-queue=22",
            "--queue-timeout-ms=23",
            "--connect-timeout-ms=24",
            "--read-timeout-ms=25",
            "--reload=module",
            "r:1,26r",
            "--variant=prod",
        ],
        &env,
    );
    assert_eq!(c.http_port, 9001);
    assert_eq!(c.max_queue, 22);
    assert_eq!(c.queue_timeout, Duration::from_millis(23));
    assert_eq!(c.connect_timeout, Duration::from_millis(24));
    assert_eq!(c.read_timeout, Duration::from_millis(25));
    assert_eq!(c.hot_reload, HotReload::Module);
    assert_eq!(c.max_reloads, 26);
    assert_eq!(c.variant, "prod");
    assert_eq!(serve_env(&[d, "--max-reloads=27"], &env).max_reloads, 27);
    assert_eq!(serve_env(&[d, "--no-hot-reload"], &env).hot_reload, HotReload::None);
}

#[test]
fn shadowed_bad_env_is_ignored_and_empty_env_is_unset() {
    let f = Fixture::rip();
    let d = f.dir();
    let c = serve_env(
        &[d, "--max-queue=5", "http:1"],
        &[("RIP_MAX_QUEUE", "abc"), ("PORT", "x")],
    );
    assert_eq!((c.max_queue, c.http_port), (5, 1));
    let c = serve_env(&[d], &[("RIP_MAX_QUEUE", ""), ("PORT", "")]);
    assert_eq!((c.max_queue, c.http_port), (8192, 5002));
}

#[test]
fn legacy_reload_env() {
    let f = Fixture::rip();
    let d = f.dir();
    assert_eq!(
        serve_env(&[d], &[("RIP_RELOAD", "module")]).hot_reload,
        HotReload::Module
    );
    assert_eq!(
        serve_env(&[d], &[("RIP_RELOAD", "module"), ("RIP_HOT_RELOAD", "process")]).hot_reload,
        HotReload::Process
    );
}

#[test]
fn malformed_env_names_the_variable() {
    let f = Fixture::rip();
    let d = f.dir();
    let e = fails_env(&[d], &[("RIP_MAX_QUEUE", "abc")], "RIP_MAX_QUEUE=abc");
    assert!(e.message.contains("non-negative integer"), "{e}");
    fails_env(&[d], &[("PORT", "99999")], "PORT=99999");
    fails_env(&[d], &[("RIP_QUEUE_TIMEOUT_MS", "soon")], "RIP_QUEUE_TIMEOUT_MS=soon");
    fails_env(&[d], &[("RIP_CONNECT_TIMEOUT_MS", "-1")], "RIP_CONNECT_TIMEOUT_MS=-1");
    fails_env(&[d], &[("RIP_READ_TIMEOUT_MS", "1e3")], "RIP_READ_TIMEOUT_MS=1e3");
    fails_env(&[d], &[("RIP_HOT_RELOAD", "on")], "RIP_HOT_RELOAD=on");
    fails_env(&[d], &[("RIP_MAX_RELOADS", "many")], "RIP_MAX_RELOADS=many");
    fails_env(&[d], &[("RIP_VARIANT", "a b")], "RIP_VARIANT=a b");
    fails_env(&[d], &[("RIP_RELOAD", "x")], "RIP_RELOAD=x");
    fails_env(&[d], &[("RIP_BIND", "here")], "RIP_BIND=here");
}

/// The new checks, with their exact lines: a malformed variable is never
/// ignored.
#[test]
fn malformed_process_variables_name_the_variable() {
    let f = Fixture::rip();
    let d = f.dir();
    let line = |vars: &[(&str, &str)], word: &str| fails_env(&[d], vars, word).to_string();
    assert_eq!(
        line(&[("RIP_THREADS", "abc")], "RIP_THREADS=abc"),
        "rip-server: RIP_THREADS=abc: expected a thread count in 1..=1024"
    );
    line(&[("RIP_THREADS", "0")], "RIP_THREADS=0");
    line(&[("RIP_THREADS", "1025")], "RIP_THREADS=1025");
    line(&[("RIP_THREADS", " 2")], "RIP_THREADS= 2");
    let log = line(&[("RIP_LOG", "info,rip_server=loud")], "RIP_LOG=info,rip_server=loud");
    assert!(
        log.starts_with("rip-server: RIP_LOG=info,rip_server=loud: expected a log filter such as info"),
        "{log}"
    );
    line(&[("RIP_LOG", "[")], "RIP_LOG=[");
    assert_eq!(
        line(&[("RIP_HOME", "relative/home")], "RIP_HOME=relative/home"),
        "rip-server: RIP_HOME=relative/home: expected an absolute directory path"
    );
    assert_eq!(
        line(&[("HOME", "nowhere")], "HOME=nowhere"),
        "rip-server: HOME=nowhere: expected an absolute directory path (or set RIP_HOME to one)"
    );
    // Empty counts as unset.
    let c = serve_env(&[d], &[("RIP_THREADS", ""), ("RIP_LOG", ""), ("RIP_HOME", "")]);
    assert_eq!((c.threads, c.log_filter.as_str(), c.home), (1, "info", None));
}

/// Each variable the command line reads has a malformed value that is an
/// error naming it (HOME only when RIP_HOME is unset).
#[test]
fn every_variable_read_refuses_a_malformed_value() {
    let f = Fixture::rip();
    let d = f.dir();
    let bad = |name: &str| match name {
        "RIP_LOG" => "=",
        "RIP_HOME" | "HOME" => "not/absolute",
        "RIP_VARIANT" => "a b",
        "RIP_BIND" => "nowhere",
        _ => "x!",
    };
    for name in ENV_VARIABLES {
        // Paths the start checks (exit 2 there, with the Bun test in e2e):
        // any text is a path to the parser.
        if ["RIP_BUN", "RIP_BUN_PRELOAD", "PATH"].contains(name) {
            continue;
        }
        let value = bad(name);
        fails_env(&[d], &[(name, value)], &format!("{name}={value}"));
    }
}

// ---------------------------------------------------------------------------
// App path and entry resolution
// ---------------------------------------------------------------------------

#[test]
fn rip_wins_over_ts() {
    let f = Fixture::empty();
    f.file("index.ts", false);
    f.file("index.rip", false);
    f.file("index", true);
    let c = serve(&[f.dir()]);
    assert_eq!(c.entry, f.app.join("index.rip"));
    assert_eq!(c.entry_kind, EntryKind::Rip);
}

#[test]
fn ts_wins_over_executable_index() {
    let f = Fixture::empty();
    f.file("index.ts", false);
    f.file("index", true);
    let c = serve(&[f.dir()]);
    assert_eq!(c.entry, f.app.join("index.ts"));
    assert_eq!(c.entry_kind, EntryKind::TypeScript);
}

#[test]
fn js_index_is_probed_after_ts_and_before_an_executable_index() {
    let f = Fixture::empty();
    f.file("index.js", false);
    f.file("index", true);
    let c = serve(&[f.dir()]);
    assert_eq!(c.entry, f.app.join("index.js"));
    assert_eq!(c.entry_kind, EntryKind::TypeScript);
    f.file("index.ts", false);
    assert_eq!(serve(&[f.dir()]).entry, f.app.join("index.ts"));
}

#[test]
fn executable_index() {
    let f = Fixture::empty();
    f.file("index", true);
    let c = serve(&[f.dir()]);
    assert_eq!(c.entry, f.app.join("index"));
    assert_eq!(c.entry_kind, EntryKind::Executable);
    assert_eq!(c.app_dir, f.app);
}

#[test]
fn dir_without_entry_lists_probes() {
    let f = Fixture::empty();
    let e = fails(&[f.dir()], f.dir());
    for probe in ["index.rip", "index.ts", "index.js", "index"] {
        assert!(e.message.contains(probe), "{e}");
    }
    // A non-executable `index` does not count, and the error says why.
    f.file("index", false);
    let e = fails(&[f.dir()], f.dir());
    assert!(e.message.contains("not executable"), "{e}");
    // A directory named index.rip does not count either.
    fs::create_dir(f.app.join("index.rip")).unwrap();
    fails(&[f.dir()], f.dir());
}

#[test]
fn file_app_path() {
    let f = Fixture::empty();
    let main = f.file("main.rip", false);
    f.file("index.ts", false);
    let c = serve(&[main.to_str().unwrap()]);
    assert_eq!(c.app_dir, f.app);
    assert_eq!(c.app_name, "api");
    assert_eq!(c.entry, main);
    assert_eq!(c.entry_kind, EntryKind::Rip);

    let ts = f.file("server.ts", false);
    assert_eq!(serve(&[ts.to_str().unwrap()]).entry_kind, EntryKind::TypeScript);

    let exe = f.file("worker.py", true);
    let c = serve(&[exe.to_str().unwrap()]);
    assert_eq!(c.entry_kind, EntryKind::Executable);
    assert_eq!(c.entry, exe);

    // The extension decides how an entry runs, not its mode bits: an
    // executable .rip or .js still runs in Bun.
    let exe_rip = f.file("run.rip", true);
    assert_eq!(serve(&[exe_rip.to_str().unwrap()]).entry_kind, EntryKind::Rip);
    let exe_js = f.file("run.js", true);
    assert_eq!(serve(&[exe_js.to_str().unwrap()]).entry_kind, EntryKind::TypeScript);

    let txt = f.file("notes.txt", false);
    let p = txt.to_str().unwrap();
    let e = fails(&[p], p);
    assert!(e.message.contains("not executable and not .rip/.ts"), "{e}");
}

#[test]
fn app_paths_are_canonical() {
    let f = Fixture::rip();
    let dotted = format!("{}/../api/.", f.dir());
    let c = serve(&[&dotted]);
    assert_eq!(c.app_dir, f.app);
    assert_eq!(c.app_name, "api");
    assert!(c.entry.is_absolute());
}

#[test]
fn nonexistent_app_path() {
    let f = Fixture::empty();
    let missing = f.root.join("nope");
    let p = missing.to_str().unwrap();
    let e = fails(&[p], p);
    assert!(e.message.contains("no such file or directory"), "{e}");
    fails(&["apps/definitely/not/here", "w:2"], "apps/definitely/not/here");
}

#[test]
fn missing_and_extra_app_paths() {
    let e = fails(&[], "<app-path>");
    assert!(e.message.contains("app-path"), "{e}");
    fails(&["w:2", "--json-logging"], "<app-path>");
    let f = Fixture::rip();
    let e = fails(&[f.dir(), "other"], "other");
    assert!(e.message.contains("one app path"), "{e}");
    fails(&[f.dir(), "--", "x"], "x");
}

#[test]
fn builtin_hello() {
    let c = serve(&["builtin:hello", "w:2", "http:0"]);
    assert_eq!(c.entry_kind, EntryKind::Builtin);
    assert_eq!(c.app_name, "hello");
    assert_eq!(c.entry, PathBuf::from("builtin:hello"));
    assert_eq!(c.app_dir, fs::canonicalize(std::env::current_dir().unwrap()).unwrap());
    assert_eq!(c.socket_prefix, PathBuf::from("/tmp/rip_server_hello"));
    assert_eq!((c.workers, c.http_port), (2, 0));
    assert_eq!(serve(&["http:0", "builtin:hello"]).app_name, "hello");
    let e = fails(&["builtin:other"], "builtin:other");
    assert!(e.message.contains("builtin:hello"), "{e}");
}

// ---------------------------------------------------------------------------
// Subcommands
// ---------------------------------------------------------------------------

fn target(prefix: &str) -> Target {
    Target::Prefix(PathBuf::from(prefix))
}

fn status(t: Target) -> Command {
    Command::Status { target: t, json: false }
}

#[test]
fn status_restart_stop_targets() {
    let f = Fixture::rip();
    let d = f.dir();
    assert_eq!(run(&["status", d]).unwrap(), status(target("/tmp/rip_server_api")));
    assert_eq!(
        run(&["restart", d]).unwrap(),
        Command::Restart(target("/tmp/rip_server_api"))
    );
    assert_eq!(run(&["stop", d]).unwrap(), Command::Stop(target("/tmp/rip_server_api")));
    // A file app path names its directory.
    let main = f.app.join("index.rip");
    assert_eq!(
        run(&["stop", main.to_str().unwrap()]).unwrap(),
        Command::Stop(target("/tmp/rip_server_api"))
    );
    // Variant from flag or env; flag wins.
    assert_eq!(
        run(&["status", "--variant=dev", d]).unwrap(),
        status(target("/tmp/rip_dev_api"))
    );
    assert_eq!(
        run_env(&["status", d], &[("RIP_VARIANT", "qa")]).unwrap(),
        status(target("/tmp/rip_qa_api"))
    );
    assert_eq!(
        run_env(&["status", d, "--variant", "dev"], &[("RIP_VARIANT", "qa")]).unwrap(),
        status(target("/tmp/rip_dev_api"))
    );
    // --socket-prefix wins over everything.
    assert_eq!(
        run(&["stop", "--socket-prefix", "/tmp/p1", d]).unwrap(),
        Command::Stop(target("/tmp/p1"))
    );
    assert_eq!(
        run(&["stop", "--socket-prefix=/tmp/p1"]).unwrap(),
        Command::Stop(target("/tmp/p1"))
    );
    assert_eq!(
        run(&["status", "builtin:hello"]).unwrap(),
        status(target("/tmp/rip_server_hello"))
    );
    // A path that is gone still names its app.
    assert_eq!(
        run(&["stop", "/nowhere/apps/gone"]).unwrap(),
        Command::Stop(target("/tmp/rip_server_gone"))
    );
    let Command::Stop(t) = run(&["stop", "--socket-prefix=/tmp/p2"]).unwrap() else {
        unreachable!()
    };
    assert_eq!(t.control_socket(), Some(PathBuf::from("/tmp/p2.ctl.sock")));
    // --json: the JSON instead of the table.
    assert_eq!(
        run(&["status", "--json", d]).unwrap(),
        Command::Status {
            target: target("/tmp/rip_server_api"),
            json: true
        }
    );
    fails(&["stop", "--json", d], "--json");
}

/// Without an app path or a prefix, a subcommand acts on the server running
/// under $RIP_HOME (found when it runs: see tests/e2e/cli.rs).
#[test]
fn no_app_path_means_the_running_server() {
    let running = Target::Running {
        home: PathBuf::from("/srv/rip"),
    };
    let home = [("RIP_HOME", "/srv/rip")];
    assert_eq!(run_env(&["status"], &home).unwrap(), status(running.clone()));
    assert_eq!(
        run_env(&["status", "--json"], &home).unwrap(),
        Command::Status {
            target: running.clone(),
            json: true
        }
    );
    assert_eq!(run_env(&["restart"], &home).unwrap(), Command::Restart(running.clone()));
    assert_eq!(run_env(&["stop"], &home).unwrap(), Command::Stop(running.clone()));
    assert_eq!(
        run_env(&["scale", "+2"], &home).unwrap(),
        Command::Scale {
            target: running.clone(),
            change: ScaleChange::By(2)
        }
    );
    assert_eq!(running.control_socket(), None);
    assert_eq!(
        run_env(&["stop"], &[("HOME", "/home/u")]).unwrap(),
        Command::Stop(Target::Running {
            home: PathBuf::from("/home/u/.rip-server")
        })
    );
    // A variant names a server only with its app.
    let e = fails_env(&["status", "--variant=dev"], &home, "--variant=dev");
    assert!(e.message.contains("app path"), "{e}");
    fails_env(&["stop"], &[("RIP_HOME", "rel")], "RIP_HOME=rel");
    // With an app path or a prefix, RIP_HOME is not even read.
    assert_eq!(
        run_env(&["stop", "--socket-prefix=/tmp/p3"], &[("RIP_HOME", "rel")]).unwrap(),
        Command::Stop(target("/tmp/p3"))
    );
}

/// `ca` is a real subcommand (both spellings); no word is reserved any more.
#[test]
fn ca_subcommands_parse_and_nothing_is_reserved() {
    use rip_server::cli::ca::CaAction;
    let home = [("RIP_HOME", "/srv/rip"), ("HOME", "/home/u")];
    let ca = |list: &[&str]| match run_env(list, &home) {
        Ok(Command::Ca(c)) => c,
        other => panic!("{list:?}: expected Ca, got {other:?}"),
    };
    let init = ca(&["ca", "init", "--name", "Example.DEV", "--name=b.test"]);
    assert_eq!(init.home, PathBuf::from("/srv/rip"));
    assert_eq!(
        init.action,
        CaAction::Init {
            names: vec!["example.dev".into(), "b.test".into()]
        }
    );
    assert_eq!(init.stores.user_home, Some(PathBuf::from("/home/u")));
    assert_eq!(init.stores.system_root, None);
    assert_eq!(ca(&["ca:init"]).action, CaAction::Init { names: vec![] });
    assert_eq!(ca(&["ca:trust", "--dry-run"]).action, CaAction::Trust { dry_run: true });
    assert_eq!(ca(&["ca", "untrust"]).action, CaAction::Untrust { dry_run: false });
    assert_eq!(ca(&["ca", "export"]).action, CaAction::Export { path: None });
    assert_eq!(
        ca(&["ca", "export", "--", "-odd"]).action,
        CaAction::Export {
            path: Some(PathBuf::from("-odd"))
        }
    );
    assert_eq!(ca(&["ca", "info"]).action, CaAction::Info);
    assert_eq!(ca(&["ca", "list"]).action, CaAction::List);
    assert_eq!(ca(&["ca", "clean", "--all"]).action, CaAction::Clean { all: true });
    let with_root = run_env(
        &["ca", "trust"],
        &[("RIP_HOME", "/srv/rip"), ("RIP_TRUST_ROOT", "/tmp/t")],
    )
    .unwrap();
    let Command::Ca(with_root) = with_root else {
        panic!("{with_root:?}")
    };
    assert_eq!(with_root.stores.system_root, Some(PathBuf::from("/tmp/t")));
    // Mistakes: exit status 2, naming the word.
    fails_env(&["ca"], &home, "ca");
    fails_env(&["ca", "nope"], &home, "nope");
    fails_env(&["ca:nope"], &home, "ca:nope");
    fails_env(&["ca:trust", "--x"], &home, "--x");
    fails_env(&["ca", "info", "more"], &home, "more");
    fails_env(&["ca", "init", "--name=*.a.test"], &home, "--name=*.a.test");
    fails_env(
        &["ca", "trust"],
        &[("RIP_HOME", "/srv/rip"), ("RIP_TRUST_ROOT", "rel")],
        "RIP_TRUST_ROOT=rel",
    );
    assert_eq!(fails_env(&["ca", "nope"], &home, "nope").exit_code(), 2);
    let words: Vec<&str> = reserved_words().collect();
    assert!(words.is_empty(), "{words:?}");
    // An app directory with such a name is reached with ./
    let f = Fixture::empty();
    let list_dir = f.root.join("list");
    fs::create_dir(&list_dir).unwrap();
    fs::write(list_dir.join("index.rip"), "").unwrap();
    assert_eq!(serve(&[list_dir.to_str().unwrap()]).app_name, "list");
    // Help still wins.
    assert!(matches!(run(&["list", "--help"]), Ok(Command::Help(_))));
}

// ---------------------------------------------------------------------------
// The platform

fn platform_env(list: &[&str], vars: &[(&str, &str)]) -> rip_server::platform::command::PlatformConfig {
    match run_env(list, vars) {
        Ok(Command::Platform(cfg)) => *cfg,
        other => panic!("{list:?}: expected Platform, got {other:?}"),
    }
}

/// `platform` with no words: the contract's defaults (API on
/// 127.0.0.1:3000, apps on PORT or 5002); it needs a home.
#[test]
fn platform_defaults() {
    let home = [("RIP_HOME", "/tmp/rip-home-x")];
    let p = platform_env(&["platform"], &home);
    assert_eq!(p.home, PathBuf::from("/tmp/rip-home-x"));
    assert_eq!(p.api_port, 3000);
    assert_eq!(p.admin_bind, "127.0.0.1".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(p.apps.http_port, DEFAULT_HTTP_PORT);
    assert_eq!(p.apps.bind, DEFAULT_BIND);
    let p = platform_env(&["platform"], &[("RIP_HOME", "/tmp/h"), ("PORT", "8080")]);
    assert_eq!(p.apps.http_port, 8080);
    let p = platform_env(&["platform"], &[("HOME", "/home/u")]);
    assert_eq!(p.home, PathBuf::from("/home/u/.rip-server"));
    let err = fails(&["platform"], "platform");
    assert!(err.message.contains("RIP_HOME"), "{err}");
}

/// Its own flags, the apps' listener and the serve flags every app shares.
#[test]
fn platform_words() {
    let home = [("RIP_HOME", "/tmp/h")];
    let p = platform_env(
        &[
            "platform",
            "http:0",
            "--api-port=0",
            "--admin-bind",
            "0.0.0.0",
            "--bind=127.0.0.1",
            "--max-queue",
            "3",
            "w:2",
        ],
        &home,
    );
    assert_eq!((p.api_port, p.apps.http_port), (0, 0));
    assert_eq!(p.admin_bind, "0.0.0.0".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(p.apps.bind, "127.0.0.1".parse::<std::net::IpAddr>().unwrap());
    assert_eq!((p.apps.max_queue, p.apps.workers), (3, 2));
    // No app path: apps are deployed through the API.
    let err = fails_env(&["platform", "apps/api"], &home, "apps/api");
    assert!(err.message.contains("no app path"), "{err}");
    fails_env(&["platform", "--api-port=70000"], &home, "--api-port=70000");
    fails_env(&["platform", "--admin-bind=localhost"], &home, "--admin-bind=localhost");
    fails_env(&["platform", "--api-port"], &home, "--api-port");
    fails_env(&["platform", "--nope"], &home, "--nope");
    // HTTPS words set the apps' HTTPS listener, as for a server.
    let p = platform_env(
        &[
            "platform",
            "http:0",
            "https:0",
            "--metrics-port=0",
            "--admin-bind=0.0.0.0",
        ],
        &home,
    );
    assert_eq!((p.apps.https_port, p.apps.metrics_port), (Some(0), Some(0)));
    assert_eq!(
        p.apps.admin_bind, p.admin_bind,
        "the metrics port listens where the API does"
    );
    let p = platform_env(&["platform", "8443"], &home);
    assert_eq!(p.apps.https_port, Some(8443));
}

// ---------------------------------------------------------------------------
// The host registry: add, remove, list
// ---------------------------------------------------------------------------

/// A home for the registry subcommands (they only need it named).
const HOME: (&str, &str) = ("RIP_HOME", "/tmp/rip-home-of-a-parse-test");

fn hosts_command(list: &[&str]) -> HostsCommand {
    match run_env(list, &[HOME]) {
        Ok(Command::Hosts(command)) => command,
        other => panic!("{list:?}: expected a host registry command, got {other:?}"),
    }
}

fn host(name: &str) -> rip_server::config::hosts::HostName {
    rip_server::config::hosts::HostName::parse(name).unwrap()
}

#[test]
fn add_remove_and_list_parse() {
    let f = Fixture::rip();
    let add = hosts_command(&["add", "API.Test.", f.dir()]);
    assert_eq!(add.home, PathBuf::from(HOME.1));
    assert_eq!(
        add.action,
        HostsAction::Add {
            host: host("api.test"),
            app_dir: f.app.clone(),
        }
    );
    // The app path resolves as for serving; the registry keeps the directory.
    let entry = f.app.join("index.rip");
    let from_entry = hosts_command(&["add", "*.api.test", entry.to_str().unwrap()]);
    assert_eq!(
        from_entry.action,
        HostsAction::Add {
            host: host("*.api.test"),
            app_dir: f.app.clone(),
        }
    );
    assert_eq!(
        hosts_command(&["add", "--", "bücher.test", f.dir()]).action,
        HostsAction::Add {
            host: host("xn--bcher-kva.test"),
            app_dir: f.app.clone(),
        }
    );
    assert_eq!(
        hosts_command(&["remove", "API.test"]).action,
        HostsAction::Remove { host: host("api.test") }
    );
    assert_eq!(hosts_command(&["list"]).action, HostsAction::List { json: false });
    assert_eq!(
        hosts_command(&["list", "--json"]).action,
        HostsAction::List { json: true }
    );
    // HOME stands in for RIP_HOME.
    match run_env(&["list"], &[("HOME", "/home/u")]) {
        Ok(Command::Hosts(c)) => assert_eq!(c.home, PathBuf::from("/home/u/.rip-server")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(run(&["add", "--help"]), Ok(Command::Help(_))));
}

#[test]
fn add_remove_and_list_refuse_bad_words_with_status_2() {
    let f = Fixture::rip();
    let d = f.dir();
    let with_home = |list: &[&str], word: &str| fails_env(list, &[HOME], word);
    // Bad host names: the line names the word and what is wrong with it.
    for (name, problem) in [
        ("api.test:8080", "it has a port (:8080)"),
        ("api test", "it has a space"),
        ("a_b.test", "'_' is not allowed"),
        ("*.com", "a wildcard needs at least two labels"),
        ("a..test", "it has an empty label"),
        ("http://api.test", "it is a URL"),
    ] {
        for list in [&["add", name, d][..], &["remove", name]] {
            let e = with_home(list, name);
            assert!(
                e.message.starts_with(&format!("not a valid host name: {problem}")),
                "{e}"
            );
        }
    }
    // Missing or extra words, unknown flags.
    with_home(&["add"], "add");
    with_home(&["add", "api.test"], "add");
    with_home(&["add", "api.test", d, "extra"], "extra");
    with_home(&["remove"], "remove");
    with_home(&["remove", "a.test", "b.test"], "b.test");
    with_home(&["list", "x"], "x");
    with_home(&["list", "--table"], "--table");
    with_home(&["add", "--json", "api.test", d], "--json");
    // The app path: missing, no entry, builtin, a file that is not the directory's entry.
    with_home(&["add", "api.test", "/nonexistent/app"], "/nonexistent/app");
    let empty = Fixture::empty();
    with_home(&["add", "api.test", empty.dir()], empty.dir());
    with_home(&["add", "api.test", "builtin:hello"], "builtin:hello");
    let other = f.file("other.ts", false);
    let e = with_home(&["add", "api.test", other.to_str().unwrap()], other.to_str().unwrap());
    assert!(e.message.contains("the registry keeps the directory"), "{e}");
    // No home at all.
    let e = fails(&["list"], "list");
    assert!(e.message.contains("RIP_HOME or HOME"), "{e}");
    fails_env(&["list"], &[("RIP_HOME", "relative")], "RIP_HOME=relative");
}

#[test]
fn subcommand_errors() {
    let f = Fixture::rip();
    let d = f.dir();
    for sub in ["status", "restart", "stop"] {
        let e = fails(&[sub], sub);
        assert!(e.message.contains("expected an app path or --socket-prefix"), "{e}");
        fails(&[sub, d, "w:2"], "w:2");
        fails(&[sub, "http:5002", d], "http:5002");
        fails(&[sub, d, "--json-logging"], "--json-logging");
        fails(&[sub, "--socket-prefix"], "--socket-prefix");
        fails(&[sub, d, "--variant=x/y"], "--variant=x/y");
        fails_env(&[sub, d], &[("RIP_VARIANT", "x y")], "RIP_VARIANT=x y");
    }
    fails(&["scale"], "scale");
    fails(&["scale", d], "scale");
    fails(&["scale", "+1", "-1", d], "-1");
    fails(&["scale", "0", d], "0");
    fails(&["scale", "+0", d], "+0");
    fails(&["scale", "-2000", d], "-2000");
    fails(&["scale", "+1"], "scale");
}

#[test]
fn scale() {
    let f = Fixture::rip();
    let d = f.dir();
    let t = target("/tmp/rip_server_api");
    assert_eq!(
        run(&["scale", "+1", d]).unwrap(),
        Command::Scale {
            target: t.clone(),
            change: ScaleChange::By(1)
        }
    );
    assert_eq!(
        run(&["scale", d, "-1"]).unwrap(),
        Command::Scale {
            target: t.clone(),
            change: ScaleChange::By(-1)
        }
    );
    assert_eq!(
        run(&["scale", "4", "--socket-prefix=/tmp/p"]).unwrap(),
        Command::Scale {
            target: target("/tmp/p"),
            change: ScaleChange::To(4)
        }
    );
    assert_eq!(
        run(&["scale", "--variant=dev", "-3", d]).unwrap(),
        Command::Scale {
            target: target("/tmp/rip_dev_api"),
            change: ScaleChange::By(-3)
        }
    );
}

#[test]
fn worker_subcommand() {
    assert_eq!(
        run(&["worker", "--builtin"]).unwrap(),
        Command::Worker(WorkerArgs { socket: None })
    );
    assert_eq!(
        run(&["worker", "--builtin", "--socket", "/tmp/w.0.sock"]).unwrap(),
        Command::Worker(WorkerArgs {
            socket: Some(PathBuf::from("/tmp/w.0.sock"))
        })
    );
    assert_eq!(
        run(&["worker", "--socket=/tmp/w.1.sock", "--builtin"]).unwrap(),
        Command::Worker(WorkerArgs {
            socket: Some(PathBuf::from("/tmp/w.1.sock"))
        })
    );
    fails(&["worker"], "worker");
    fails(&["worker", "--builtin", "--nope"], "--nope");
    fails(&["worker", "--builtin", "--socket"], "--socket");
}

// ---------------------------------------------------------------------------
// Help and version
// ---------------------------------------------------------------------------

#[test]
fn help_anywhere() {
    for list in [
        &["-h"][..],
        &["--help"],
        &["help"],
        &["apps/missing", "--help"],
        &["w:0", "-h"],
        &["status", "--help"],
    ] {
        match run(list) {
            Ok(Command::Help(text)) => assert!(text.contains("USAGE"), "{list:?}"),
            other => panic!("{list:?}: {other:?}"),
        }
    }
    for list in [&["-V"][..], &["--version"], &["apps/x", "--version"]] {
        match run(list) {
            Ok(Command::Version(v)) => {
                assert!(v.starts_with("rip-server "), "{v}");
                assert!(!v.contains('\n'));
            }
            other => panic!("{list:?}: {other:?}"),
        }
    }
}

#[test]
fn help_lists_everything() {
    let Command::Help(text) = run(&["--help"]).unwrap() else {
        unreachable!()
    };
    let must = [
        // tokens
        "w:<N|auto>",
        "r:<N>[,<S>s][,<R>r]",
        "http:<port>",
        "https:<port>",
        "cert:<path>",
        "key:<path>",
        "protocol:",
        "http+https",
        "builtin:hello",
        // flags
        "--max-queue",
        "--queue-timeout-ms",
        "--connect-timeout-ms",
        "--read-timeout-ms",
        "--hot-reload",
        "--reload",
        "--no-hot-reload",
        "--max-reloads",
        "--json-logging",
        "--no-access-log",
        "--variant",
        "--socket-prefix",
        "--lb-policy",
        "lifo",
        "--upstream-max-idle",
        "--upstream-max-conns-per-socket",
        "--https-port",
        "--cert",
        "--key",
        "--header-timeout-ms",
        "--response-buffer-kb",
        "--stuck-grace-ms",
        "--stop-timeout-ms",
        "--metrics-port",
        "--admin-bind",
        "--drain-delay-ms",
        "--json",
        "--bind",
        "RIP_BIND",
        "--help",
        "--version",
        // env
        "PORT",
        "RIP_MAX_QUEUE",
        "RIP_QUEUE_TIMEOUT_MS",
        "RIP_CONNECT_TIMEOUT_MS",
        "RIP_READ_TIMEOUT_MS",
        "RIP_HOT_RELOAD",
        "RIP_MAX_RELOADS",
        "RIP_VARIANT",
        // subcommands
        "status",
        "restart",
        "stop",
        "scale",
        // defaults
        "5002",
        "8192",
        "2000",
        "200",
        "5000",
        "10000",
        "/tmp/rip_<variant>_<app>",
        "[default: auto]",
        "index.rip",
        "index.ts",
    ];
    for m in must {
        assert!(text.contains(m), "help lacks {m:?}:\n{text}");
    }
    for m in [
        "--retry-sent",
        "RIP_RETRY_SENT",
        "RIP_THREADS",
        "RIP_LOG",
        "RIP_HOME",
        "status --json",
        "EXIT STATUS",
        "https:<mode>",
        "--no-redirect-http",
        "--hsts",
        "--hot-reload means module",
        "--bun-preload",
        "RIP_BUN",
        "has no effect",
        "rip-server add <host> <app-path>",
        "rip-server remove <host>",
        "rip-server list [--json]",
        "HOST REGISTRY ($RIP_HOME/hosts.json",
        "A running platform follows hosts.json",
        "a bad host name",
        "rip-server platform [http:<port>] [--api-port=N] [--admin-bind=ADDR] [--bind=ADDR]",
        "--api-port=<port>",
        "--admin-bind=<addr>",
        "404\n    Host not found",
    ] {
        assert!(text.contains(m), "help lacks {m:?}:\n{text}");
    }
    // The hidden worker subcommand stays hidden; no refused HTTPS example.
    assert!(!text.contains("--builtin"));
    assert!(!text.contains("cert:./"), "{text}");
}

#[test]
fn bind_takes_an_ip_address_and_nothing_else() {
    let f = Fixture::rip();
    let d = f.dir();
    let ip = |s: &str| -> std::net::IpAddr { s.parse().unwrap() };
    assert_eq!(serve(&[d]).bind, ip("0.0.0.0"));
    assert_eq!(serve(&[d, "--bind=127.0.0.1"]).bind, ip("127.0.0.1"));
    assert_eq!(serve(&[d, "--bind", "::1"]).bind, ip("::1"));
    assert_eq!(serve(&[d, "--bind=[::1]"]).bind, ip("::1"));
    assert_eq!(serve(&[d, "--bind=::"]).bind, ip("::"));
    // The flag beats the variable; the variable beats the default.
    assert_eq!(serve_env(&[d], &[("RIP_BIND", "127.0.0.2")]).bind, ip("127.0.0.2"));
    assert_eq!(
        serve_env(&[d, "--bind=127.0.0.3"], &[("RIP_BIND", "127.0.0.2")]).bind,
        ip("127.0.0.3")
    );
    fails(&[d, "--bind=localhost"], "--bind=localhost");
    fails(&[d, "--bind=127.0.0.1:5002"], "--bind=127.0.0.1:5002");
    fails(&[d, "--bind=256.0.0.1"], "--bind=256.0.0.1");
    fails(&[d, "--bind="], "--bind=");
    fails_env(&[d], &[("RIP_BIND", "example.com")], "RIP_BIND=example.com");
}

// ---------------------------------------------------------------------------
// Bun: where it is found, and the preload for .rip entries
// ---------------------------------------------------------------------------

#[test]
fn bun_is_rip_bun_else_bun_on_path() {
    let f = Fixture::empty();
    f.file("index.ts", false);
    let bin = f.root.join("bin");
    fs::create_dir(&bin).unwrap();
    let on_path = bin.join("bun");
    fs::write(&on_path, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&on_path, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("/nonexistent:{}", bin.display());
    let c = serve_env(&[f.dir()], &[("PATH", &path)]);
    assert_eq!(c.bun, BunLocation::OnPath(on_path));
    let c = serve_env(&[f.dir()], &[("PATH", &path), ("RIP_BUN", "/opt/bun/bin/bun")]);
    assert_eq!(c.bun, BunLocation::FromVariable("/opt/bun/bin/bun".into()));
    assert_eq!(serve(&[f.dir()]).bun, BunLocation::Missing);
}

#[test]
fn bun_preload_flag_beats_its_variable_and_is_absolute() {
    let f = Fixture::rip();
    let c = serve_env(
        &[f.dir(), "--bun-preload=plugin.ts"],
        &[("RIP_BUN_PRELOAD", "/from/env.ts")],
    );
    let preload = c.bun_preload.unwrap();
    assert!(preload.is_absolute() && preload.ends_with("plugin.ts"), "{preload:?}");
    let c = serve_env(&[f.dir()], &[("RIP_BUN_PRELOAD", "/from/env.ts")]);
    assert_eq!(c.bun_preload, Some(PathBuf::from("/from/env.ts")));
    assert_eq!(serve(&[f.dir()]).bun_preload, None);
    fails(&[f.dir(), "--bun-preload="], "--bun-preload=");
}

// ---------------------------------------------------------------------------
// Front-door replicas: --lb-replicas / RIP_LB_REPLICAS
// ---------------------------------------------------------------------------

#[test]
fn lb_replicas_from_the_flag_or_its_variable() {
    let f = Fixture::rip();
    let d = f.dir();
    assert_eq!(serve(&[d]).lb_replicas, DEFAULT_LB_REPLICAS);
    assert_eq!(DEFAULT_LB_REPLICAS, 1, "one loop unless asked: the server as it was");
    assert_eq!(serve(&[d, "--lb-replicas=4"]).lb_replicas, 4);
    assert_eq!(serve(&["--lb-replicas", "3", d]).lb_replicas, 3);
    assert_eq!(serve(&[d, &format!("--lb-replicas={MAX_LB_REPLICAS}")]).lb_replicas, 64);
    assert_eq!(serve_env(&[d], &[("RIP_LB_REPLICAS", "2")]).lb_replicas, 2);
    // The flag beats its variable; an empty variable counts as unset.
    assert_eq!(
        serve_env(&[d, "--lb-replicas=5"], &[("RIP_LB_REPLICAS", "2")]).lb_replicas,
        5
    );
    assert_eq!(serve_env(&[d], &[("RIP_LB_REPLICAS", "")]).lb_replicas, 1);
    // One replica goes with any RIP_THREADS.
    let c = serve_env(&[d, "--lb-replicas=1"], &[("RIP_THREADS", "4")]);
    assert_eq!((c.lb_replicas, c.threads), (1, 4));
}

#[test]
fn lb_replicas_refuses_a_bad_count_naming_the_word() {
    let f = Fixture::rip();
    let d = f.dir();
    let e = fails(&[d, "--lb-replicas=0"], "--lb-replicas=0");
    assert_eq!(
        e.to_string(),
        "rip-server: --lb-replicas=0: expected a replica count in 1..=64"
    );
    fails(&[d, "--lb-replicas=65"], "--lb-replicas=65");
    fails(&[d, "--lb-replicas=two"], "--lb-replicas=two");
    fails(&[d, "--lb-replicas=-1"], "--lb-replicas=-1");
    fails(&[d, "--lb-replicas= 2"], "--lb-replicas= 2");
    fails(&[d, "--lb-replicas"], "--lb-replicas");
    fails(&[d, "--lb-replicas", "many"], "--lb-replicas many");
    fails_env(&[d], &[("RIP_LB_REPLICAS", "0")], "RIP_LB_REPLICAS=0");
    fails_env(&[d], &[("RIP_LB_REPLICAS", "x")], "RIP_LB_REPLICAS=x");
}

/// Replicas are single-threaded loops of their own; RIP_THREADS above 1 is
/// one multi-threaded loop: asking for both is a mistake (exit 2).
#[test]
fn lb_replicas_with_rip_threads_is_refused() {
    let f = Fixture::rip();
    let d = f.dir();
    let e = fails_env(&[d, "--lb-replicas=2"], &[("RIP_THREADS", "2")], "--lb-replicas=2");
    assert_eq!(
        e.to_string(),
        "rip-server: --lb-replicas=2: expected RIP_THREADS unset or 1 with it (it is 2): each replica is a single-threaded event loop of its own, RIP_THREADS one multi-threaded loop; use one or the other"
    );
    fails_env(&[d, "--lb-replicas", "3"], &[("RIP_THREADS", "8")], "--lb-replicas 3");
    fails_env(
        &[d],
        &[("RIP_LB_REPLICAS", "2"), ("RIP_THREADS", "2")],
        "RIP_LB_REPLICAS=2",
    );
}

#[test]
fn platform_refuses_lb_replicas_above_one() {
    let home = [("RIP_HOME", "/tmp/h")];
    let e = fails_env(&["platform", "--lb-replicas=2"], &home, "--lb-replicas=2");
    assert!(e.message.contains("not accepted by platform"), "{e}");
    fails_env(&["platform", "--lb-replicas", "4"], &home, "--lb-replicas=4");
    fails_env(
        &["platform"],
        &[("RIP_HOME", "/tmp/h"), ("RIP_LB_REPLICAS", "2")],
        "RIP_LB_REPLICAS=2",
    );
    assert_eq!(
        platform_env(&["platform", "--lb-replicas=1"], &home).apps.lb_replicas,
        1
    );
    fails_env(&["platform", "--lb-replicas=0"], &home, "--lb-replicas=0");
}
