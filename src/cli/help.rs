//! The `--help` and `--version` texts.

use std::fmt::Write as _;

use super::{FLAGS, FlagId, MAX_DURATION_MS, MAX_WORKERS};

/// `rip-server <version>`.
pub fn version_text() -> String {
    format!("rip-server {}", env!("CARGO_PKG_VERSION"))
}

const HEAD: &str = "\
rip-server: one HTTP front door, N worker processes, one request per worker at a time.

USAGE:
    rip-server <app-path> [tokens] [flags]     run an app; the app path, tokens and flags go in any order
    rip-server status  [app-path] [--socket-prefix=PATH] [--variant=NAME]
    rip-server restart [app-path] [--socket-prefix=PATH] [--variant=NAME]
    rip-server stop    [app-path] [--socket-prefix=PATH] [--variant=NAME]
    rip-server scale <+N|-N|N> [app-path] [--socket-prefix=PATH] [--variant=NAME]
    rip-server help | -h | --help
    rip-server -V | --version

APP PATH:
    <dir>            app dir = <dir>; entry = the first of index.rip, index.ts,
                     then an executable file named index
    <file>           app dir = the file's directory; entry = the file, no probing.
                     An executable file is a worker program, run directly; any
                     other file must end in .rip or .ts
    builtin:hello    the built-in example app (app name hello, app dir = the
                     current directory)
    The app name is the base name of the app dir. A path that looks like a
    subcommand, a token or a number needs a ./ prefix (./stop, ./5700, ./w:2);
    after -- every word is an app path.

TOKENS:
    w:<N|auto>              worker processes, 1..=MAXW; auto = available CPU cores
                            [default: auto]
    r:<N>[,<S>s][,<R>r]     recycle a worker after N requests, S seconds of age
                            (also <S>m, <S>h), R module reloads; 0 requests or 0s
                            = never; parts may be left out
                            [default: r:10000 (no age limit), 10 reloads]
    http:<port>             HTTP port, 0..=65535 (0 = any free port)
                            [default: $PORT, else 5002]
    https:<port>            HTTPS port [default: none]
    <port>                  a bare integer: the HTTPS port
    cert:<path>             TLS certificate (PEM) [default: none]
    key:<path>              TLS private key (PEM) [default: none]
    protocol:<P>            http | https | http+https [default: http; https when an
                            HTTPS port is the only port given; http+https when an
                            HTTP port (http: or PORT) is given too]

FLAGS (each as --flag=value or --flag value):
";

const TAIL: &str = "    -h, --help                          print this help
    -V, --version                       print the version

ENVIRONMENT (a flag or token beats its variable; a variable beats the default;
an empty variable counts as unset; a malformed one is an error):
    PORT                    HTTP port when there is no http: token [default: 5002]
ENVS
    RIP_RELOAD              older name of RIP_HOT_RELOAD, read only when that is unset

SUBCOMMANDS (they talk to a running server through <prefix>.ctl.sock; the
prefix is --socket-prefix, else /tmp/rip_<variant>_<app> from the app path and
--variant / RIP_VARIANT [default variant: server]):
    status      print the running server's status
    restart     rolling restart of every worker (same as SIGHUP)
    stop        graceful stop (same as SIGTERM)
    scale +N    N more workers (+1 is the same as SIGTTIN)
    scale -N    N fewer workers (-1 is the same as SIGTTOU)
    scale N     exactly N workers, 1..=MAXW

SOCKETS:
    workers listen on <prefix>.<id>.sock; the control socket is <prefix>.ctl.sock.

SIGNALS:
    SIGHUP rolling restart; SIGTERM, SIGINT graceful stop; SIGTTIN one worker
    more; SIGTTOU one worker fewer.

EXAMPLES:
    rip-server apps/api
    rip-server apps/api w:4 http:5002
    rip-server w:8 r:20000,1800s,20r apps/api --hot-reload=module --json-logging
    rip-server 5700 cert:./certs/app.pem key:./certs/app.key apps/api
    rip-server builtin:hello w:2 http:0
    rip-server status apps/api
    rip-server scale +1 --socket-prefix=/tmp/rip_server_api
";

/// The full `--help` text: every token, flag, variable, subcommand and default.
pub fn help_text() -> String {
    let mut out = format!("{}\n{}", version_text(), HEAD.replace("MAXW", &MAX_WORKERS.to_string()));
    for f in FLAGS {
        let left = match f.value {
            Some(v) => format!("{}=<{v}>", f.name),
            None => f.name.to_string(),
        };
        let mut right = f.help.to_string();
        if f.value.is_some() && f.name.ends_with("-ms") {
            let min = match f.id {
                FlagId::StuckGraceMs | FlagId::StopTimeoutMs => 0,
                _ => 1,
            };
            right.push_str(&format!(" ({min}..={MAX_DURATION_MS})"));
        }
        if !f.default.is_empty() {
            right.push_str(&format!(" [default:\u{1}{}]", f.default.replace(' ', "\u{1}")));
        }
        if let Some(env) = f.env {
            right.push_str(&format!(" [env:\u{1}{env}]"));
        }
        let mut first = true;
        for line in wrap(&right, 60) {
            let l = if first { left.as_str() } else { "" };
            let _ = writeln!(out, "    {l:<35} {}", line.replace('\u{1}', " "));
            first = false;
        }
    }
    let mut envs = String::new();
    for f in FLAGS {
        if let Some(env) = f.env {
            let _ = writeln!(envs, "    {env:<23} {} [default: {}]", f.name, f.default);
        }
    }
    let tail = TAIL.replace("ENVS\n", &envs).replace("MAXW", &MAX_WORKERS.to_string());
    out.push_str(&tail);
    out
}

/// Splits `text` at spaces into lines of at most `width` characters (longer
/// words stay whole); `\u{1}` joins words that must stay together.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}
