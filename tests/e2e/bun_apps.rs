//! TypeScript, JavaScript and Rip apps in Bun workers: the app contract, the
//! worker protocol as the Bun runtime speaks it, and finding Bun.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::Method;

use crate::common::bun::{BUN_VERSION, bun, examples_dir};
use crate::common::*;

/// An app directory `<tmp>/<name>` holding `files`.
pub fn app_dir(name: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join(name);
    std::fs::create_dir(&dir).expect("app dir");
    for (file, text) in files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("subdir");
        }
        std::fs::write(path, text).expect("app file");
    }
    (tmp, dir)
}

/// `rip-server <app>` run by the pinned Bun.
pub fn bun_server(app: &Path) -> ServerBuilder {
    Server::app(app.to_str().expect("utf-8 path")).env("RIP_BUN", bun().to_str().expect("utf-8 bun path"))
}

const CONTRACT_APP: &str = r#"
export default async function (req: Request) {
  const url = new URL(req.url);
  switch (url.pathname) {
    case "/text": return "plain text";
    case "/object": return { answer: 42, list: [1, 2] };
    case "/nothing": return undefined;
    case "/response": return new Response("made", { status: 201, headers: { "x-app": "yes" } });
    case "/throw": throw new Error("secret-detail-7781");
    case "/reject": await Bun.sleep(1); throw new TypeError("async-secret-9913");
    case "/slow": await Bun.sleep(Number(url.searchParams.get("ms") ?? "300")); return "slept";
    case "/echo": return { bytes: (await req.arrayBuffer()).byteLength };
    default: return new Response("nope", { status: 404 });
  }
}
"#;

#[tokio::test]
async fn the_app_contract_strings_values_responses_and_throws() {
    within(BUDGET, async {
        let (_tmp, dir) = app_dir("contract", &[("index.ts", CONTRACT_APP)]);
        let server = bun_server(&dir).args(&["w:1"]).start().await;

        let text = server.get("/text").await;
        assert_eq!((text.status, text.text().as_str()), (200, "plain text"));
        assert!(
            text.header("content-type").unwrap().starts_with("text/plain"),
            "{:?}",
            text.headers
        );

        let object = server.get("/object").await;
        assert_eq!(object.status, 200);
        assert!(object.header("content-type").unwrap().starts_with("application/json"));
        assert_eq!(object.json(), serde_json::json!({"answer": 42, "list": [1, 2]}));
        assert_eq!(server.get("/nothing").await.json(), serde_json::Value::Null);

        let made = server.get("/response").await;
        assert_eq!((made.status, made.text().as_str()), (201, "made"));
        assert_eq!(made.header("x-app").as_deref(), Some("yes"));

        for (path, secret) in [("/throw", "secret-detail-7781"), ("/reject", "async-secret-9913")] {
            let thrown = server.get(path).await;
            assert_eq!(thrown.status, 500, "{path}");
            assert!(
                !thrown.text().contains(secret),
                "{path}: the error leaked: {}",
                thrown.text()
            );
            server.wait_stderr_line(secret).await;
        }
        // The worker survived its throws: the same process answers.
        let status = server.status().await;
        assert_eq!(status["supervisor"]["slots"][0]["restarts"], 0, "{status}");
        assert_eq!(server.get("/text").await.status, 200);
    })
    .await;
}

#[tokio::test]
async fn an_object_with_fetch_and_a_js_entry_run_too_and_status_names_the_bun() {
    within(BUDGET, async {
        let (_tmp, dir) = app_dir(
            "fetchobj",
            &[(
                "main.js",
                "export default { async fetch(req) { await Bun.sleep(1); return 'from ' + new URL(req.url).pathname; } };",
            )],
        );
        // A .js file given directly, executable or not: the extension decides.
        let entry = dir.join("main.js");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o755)).unwrap();
        let server = bun_server(&entry).args(&["w:2"]).start().await;
        let r = server.get("/abc").await;
        assert_eq!((r.status, r.text().as_str()), (200, "from /abc"));
        let status = server.status().await;
        assert_eq!(status["bun"]["version"], BUN_VERSION, "{status}");
        assert_eq!(status["bun"]["path"], bun().to_str().unwrap(), "{status}");
        assert_eq!(status["hot_reload"], "none");
    })
    .await;
}

#[tokio::test]
async fn the_examples_serve_hello_ts_and_the_json_api() {
    within(BUDGET, async {
        let hello = bun_server(&examples_dir().join("hello-ts"))
            .args(&["w:2"])
            .start()
            .await;
        let pong = hello.get("/ping").await;
        assert_eq!((pong.status, pong.text().as_str()), (200, "pong"));
        assert_eq!(hello.get("/json").await.status, 200);
        // `/` uses the imported greeting module.
        assert_eq!(hello.get("/").await.status, 200);

        let api = bun_server(&examples_dir().join("json-api"))
            .args(&["w:1"])
            .start()
            .await;
        let list = api.get("/todos").await;
        assert_eq!(list.status, 200, "{}", list.text());
        let before = list.json().as_array().map_or(0, Vec::len);
        let created = request(
            api.port,
            Method::POST,
            "/todos",
            &[("content-type", "application/json")],
            Bytes::from_static(br#"{"title":"write tests"}"#),
        )
        .await
        .unwrap();
        assert!(
            created.status == 201 || created.status == 200,
            "{} {}",
            created.status,
            created.text()
        );
        let after = api.get("/todos").await.json();
        assert_eq!(after.as_array().map_or(0, Vec::len), before + 1, "{after}");
        let bad = request(api.port, Method::POST, "/todos", &[], Bytes::from_static(b"{not json"))
            .await
            .unwrap();
        assert_eq!(bad.status, 400, "{}", bad.text());
        assert_eq!(api.get("/no/such/route").await.status, 404);
    })
    .await;
}

#[tokio::test]
async fn a_rip_app_runs_through_its_preload_plugin_and_needs_one() {
    within(BUDGET, async {
        let rip_app = examples_dir().join("rip-app");
        let plugin = rip_app.join("toy-rip-plugin.ts");
        let server = bun_server(&rip_app)
            .args(&["w:1", &format!("--bun-preload={}", plugin.display())])
            .start()
            .await;
        let r = server.get("/").await;
        assert_eq!(r.status, 200, "{}", r.text());

        // Without the preload: exit 2 before anything starts, naming the flag.
        let out = run_cli(
            &[rip_app.to_str().unwrap(), "http:0"],
            &[("RIP_BUN", bun().to_str().unwrap())],
            STEP,
        )
        .await;
        assert_eq!(out.code, Some(2), "{out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
        assert!(out.stderr.contains("--bun-preload"), "{out:?}");
        // A preload that does not exist: exit 2 too.
        let out = run_cli(
            &[
                rip_app.to_str().unwrap(),
                "http:0",
                "--bun-preload=/nonexistent/plugin.ts",
            ],
            &[("RIP_BUN", bun().to_str().unwrap())],
            STEP,
        )
        .await;
        assert_eq!(out.code, Some(2), "{out:?}");
    })
    .await;
}

#[tokio::test]
async fn without_a_usable_bun_a_bun_app_exits_2_with_one_line() {
    within(BUDGET, async {
        let (_tmp, dir) = app_dir("nobun", &[("index.ts", "export default () => 'x';")]);
        let app = dir.to_str().unwrap();
        // Neither RIP_BUN nor bun on PATH.
        let empty_bin = tempfile::tempdir().unwrap();
        let out = run_cli(
            &[app, "http:0"],
            &[("RIP_BUN", ""), ("PATH", empty_bin.path().to_str().unwrap())],
            STEP,
        )
        .await;
        assert_eq!(out.code, Some(2), "{out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
        assert!(out.stderr.contains("npm install -g bun"), "{out:?}");
        // RIP_BUN naming nothing.
        let out = run_cli(&[app, "http:0"], &[("RIP_BUN", "/nonexistent/bun")], STEP).await;
        assert_eq!(out.code, Some(2), "{out:?}");
        assert!(out.stderr.contains("RIP_BUN=/nonexistent/bun"), "{out:?}");
        // Too old a Bun.
        let old = empty_bin.path().join("bun");
        std::fs::write(&old, "#!/bin/sh\necho 1.0.2\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = run_cli(
            &[app, "http:0"],
            &[("RIP_BUN", ""), ("PATH", empty_bin.path().to_str().unwrap())],
            STEP,
        )
        .await;
        assert_eq!(out.code, Some(2), "{out:?}");
        assert!(out.stderr.contains("1.0.2 is too old"), "{out:?}");
    })
    .await;
}

/// Counts overlapping requests inside the app: any overlap in one worker
/// process answers 500, so a single 500 under load proves a breach.
/// `/?hold` writes the file `holding`, then stays in the handler until the
/// file `release` appears in the app directory (at most 20 s).
const OVERLAP_APP: &str = r#"
let inside = 0;
export default async function (req: Request) {
  inside += 1;
  try {
    if (inside > 1) return new Response("overlap", { status: 500 });
    if (new URL(req.url).search === "?hold") {
      await Bun.write("holding", "");
      for (let i = 0; i < 2000 && !(await Bun.file("release").exists()); i++) await Bun.sleep(10);
      return "released";
    }
    await Bun.sleep(2);
    return "ok " + process.pid;
  } finally {
    inside -= 1;
  }
}
"#;

#[tokio::test]
async fn one_request_at_a_time_per_worker_under_load_with_an_async_handler() {
    within(BUDGET, async {
        let (_tmp, dir) = app_dir("overlap", &[("index.ts", OVERLAP_APP)]);
        let server = bun_server(&dir).args(&["w:2"]).start().await;
        let report = burst(server.port, 16, 25, "/", Duration::from_secs(30)).await;
        report.assert_all_200("16 clients over 2 async Bun workers");
        assert_eq!(report.total(), 400);

        // Straight at a worker socket: a second request while one is in
        // flight gets the busy 503.
        let (_, _, _, socket) = Server::pool(&server.status().await)[0].clone();
        let held_socket = PathBuf::from(&socket);
        let early = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
        let early_outcome = early.clone();
        let held = tokio::spawn(async move {
            let r = unix_request(&held_socket, Method::GET, "/?hold", Bytes::new()).await;
            *early_outcome.lock().unwrap() = Some(match &r {
                Ok(r) => format!("{} {}", r.status, r.text()),
                Err(e) => e.clone(),
            });
            r
        });
        // Probe only once the held request is in the slot (a probe that came
        // first would make the held request the busy one).
        eventually("the held request in the handler", STEP, || async {
            if dir.join("holding").exists() {
                Ok(())
            } else {
                Err(format!(
                    "no holding file yet; held request: {:?}",
                    early.lock().unwrap()
                ))
            }
        })
        .await;
        let busy = eventually("a busy 503 from the worker", STEP, || async {
            if held.is_finished() {
                return Err(format!("the held request ended early: {:?}", early.lock().unwrap()));
            }
            let r = unix_request(Path::new(&socket), Method::GET, "/", Bytes::new()).await?;
            if r.status == 503 {
                Ok(r)
            } else {
                Err(format!("{} {}", r.status, r.text()))
            }
        })
        .await;
        assert_eq!(busy.header("rip-worker-busy").as_deref(), Some("1"));
        std::fs::write(dir.join("release"), "").unwrap();
        let held = held.await.unwrap().expect("the held request");
        assert_eq!((held.status, held.text().as_str()), (200, "released"));
    })
    .await;
}

#[tokio::test]
async fn a_body_over_100_mb_gets_413_at_the_front_door_and_at_the_worker() {
    within(BUDGET, async {
        let (_tmp, dir) = app_dir("bodies", &[("index.ts", CONTRACT_APP)]);
        let server = bun_server(&dir).args(&["w:1"]).start().await;
        let small = request(
            server.port,
            Method::POST,
            "/echo",
            &[],
            Bytes::from(vec![b'x'; 1 << 20]),
        )
        .await
        .unwrap();
        assert_eq!(small.json()["bytes"], 1 << 20);
        let big = Bytes::from(vec![b'x'; 100 * 1024 * 1024 + 1]);
        let r = request_within(server.port, Method::POST, "/echo", &[], big, Duration::from_secs(30)).await;
        match r {
            Ok(r) => assert_eq!(r.status, 413, "{}", r.text()),
            // The answer may come, and the connection close, before the
            // whole body is sent: the client then sees a write error.
            Err(e) => assert!(e.starts_with("send:"), "{e}"),
        }
        // The front door refuses it itself (its own 100 MB limit): the
        // request never reached the balancer.
        assert_eq!(server.status().await["counters"]["requests"], 1);
        // Straight at the worker: the Bun runtime's own limit.
        let (_, _, _, socket) = Server::pool(&server.status().await)[0].clone();
        let big = Bytes::from(vec![b'x'; 100 * 1024 * 1024 + 1]);
        // Bun may also answer 413 and reset the connection before its
        // body is read: the status still came.
        match unix_request(Path::new(&socket), Method::POST, "/echo", big).await {
            Ok(r) => assert_eq!(r.status, 413, "{}", r.text()),
            Err(e) => assert!(e.starts_with("send:") || e.starts_with("body after status 413:"), "{e}"),
        }
        let exact = Bytes::from(vec![b'x'; 100 * 1024 * 1024]);
        let r = unix_request(Path::new(&socket), Method::POST, "/echo", exact)
            .await
            .unwrap();
        assert_eq!(r.json()["bytes"], 100 * 1024 * 1024, "exactly 100 MB passes");
        // The worker still serves.
        assert_eq!(server.get("/text").await.status, 200);
    })
    .await;
}

#[tokio::test]
async fn sigterm_finishes_the_request_in_flight_then_exits_0() {
    within(BUDGET, async {
        let (_tmp, dir) = app_dir("graceful", &[("index.ts", CONTRACT_APP)]);
        let mut server = bun_server(&dir).args(&["w:1"]).start().await;
        let port = server.port;
        let slow = tokio::spawn(async move { get(port, "/slow?ms=600").await });
        server
            .wait_status("the slow request in flight", STEP, |v| v["inflight"] == 1)
            .await;
        server.signal("TERM");
        let r = slow.await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "slept"));
        let exit = server.wait_exit(STEP).await.expect("the server exits");
        assert_eq!(exit.code(), Some(0));
    })
    .await;
}

#[tokio::test]
async fn the_request_budget_recycles_bun_workers_with_no_failed_request() {
    within(BUDGET, async {
        let (_tmp, dir) = app_dir("budget", &[("index.ts", CONTRACT_APP)]);
        let server = bun_server(&dir).args(&["w:1", "r:3"]).start().await;
        let first = Server::pool_pids(&server.status().await);
        let mut client = Client::new(server.port);
        for _ in 0..12 {
            let r = client.get("/text").await.expect("request");
            assert_eq!(r.status, 200, "{}", r.text());
        }
        let status = server
            .wait_status("replaced workers", STEP, |v| {
                // Recycled by the manager (replacement first) or, when
                // requests come faster than a replacement boots, by the
                // worker's own budget (it quits): planned either way.
                let exits = &v["worker_exits"];
                exits["recycled"].as_u64().unwrap_or(0) + exits["quit"].as_u64().unwrap_or(0) >= 2 && v["workers"] == 1
            })
            .await;
        assert_eq!(status["worker_exits"]["crash"], 0, "{status}");
        assert!(Server::pool_pids(&status).is_disjoint(&first), "{status}");
        assert_no_synthesized_answers(&status);
    })
    .await;
}

#[tokio::test]
async fn an_app_that_throws_at_import_backs_off_visibly_instead_of_storming() {
    within(BUDGET, async {
        let (_tmp, dir) = app_dir(
            "broken",
            &[(
                "index.ts",
                "throw new Error('boom-at-import-4471');\nexport default () => 'never';\n",
            )],
        );
        let server = bun_server(&dir).args(&["w:1"]).no_wait().start().await;
        let status = server
            .wait_status("four crashes in a row", Duration::from_secs(20), |v| {
                v["supervisor"]["slots"][0]["crashes"].as_u64() >= Some(4)
            })
            .await;
        let slot = &status["supervisor"]["slots"][0];
        let crashes = slot["crashes"].as_u64().unwrap();
        // The delay doubles from 100 ms: after c crashes the slot waits
        // 100 ms · 2^(c-1) (capped at 10 s), so starts cannot storm.
        let expected = (100u64 << (crashes - 1)).min(10_000);
        assert_eq!(slot["backoff_ms"].as_u64(), Some(expected), "{status}");
        assert!(slot["restarts"].as_u64().unwrap() <= crashes + 1, "{status}");
        let error = status["supervisor"]["app_error"].to_string();
        assert!(error.contains("boom-at-import-4471"), "{status}");
        server.wait_stderr_line("boom-at-import-4471").await;
        assert!(server.get("/").await.status >= 500, "no worker ever joined");
    })
    .await;
}
