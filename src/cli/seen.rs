//! What the serve command's words said, before the environment and the
//! defaults fill the gaps: the flags table writes here, `serve` reads it.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{HotReload, HttpsMode, LbPolicy, Protocol};

/// Settings seen on the command line; `None` = not given.
#[derive(Default)]
pub(super) struct Seen {
    pub(super) app: Option<String>,
    pub(super) workers: Option<u32>,
    pub(super) max_requests: Option<Option<u64>>,
    pub(super) max_age: Option<Option<Duration>>,
    pub(super) max_reloads: Option<u32>,
    pub(super) http_port: Option<u16>,
    pub(super) bind: Option<IpAddr>,
    /// The port and the word that gave it.
    pub(super) https_port: Option<(u16, String)>,
    /// Each with the word that gave it.
    pub(super) cert: Option<(PathBuf, String)>,
    pub(super) key: Option<(PathBuf, String)>,
    pub(super) https_mode: Option<(HttpsMode, String)>,
    pub(super) protocol: Option<(Protocol, String)>,
    /// The first HTTPS word (a port, a mode, `cert:`, `key:`): without
    /// `protocol:` it means `https`; with `protocol:http` it is a mistake.
    pub(super) https_word: Option<String>,
    pub(super) no_redirect_http: bool,
    pub(super) hsts: bool,
    pub(super) max_queue: Option<usize>,
    pub(super) queue_timeout: Option<Duration>,
    pub(super) connect_timeout: Option<Duration>,
    pub(super) read_timeout: Option<Duration>,
    pub(super) retry_sent: bool,
    pub(super) hot_reload: Option<HotReload>,
    pub(super) bun_preload: Option<PathBuf>,
    pub(super) json_logging: bool,
    pub(super) no_access_log: bool,
    pub(super) variant: Option<String>,
    pub(super) socket_prefix: Option<PathBuf>,
    pub(super) lb_policy: Option<LbPolicy>,
    pub(super) upstream_max_idle: Option<u32>,
    pub(super) upstream_max_conns_per_socket: Option<u32>,
    pub(super) header_timeout: Option<Duration>,
    pub(super) response_buffer_kb: Option<u32>,
    pub(super) stuck_grace: Option<Duration>,
    pub(super) stop_timeout: Option<Duration>,
    pub(super) admin_bind: Option<IpAddr>,
    pub(super) metrics_port: Option<u16>,
    pub(super) drain_delay: Option<Duration>,
    /// `--lb-replicas`, with the word that gave it.
    pub(super) lb_replicas: Option<(usize, String)>,
}

impl Seen {
    /// Remembers `word` as asking for HTTPS, unless an earlier word did.
    pub(super) fn note_https(&mut self, word: &str) {
        if self.https_word.is_none() {
            self.https_word = Some(word.to_string());
        }
    }

    /// The HTTPS port from `word` (`https:<port>`, a bare integer,
    /// `--https-port`): one of them at most.
    pub(super) fn set_https_port(&mut self, port: u16, word: &str) -> Result<(), String> {
        once(&self.https_port, "an HTTPS port")?;
        self.https_port = Some((port, word.to_string()));
        self.note_https(word);
        Ok(())
    }

    /// `https:<mode>`: one at most.
    pub(super) fn set_https_mode(&mut self, mode: HttpsMode, word: &str) -> Result<(), String> {
        once(&self.https_mode, "a certificate mode")?;
        self.https_mode = Some((mode, word.to_string()));
        self.note_https(word);
        Ok(())
    }

    /// `cert:` / `--cert`: one at most.
    pub(super) fn set_cert(&mut self, path: PathBuf, word: &str) -> Result<(), String> {
        once(&self.cert, "a certificate")?;
        self.cert = Some((path, word.to_string()));
        self.note_https(word);
        Ok(())
    }

    /// `key:` / `--key`: one at most.
    pub(super) fn set_key(&mut self, path: PathBuf, word: &str) -> Result<(), String> {
        once(&self.key, "a key")?;
        self.key = Some((path, word.to_string()));
        self.note_https(word);
        Ok(())
    }

    /// `protocol:` / `--protocol`: one at most.
    pub(super) fn set_protocol(&mut self, protocol: Protocol, word: &str) -> Result<(), String> {
        once(&self.protocol, "a protocol")?;
        self.protocol = Some((protocol, word.to_string()));
        Ok(())
    }
}

/// The same kind of HTTPS word twice is a mistake: which one was meant?
fn once<T>(earlier: &Option<(T, String)>, what: &str) -> Result<(), String> {
    match earlier {
        Some((_, word)) => Err(format!("expected {what} only once, already have {word}")),
        None => Ok(()),
    }
}
