//! Hot reload as a user sees it: edit a file under the app directory, get
//! the new answer, lose no request.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::bun_apps::{app_dir, bun_server};
use crate::common::*;

const ENTRY: &str = r#"
import { message } from "./lib/message.ts";
export default function (req: Request) {
  return message();
}
"#;

fn message_module(text: &str) -> String {
    format!("export function message() {{ return {text:?}; }}\n")
}

/// Saves `text` the way editors do: a temporary file renamed over the old one.
fn save(path: &Path, text: &str) {
    let tmp = path.with_extension("ts.tmp");
    std::fs::write(&tmp, text).expect("write temporary");
    std::fs::rename(&tmp, path).expect("rename over");
}

async fn answers(server: &Server, want: &str, limit: Duration) {
    eventually(&format!("the answer {want:?}"), limit, || async {
        let r = request(server.port, http::Method::GET, "/", &[], bytes::Bytes::new()).await?;
        if r.text() == want {
            Ok(())
        } else {
            Err(format!("{} {:?}", r.status, r.text()))
        }
    })
    .await
}

fn generation(status: &Value) -> u64 {
    status["supervisor"]["generation"].as_u64().expect("generation")
}

#[tokio::test]
async fn process_mode_an_edit_to_an_imported_file_rolls_within_2s_with_no_failed_request() {
    within(BUDGET, async {
        let (_tmp, dir) = app_dir(
            "proc",
            &[("index.ts", ENTRY), ("lib/message.ts", &message_module("v1"))],
        );
        let server = bun_server(&dir).args(&["w:2", "--hot-reload=process"]).start().await;
        answers(&server, "v1", STEP).await;
        let load = Load::start(server.port, 4, "/", Duration::from_millis(2));
        save(&dir.join("lib/message.ts"), &message_module("v2"));
        answers(&server, "v2", Duration::from_secs(2)).await;
        let report = load.stop().await;
        report.assert_all_200("requests during a process-mode reload");
        let status = server.wait_workers(2).await;
        assert_eq!(generation(&status), 2, "{status}");
        assert_eq!(status["hot_reload"], "process");
    })
    .await;
}

#[tokio::test]
async fn process_mode_twenty_saves_within_100ms_give_one_roll() {
    within(BUDGET, async {
        let (_tmp, dir) = app_dir(
            "burst",
            &[("index.ts", ENTRY), ("lib/message.ts", &message_module("v0"))],
        );
        let server = bun_server(&dir).args(&["w:1", "--hot-reload=process"]).start().await;
        let clock = Stopwatch::start();
        for n in 1..=20 {
            std::fs::write(dir.join("lib/message.ts"), message_module(&format!("v{n}"))).unwrap();
        }
        assert!(clock.ms() < 100, "the 20 saves took {} ms", clock.ms());
        answers(&server, "v20", STEP).await;
        let status = server
            .wait_status("the roll completed", STEP, |v| {
                v["supervisor"]["rolling"].is_null() && v["supervisor"]["last_roll"]["outcome"] == "completed"
            })
            .await;
        assert_eq!(generation(&status), 2, "{status}");
        // No second roll follows: the burst was one event.
        holds_for("one roll for the burst", Duration::from_secs(1), || async {
            let v = server.try_status().await?;
            if generation(&v) == 2 && v["supervisor"]["rolling"].is_null() {
                Ok(())
            } else {
                Err(v.to_string())
            }
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn process_mode_a_version_that_fails_to_load_aborts_the_roll_and_the_old_one_serves() {
    within(BUDGET, async {
        let (_tmp, dir) = app_dir(
            "badroll",
            &[("index.ts", ENTRY), ("lib/message.ts", &message_module("good"))],
        );
        let server = bun_server(&dir).args(&["w:2", "--hot-reload=process"]).start().await;
        let before = Server::pool_pids(&server.status().await);
        save(
            &dir.join("lib/message.ts"),
            "export function message() { return 'bad' +; }\n",
        );
        let status = server
            .wait_status("the roll aborted with the load error", STEP, |v| {
                v["supervisor"]["last_roll"]["outcome"] == "aborted" && !v["supervisor"]["app_error"].is_null()
            })
            .await;
        assert_eq!(generation(&status), 1, "{status}");
        assert_eq!(status["supervisor"]["app_error"]["phase"], "load", "{status}");
        answers(&server, "good", STEP).await;
        assert_eq!(Server::pool_pids(&server.wait_workers(2).await), before);

        // Fixing the file rolls again, and the error clears.
        save(&dir.join("lib/message.ts"), &message_module("fixed"));
        answers(&server, "fixed", STEP).await;
        let status = server
            .wait_status("the error cleared", STEP, |v| v["supervisor"]["app_error"].is_null())
            .await;
        assert!(generation(&status) > 1, "{status}");
    })
    .await;
}

fn reloads_of(status: &Value, pid: u32) -> Option<u64> {
    status["supervisor"]["slots"]
        .as_array()?
        .iter()
        .flat_map(|s| s["processes"].as_array().into_iter().flatten())
        .find(|p| p["pid"] == pid)?["reloads"]
        .as_u64()
}

#[tokio::test]
async fn module_mode_reloads_the_entry_and_its_imports_in_the_same_process() {
    within(BUDGET, async {
        let (_tmp, dir) = app_dir(
            "modmode",
            &[("index.ts", ENTRY), ("lib/message.ts", &message_module("m1"))],
        );
        // A bare --hot-reload means module.
        let server = bun_server(&dir).args(&["w:1", "--hot-reload"]).start().await;
        let status = server.status().await;
        assert_eq!(status["hot_reload"], "module");
        let pid = *Server::pool_pids(&status).iter().next().unwrap();
        save(&dir.join("lib/message.ts"), &message_module("m2"));
        answers(&server, "m2", STEP).await;
        let status = server
            .wait_status("one reload counted", STEP, |v| reloads_of(v, pid) == Some(1))
            .await;
        assert_eq!(Server::pool_pids(&status), [pid].into(), "reloaded in place: {status}");
        server.wait_stderr_line("reloaded").await;
    })
    .await;
}

#[tokio::test]
async fn module_mode_a_syntax_error_keeps_the_last_good_code_and_is_logged() {
    within(BUDGET, async {
        let (_tmp, dir) = app_dir(
            "modbad",
            &[("index.ts", ENTRY), ("lib/message.ts", &message_module("good"))],
        );
        let server = bun_server(&dir).args(&["w:1", "--hot-reload=module"]).start().await;
        let pid = *Server::pool_pids(&server.status().await).iter().next().unwrap();
        save(
            &dir.join("lib/message.ts"),
            "export function message() { return 'syntax-error-marker' +; }\n",
        );
        let status = server
            .wait_status("the reload error in /status", STEP, |v| {
                v["supervisor"]["app_error"]["phase"] == "reload"
            })
            .await;
        assert_eq!(status["supervisor"]["app_error"]["pid"], pid, "{status}");
        answers(&server, "good", STEP).await;
        server.wait_stderr_line("failed to reload").await;
        assert_eq!(Server::pool_pids(&server.status().await), [pid].into());
        // The next good save loads and clears the error.
        save(&dir.join("lib/message.ts"), &message_module("better"));
        answers(&server, "better", STEP).await;
        server
            .wait_status("the error cleared", STEP, |v| v["supervisor"]["app_error"].is_null())
            .await;
    })
    .await;
}

#[tokio::test]
async fn module_mode_max_reloads_3_replaces_the_worker_on_the_third_reload_with_no_failed_request() {
    within(BUDGET, async {
        let (_tmp, dir) = app_dir(
            "maxrel",
            &[("index.ts", ENTRY), ("lib/message.ts", &message_module("r0"))],
        );
        let server = bun_server(&dir)
            .args(&["w:1", "--hot-reload=module", "--max-reloads=3"])
            .start()
            .await;
        let pid = *Server::pool_pids(&server.status().await).iter().next().unwrap();
        let load = Load::start(server.port, 2, "/", Duration::from_millis(2));
        for n in 1..=2u64 {
            let text = format!("r{n}");
            save(&dir.join("lib/message.ts"), &message_module(&text));
            answers(&server, &text, STEP).await;
            let status = server
                .wait_status(&format!("reload {n} counted"), STEP, |v| reloads_of(v, pid) == Some(n))
                .await;
            assert_eq!(
                Server::pool_pids(&status),
                [pid].into(),
                "reload {n} in place: {status}"
            );
        }
        save(&dir.join("lib/message.ts"), &message_module("r3"));
        answers(&server, "r3", STEP).await;
        let status = server
            .wait_status("the worker replaced", STEP, |v| {
                !Server::pool_pids(v).contains(&pid) && v["workers"] == 1
            })
            .await;
        let report = load.stop().await;
        report.assert_all_200("requests while a worker is replaced at --max-reloads");
        assert_no_synthesized_answers(&status);
    })
    .await;
}

#[tokio::test]
async fn module_mode_a_worker_program_that_did_not_opt_in_is_replaced_not_signalled() {
    within(BUDGET, async {
        // The Python worker's join does not say "reload":true, and it has no
        // SIGHUP handler: a SIGHUP would kill it (a crash).
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pyapp");
        std::fs::create_dir(&dir).unwrap();
        let worker = dir.join("worker.py");
        std::fs::copy(crate_dir().join("tests/workers/py_worker.py"), &worker).unwrap();
        let server = Server::app(worker.to_str().unwrap())
            .args(&["w:1", "--hot-reload=module"])
            .start()
            .await;
        let pid = *Server::pool_pids(&server.status().await).iter().next().unwrap();
        std::fs::write(dir.join("data.txt"), "changed").unwrap();
        let status = server
            .wait_status("the worker replaced", STEP, |v| {
                !Server::pool_pids(v).contains(&pid) && v["workers"] == 1
            })
            .await;
        assert_eq!(status["worker_exits"]["crash"], 0, "{status}");
    })
    .await;
}

#[tokio::test]
async fn changes_to_ignored_files_do_not_reload() {
    within(BUDGET, async {
        let (_tmp, dir) = app_dir(
            "ignored",
            &[("index.ts", ENTRY), ("lib/message.ts", &message_module("same"))],
        );
        std::fs::create_dir_all(dir.join("node_modules/dep")).unwrap();
        std::fs::create_dir_all(dir.join(".git")).unwrap();
        let server = bun_server(&dir).args(&["w:1", "--hot-reload=process"]).start().await;
        for (file, text) in [
            ("node_modules/dep/index.js", "x"),
            (".git/index", "x"),
            (".env", "x"),
            ("lib/message.ts~", "x"),
            ("lib/.message.ts.swp", "x"),
            ("4913", ""),
        ] {
            std::fs::write(dir.join(file), text).unwrap();
        }
        holds_for("no roll for ignored files", Duration::from_secs(1), || async {
            let v = server.try_status().await?;
            if generation(&v) == 1 && v["supervisor"]["rolling"].is_null() {
                Ok(())
            } else {
                Err(v.to_string())
            }
        })
        .await;
        // The watcher is alive: a real change rolls.
        std::fs::write(dir.join("lib/message.ts"), message_module("changed")).unwrap();
        answers(&server, "changed", STEP).await;
    })
    .await;
}
