//! `rip-server ca ...` as a user runs it: exit statuses and the exact
//! lines, the files it leaves, leaves that OpenSSL verifies against the
//! root (and a rogue one it refuses for the root's name constraints), and
//! `ca trust` against a fake system store (`RIP_TRUST_ROOT` plus a
//! recording `update-ca-certificates` first on `PATH`) and real NSS
//! databases made by `certutil` under a temporary `HOME`. Nothing here
//! touches this machine's trust stores or the real home.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use rip_server::tls::ca::DevCa;
use rip_server::tls::ca::validity::wall_clock_now;
use tokio::time::timeout;

use crate::common::*;

const NO_CA: &str = "No CA found. Run \"rip-server ca init\" first.";

/// A sandbox: `RIP_HOME`, a user `HOME`, a system-store root and a
/// directory of fake commands put first on `PATH`.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let sandbox = Sandbox {
            dir: tempfile::Builder::new().prefix("rip-ca").tempdir().expect("temp dir"),
        };
        for dir in [
            sandbox.home(),
            sandbox.user_home(),
            sandbox.trust_root(),
            sandbox.fake_bin(),
        ] {
            fs::create_dir_all(dir).unwrap();
        }
        sandbox
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("rip-home")
    }

    fn user_home(&self) -> PathBuf {
        self.dir.path().join("user")
    }

    fn trust_root(&self) -> PathBuf {
        self.dir.path().join("trust-root")
    }

    fn fake_bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn calls_file(&self) -> PathBuf {
        self.dir.path().join("calls")
    }

    /// The Debian anchors directory under the fake root.
    fn anchors(&self) -> PathBuf {
        self.trust_root().join("usr/local/share/ca-certificates")
    }

    /// A fake `update-ca-certificates` that records its call and exits `code`.
    fn fake_update(&self, code: i32) {
        let path = self.fake_bin().join("update-ca-certificates");
        let script = format!(
            "#!/bin/sh\necho \"update-ca-certificates $*\" >> '{}'\necho 'fake says no' >&2\nexit {code}\n",
            self.calls_file().display()
        );
        let script = if code == 0 {
            script.replace("echo 'fake says no' >&2\n", "")
        } else {
            script
        };
        fs::write(&path, script).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.calls_file())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `rip-server args...` in `cwd` with the sandbox's environment.
    async fn ca_in(&self, cwd: &Path, args: &[&str]) -> Output {
        let path = format!(
            "{}:{}",
            self.fake_bin().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let child = tokio::process::Command::new(bin())
            .args(args)
            .current_dir(cwd)
            .env("RIP_HOME", self.home())
            .env("HOME", self.user_home())
            .env("RIP_TRUST_ROOT", self.trust_root())
            .env("PATH", path)
            .env("USER", "tester")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn rip-server");
        let out = timeout(STEP, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("rip-server {args:?} did not finish within {STEP:?}"))
            .expect("wait for rip-server");
        Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn ca(&self, args: &[&str]) -> Output {
        self.ca_in(self.dir.path(), args).await
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.ca(args).await;
        assert_eq!(out.code, Some(0), "{args:?}: {out:?}");
        assert_eq!(out.stderr, "", "{args:?}");
        out.stdout
    }

    fn root_cert(&self) -> PathBuf {
        self.home().join("ca/root.crt")
    }

    fn ca_now(&self) -> DevCa {
        DevCa::load(&self.home()).unwrap().expect("a CA")
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
}

/// Runs a tool to completion; its stdout, or a panic with what it said.
fn tool(program: &Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every subcommand but `init` without a CA: exit 1, exactly the contract's
/// line, nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_ca_every_subcommand_but_init_exits_1_with_the_contract_line() {
    within(BUDGET, async {
        let sandbox = Sandbox::new();
        for args in [
            &["ca", "info"][..],
            &["ca", "list"],
            &["ca", "export"],
            &["ca", "export", "-"],
            &["ca", "trust"],
            &["ca", "trust", "--dry-run"],
            &["ca", "untrust"],
            &["ca", "clean"],
            &["ca", "clean", "--all"],
            &["ca:info"],
            &["ca:trust"],
        ] {
            let out = sandbox.ca(args).await;
            assert_eq!(out.code, Some(1), "{args:?}: {out:?}");
            assert_eq!(out.stdout, "", "{args:?}");
            assert_eq!(out.stderr, format!("{NO_CA}\n"), "{args:?}");
        }
        assert_eq!(
            fs::read_dir(sandbox.home()).unwrap().count(),
            0,
            "nothing written to RIP_HOME"
        );
        assert!(!sandbox.dir.path().join("rip-server-ca.crt").exists());
        assert!(sandbox.calls().is_empty());
    })
    .await;
}

/// A word `ca` does not know: exit 2, one line naming it, nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistake_exits_2_with_one_line_naming_the_word() {
    within(BUDGET, async {
        let sandbox = Sandbox::new();
        for (args, word) in [
            (&["ca"][..], "rip-server: ca: "),
            (&["ca", "frobnicate"], "rip-server: frobnicate: unknown ca subcommand"),
            (&["ca:frobnicate"], "rip-server: ca:frobnicate: unknown ca subcommand"),
            (&["ca", "init", "--force"], "rip-server: --force: unknown flag"),
            (&["ca", "trust", "--all"], "rip-server: --all: unknown flag"),
            (&["ca", "clean", "--dry-run"], "rip-server: --dry-run: unknown flag"),
            (&["ca", "list", "extra"], "rip-server: extra: one word too many"),
            (&["ca", "export", "a", "b"], "rip-server: b: one word too many"),
            (&["ca", "init", "--name"], "rip-server: --name: expected a value"),
            (&["ca", "init", "--name", "a b"], "rip-server: --name a b: "),
            (
                &["ca", "init", "--name=*.app.test"],
                "rip-server: --name=*.app.test: expected a domain without *.",
            ),
            (
                &["ca", "init", "--name=10.0.0.1"],
                "rip-server: --name=10.0.0.1: expected a DNS name",
            ),
        ] {
            let out = sandbox.ca(args).await;
            assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
            assert_eq!(out.stdout, "", "{args:?}");
            assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {out:?}");
            assert!(
                out.stderr.starts_with(word),
                "{args:?}: {:?} does not start with {word:?}",
                out.stderr
            );
        }
        let relative = {
            let path = format!(
                "{}:{}",
                sandbox.fake_bin().display(),
                std::env::var("PATH").unwrap_or_default()
            );
            run_cli(
                &["ca", "trust"],
                &[
                    ("RIP_HOME", &sandbox.home().to_string_lossy()),
                    ("RIP_TRUST_ROOT", "relative/dir"),
                    ("PATH", &path),
                ],
                STEP,
            )
            .await
        };
        assert_eq!(relative.code, Some(2), "{relative:?}");
        assert!(
            relative.stderr.starts_with("rip-server: RIP_TRUST_ROOT=relative/dir: "),
            "{relative:?}"
        );
        assert_eq!(
            fs::read_dir(sandbox.home()).unwrap().count(),
            0,
            "nothing written to RIP_HOME"
        );
    })
    .await;
}

/// `ca init` makes a private root; a second `ca init` keeps it (same
/// fingerprint, same bytes) and says where it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_makes_a_private_root_and_a_second_init_keeps_it() {
    within(BUDGET, async {
        let sandbox = Sandbox::new();
        let made = sandbox.ok(&["ca", "init"]).await;
        let ca_dir = sandbox.home().join("ca");
        assert!(
            made.starts_with(&format!("created the dev CA in {}", ca_dir.display())),
            "{made}"
        );
        assert_eq!(mode(&ca_dir), 0o700);
        assert_eq!(mode(&ca_dir.join("root.key")), 0o600);
        assert_eq!(mode(&ca_dir.join("root.crt")), 0o600);
        let pem = fs::read(sandbox.root_cert()).unwrap();
        let info = sandbox.ok(&["ca", "info"]).await;
        let fingerprint = line_with(&info, "SHA-256:").to_string();
        assert!(
            line_with(&info, "subject:").contains("rip-server development CA (tester@"),
            "{info}"
        );
        assert_eq!(
            line_with(&info, "permits:"),
            "permits:      localhost, .localhost, .test, .local, 127.0.0.0/8, ::1/128"
        );
        // The fingerprint is the one OpenSSL computes.
        let openssl = debian_tool("openssl", "openssl");
        let (ok, text) = tool(
            &openssl,
            &[
                "x509",
                "-noout",
                "-fingerprint",
                "-sha256",
                "-in",
                &sandbox.root_cert().to_string_lossy(),
            ],
        );
        assert!(ok, "{text}");
        let theirs = text.trim().rsplit('=').next().unwrap().to_string();
        assert!(fingerprint.ends_with(&theirs), "{fingerprint} vs {theirs}");
        // OpenSSL sees a CA with path length 0, the key usages and the constraints.
        let (ok, text) = tool(
            &openssl,
            &["x509", "-noout", "-text", "-in", &sandbox.root_cert().to_string_lossy()],
        );
        assert!(ok, "{text}");
        for needle in [
            "CA:TRUE, pathlen:0",
            "Certificate Sign, CRL Sign",
            "X509v3 Name Constraints: critical",
            "DNS:.localhost",
            "IP:127.0.0.0/255.0.0.0",
            "ASN1 OID: prime256v1",
        ] {
            assert!(text.contains(needle), "no {needle:?} in:\n{text}");
        }
        for args in [
            &["ca", "init"][..],
            &["ca:init"],
            &["ca", "init", "--name", "other.dev"],
        ] {
            let again = sandbox.ok(args).await;
            assert_eq!(again.lines().count(), 1, "{again}");
            assert!(
                again.starts_with(&format!("a CA already exists in {}; kept it", ca_dir.display())),
                "{again}"
            );
        }
        assert_eq!(fs::read(sandbox.root_cert()).unwrap(), pem);
        let info = sandbox.ok(&["ca", "info"]).await;
        assert_eq!(line_with(&info, "SHA-256:"), fingerprint);
        assert!(!info.contains("other.dev"));
    })
    .await;
}

/// A key file others can read is refused, and a corrupt root is named and
/// kept; `ca init` does not replace it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readable_key_or_a_corrupt_root_is_refused_and_kept() {
    within(BUDGET, async {
        let sandbox = Sandbox::new();
        sandbox.ok(&["ca", "init"]).await;
        let key = sandbox.home().join("ca/root.key");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let out = sandbox.ca(&["ca", "info"]).await;
        assert_eq!(out.code, Some(1), "{out:?}");
        assert!(
            out.stderr.starts_with(&format!("rip-server: {}: ", key.display())),
            "{out:?}"
        );
        assert_eq!(out.stderr.lines().count(), 1);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(sandbox.root_cert(), "garbage\n").unwrap();
        for args in [&["ca", "info"][..], &["ca", "init"], &["ca", "trust"]] {
            let out = sandbox.ca(args).await;
            assert_eq!(out.code, Some(1), "{args:?}: {out:?}");
            assert!(
                out.stderr
                    .starts_with(&format!("rip-server: {}: ", sandbox.root_cert().display())),
                "{args:?}: {out:?}"
            );
            assert_eq!(
                fs::read_to_string(sandbox.root_cert()).unwrap(),
                "garbage\n",
                "{args:?}"
            );
        }
        assert!(sandbox.calls().is_empty());
    })
    .await;
}

/// Leaves issued through the library verify with OpenSSL against root.crt
/// alone for every name they cover; a leaf signed with the root's key for a
/// name outside its constraints is refused by OpenSSL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_verifies_leaves_and_refuses_one_outside_the_constraints() {
    within(BUDGET, async {
        let sandbox = Sandbox::new();
        sandbox.ok(&["ca", "init", "--name", "Example.DEV"]).await;
        let openssl = debian_tool("openssl", "openssl");
        let ca = sandbox.ca_now();
        let root = sandbox.root_cert().to_string_lossy().into_owned();
        let verify = |leaf_pem: &str, check: &[&str]| {
            let file = sandbox.dir.path().join("leaf.pem");
            fs::write(&file, leaf_pem).unwrap();
            let mut args = vec!["verify", "-CAfile", &root];
            args.extend_from_slice(check);
            let file = file.to_string_lossy().into_owned();
            args.push(&file);
            tool(&openssl, &args)
        };
        let now = wall_clock_now();
        for (name, checks) in [
            (
                "localhost",
                &[
                    ("-verify_hostname", "localhost"),
                    ("-verify_ip", "127.0.0.1"),
                    ("-verify_ip", "::1"),
                ][..],
            ),
            (
                "app.localhost",
                &[
                    ("-verify_hostname", "app.localhost"),
                    ("-verify_hostname", "v2.app.localhost"),
                ],
            ),
            ("shop.test", &[("-verify_hostname", "shop.test")]),
            ("api.example.dev", &[("-verify_hostname", "api.example.dev")]),
        ] {
            let leaf = ca.leaf_for(&sandbox.home(), name, now).unwrap();
            let first = leaf
                .chain_pem
                .split_inclusive("-----END CERTIFICATE-----\n")
                .next()
                .unwrap();
            for (flag, value) in checks {
                let (ok, text) = verify(first, &[flag, value]);
                assert!(ok && text.contains("OK"), "{name} {flag} {value}: {text}");
            }
            let (ok, text) = verify(first, &["-verify_hostname", "example.com"]);
            assert!(!ok, "{name} must not verify for example.com: {text}");
        }
        // A rogue leaf: signed by the root's own key for example.com.
        let key = rcgen::KeyPair::from_pem(&fs::read_to_string(sandbox.home().join("ca/root.key")).unwrap()).unwrap();
        let issuer = rcgen::Issuer::from_ca_cert_pem(ca.root_pem(), key).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["example.com".to_string()]).unwrap();
        params.use_authority_key_identifier_extension = true;
        let rogue = params.signed_by(&rcgen::KeyPair::generate().unwrap(), &issuer).unwrap();
        let (ok, text) = verify(&rogue.pem(), &[]);
        assert!(!ok, "a leaf outside the constraints verified: {text}");
        assert!(text.contains("permitted subtree violation"), "{text}");
        // The same signing for a permitted name verifies: the name is what fails.
        let mut params = rcgen::CertificateParams::new(vec!["fine.test".to_string()]).unwrap();
        params.use_authority_key_identifier_extension = true;
        let fine = params.signed_by(&rcgen::KeyPair::generate().unwrap(), &issuer).unwrap();
        let (ok, text) = verify(&fine.pem(), &[]);
        assert!(ok, "{text}");
    })
    .await;
}

/// `ca export`: the default file in the current directory (0644), the same
/// again is fine, another file there is never overwritten, `-` is stdout, a
/// directory gets the default name inside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_the_root_and_never_overwrites_another_file() {
    within(BUDGET, async {
        let sandbox = Sandbox::new();
        sandbox.ok(&["ca", "init"]).await;
        let root = fs::read_to_string(sandbox.root_cert()).unwrap();
        let cwd = sandbox.dir.path().join("cwd");
        fs::create_dir(&cwd).unwrap();
        let out = sandbox.ca_in(&cwd, &["ca", "export"]).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        let exported = cwd.join("rip-server-ca.crt");
        assert!(
            out.stdout
                .starts_with("exported the root certificate to rip-server-ca.crt"),
            "{out:?}"
        );
        assert_eq!(fs::read_to_string(&exported).unwrap(), root);
        assert_eq!(mode(&exported), 0o644);
        let again = sandbox.ca_in(&cwd, &["ca", "export"]).await;
        assert_eq!(again.code, Some(0), "{again:?}");
        assert!(again.stdout.contains("already holds the root certificate"), "{again:?}");
        let other = cwd.join("other.crt");
        fs::write(&other, "mine\n").unwrap();
        let refused = sandbox.ca_in(&cwd, &["ca", "export", "other.crt"]).await;
        assert_eq!(refused.code, Some(1), "{refused:?}");
        assert!(
            refused
                .stderr
                .starts_with("rip-server: other.crt: exists and is not this CA's certificate"),
            "{refused:?}"
        );
        assert_eq!(fs::read_to_string(&other).unwrap(), "mine\n");
        let stdout = sandbox.ok(&["ca", "export", "-"]).await;
        assert_eq!(stdout, root);
        let dir = sandbox.dir.path().join("into");
        fs::create_dir(&dir).unwrap();
        sandbox.ok(&["ca", "export", &dir.to_string_lossy()]).await;
        assert_eq!(fs::read_to_string(dir.join("rip-server-ca.crt")).unwrap(), root);
    })
    .await;
}

/// `ca list` shows issued leaves with their names, expiry and renewal;
/// `ca clean` removes them and keeps the CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_issued_leaves_and_clean_removes_them_but_keeps_the_ca() {
    within(BUDGET, async {
        let sandbox = Sandbox::new();
        sandbox.ok(&["ca", "init"]).await;
        let empty = sandbox.ok(&["ca", "list"]).await;
        assert!(empty.starts_with("no certificates issued yet"), "{empty}");
        let ca = sandbox.ca_now();
        let now = wall_clock_now();
        let app = ca.leaf_for(&sandbox.home(), "app.localhost", now).unwrap();
        ca.leaf_for(&sandbox.home(), "127.0.0.1", now).unwrap();
        let certs = sandbox.home().join("certs");
        assert_eq!(mode(&certs), 0o700);
        assert_eq!(mode(&certs.join("app.localhost.key")), 0o600);
        let listed = sandbox.ok(&["ca", "list"]).await;
        let lines: Vec<&str> = listed.lines().collect();
        assert_eq!(lines.len(), 3, "{listed}");
        assert!(
            lines[0].starts_with("NAME") && lines[0].contains("EXPIRES") && lines[0].ends_with("RENEWS AT"),
            "{listed}"
        );
        let row = line_with(&listed, "app.localhost,*.app.localhost,localhost,127.0.0.1,::1");
        assert!(row.starts_with("app.localhost "), "{row}");
        let expires = rip_server::tls::ca::validity::format_utc(app.not_after);
        let renews = rip_server::tls::ca::validity::format_utc(app.renew_at());
        assert!(row.contains(&expires) && row.ends_with(&renews), "{row}");
        assert!(line_with(&listed, "127.0.0.1 ").starts_with("127.0.0.1"), "{listed}");
        let info = sandbox.ok(&["ca", "info"]).await;
        assert!(line_with(&info, "leaves:").contains("2 in"), "{info}");
        let cleaned = sandbox.ok(&["ca", "clean"]).await;
        assert_eq!(
            cleaned,
            format!("removed 2 issued certificate(s) from {}\n", certs.display())
        );
        assert!(
            sandbox
                .ok(&["ca", "list"])
                .await
                .starts_with("no certificates issued yet")
        );
        assert!(sandbox.root_cert().exists(), "the CA is kept");
        sandbox.ok(&["ca", "info"]).await;
    })
    .await;
}

/// `ca trust` against a fake system store and real NSS databases: the dry
/// run changes nothing, the real run adds the root to each store (its own
/// line each), a second run says "already trusted" and changes nothing; a
/// failing store fails alone (exit 1) and leaves no half-installed file;
/// `ca untrust` and `ca clean --all` take it out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_installs_the_root_in_each_store_once_and_untrust_removes_it() {
    within(BUDGET, async {
        let certutil = debian_tool("certutil", "libnss3-tools");
        let sandbox = Sandbox::new();
        sandbox.fake_update(0);
        fs::create_dir_all(sandbox.anchors()).unwrap();
        let user = sandbox.user_home();
        let dbs = [
            user.join(".pki/nssdb"),
            user.join(".local/share/pki/nssdb"),
            user.join(".mozilla/firefox/abcd.default-release"),
            user.join(".config/mozilla/firefox/efgh.default"),
        ];
        for db in &dbs {
            fs::create_dir_all(db).unwrap();
            let (ok, text) = tool(
                &certutil,
                &["-N", "-d", &format!("sql:{}", db.display()), "--empty-password"],
            );
            assert!(ok, "certutil -N: {text}");
        }
        // A profile without a database is not one.
        fs::create_dir_all(user.join(".mozilla/firefox/empty.profile")).unwrap();
        let listed = |db: &Path| tool(&certutil, &["-L", "-d", &format!("sql:{}", db.display())]).1;
        sandbox.ok(&["ca", "init"]).await;
        let ca = sandbox.ca_now();
        let nickname = format!("rip-server development CA {}", ca.serial_hex());
        let anchor = sandbox
            .anchors()
            .join(format!("rip-server-development-ca-{}.crt", ca.serial_hex()));

        let dry = sandbox.ok(&["ca", "trust", "--dry-run"]).await;
        assert_eq!(dry.lines().count(), 1 + dbs.len(), "{dry}");
        let system = line_with(&dry, "system store (Debian: ");
        assert!(
            system.ends_with(&format!(
                "would run: install -m 644 {} {} && update-ca-certificates",
                sandbox.root_cert().display(),
                anchor.display()
            )),
            "{system}"
        );
        for db in &dbs {
            let line = line_with(&dry, &format!("NSS database {}:", db.display()));
            assert!(
                line.ends_with(&format!(
                    "would run: certutil -A -t C,, -n '{nickname}' -i {} -d sql:{}",
                    sandbox.root_cert().display(),
                    db.display()
                )),
                "{line}"
            );
            assert!(!listed(db).contains(&nickname), "the dry run changed {}", db.display());
        }
        assert!(!dry.contains("empty.profile"));
        assert!(
            !anchor.exists() && sandbox.calls().is_empty(),
            "the dry run changed the system store"
        );

        let trusted = sandbox.ok(&["ca", "trust"]).await;
        assert_eq!(trusted.lines().count(), 1 + dbs.len(), "{trusted}");
        assert!(trusted.lines().all(|l| l.ends_with(": trusted")), "{trusted}");
        assert_eq!(fs::read_to_string(&anchor).unwrap(), ca.root_pem());
        assert_eq!(mode(&anchor), 0o644);
        assert_eq!(sandbox.calls(), ["update-ca-certificates "]);
        for db in &dbs {
            let text = listed(db);
            let row = line_with(&text, &nickname);
            assert!(row.trim_end().ends_with("C,,"), "{row}");
        }
        let info = sandbox.ok(&["ca", "info"]).await;
        assert!(
            line_with(&info, "system store (Debian").ends_with(": trusted"),
            "{info}"
        );

        let again = sandbox.ok(&["ca", "trust"]).await;
        assert_eq!(again.lines().count(), 1 + dbs.len(), "{again}");
        assert!(again.lines().all(|l| l.ends_with(": already trusted")), "{again}");
        assert_eq!(sandbox.calls().len(), 1, "nothing ran the second time");

        let dry_untrust = sandbox.ok(&["ca", "untrust", "--dry-run"]).await;
        assert!(line_with(&dry_untrust, "system store").contains(&format!("would run: rm {}", anchor.display())));
        assert!(anchor.exists());
        let untrusted = sandbox.ok(&["ca", "untrust"]).await;
        assert!(
            untrusted.lines().all(|l| l.ends_with(": untrusted (removed)")),
            "{untrusted}"
        );
        assert!(!anchor.exists());
        for db in &dbs {
            assert!(!listed(db).contains(&nickname), "{}", db.display());
        }
        let none = sandbox.ok(&["ca", "untrust"]).await;
        assert!(
            none.lines().all(|l| l.ends_with(": not trusted (nothing to remove)")),
            "{none}"
        );

        // A failing system store fails alone: NSS is still done, exit 1,
        // and no anchor file is left behind for "already trusted" to find.
        sandbox.fake_update(1);
        let out = sandbox.ca(&["ca", "trust"]).await;
        assert_eq!(out.code, Some(1), "{out:?}");
        let system = line_with(&out.stdout, "system store");
        assert!(
            system.contains(": failed: update-ca-certificates: exit status 1: fake says no"),
            "{system}"
        );
        assert_eq!(
            out.stdout.lines().filter(|l| l.ends_with(": trusted")).count(),
            dbs.len(),
            "{out:?}"
        );
        assert_eq!(out.stderr, "rip-server: ca trust: 1 of 5 stores failed (see above)\n");
        assert!(!anchor.exists());

        // clean --all untrusts, then removes the CA; while a store cannot
        // be cleaned it keeps the CA (and that store's file), so running it
        // again finishes the job.
        sandbox.fake_update(0);
        let trusted = sandbox.ok(&["ca", "trust"]).await;
        assert!(line_with(&trusted, "system store").ends_with(": trusted"), "{trusted}");
        sandbox.fake_update(1);
        let kept = sandbox.ca(&["ca", "clean", "--all"]).await;
        assert_eq!(kept.code, Some(1), "{kept:?}");
        let ca_dir = sandbox.home().join("ca");
        assert!(
            kept.stderr
                .starts_with(&format!("rip-server: {}: kept: 1 trust store(s)", ca_dir.display())),
            "{kept:?}"
        );
        assert!(sandbox.root_cert().exists() && anchor.exists(), "{kept:?}");
        sandbox.fake_update(0);
        let cleaned = sandbox.ok(&["ca", "clean", "--all"]).await;
        assert!(
            line_with(&cleaned, "system store").ends_with(": untrusted (removed)"),
            "{cleaned}"
        );
        assert!(
            cleaned.ends_with(&format!("removed the dev CA ({})\n", ca_dir.display())),
            "{cleaned}"
        );
        assert!(!sandbox.root_cert().exists() && !ca_dir.exists() && !anchor.exists());
        for db in &dbs {
            assert!(!listed(db).contains(&nickname), "{}", db.display());
        }
        let gone = sandbox.ca(&["ca", "info"]).await;
        assert_eq!(gone.stderr, format!("{NO_CA}\n"));
    })
    .await;
}

/// Without any store here: one "skipped because" line each, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_with_no_store_skips_each_with_the_reason() {
    within(BUDGET, async {
        let sandbox = Sandbox::new();
        sandbox.ok(&["ca", "init"]).await;
        let out = sandbox.ok(&["ca", "trust"]).await;
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(
            lines[0].starts_with("system store: skipped because no system trust directory was found"),
            "{out}"
        );
        assert!(
            lines[1].starts_with("NSS (Chromium, Firefox): skipped because no NSS database (cert9.db) was found"),
            "{out}"
        );
        assert!(sandbox.calls().is_empty());
    })
    .await;
}
