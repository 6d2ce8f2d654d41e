//! Unit tests of the CLI's parts; the public behaviour is tested in
//! `tests/cli_parse.rs` (parser) and `tests/e2e/cli.rs` (binary).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::admin::parse_scale_change;
use super::env::Env;
use super::flags::{FLAGS, Takes, find};
use super::seen::Seen;
use super::serve::{SERVE_TOKENS, parse_config};
use super::words::{Recycle, parse_digits, parse_recycle, parse_variant};
use super::*;
use crate::config::defaults::*;
use crate::config::{Protocol, control_socket_path, default_socket_prefix, worker_socket_path};

#[test]
fn recycle_forms() {
    let r = parse_recycle("20000,1800s,20r").unwrap();
    assert_eq!(r.requests, Some(Some(20000)));
    assert_eq!(r.age, Some(Some(Duration::from_secs(1800))));
    assert_eq!(r.reloads, Some(20));

    let r = parse_recycle("5").unwrap();
    assert_eq!(
        r,
        Recycle {
            requests: Some(Some(5)),
            age: None,
            reloads: None
        }
    );
    assert_eq!(parse_recycle("0").unwrap().requests, Some(None));
    assert_eq!(parse_recycle("0s").unwrap().age, Some(None));
    assert_eq!(parse_recycle("15m").unwrap().age, Some(Some(Duration::from_secs(900))));
    assert_eq!(parse_recycle("2h").unwrap().age, Some(Some(Duration::from_secs(7200))));
    assert_eq!(parse_recycle("3r,100").unwrap().requests, Some(Some(100)));
    for bad in [
        "",
        ",",
        "1,",
        "1,2",
        "1s,2s",
        "1r,2r",
        "x",
        "10x",
        "-1",
        "+1",
        "1 s",
        "99999999999r",
        "99999999999999999999",
        "999999999h",
    ] {
        assert!(parse_recycle(bad).is_err(), "{bad:?} should fail");
    }
}

#[test]
fn scale_change_shapes() {
    assert_eq!(parse_scale_change("+1"), Some(Ok(ScaleChange::By(1))));
    assert_eq!(parse_scale_change("-3"), Some(Ok(ScaleChange::By(-3))));
    assert_eq!(parse_scale_change("4"), Some(Ok(ScaleChange::To(4))));
    assert!(matches!(parse_scale_change("0"), Some(Err(_))));
    assert!(matches!(parse_scale_change("+0"), Some(Err(_))));
    assert!(matches!(parse_scale_change("1025"), Some(Err(_))));
    assert!(matches!(parse_scale_change("-99999999999999999999"), Some(Err(_))));
    assert_eq!(parse_scale_change("apps/x"), None);
    assert_eq!(parse_scale_change("--variant"), None);
    assert_eq!(parse_scale_change("+"), None);
    assert_eq!(parse_scale_change(""), None);
}

#[test]
fn digits_are_strict() {
    assert_eq!(parse_digits("12"), Some(Ok(12)));
    assert_eq!(parse_digits("+12"), None);
    assert_eq!(parse_digits(" 12"), None);
    assert_eq!(parse_digits(""), None);
    assert_eq!(parse_digits("99999999999999999999"), Some(Err(())));
}

#[test]
fn socket_names() {
    let p = Path::new("/tmp/rip_server_x");
    assert_eq!(control_socket_path(p), Path::new("/tmp/rip_server_x.ctl.sock"));
    assert_eq!(worker_socket_path(p, 3), Path::new("/tmp/rip_server_x.3.sock"));
    assert_eq!(default_socket_prefix("dev", "api"), Path::new("/tmp/rip_dev_api"));
}

#[test]
fn every_flag_is_unique_and_long() {
    for (i, f) in FLAGS.iter().enumerate() {
        assert!(f.name.starts_with("--") && !f.name.contains('='));
        assert!(FLAGS[i + 1..].iter().all(|g| g.name != f.name), "{}", f.name);
    }
}

/// Every flag's setter stores something: applied to a fresh `Seen` with a
/// valid value, the serve config differs from the default one.
#[test]
fn every_flag_sets_something() {
    let samples = [
        ("--bind", "127.0.0.1"),
        ("--max-queue", "3"),
        ("--queue-timeout-ms", "3"),
        ("--connect-timeout-ms", "3"),
        ("--read-timeout-ms", "3"),
        ("--bun-preload", "/tmp/plugin.ts"),
        ("--hot-reload", "module"),
        ("--reload", "module"),
        ("--max-reloads", "3"),
        ("--variant", "dev"),
        ("--socket-prefix", "/tmp/ripx_unit"),
        ("--lb-policy", "rr"),
        ("--lb-replicas", "3"),
        ("--upstream-max-idle", "3"),
        ("--upstream-max-conns-per-socket", "3"),
        ("--https-port", "8443"),
        ("--protocol", "https"),
        ("--cert", "/c.pem"),
        ("--key", "/c.key"),
        ("--header-timeout-ms", "3"),
        ("--response-buffer-kb", "3"),
        ("--stuck-grace-ms", "3"),
        ("--stop-timeout-ms", "3"),
        ("--metrics-port", "9100"),
        ("--admin-bind", "0.0.0.0"),
        ("--drain-delay-ms", "3"),
    ];
    let base = config(&["builtin:hello"], &[]);
    for f in FLAGS {
        let args: Vec<&str> = match f.takes {
            Takes::Nothing(_) => vec![f.name],
            Takes::Value { .. } | Takes::OptionalValue { .. } => {
                let (_, v) = samples
                    .iter()
                    .find(|(n, _)| *n == f.name)
                    .unwrap_or_else(|| panic!("no sample value for {}", f.name));
                vec![f.name, v]
            }
        };
        let mut all = vec!["builtin:hello"];
        all.extend(args);
        // A certificate comes with its key.
        match f.name {
            "--cert" => all.extend(["--key", "/c.key"]),
            "--key" => all.extend(["--cert", "/c.pem"]),
            _ => {}
        }
        // --no-hot-reload only shows over another mode.
        if f.name == "--no-hot-reload" {
            let moved = config(&["builtin:hello", "--hot-reload=module", f.name], &[]);
            assert_eq!(moved.hot_reload, crate::config::HotReload::None);
            continue;
        }
        assert_ne!(config(&all, &[]), base, "{} changed nothing", f.name);
    }
}

/// The range the help shows for a flag is the range it accepts.
#[test]
fn help_ranges_are_the_accepted_ranges() {
    for f in FLAGS {
        let (Some((min, max)), Takes::Value { set, .. }) = (f.range, &f.takes) else {
            continue;
        };
        let mut seen = Seen::default();
        assert!(set(&mut seen, &min.to_string(), f.name).is_ok(), "{} {min}", f.name);
        assert!(set(&mut seen, &max.to_string(), f.name).is_ok(), "{} {max}", f.name);
        assert!(
            set(&mut seen, &(max + 1).to_string(), f.name).is_err(),
            "{} above",
            f.name
        );
        if min > 0 {
            assert!(
                set(&mut seen, &(min - 1).to_string(), f.name).is_err(),
                "{} below",
                f.name
            );
        }
    }
}

#[test]
fn help_defaults_match_constants() {
    let default_of = |name: &str| find(name).unwrap().default;
    let ms = |d: Duration| d.as_millis().to_string();
    assert_eq!(default_of("--bind"), DEFAULT_BIND.to_string());
    assert_eq!(default_of("--max-queue"), DEFAULT_MAX_QUEUE.to_string());
    assert_eq!(default_of("--queue-timeout-ms"), ms(DEFAULT_QUEUE_TIMEOUT));
    assert_eq!(default_of("--connect-timeout-ms"), ms(DEFAULT_CONNECT_TIMEOUT));
    assert_eq!(default_of("--read-timeout-ms"), ms(DEFAULT_READ_TIMEOUT));
    assert_eq!(default_of("--header-timeout-ms"), ms(DEFAULT_HEADER_TIMEOUT));
    assert_eq!(
        default_of("--response-buffer-kb"),
        DEFAULT_RESPONSE_BUFFER_KB.to_string()
    );
    assert_eq!(default_of("--stuck-grace-ms"), ms(DEFAULT_STUCK_GRACE));
    assert_eq!(default_of("--stop-timeout-ms"), ms(DEFAULT_STOP_TIMEOUT));
    assert_eq!(default_of("--hot-reload"), DEFAULT_HOT_RELOAD.as_str());
    assert_eq!(default_of("--reload"), DEFAULT_HOT_RELOAD.as_str());
    assert_eq!(default_of("--max-reloads"), DEFAULT_MAX_RELOADS.to_string());
    assert_eq!(default_of("--variant"), DEFAULT_VARIANT);
    assert_eq!(default_of("--lb-replicas"), DEFAULT_LB_REPLICAS.to_string());
    assert_eq!(default_of("--lb-policy"), DEFAULT_LB_POLICY.as_str());
    assert_eq!(default_of("--upstream-max-idle"), DEFAULT_UPSTREAM_MAX_IDLE.to_string());
    assert_eq!(
        default_of("--upstream-max-conns-per-socket"),
        DEFAULT_UPSTREAM_MAX_CONNS_PER_SOCKET.to_string()
    );
    assert_eq!(
        default_of("--retry-sent"),
        if DEFAULT_RETRY_SENT { "on" } else { "off" }
    );
    let help = help_text();
    assert!(help.contains(&format!("else {DEFAULT_HTTP_PORT}")));
    assert!(help.contains(&format!("r:{}", DEFAULT_MAX_REQUESTS.unwrap())));
    assert!(help.contains(&format!("{DEFAULT_MAX_RELOADS} reloads")));
    assert!(help.contains(&format!("1..={MAX_THREADS} [default: {DEFAULT_THREADS}]")));
    assert!(help.contains(&format!("[default: {DEFAULT_LOG_FILTER}]")));
    for token in SERVE_TOKENS {
        assert!(help.contains(&format!("{token}:<")), "{token}");
    }
    assert!(!help.contains('@'), "a placeholder was left in the help");
}

#[test]
fn a_bare_hot_reload_means_module_and_takes_only_a_mode_as_its_next_word() {
    let mode = |args: &[&str]| config(args, &[]).hot_reload;
    assert_eq!(
        mode(&["builtin:hello", "--hot-reload"]),
        crate::config::HotReload::Module
    );
    assert_eq!(
        mode(&["--hot-reload", "builtin:hello"]),
        crate::config::HotReload::Module
    );
    assert_eq!(
        mode(&["builtin:hello", "--hot-reload", "process"]),
        crate::config::HotReload::Process
    );
    assert_eq!(
        mode(&["builtin:hello", "--hot-reload=none", "--hot-reload"]),
        crate::config::HotReload::Module
    );
    assert_eq!(
        mode(&["builtin:hello", "--hot-reload", "--no-hot-reload"]),
        crate::config::HotReload::None
    );
    // `w:2` after a bare --hot-reload is a token, not a bad mode.
    assert_eq!(config(&["builtin:hello", "--hot-reload", "w:2"], &[]).workers, 2);
    let e = parse_config(
        &["builtin:hello".to_string(), "--hot-reload=sometimes".to_string()],
        &Env(&|_| None),
    )
    .unwrap_err();
    assert!(e.to_string().contains("--hot-reload=sometimes"), "{e}");
}

#[test]
fn help_names_every_variable_and_reserved_word() {
    let help = help_text();
    for name in env::ALL {
        assert!(help.contains(name), "{name}");
    }
    for word in reserved_words() {
        assert!(help.contains(word), "{word}");
    }
}

#[test]
fn one_line_escapes_controls() {
    let e = CliError::new("a\nb", "c\r\nd\te");
    let s = e.to_string();
    assert!(!s.contains('\n') && !s.contains('\r'), "{s}");
    assert_eq!(s, "rip-server: a\\nb: c\\r\\nd\\te");
}

#[test]
fn exit_codes_by_kind() {
    assert_eq!(CliError::new("w", "m").exit_code(), 2);
    assert_eq!(CliError::not_available("w", "m").exit_code(), 1);
    assert_eq!(CliError::failed("w", "m").exit_code(), 1);
}

#[test]
fn variant_names() {
    assert!(parse_variant("dev-1.a_b").is_ok());
    for bad in ["", ".", "..", "a/b", "a b", "ä"] {
        assert!(parse_variant(bad).is_err(), "{bad:?}");
    }
}

// ---------------------------------------------------------------------------
// HTTPS words (the contract's "HTTPS"): parsed here; whether files and the
// dev CA exist is the server's check at start.
// ---------------------------------------------------------------------------

fn parsed(args: &[&str], vars: &[(&str, &str)]) -> Result<ServeConfig, CliError> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let lookup = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    parse_config(&args, &Env(&lookup))
}

fn config(args: &[&str], vars: &[(&str, &str)]) -> ServeConfig {
    parsed(args, vars).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn cfg(args: &[&str]) -> ServeConfig {
    config(args, &[])
}

fn mistake(args: &[&str], word: &str) -> CliError {
    let e = parsed(args, &[]).expect_err(&format!("{args:?} must be refused"));
    assert_eq!(e.word, word, "{e}");
    assert_eq!(e.exit_code(), 2, "{e}");
    e
}

#[test]
fn https_words_parse() {
    let h = "builtin:hello";
    assert_eq!(cfg(&[h, "https:8443"]).https_port, Some(8443));
    assert_eq!(cfg(&["8443", h]).https_port, Some(8443));
    assert_eq!(cfg(&[h, "--https-port=5700"]).https_port, Some(5700));
    assert_eq!(cfg(&[h, "--https-port", "0"]).https_port, Some(0));
    let c = cfg(&[h, "cert:/etc/app.pem", "key:/etc/app.key"]);
    assert_eq!(c.cert, Some(PathBuf::from("/etc/app.pem")));
    assert_eq!(c.key, Some(PathBuf::from("/etc/app.key")));
    assert_eq!((c.protocol, c.https_port), (Protocol::Https, Some(DEFAULT_HTTPS_PORT)));
    let c = cfg(&[h, "--cert=/a.pem", "--key", "/a.key"]);
    assert_eq!((c.cert.unwrap(), c.key.unwrap()), ("/a.pem".into(), "/a.key".into()));
    let cert = cfg(&[h, "cert:./certs/app.pem", "key:k.pem"]).cert.unwrap();
    assert!(cert.is_absolute() && cert.ends_with("certs/app.pem"), "{cert:?}");
    assert_eq!(cfg(&[h, "https:quick"]).https_mode, crate::config::HttpsMode::Quick);
    assert_eq!(cfg(&[h, "https:ca"]).https_mode, crate::config::HttpsMode::Ca);
    assert_eq!(cfg(&[h, "https:smart"]).https_mode, crate::config::HttpsMode::Smart);
    assert_eq!(cfg(&[h, "5700"]).https_mode, DEFAULT_HTTPS_MODE);
    let c = cfg(&[h, "5700", "--no-redirect-http", "--hsts"]);
    assert!(!c.redirect_http && c.hsts);
    let c = cfg(&[h, "5700"]);
    assert!(c.redirect_http && !c.hsts);
    assert_eq!(c.tls_handshake_timeout, DEFAULT_TLS_HANDSHAKE_TIMEOUT);
}

#[test]
fn https_word_mistakes() {
    let h = "builtin:hello";
    // The same kind twice.
    mistake(&[h, "https:1", "2"], "2");
    mistake(&[h, "--https-port=1", "https:2"], "https:2");
    mistake(&[h, "https:quick", "https:ca"], "https:ca");
    mistake(&[h, "cert:/a", "--cert=/b", "key:/k"], "--cert=/b");
    mistake(&[h, "key:/a", "key:/b", "cert:/c"], "key:/b");
    mistake(&[h, "protocol:https", "--protocol=http"], "--protocol=http");
    // cert and key together, and not with a mode.
    mistake(&[h, "cert:/a"], "cert:/a");
    mistake(&[h, "--key", "/k"], "--key /k");
    mistake(&[h, "https:ca", "cert:/a", "key:/k"], "https:ca");
    // HTTPS words with protocol:http.
    let e = mistake(&[h, "protocol:http", "8443"], "8443");
    assert!(e.message.contains("protocol:http"), "{e}");
    // Bad values.
    mistake(&[h, "https:fast"], "https:fast");
    mistake(&[h, "--protocol=ftp"], "--protocol=ftp");
    // One port for both listeners.
    mistake(&[h, "http:8443", "https:8443", "protocol:http+https"], "https:8443");
    mistake(&[h, "http:8443", "https:8443"], "https:8443");
}

#[test]
fn protocol_follows_the_words() {
    let h = "builtin:hello";
    assert_eq!((cfg(&[h]).protocol, cfg(&[h]).https_port), (Protocol::Http, None));
    // Any HTTPS word without protocol: means https (the HTTP port redirects).
    for word in ["5700", "https:quick", "--https-port=1"] {
        assert_eq!(cfg(&[h, word]).protocol, Protocol::Https, "{word}");
    }
    assert_eq!(cfg(&[h, "5700", "http:8080"]).protocol, Protocol::Https);
    assert_eq!(config(&[h, "5700"], &[("PORT", "8080")]).protocol, Protocol::Https);
    let c = config(&[h, "protocol:http+https", "https:8443", "http:8080"], &[]);
    assert_eq!(c.protocol, Protocol::HttpAndHttps);
    assert_eq!((c.http_port, c.https_port), (8080, Some(8443)));
    // protocol:https alone: the default HTTPS port.
    let c = cfg(&[h, "--protocol", "https"]);
    assert_eq!((c.protocol, c.https_port), (Protocol::Https, Some(DEFAULT_HTTPS_PORT)));
    // HTTP off: its port may be the same number.
    let c = cfg(&[h, "http:8443", "https:8443", "--no-redirect-http"]);
    assert_eq!(c.https_port, Some(8443));
    // Port 0 twice is fine: two free ports.
    assert_eq!(
        cfg(&[h, "http:0", "https:0", "protocol:http+https"]).https_port,
        Some(0)
    );
}
