//! How the server's own log lines (stderr) are written: for people, with
//! colour only where a person is looking (a terminal, and no `NO_COLOR`),
//! or as one JSON object a line under `--json-logging`, like the access
//! log, so journald and log shippers read one format. The built-in workers
//! share the server's stderr and write the same way: the server tells them
//! with [`LOG_FORMAT_VAR`].

use std::ffi::OsStr;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Set by the server for its workers: `json` under `--json-logging`,
/// else `text`.
pub const LOG_FORMAT_VAR: &str = "RIP_LOG_FORMAT";

/// The look of the server's own lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStyle {
    /// Text with ANSI colours.
    Colour,
    /// Text without escapes (a file, a pipe, journald, `NO_COLOR`).
    Plain,
    /// One JSON object a line.
    Json,
}

impl LogStyle {
    /// `json`: `--json-logging`; `stderr_is_terminal`: where the lines go;
    /// `no_color`: the `NO_COLOR` variable (<https://no-color.org>: set and
    /// not empty turns colour off).
    pub fn choose(json: bool, stderr_is_terminal: bool, no_color: Option<&OsStr>) -> LogStyle {
        if json {
            LogStyle::Json
        } else if stderr_is_terminal && no_color.is_none_or(OsStr::is_empty) {
            LogStyle::Colour
        } else {
            LogStyle::Plain
        }
    }
}

/// stderr for log lines, losing a line it cannot write instead of failing.
///
/// tracing-subscriber reports a failed write by printing to stderr with
/// `eprintln!`, which panics when stderr is a pipe nobody reads any more
/// (the terminal or the log collector that started the server is gone):
/// the task logging at that moment dies, and when that was the signal
/// loop, `SIGTERM` no longer stopped the server. A log line is not worth
/// that.
struct QuietStderr;

impl std::io::Write for QuietStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(std::io::stderr().write(buf).unwrap_or(buf.len()))
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let _ = std::io::stderr().write_all(buf);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Writes `line` and a newline to stderr, or nothing if it cannot (see
/// [`QuietStderr`]): for lines a long-running process prints outside the
/// log (a platform's apps' output), where `eprintln!` would panic.
pub fn stderr_line(line: &str) {
    use std::io::Write as _;
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(line.as_bytes());
    let _ = stderr.write_all(b"\n");
}

/// Starts writing this process's log lines to stderr, filtered by
/// `filter`: JSON if `json`, else text, coloured only on a terminal without
/// `NO_COLOR`. Does nothing if logging was already set up.
pub fn init(filter: EnvFilter, json: bool) {
    let style = LogStyle::choose(
        json,
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let text = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| QuietStderr);
    let _ = match style {
        LogStyle::Json => text
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogStyle::Colour | LogStyle::Plain => text.with_ansi(style == LogStyle::Colour).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color_and_json_wins() {
        let set = Some(OsStr::new("1"));
        let empty = Some(OsStr::new(""));
        assert_eq!(LogStyle::choose(false, true, None), LogStyle::Colour);
        assert_eq!(
            LogStyle::choose(false, true, empty),
            LogStyle::Colour,
            "empty NO_COLOR is unset"
        );
        assert_eq!(LogStyle::choose(false, true, set), LogStyle::Plain);
        assert_eq!(
            LogStyle::choose(false, false, None),
            LogStyle::Plain,
            "a file or a pipe"
        );
        assert_eq!(LogStyle::choose(true, true, None), LogStyle::Json);
        assert_eq!(LogStyle::choose(true, false, set), LogStyle::Json);
    }
}
