//! The worker ↔ front-door control protocol (`POST /worker` on the control socket).
//!
//! Shared by the control server, the worker runtime and the CLI, so both ends
//! agree byte for byte with `CONTRACT.md`.

use serde::{Deserialize, Serialize};

/// Path of the single control endpoint for workers.
pub const WORKER_PATH: &str = "/worker";

/// Largest control request body accepted, in bytes.
pub const MAX_CONTROL_BODY: usize = 64 * 1024;

/// Header a busy worker sets on its 503.
pub const WORKER_BUSY_HEADER: &str = "rip-worker-busy";
/// Header a worker may set to name itself; stripped on egress.
pub const WORKER_ID_HEADER: &str = "rip-worker-id";

/// A message from a worker to the control socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum WorkerMessage {
    /// The worker is listening on `socket` and ready to serve.
    Join {
        app: String,
        #[serde(rename = "workerId")]
        worker_id: u32,
        pid: u32,
        socket: String,
        /// The generation (`RIP_VERSION`); optional in the protocol, 0 when absent.
        #[serde(default)]
        version: Option<u64>,
        /// The worker reloads its code in place on [`RELOAD_SIGNAL`] (module
        /// hot reload). Optional, default false: a worker that did not say
        /// so is never sent the signal (it could kill it), it is replaced.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        reload: bool,
    },
    /// The worker is leaving: route nothing more to it.
    Quit {
        app: String,
        #[serde(rename = "workerId")]
        worker_id: u32,
        /// Our extension: lets the server tell two processes of one slot apart
        /// during a handover. Optional; without it the quit applies to the
        /// slot's draining process first, then to its only process.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
    },
    /// The app failed to load: at start (`phase: "load"`, the worker then
    /// exits non-zero) or on a module reload (`phase: "reload"`, the worker
    /// keeps serving its last good code). Shown in `/status` and logged.
    Error {
        app: String,
        #[serde(rename = "workerId")]
        worker_id: u32,
        pid: u32,
        phase: ErrorPhase,
        /// The error, as the app's runtime printed it (at most [`MAX_ERROR_TEXT`] bytes kept).
        error: String,
    },
    /// A module reload succeeded: the worker now serves the new code.
    Reloaded {
        app: String,
        #[serde(rename = "workerId")]
        worker_id: u32,
        pid: u32,
        /// Reloads this process has done, this one included.
        #[serde(default)]
        reloads: u64,
    },
}

/// When an app failed to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorPhase {
    /// Loading the app at the worker's start.
    Load,
    /// Reloading it in place (module hot reload).
    Reload,
}

/// The signal that asks a worker whose join said `"reload":true` to reload
/// its code in place, between requests.
pub const RELOAD_SIGNAL: &str = "SIGHUP";

/// Bytes of an error report's text the server keeps.
pub const MAX_ERROR_TEXT: usize = 8 * 1024;

/// The control socket's reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    /// `{"ok":true}`.
    pub fn ok() -> Reply {
        Reply { ok: true, error: None }
    }

    /// `{"ok":false,"error":...}`.
    pub fn error(message: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            error: Some(message.into()),
        }
    }
}

/// Parses a control body, naming what is wrong when it cannot.
pub fn parse_worker_message(body: &[u8]) -> Result<WorkerMessage, String> {
    if body.len() > MAX_CONTROL_BODY {
        return Err(format!("body of {} bytes exceeds {MAX_CONTROL_BODY}", body.len()));
    }
    serde_json::from_slice(body).map_err(|e| format!("invalid worker message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_contract_join_and_quit() {
        let join = parse_worker_message(
            br#"{"op":"join","app":"a","workerId":1,"pid":42,"socket":"/tmp/x.1.sock","version":3}"#,
        )
        .unwrap();
        assert_eq!(
            join,
            WorkerMessage::Join {
                app: "a".into(),
                worker_id: 1,
                pid: 42,
                socket: "/tmp/x.1.sock".into(),
                version: Some(3),
                reload: false,
            }
        );
        let quit = parse_worker_message(br#"{"op":"quit","app":"a","workerId":1}"#).unwrap();
        assert_eq!(
            quit,
            WorkerMessage::Quit {
                app: "a".into(),
                worker_id: 1,
                pid: None
            }
        );
    }

    #[test]
    fn parses_the_reload_opt_in_and_the_error_and_reloaded_reports() {
        let join = parse_worker_message(
            br#"{"op":"join","app":"a","workerId":0,"pid":4,"socket":"/s","version":1,"reload":true}"#,
        )
        .unwrap();
        assert!(matches!(join, WorkerMessage::Join { reload: true, .. }));
        let error = parse_worker_message(
            br#"{"op":"error","app":"a","workerId":0,"pid":4,"phase":"reload","error":"SyntaxError: x"}"#,
        )
        .unwrap();
        assert_eq!(
            error,
            WorkerMessage::Error {
                app: "a".into(),
                worker_id: 0,
                pid: 4,
                phase: ErrorPhase::Reload,
                error: "SyntaxError: x".into()
            }
        );
        let reloaded =
            parse_worker_message(br#"{"op":"reloaded","app":"a","workerId":0,"pid":4,"reloads":2}"#).unwrap();
        assert!(matches!(reloaded, WorkerMessage::Reloaded { reloads: 2, .. }));
        // A join without the field does not opt in, and serialises without it.
        let plain = WorkerMessage::Join {
            app: "a".into(),
            worker_id: 0,
            pid: 4,
            socket: "/s".into(),
            version: None,
            reload: false,
        };
        assert!(!serde_json::to_string(&plain).unwrap().contains("reload"));
        for bad in [
            &br#"{"op":"error","app":"a","workerId":0,"pid":4,"phase":"boot","error":"x"}"#[..],
            br#"{"op":"error","app":"a","workerId":0,"pid":4,"phase":"load"}"#,
            br#"{"op":"reloaded","app":"a","workerId":0}"#,
        ] {
            assert!(parse_worker_message(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn rejects_bad_messages_with_a_reason() {
        for bad in [
            &b"{"[..],
            br#"{"op":"dance"}"#,
            br#"{"op":"join","app":"a","workerId":"1","pid":1,"socket":"s"}"#,
            br#"{"op":"join","app":"a","workerId":-1,"pid":1,"socket":"s"}"#,
            br#"{"op":"quit","app":"a"}"#,
        ] {
            assert!(parse_worker_message(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
