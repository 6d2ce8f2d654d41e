//! End to end, the host registry: `rip-server add|remove|list` as real
//! processes editing `$RIP_HOME/hosts.json` (a temporary home each): the
//! round trip and the file's mode, concurrent `add`s from two processes both
//! landing, a corrupt file named and kept byte for byte, a bad host name
//! refused before anything is created, and a host name claimed by another
//! app refused with the file unchanged.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common::*;

/// A temporary directory with app directories in it and a home path inside
/// it that does not exist yet (the first `add` creates it).
struct Place {
    tmp: tempfile::TempDir,
}

impl Place {
    fn new() -> Place {
        Place { tmp: fresh_home() }
    }

    fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    fn hosts_file(&self) -> PathBuf {
        self.home().join("hosts.json")
    }

    /// An app directory `name` with an `index.ts` entry; its canonical path.
    fn app(&self, name: &str) -> PathBuf {
        let dir = self.tmp.path().join(name);
        std::fs::create_dir_all(&dir).expect("app dir");
        std::fs::write(dir.join("index.ts"), "export default () => 'ok'\n").expect("entry");
        std::fs::canonicalize(&dir).expect("canonical app dir")
    }

    /// `rip-server args...` with this place's `RIP_HOME`.
    async fn cli(&self, args: &[&str]) -> Output {
        let home = self.home().to_string_lossy().into_owned();
        run_cli(args, &[("RIP_HOME", &home)], STEP).await
    }

    /// The registry file, parsed.
    fn registry(&self) -> Value {
        let text = std::fs::read_to_string(self.hosts_file()).expect("read hosts.json");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("hosts.json does not parse ({e}): {text}"))
    }
}

fn text(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// Asserts success with exactly `stdout` and nothing on stderr.
fn assert_ok(out: &Output, stdout: &str, what: &str) {
    assert_eq!(out.code, Some(0), "{what}: {out:?}");
    assert_eq!(out.stdout, stdout, "{what}");
    assert_eq!(out.stderr, "", "{what}");
}

/// Asserts exit status `code`, nothing on stdout and one line on stderr
/// starting with `start`.
fn assert_refused(out: &Output, code: i32, start: &str, what: &str) {
    assert_eq!(out.code, Some(code), "{what}: {out:?}");
    assert_eq!(out.stdout, "", "{what}: {out:?}");
    assert!(
        out.stderr.starts_with(start) && out.stderr.ends_with('\n') && out.stderr.lines().count() == 1,
        "{what}: expected one line starting with {start:?}, got {:?}",
        out.stderr
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_list_remove_round_trip_in_a_private_file() {
    within(BUDGET, async {
        let place = Place::new();
        let api = place.app("api");
        let web = place.app("web");
        assert_ok(&place.cli(&["list"]).await, "no hosts registered\n", "list of nothing");
        assert!(!place.home().exists(), "list created the home");

        let out = place.cli(&["add", "API.Test.", text(&api)]).await;
        assert_ok(&out, &format!("added api.test -> {}\n", api.display()), "add");
        let entry = api.join("index.ts");
        let out = place.cli(&["add", "*.api.test", text(&entry)]).await;
        assert_ok(
            &out,
            &format!("added *.api.test -> {}\n", api.display()),
            "add by entry",
        );
        let out = place.cli(&["add", "bücher.test", text(&web)]).await;
        assert_ok(
            &out,
            &format!("added xn--bcher-kva.test -> {}\n", web.display()),
            "add IDNA",
        );
        assert_eq!(mode(&place.home()), 0o700);
        assert_eq!(mode(&place.hosts_file()), 0o600);

        let expected = json!({"hosts": {
            "*.api.test": text(&api),
            "api.test": text(&api),
            "xn--bcher-kva.test": text(&web),
        }});
        assert_eq!(place.registry(), expected);
        let out = place.cli(&["list", "--json"]).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        assert_eq!(out.stdout, std::fs::read_to_string(place.hosts_file()).unwrap());
        assert_eq!(serde_json::from_str::<Value>(&out.stdout).unwrap(), expected);
        let table = format!(
            "HOST                APP DIR\n\
             *.api.test          {api}\n\
             api.test            {api}\n\
             xn--bcher-kva.test  {web}\n",
            api = api.display(),
            web = web.display()
        );
        assert_ok(&place.cli(&["list"]).await, &table, "list");

        assert_ok(
            &place.cli(&["remove", "API.test"]).await,
            "removed api.test\n",
            "remove",
        );
        assert_ok(
            &place.cli(&["remove", "*.api.test"]).await,
            "removed *.api.test\n",
            "remove *",
        );
        assert_eq!(place.registry(), json!({"hosts": {"xn--bcher-kva.test": text(&web)}}));
        assert_eq!(mode(&place.hosts_file()), 0o600);
        let out = place.cli(&["remove", "api.test"]).await;
        assert_refused(
            &out,
            1,
            "rip-server: api.test: not in the host registry (",
            "remove twice",
        );
        assert_ok(
            &place.cli(&["remove", "xn--bcher-kva.test"]).await,
            "removed xn--bcher-kva.test\n",
            "last",
        );
        assert_ok(&place.cli(&["list"]).await, "no hosts registered\n", "list emptied");
        assert_ok(
            &place.cli(&["list", "--json"]).await,
            "{\n  \"hosts\": {}\n}\n",
            "json emptied",
        );
    })
    .await;
}

/// Two `add`s started together from two processes, ten times over: every
/// name lands (the second writer read the file after the first wrote it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_adds_from_two_processes_all_land() {
    within(BUDGET, async {
        let place = Place::new();
        let api = place.app("api");
        let web = place.app("web");
        let mut expected = serde_json::Map::new();
        for round in 0..10 {
            let (a, b) = (format!("a{round}.test"), format!("b{round}.test"));
            // Both processes are spawned before either is waited for.
            let (args_a, args_b) = (["add", &a, text(&api)], ["add", &b, text(&web)]);
            let (out_a, out_b) = tokio::join!(place.cli(&args_a), place.cli(&args_b));
            assert_ok(&out_a, &format!("added {a} -> {}\n", api.display()), &a);
            assert_ok(&out_b, &format!("added {b} -> {}\n", web.display()), &b);
            expected.insert(a, json!(text(&api)));
            expected.insert(b, json!(text(&web)));
            assert_eq!(place.registry(), json!({"hosts": expected}), "after round {round}");
        }
        assert_eq!(mode(&place.hosts_file()), 0o600);
    })
    .await;
}

/// An `add` waits while another holder has the registry's lock, and writes
/// once it is free: what makes concurrent edits keep each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_add_waits_for_the_registry_lock() {
    within(BUDGET, async {
        let place = Place::new();
        let api = place.app("api");
        std::fs::create_dir(place.home()).unwrap();
        let held = rip_server::config::home::lock_exclusive(&place.home().join("hosts.json.lock")).unwrap();
        let adds: Vec<_> = ["a.test", "b.test"]
            .into_iter()
            .map(|host| {
                let home = place.home().to_string_lossy().into_owned();
                let app = text(&api).to_owned();
                tokio::spawn(async move { run_cli(&["add", host, &app], &[("RIP_HOME", &home)], STEP).await })
            })
            .collect();
        let file = place.hosts_file();
        holds_for(
            "both adds waiting for the lock",
            std::time::Duration::from_millis(700),
            || {
                let waiting = adds.iter().all(|a| !a.is_finished()) && !file.exists();
                async move {
                    if waiting {
                        Ok(())
                    } else {
                        Err("an add went ahead".to_string())
                    }
                }
            },
        )
        .await;
        drop(held);
        for add in adds {
            let out = add.await.expect("add task");
            assert_eq!((out.code, out.stderr.as_str()), (Some(0), ""), "{out:?}");
        }
        assert_eq!(
            place.registry(),
            json!({"hosts": {"a.test": text(&api), "b.test": text(&api)}})
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_registry_is_named_and_kept_byte_for_byte() {
    within(BUDGET, async {
        let place = Place::new();
        let api = place.app("api");
        std::fs::create_dir(place.home()).unwrap();
        let corrupt = b"{\"hosts\": {\"a.test\": \"/srv/a\",";
        std::fs::write(place.hosts_file(), corrupt).unwrap();
        let start = format!(
            "rip-server: {}: not a valid host registry (",
            place.hosts_file().display()
        );
        for args in [
            &["add", "b.test", text(&api)][..],
            &["remove", "a.test"],
            &["list"],
            &["list", "--json"],
        ] {
            let out = place.cli(args).await;
            assert_refused(&out, 1, &start, &format!("{args:?}"));
            assert!(
                out.stderr.trim_end().ends_with("; left as it is"),
                "{args:?}: {}",
                out.stderr
            );
            assert_eq!(
                std::fs::read(place.hosts_file()).unwrap(),
                corrupt,
                "{args:?} changed the file"
            );
        }
        // A registry that cannot be read at all (here: a directory) is named too.
        std::fs::remove_file(place.hosts_file()).unwrap();
        std::fs::create_dir(place.hosts_file()).unwrap();
        let out = place.cli(&["add", "b.test", text(&api)]).await;
        let start = format!(
            "rip-server: {}: cannot read the host registry (",
            place.hosts_file().display()
        );
        assert_refused(&out, 1, &start, "hosts.json is a directory");
        assert!(place.hosts_file().is_dir());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_host_name_or_app_path_exits_2_and_creates_nothing() {
    within(BUDGET, async {
        let place = Place::new();
        let api = place.app("api");
        let cases: &[(&[&str], &str)] = &[
            (
                &["add", "api.test:8080", text(&api)],
                "rip-server: api.test:8080: not a valid host name: it has a port (:8080); expected a host name such as api.test, *.api.test, 127.0.0.1 or [::1]",
            ),
            (
                &["add", "api test", text(&api)],
                "rip-server: api test: not a valid host name: it has a space or control character (' ')",
            ),
            (
                &["add", "*.com", text(&api)],
                "rip-server: *.com: not a valid host name: a wildcard needs at least two labels after *.",
            ),
            (&["remove", "a_b.test"], "rip-server: a_b.test: not a valid host name: '_' is not allowed"),
            (&["add", "api.test"], "rip-server: add: expected add <host> <app-path>"),
            (&["add", "api.test", "/nonexistent/app"], "rip-server: /nonexistent/app: no such file"),
            (&["list", "--table"], "rip-server: --table: unknown flag for list"),
        ];
        for (args, start) in cases {
            let out = place.cli(args).await;
            assert_refused(&out, 2, start, &format!("{args:?}"));
            assert!(!place.home().exists(), "{args:?} created the home");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_claimed_by_another_app_exits_1_and_the_file_is_unchanged() {
    within(BUDGET, async {
        let place = Place::new();
        let api = place.app("api");
        let web = place.app("web");
        assert_ok(
            &place.cli(&["add", "api.test", text(&api)]).await,
            &format!("added api.test -> {}\n", api.display()),
            "first claim",
        );
        let before = std::fs::read(place.hosts_file()).unwrap();
        let out = place.cli(&["add", "API.test", text(&web)]).await;
        let line = format!(
            "rip-server: api.test: already registered for {}; a host name answers for one app (rip-server remove api.test first)\n",
            api.display()
        );
        assert_refused(&out, 1, &line, "second claim");
        assert_eq!(std::fs::read(place.hosts_file()).unwrap(), before);
        // The same mapping again is a success that changes nothing.
        assert_ok(
            &place.cli(&["add", "api.test.", text(&api)]).await,
            &format!("added api.test -> {} (already registered)\n", api.display()),
            "same claim",
        );
        assert_eq!(std::fs::read(place.hosts_file()).unwrap(), before);
    })
    .await;
}

#[tokio::test]
async fn a_host_a_platform_app_claims_for_another_directory_exits_1() {
    within(BUDGET, async {
        let place = Place::new();
        let shop = place.app("shop");
        let web = place.app("web");
        std::fs::create_dir_all(place.home()).unwrap();
        let apps_file = place.home().join("apps.json");
        let apps = json!({
            "schemaVersion": 1,
            "apps": [{"name": "shop", "directory": text(&shop), "hosts": ["shop.test"], "workers": 1, "desired": "running"}]
        });
        std::fs::write(&apps_file, apps.to_string()).unwrap();

        let out = place.cli(&["add", "shop.test", text(&web)]).await;
        let line = format!(
            "rip-server: shop.test: claimed by platform app shop ({}); a host belongs to one app\n",
            shop.display()
        );
        assert_refused(&out, 1, &line, "a host the platform's shop claims");
        assert!(!place.hosts_file().exists(), "nothing registered");
        // For the app's own directory it is the same claim: allowed.
        assert_ok(
            &place.cli(&["add", "shop.test", text(&shop)]).await,
            &format!("added shop.test -> {}\n", shop.display()),
            "the platform app's own directory",
        );
        // An apps.json that does not parse: named, kept, nothing added.
        std::fs::write(&apps_file, b"{not json").unwrap();
        let out = place.cli(&["add", "www.test", text(&web)]).await;
        assert_eq!(out.code, Some(1), "{out:?}");
        assert!(out.stderr.contains("apps.json") && out.stderr.lines().count() == 1, "{out:?}");
        assert_eq!(std::fs::read(&apps_file).unwrap(), b"{not json");
        assert!(place.registry()["hosts"].get("www.test").is_none());
    })
    .await;
}
