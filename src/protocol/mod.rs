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
}

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
                version: Some(3)
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
