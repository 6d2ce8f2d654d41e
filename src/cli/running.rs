//! Finding the server a subcommand acts on when it names none: the one live
//! run file under `$RIP_HOME` (`config::run_file`). Several live servers are
//! listed (app, pid, ports, socket prefix) and refused, never prompted for;
//! none is said so. Both exit 1.

use std::path::PathBuf;

use super::{CliError, Target};
use crate::config::home::run_dir;
use crate::config::run_file::{Found, list_live};

/// The control socket to talk to, and lines to print on stderr first (run
/// files that could not be read).
#[derive(Debug)]
pub struct Located {
    /// `<prefix>.ctl.sock`.
    pub control_socket: PathBuf,
    /// One line each, for stderr.
    pub warnings: Vec<String>,
}

/// No single server to act on: the lines to print on stderr (exit status 1).
#[derive(Debug)]
pub struct NotLocated {
    /// The first line names the subcommand and why; a list may follow.
    pub lines: Vec<String>,
}

/// The control socket of `target` for subcommand `sub`.
pub fn locate(target: &Target, sub: &str) -> Result<Located, NotLocated> {
    let home = match target {
        Target::Prefix(_) => {
            return Ok(Located {
                control_socket: target.control_socket().unwrap_or_default(),
                warnings: Vec::new(),
            });
        }
        Target::Running { home } => home,
    };
    let listing = list_live(home);
    let mut lines: Vec<String> = listing
        .problems
        .iter()
        .map(|p| CliError::failed(p.word.clone(), p.message.clone()).to_string())
        .collect();
    match listing.live.as_slice() {
        [one] => Ok(Located {
            control_socket: one.run.control_socket.clone(),
            warnings: lines,
        }),
        [] => {
            lines.push(
                CliError::failed(
                    sub,
                    format!(
                        "no running rip-server found (no live run file in {}); give an app path or --socket-prefix",
                        run_dir(home).display()
                    ),
                )
                .to_string(),
            );
            Err(NotLocated { lines })
        }
        several => {
            lines.push(
                CliError::failed(
                    sub,
                    format!(
                        "{} rip-servers are running; name one with its app path or --socket-prefix:",
                        several.len()
                    ),
                )
                .to_string(),
            );
            lines.extend(list_table(several));
            Err(NotLocated { lines })
        }
    }
}

/// `APP  PID  PORTS  SOCKET PREFIX`, one line per server, indented.
fn list_table(servers: &[Found]) -> Vec<String> {
    let mut rows = vec![[
        "APP".to_string(),
        "PID".to_string(),
        "PORTS".to_string(),
        "SOCKET PREFIX".to_string(),
    ]];
    for found in servers {
        let run = &found.run;
        let ports: Vec<String> = run.ports.iter().map(|(kind, port)| format!("{kind}:{port}")).collect();
        let socket = run.control_socket.to_string_lossy();
        let prefix = socket.strip_suffix(".ctl.sock").unwrap_or(&socket);
        rows.push([
            super::one_line(&run.app),
            run.pid.to_string(),
            ports.join(","),
            super::one_line(prefix),
        ]);
    }
    super::status_table::align(&rows, "    ")
}
