//! End to end, HTTPS: real `rip-server` processes checked with real
//! clients (`curl`, `openssl s_client`), each server with its own
//! temporary `RIP_HOME` (the dev CA made by the real `rip-server ca init`).
//! Never the machine's trust store: clients get the root with `--cacert`.
//! curl and openssl are installed with apt-get when missing and running as
//! root; otherwise the test fails with the reason.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;

/// A finished command's status and output.
async fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        use tokio::io::AsyncWriteExt;
        input.write_all(text.as_bytes()).await.expect("stdin");
    }
    let out = tokio::time::timeout(STEP, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{} {args:?} did not finish", program.display()))
        .expect("wait");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `curl -s -D - <args>`: (exit code, head and body as text).
pub(crate) async fn curl(args: &[&str]) -> Output {
    let mut all = vec!["-s", "-S", "-D", "-", "--max-time", "10"];
    all.extend_from_slice(args);
    run(&debian_tool("curl", "curl"), &all, None).await
}

/// The HTTPS port from the start line.
fn https_port(server: &Server) -> u16 {
    server
        .start_line
        .split("https://localhost:")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no HTTPS address in {:?}", server.start_line))
}

/// A home with a dev CA made by `rip-server ca init`.
pub(crate) async fn home_with_ca() -> tempfile::TempDir {
    let home = fresh_home();
    let path = home.path().to_string_lossy().into_owned();
    let out = run_cli(&["ca", "init"], &[("RIP_HOME", &path)], STEP).await;
    assert_eq!(out.code, Some(0), "ca init: {out:?}");
    assert!(home.path().join("ca/root.crt").is_file());
    home
}

fn root(home: &Path) -> String {
    home.join("ca/root.crt").to_string_lossy().into_owned()
}

/// An app directory whose entry is an executable running the built-in
/// worker: an app with a directory (so `hosts.json` can name it) that
/// needs nothing but this binary.
fn builtin_app_dir(parent: &Path) -> PathBuf {
    let dir = parent.join("shop");
    std::fs::create_dir_all(&dir).unwrap();
    let entry = dir.join("index");
    std::fs::write(&entry, format!("#!/bin/sh\nexec '{}' worker --builtin\n", bin())).unwrap();
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::canonicalize(&dir).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dev_ca_certificates_verify_with_curl_and_openssl() {
    within(Duration::from_secs(60), async {
        let home = home_with_ca().await;
        let server = Server::builtin()
            .env("RIP_HOME", &home.path().to_string_lossy())
            .args(&["w:1", "https:0", "protocol:http+https", "https:ca"])
            .start()
            .await;
        let port = https_port(&server);
        let ca = root(home.path());
        // By name, and by address (no SNI: the default certificate).
        for url in [
            format!("https://localhost:{port}/ping"),
            format!("https://127.0.0.1:{port}/ping"),
            format!("https://[::1]:{port}/ping"),
        ] {
            if url.contains("[::1]") && std::net::TcpListener::bind("[::1]:0").is_err() {
                continue;
            }
            let out = curl(&["--cacert", &ca, &url]).await;
            // The server listens on 0.0.0.0 by default: IPv6 may be refused.
            if url.contains("[::1]") && out.code == Some(7) {
                continue;
            }
            assert_eq!(out.code, Some(0), "{url}: {out:?}");
            assert!(
                out.stdout.starts_with("HTTP/1.1 200") && out.stdout.ends_with("pong"),
                "{url}: {out:?}"
            );
            assert!(!out.stdout.to_ascii_lowercase().contains("strict-transport-security"));
        }
        // openssl, refusing any verification error.
        let connect = format!("127.0.0.1:{port}");
        let out = run(
            &debian_tool("openssl", "openssl"),
            &[
                "s_client",
                "-connect",
                &connect,
                "-servername",
                "localhost",
                "-CAfile",
                &ca,
                "-verify_return_error",
            ],
            Some("Q\n"),
        )
        .await;
        assert_eq!(out.code, Some(0), "{out:?}");
        assert!(out.stdout.contains("Verify return code: 0 (ok)"), "{}", out.stdout);
        // A name outside the root's constraints: the default certificate,
        // which the client refuses (curl 60: peer certificate not verified).
        let resolve = format!("example.com:{port}:127.0.0.1");
        let out = curl(&[
            "--cacert",
            &ca,
            "--resolve",
            &resolve,
            &format!("https://example.com:{port}/ping"),
        ])
        .await;
        assert_eq!(out.code, Some(60), "{out:?}");
        // /status names the certificate, and no key material anywhere.
        let status = server.status().await;
        assert_eq!(status["tls"]["source"], "ca", "{status}");
        assert!(
            status["tls"]["sans"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n == "localhost")
        );
        assert!(
            status["tls"]["issuer"].as_str().unwrap().contains("rip-server"),
            "{status}"
        );
        assert!(status["tls"]["nextRenewal"].is_string() && status["tls"]["notAfter"].is_string());
        assert!(!status.to_string().contains("PRIVATE KEY"));
        // The CLI's status (through the control socket) says the same.
        let out = run_cli(&["status", "--json", &server.prefix_arg()], &[], STEP).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        let via_cli: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
        assert_eq!(via_cli["tls"], status["tls"], "{}", out.stdout);
        let out = run_cli(&["status", &server.prefix_arg()], &[], STEP).await;
        assert!(
            out.stdout.contains("TLS:      ca certificate for localhost"),
            "{}",
            out.stdout
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hsts_on_a_registered_host_never_on_localhost() {
    within(Duration::from_secs(60), async {
        let home = home_with_ca().await;
        let home_text = home.path().to_string_lossy().into_owned();
        let app = builtin_app_dir(home.path());
        let out = run_cli(
            &["add", "app.test", &app.to_string_lossy()],
            &[("RIP_HOME", &home_text)],
            STEP,
        )
        .await;
        assert_eq!(out.code, Some(0), "{out:?}");
        let server = Server::app(&app.to_string_lossy())
            .env("RIP_HOME", &home_text)
            .args(&["w:1", "https:0", "protocol:http+https", "--hsts"])
            .start()
            .await;
        let port = https_port(&server);
        let ca = root(home.path());
        let resolve = format!("app.test:{port}:127.0.0.1");
        // A registered host gets a leaf of its own, verified by the root, and HSTS.
        let out = curl(&[
            "--cacert",
            &ca,
            "--resolve",
            &resolve,
            &format!("https://app.test:{port}/ping"),
        ])
        .await;
        assert_eq!(out.code, Some(0), "{out:?}");
        let head = out.stdout.to_ascii_lowercase();
        assert!(
            head.contains("strict-transport-security: max-age=31536000; includesubdomains"),
            "{head}"
        );
        assert!(
            home.path()
                .join("certs")
                .read_dir()
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().contains("app.test"))
        );
        // localhost and an address: never.
        for url in [
            format!("https://localhost:{port}/ping"),
            format!("https://127.0.0.1:{port}/ping"),
        ] {
            let out = curl(&["--cacert", &ca, &url]).await;
            assert_eq!(out.code, Some(0), "{out:?}");
            assert!(
                !out.stdout.to_ascii_lowercase().contains("strict-transport-security"),
                "{url}: {out:?}"
            );
        }
        // Plain HTTP (http+https serves the app there): no HSTS either.
        let plain = get(server.port, "/ping").await;
        assert!(plain.header("strict-transport-security").is_none());
        // A random name under .localhost gets the default, and no file.
        let resolve = format!("random-1.localhost:{port}:127.0.0.1");
        let _ = curl(&[
            "--cacert",
            &ca,
            "--resolve",
            &resolve,
            &format!("https://random-1.localhost:{port}/"),
        ])
        .await;
        let files: Vec<String> = home
            .path()
            .join("certs")
            .read_dir()
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!files.iter().any(|f| f.contains("random")), "{files:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_port_redirects_per_the_contract() {
    within(Duration::from_secs(60), async {
        // protocol https: the HTTP port only redirects (no worker needed).
        let server = Server::builtin()
            .args(&["https:0", "https:quick"])
            .no_wait()
            .start()
            .await;
        let port = https_port(&server);
        let http = server.port;
        for (method, target, status, location) in [
            (
                "GET",
                "/a/b?x=1&y=2",
                301,
                format!("https://app.test:{port}/a/b?x=1&y=2"),
            ),
            ("GET", "/a", 301, format!("https://app.test:{port}/a")),
            ("HEAD", "/a?", 301, format!("https://app.test:{port}/a")),
            ("POST", "/form?id=3", 308, format!("https://app.test:{port}/form?id=3")),
            ("POST", "/form", 308, format!("https://app.test:{port}/form")),
            ("DELETE", "/x", 308, format!("https://app.test:{port}/x")),
        ] {
            let url = format!("http://127.0.0.1:{http}{target}");
            let mut args = vec!["-H", "Host: app.test:8080", "-X", method, &url];
            if method == "HEAD" {
                args = vec!["-H", "Host: app.test:8080", "-I", &url];
            }
            let out = curl(&args).await;
            assert!(
                out.stdout.starts_with(&format!("HTTP/1.1 {status}")),
                "{method} {target}: {out:?}"
            );
            let want = format!("location: {location}\r\n");
            assert!(
                out.stdout.to_ascii_lowercase().contains(&want.to_ascii_lowercase()),
                "{method} {target}: {out:?}"
            );
        }
        // Plain HTTP sent to the HTTPS port: the same redirect.
        let (bytes, _) = raw_exchange(
            port,
            b"GET /p?q HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            STEP,
        )
        .await;
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("HTTP/1.1 301"), "{text}");
        assert!(
            text.contains(&format!("location: https://localhost:{port}/p?q\r\n")),
            "{text}"
        );
        // The quick certificate serves too (self-signed: -k).
        let out = curl(&["-k", &format!("https://localhost:{port}/ping")]).await;
        assert!(out.stdout.ends_with("pong"), "{out:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn https_ca_without_a_ca_exits_2_and_no_redirect_turns_http_off() {
    within(Duration::from_secs(30), async {
        let home = fresh_home();
        let path = home.path().to_string_lossy().into_owned();
        let out = run_cli(
            &["builtin:hello", "http:0", "https:0", "https:ca"],
            &[("RIP_HOME", &path)],
            STEP,
        )
        .await;
        assert_eq!(out.code, Some(2), "{out:?}");
        assert_eq!(
            out.stderr.trim_end(),
            "rip-server: https:ca: No CA found. Run \"rip-server ca init\" first.",
            "{out:?}"
        );
        // --no-redirect-http: HTTP is off, only HTTPS listens (and says so).
        let sockets = short_dir();
        let prefix = format!("--socket-prefix={}", sockets.path().join("s").display());
        let mut child = tokio::process::Command::new(bin())
            .args([
                "builtin:hello",
                "w:1",
                "https:0",
                "https:quick",
                "--no-redirect-http",
                &prefix,
            ])
            .env("RIP_HOME", &path)
            .env_remove("PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn rip-server");
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        let line = tokio::time::timeout(STEP, lines.next_line())
            .await
            .expect("a start line")
            .unwrap()
            .unwrap();
        assert!(
            line.contains("on https://localhost:") && !line.contains("http://"),
            "{line}"
        );
        let port: u16 = line.rsplit(':').next().unwrap().parse().unwrap();
        eventually("HTTPS answers", STEP, || async {
            let out = curl(&["-k", &format!("https://localhost:{port}/ping")]).await;
            if out.stdout.ends_with("pong") {
                Ok(())
            } else {
                Err(format!("{out:?}"))
            }
        })
        .await;
        send_signal(child.id().unwrap(), "TERM");
        let status = tokio::time::timeout(STEP, child.wait())
            .await
            .expect("stopped")
            .unwrap();
        assert!(status.success(), "{status:?}");
    })
    .await;
}

/// `cert:`/`key:` replaced on disk: the new serial is served without a
/// restart; a broken replacement keeps the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cert_files_replaced_on_disk_are_served_without_a_restart() {
    within(Duration::from_secs(60), async {
        let dir = fresh_home();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let write = |serial: u64| {
            let key_pair = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
            params.serial_number = Some(rcgen::SerialNumber::from(serial));
            let c = params.self_signed(&key_pair).unwrap();
            for (path, text) in [(&key, key_pair.serialize_pem()), (&cert, c.pem())] {
                let tmp = path.with_extension("new");
                std::fs::write(&tmp, text).unwrap();
                std::fs::rename(&tmp, path).unwrap();
            }
        };
        write(0x1111);
        let cert_word = format!("cert:{}", cert.display());
        let key_word = format!("key:{}", key.display());
        let server = Server::builtin()
            .args(&["w:1", "https:0", "protocol:http+https", &cert_word, &key_word])
            .start()
            .await;
        let port = https_port(&server);
        let served_serial = || async {
            let out = run(
                &debian_tool("openssl", "openssl"),
                &["s_client", "-connect", &format!("127.0.0.1:{port}")],
                Some("Q\n"),
            )
            .await;
            let pem = out.stdout;
            let out = run(
                &debian_tool("openssl", "openssl"),
                &["x509", "-noout", "-serial"],
                Some(&pem),
            )
            .await;
            out.stdout.trim().to_ascii_lowercase()
        };
        assert_eq!(served_serial().await, "serial=1111");
        assert_eq!(server.status().await["tls"]["serial"], "1111");
        write(0x2222);
        eventually("the new serial served", STEP, || async {
            let serial = served_serial().await;
            if serial == "serial=2222" { Ok(()) } else { Err(serial) }
        })
        .await;
        assert_eq!(server.status().await["tls"]["serial"], "2222");
        // A broken replacement: refused (logged), the last good pair served.
        std::fs::write(cert.with_extension("new"), "garbage").unwrap();
        std::fs::rename(cert.with_extension("new"), &cert).unwrap();
        server.wait_stderr_line("still serving the last good certificate").await;
        assert_eq!(served_serial().await, "serial=2222");
        assert_eq!(get(server.port, "/ping").await.status, 200);
    })
    .await;
}

/// `SIGHUP` reloads `cert:`/`key:` even when no change under their
/// directory was seen: here they are symlinks into another directory whose
/// files are replaced, which the watch on the symlinks' directory cannot
/// see (as with a certificate renewed behind a symlink by a tool).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_reloads_certificate_files_the_watch_cannot_see() {
    within(Duration::from_secs(60), async {
        let dir = fresh_home();
        let (live, store) = (dir.path().join("live"), dir.path().join("store"));
        std::fs::create_dir_all(&live).unwrap();
        std::fs::create_dir_all(&store).unwrap();
        let write = |serial: u64| {
            let key_pair = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
            params.serial_number = Some(rcgen::SerialNumber::from(serial));
            let c = params.self_signed(&key_pair).unwrap();
            for (name, text) in [("tls.key", key_pair.serialize_pem()), ("tls.crt", c.pem())] {
                let tmp = store.join(format!("{name}.new"));
                std::fs::write(&tmp, text).unwrap();
                std::fs::rename(&tmp, store.join(name)).unwrap();
            }
        };
        write(0x3333);
        for name in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(store.join(name), live.join(name)).unwrap();
        }
        let cert_word = format!("cert:{}", live.join("tls.crt").display());
        let key_word = format!("key:{}", live.join("tls.key").display());
        let server = Server::builtin()
            .args(&["w:1", "https:0", "protocol:http+https", &cert_word, &key_word])
            .start()
            .await;
        assert_eq!(server.status().await["tls"]["serial"], "3333");
        write(0x4444);
        // Nothing under live/ changed: the certificate in force stays until
        // the signal (the status would only change through a reload).
        assert_eq!(server.status().await["tls"]["serial"], "3333");
        server.signal("HUP");
        eventually("the serial after SIGHUP", STEP, || async {
            let serial = server.status().await["tls"]["serial"].clone();
            if serial == "4444" {
                Ok(())
            } else {
                Err(serial.to_string())
            }
        })
        .await;
        server.wait_stderr_line("certificate reloaded (serial 4444)").await;
        assert_eq!(get(server.port, "/ping").await.status, 200);
    })
    .await;
}
