//! What the serve command's words said, before the environment and the
//! defaults fill the gaps: the flags table writes here, `serve` reads it.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{HotReload, LbPolicy, Protocol};

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
    pub(super) cert: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
    pub(super) protocol: Option<(Protocol, String)>,
    /// The first word that asks for HTTPS (a port, `cert:`, `key:`, a protocol
    /// with https), named when HTTPS is refused.
    pub(super) https_word: Option<String>,
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
}

impl Seen {
    /// Remembers `word` as asking for HTTPS, unless an earlier word did.
    pub(super) fn note_https(&mut self, word: &str) {
        if self.https_word.is_none() {
            self.https_word = Some(word.to_string());
        }
    }
}
