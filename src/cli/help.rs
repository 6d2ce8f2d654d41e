//! The `--help` and `--version` texts. The flags' lines come from the flags
//! table, so the help lists exactly the flags that parse.

use std::fmt::Write as _;

use super::flags::{FLAGS, Takes};
use crate::config::defaults::{DEFAULT_LOG_FILTER, DEFAULT_THREADS, MAX_THREADS, MAX_WORKERS};

/// `rip-server <version>`.
pub fn version_text() -> String {
    format!("rip-server {}", env!("CARGO_PKG_VERSION"))
}

const HEAD: &str = "\
rip-server: one HTTP front door, N worker processes, one request per worker at a time.

USAGE:
    rip-server <app-path> [tokens] [flags]     run an app; the app path, tokens and flags go in any order
    rip-server status [--json] [app-path] [--socket-prefix=PATH] [--variant=NAME]
    rip-server restart [app-path] [--socket-prefix=PATH] [--variant=NAME]
    rip-server stop    [app-path] [--socket-prefix=PATH] [--variant=NAME]
    rip-server scale <+N|-N|N> [app-path] [--socket-prefix=PATH] [--variant=NAME]
    rip-server add <host> <app-path>           register a host name for an app
    rip-server remove <host>
    rip-server list [--json]
    rip-server platform [http:<port>] [--api-port=N] [--admin-bind=ADDR] [--bind=ADDR] [https words] [--metrics-port=N]
    rip-server ca init|trust|untrust|export|info|list|clean   the development CA
    rip-server help | -h | --help
    rip-server -V | --version

APP PATH:
    <dir>            app dir = <dir>; entry = the first of index.rip, index.ts,
                     index.js, then an executable file named index
    <file>           app dir = the file's directory; entry = the file, no probing.
                     Its extension decides how it runs: .ts, .tsx, .js, .mjs and
                     .rip run in Bun workers; any other file must be an
                     executable worker program, run directly
    builtin:hello    the built-in example app (app name hello, app dir = the
                     current directory)
    The app name is the base name of the app dir. Bun apps export default a
    function (Request) => Response, or an object with fetch(Request); either
    may be async; a string is sent as text/plain, another value as JSON, a
    throw is a 500 (the error goes to the log). Bun is $RIP_BUN, else bun on
    PATH (missing or older than 1.1.0: exit status 2). A .rip app needs
    --bun-preload (exit status 2 without it). A path that looks like a
    subcommand, a token or a number needs a ./ prefix (./stop, ./5700, ./w:2);
    after -- every word is an app path.

TOKENS:
    w:<N|auto>              worker processes, 1..=MAXW; auto = available CPU cores
                            [default: auto]
    r:<N>[,<S>s][,<R>r]     recycle a worker after N requests, S seconds of age
                            (also <S>m, <S>h); 0 requests or 0s = never; parts
                            may be left out; R = --max-reloads
                            [default: r:10000 (no age limit), @MAXR@ reloads]
    http:<port>             HTTP port, 0..=65535 (0 = any free port)
                            [default: $PORT, else 5002]
    https:<port>            HTTPS port, 0..=65535 (0 = any free port) [default: 5700]
    <port>                  a bare integer: the HTTPS port
    https:<mode>            certificate source without cert:/key:: quick
                            (self-signed), ca (the dev CA of $RIP_HOME/ca; exit
                            status 2 without one), smart (the dev CA when it
                            exists, else quick) [default: smart]; generated
                            certificates renew themselves without a restart
    cert:<path>             TLS certificate chain (PEM), with key:<path>;
                            reloaded when the files change (the last good pair
                            is kept when a new one is broken) and on SIGHUP
    key:<path>              TLS private key (PEM), with cert:<path>
    protocol:<P>            http | https | http+https [default: http, or https
                            when any HTTPS word is given]; with https the HTTP
                            port redirects to HTTPS (301 GET/HEAD, 308 others)
                            unless --no-redirect-http
    The same kind of HTTPS word twice is a mistake (exit status 2).

FLAGS (each as --flag=value or --flag value):
";

const TAIL: &str = "    -h, --help                          print this help
    -V, --version                       print the version

ENVIRONMENT (a flag or token beats its variable; a variable beats the default;
an empty variable counts as unset; a malformed one is an error, exit status 2):
    PORT                    HTTP port when there is no http: token [default: 5002]
ENVS
    RIP_RELOAD              older name of RIP_HOT_RELOAD, read only when that is unset
    RIP_BUN                 the Bun program for .ts, .js and .rip apps [default: bun on PATH]
    RIP_THREADS             front-door event-loop threads, 1..=@MAXT@ [default: @THREADS@]
    RIP_LOG                 log filter: a level (error, warn, info, debug, trace)
                            or directives such as info,rip_server=debug [default: @LOG@]
    RIP_HOME                where rip-server keeps state: run/<app>.json for each
                            running server, hosts.json (the host registry),
                            ca/ (the dev CA), certs/ (its leaves); an absolute
                            path [default: $HOME/.rip-server]

SUBCOMMANDS (they talk to a running server through <prefix>.ctl.sock; the
prefix is --socket-prefix, else /tmp/rip_<variant>_<app> from the app path and
--variant / RIP_VARIANT [default variant: server]. With neither an app path nor
--socket-prefix they act on the one server running under RIP_HOME; with several
running they list them and exit 1, with none they say so and exit 1):
    status      print the running server's status as a table
    status --json   the same as JSON (GET /status)
    restart     rolling restart of every worker (same as SIGHUP)
    stop        graceful stop (same as SIGTERM)
    scale +N    N more workers (+1 is the same as SIGTTIN)
    scale -N    N fewer workers (-1 is the same as SIGTTOU)
    scale N     exactly N workers, 1..=MAXW

HOST REGISTRY ($RIP_HOME/hosts.json: host name -> app directory; edits are
atomic and locked, so concurrent ones all land; a corrupt file is reported
with one line naming it and left as it is, exit status 1):
    add <host> <app-path>   map the host name to the app's directory (the app
                            path resolves as for rip-server <app-path>; a file
                            must be its directory's entry). The name is
                            lowercased, internationalised names become their
                            IDNA form (xn--...), one trailing dot is dropped;
                            *.<domain> covers exactly one more label
                            (*.api.test: v1.api.test, not api.test); IP
                            addresses: 127.0.0.1, ::1 or [::1]. A bad name
                            exits 2; a name registered (or claimed by a
                            platform app in apps.json) for another directory
                            exits 1; the same mapping again changes nothing
    remove <host>           unregister the name (not registered: exit 1)
    list                    the names and their directories as a table
    list --json             the same as JSON: {\"hosts\":{\"<host>\":\"<dir>\"}}
    A running platform follows hosts.json (no restart); rip-server
    <app-path> serves its one app for every host name.

PLATFORM (rip-server platform; needs RIP_HOME or HOME):
    many apps on one machine. The API and dashboard listen on
    --admin-bind (127.0.0.1) port --api-port (3000); the apps' traffic on
    http:<port> (--bind), routed by host: an app's hosts are its own plus
    every hosts.json entry naming its directory; an unknown host gets 404
    Host not found. Apps and their desired state live in
    $RIP_HOME/apps.json and come back when the platform starts again.
    Every /api/* request needs Authorization: Bearer <token> (the token
    in $RIP_HOME/platform.token, created on first start) or the cookie set
    by the login URL the start line prints (/?token=...). Other serve
    tokens and flags apply to every app (w: is the worker count of an app
    deployed without one). A hosts.json directory no app serves gets an
    app of its own (named after the directory). rip-server status,
    restart (every running app, rolling) and stop find the platform
    through $RIP_HOME/run/platform.json. HTTPS words serve the apps over
    HTTPS as for a server, a certificate of its own for every routed host
    (by SNI). --metrics-port serves /metrics (every app by its label),
    /ready and /live on --admin-bind. SIGHUP restarts every running app;
    SIGTERM (after --drain-delay-ms) or SIGINT stops every app gracefully.
    --api-port=<port>                   the API and dashboard port (0 = any free port) [default: 3000]
    --admin-bind=<addr>                 the API's address; a non-loopback one is warned about [default: 127.0.0.1]

DEV CA (rip-server ca <sub>, also ca:<sub>; files in $RIP_HOME/ca and
$RIP_HOME/certs, directories 0700, files 0600; see docs/dev-ca.md):
    init [--name DOMAIN]...  make the root: P-256, 10 years, name-constrained
                            to localhost, .localhost, .test, .local,
                            127.0.0.0/8 and ::1; each --name adds a domain
                            and every name under it. A CA that exists is kept
                            (exit 0); its names are fixed when it is made
    trust [--dry-run]       install the root in the system store (Debian,
                            Fedora or Arch layout) and in every NSS database
                            under $HOME (Chromium, Firefox); one line per
                            store; safe to run twice; --dry-run prints the
                            commands and changes nothing; a store that fails
                            makes the exit status 1
    untrust [--dry-run]     take it out of the same stores
    export [PATH]           write the root certificate to PATH (a directory:
                            PATH/rip-server-ca.crt; -: standard output)
                            [default: ./rip-server-ca.crt]; a different file
                            there is never overwritten (exit 1)
    info                    subject, validity, SHA-256 fingerprint, name
                            constraints, where it is trusted
    list                    issued leaves: names, expiry, next renewal
                            (leaves live 7 days and renew with a third left)
    clean [--all]           remove the issued leaves; --all also untrusts the
                            root and removes the CA
    Without a CA every subcommand but init exits 1 with: No CA found. Run
    \"rip-server ca init\" first. RIP_TRUST_ROOT (tests only) is put in
    front of every system store path.

SOCKETS:
    workers listen on <prefix>.<id>.sock; the control socket is <prefix>.ctl.sock.

HOT RELOAD (--hot-reload): one watcher per app sees changes to any file under
the app dir (not node_modules/, .git/, dotfiles or editor temporaries) and
coalesces a burst (200 ms quiet, at most 2 s) into one reload. process: one
rolling restart per burst; a version that fails to load aborts it and the old
workers keep serving (the error is in /status and the log). module: each
worker that can (Bun workers; other programs whose join said \"reload\":true)
is sent SIGHUP and reloads the entry and its imports between requests,
keeping its last good code when the new one fails to load; a worker due for
its --max-reloads-th reload, or one that cannot reload, is replaced instead
(replacement first, no failed request).

SIGNALS:
    SIGHUP rolling restart (and reload of the cert:/key: files); SIGTERM, SIGINT graceful stop; SIGTTIN one worker
    more; SIGTTOU one worker fewer; SIGUSR2 hitless upgrade: the binary now at the server's path starts with the
    listening sockets, and this one drains and exits once the new one serves.

SYSTEMD:
    with LISTEN_FDS (socket activation) the sockets handed over are used instead of binding (the one named https
    for HTTPS, any other for HTTP); with NOTIFY_SOCKET: READY=1 once a worker has joined, RELOADING=1 / READY=1
    around a SIGHUP restart, STOPPING=1, WATCHDOG=1 when WATCHDOG_USEC asks. Units: deploy/systemd/.

EXIT STATUS:
    0    success
    1    an operation failed or is not in this version: a port in use, no
         server answers, no running server found (or several), a refused
         subcommand request, a host name registered for another app,
         removing a name that is not registered, a hosts.json that cannot
         be read or parsed, no CA (or a corrupt one) for a ca subcommand,
         a trust store that failed
    2    the command cannot be carried out as written, found before anything
         starts: an unknown or malformed word or variable, a bad number or
         port, a missing app path or entry, no Bun (or too old a one) for a
         Bun app, a .rip entry without --bun-preload, a bad host name,
         https:ca without a dev CA, cert:/key: files missing or unusable

EXAMPLES:
    rip-server apps/api
    rip-server apps/api w:4 http:5002
    rip-server w:8 r:20000,1800s apps/api --json-logging
    rip-server builtin:hello w:2 http:0
    rip-server examples/hello-ts w:2 --hot-reload
    rip-server examples/rip-app --bun-preload=examples/rip-app/toy-rip-plugin.ts
    rip-server status
    rip-server status apps/api --json
    rip-server scale +1 --socket-prefix=/tmp/rip_server_api
    rip-server add api.test apps/api
    rip-server add '*.api.test' apps/api
    rip-server list
    rip-server ca init && rip-server ca trust
";

/// The full `--help` text: every token, flag, variable, subcommand and default.
pub fn help_text() -> String {
    let maxw = MAX_WORKERS.to_string();
    let head = HEAD
        .replace("MAXW", &maxw)
        .replace("@MAXR@", &crate::config::defaults::DEFAULT_MAX_RELOADS.to_string());
    let mut out = format!("{}\n{head}", version_text());
    for f in FLAGS {
        let left = match f.takes {
            Takes::Value { name, .. } => format!("{}=<{name}>", f.name),
            Takes::OptionalValue { name, .. } => format!("{}[=<{name}>]", f.name),
            Takes::Nothing(_) => f.name.to_string(),
        };
        let mut right = f.help.to_string();
        if let Some((min, max)) = f.range {
            right.push_str(&format!(" ({min}..={max})"));
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
            let what = match f.takes {
                Takes::Value { .. } | Takes::OptionalValue { .. } => f.name.to_string(),
                Takes::Nothing(_) => format!("1 = {}, 0 = off", f.name),
            };
            if f.default.is_empty() {
                let _ = writeln!(envs, "    {env:<23} {what}");
            } else {
                let _ = writeln!(envs, "    {env:<23} {what} [default: {}]", f.default);
            }
        }
    }
    let tail = TAIL
        .replace("ENVS\n", &envs)
        .replace("MAXW", &maxw)
        .replace("@MAXT@", &MAX_THREADS.to_string())
        .replace("@THREADS@", &DEFAULT_THREADS.to_string())
        .replace("@LOG@", DEFAULT_LOG_FILTER);
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
