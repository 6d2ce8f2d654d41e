//! Which certificate a TLS handshake gets: [`CertResolver`], rustls's
//! `ResolvesServerCert`, chosen by SNI with a default for clients that send
//! none (a client connecting to `127.0.0.1` sends no SNI).
//!
//! - Files (`cert:`/`key:`): one pair, the default for every name; replaced
//!   whole when the files change ([`CertResolver::replace_default`]).
//! - Generated (`https:quick`, `https:ca`): the default is the leaf for
//!   `localhost` (it covers `*.localhost`, `127.0.0.1` and `::1` too). With
//!   the dev CA, a name the default does not cover gets a leaf of its own
//!   only when it is registered ([`CertResolver::set_registered_hosts`]:
//!   `hosts.json`, an app's aliases) and inside the root's name constraints;
//!   anything else gets the default (so random names never fill `certs/`),
//!   and a registered host outside the constraints is warned about once.
//!
//! Every handshake checks the chosen leaf against the clock: inside its
//! renewal window, or expired after a laptop slept, it is reissued on the
//! spot, before the handshake goes on; a leaf that has expired and cannot
//! be reissued is never served (the handshake fails instead). Time comes
//! from an injected [`WallClock`], so tests move it without waiting.
//! Maps are `ArcSwap`s: a handshake reads with one atomic load and takes a
//! lock only to issue.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::info::{CertInfo, CertSource, TlsInfo};
use super::sniff::sni_host;
use crate::config::hosts::{HostName, HostTable};

/// The wall clock the resolver reads (injected: tests move it).
pub type WallClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The real wall clock (read through `os::clock`, the one place allowed to).
pub fn system_clock() -> WallClock {
    Arc::new(|| UNIX_EPOCH + Duration::from_micros(crate::os::clock::wall_micros()))
}

/// The name the default generated certificate is made for.
pub const DEFAULT_NAME: &str = "localhost";

/// A certificate ready to serve: rustls's key and chain, what it says about
/// itself, and when it is due for renewal (`None`: never by us).
pub struct Served {
    pub key: Arc<CertifiedKey>,
    pub info: CertInfo,
    pub renew_at: Option<SystemTime>,
}

impl fmt::Debug for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Served")
            .field("info", &self.info)
            .field("renew_at", &self.renew_at)
            .finish()
    }
}

impl Served {
    /// A chain (leaf first) and its private key, both PEM; checks that the
    /// key matches the leaf.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8], renew_at: Option<SystemTime>) -> Result<Served, String> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("not a PEM certificate chain ({e})"))?;
        let Some(leaf) = chain.first() else {
            return Err("no certificate in it (expected PEM \"BEGIN CERTIFICATE\")".into());
        };
        let info = CertInfo::from_der(leaf)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("not a PEM private key ({e})"))?;
        let provider = provider();
        let key = CertifiedKey::from_der(chain, key, &provider)
            .map_err(|e| format!("the key does not match the certificate or is not usable ({e})"))?;
        Ok(Served {
            key: Arc::new(key),
            info,
            renew_at,
        })
    }

    /// A generated leaf from the dev CA or `https:quick`.
    pub fn from_leaf(leaf: &super::ca::Leaf) -> Result<Served, String> {
        Served::from_pem(
            leaf.chain_pem.as_bytes(),
            leaf.key_pem.as_bytes(),
            Some(leaf.renew_at()),
        )
    }

    fn due(&self, now: SystemTime) -> bool {
        self.renew_at.is_some_and(|at| now >= at)
    }

    fn expired(&self, now: SystemTime) -> bool {
        now >= self.info.not_after
    }
}

/// The crypto provider: the process default if one was installed, else
/// aws-lc-rs (rustls's default; see docs/https.md for why).
pub fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// Makes certificates for a generated source.
pub trait Issuer: Send + Sync {
    /// `quick` or `ca`.
    fn source(&self) -> CertSource;
    /// A new leaf for `name`, valid from `now`.
    fn issue(&self, name: &str, now: SystemTime) -> Result<Served, String>;
    /// Whether a leaf of its own may be issued for `name` (inside the
    /// root's name constraints); `false` for self-signed certificates,
    /// which come only as the default.
    fn permits(&self, name: &str) -> bool;
}

enum Source {
    Files,
    Issuing(Box<dyn Issuer>),
}

/// The certificates the HTTPS listener serves; see the module docs.
pub struct CertResolver {
    source: Source,
    default: ArcSwap<Served>,
    named: ArcSwap<BTreeMap<String, Arc<Served>>>,
    registered: ArcSwap<HostTable<()>>,
    clock: WallClock,
    /// Held while issuing, so a burst of handshakes issues one leaf.
    issuing: Mutex<()>,
    /// Registered hosts outside the constraints, already warned about.
    warned: Mutex<BTreeSet<String>>,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver").field("info", &self.info()).finish()
    }
}

impl CertResolver {
    /// Serves one pair (from `cert:`/`key:` files) for every name.
    pub fn files(served: Served, clock: WallClock) -> CertResolver {
        CertResolver::new(Source::Files, served, clock)
    }

    /// Serves leaves made by `issuer`, the default made now for `localhost`.
    pub fn issuing(issuer: Box<dyn Issuer>, clock: WallClock) -> Result<CertResolver, String> {
        let default = issuer.issue(DEFAULT_NAME, clock())?;
        Ok(CertResolver::new(Source::Issuing(issuer), default, clock))
    }

    fn new(source: Source, default: Served, clock: WallClock) -> CertResolver {
        CertResolver {
            source,
            default: ArcSwap::from_pointee(default),
            named: ArcSwap::from_pointee(BTreeMap::new()),
            registered: ArcSwap::from_pointee(HostTable::new()),
            clock,
            issuing: Mutex::new(()),
            warned: Mutex::new(BTreeSet::new()),
        }
    }

    /// Where the certificates come from.
    pub fn source(&self) -> CertSource {
        match &self.source {
            Source::Files => CertSource::Files,
            Source::Issuing(issuer) => issuer.source(),
        }
    }

    /// Replaces the default certificate (a reloaded `cert:`/`key:` pair):
    /// new handshakes get it, open connections keep theirs.
    pub fn replace_default(&self, served: Served) {
        self.default.store(Arc::new(served));
    }

    /// The default certificate now.
    pub fn default_certificate(&self) -> Arc<Served> {
        self.default.load_full()
    }

    /// The host names that may get a leaf of their own (exact names and
    /// `*.<domain>` wildcards): the registry's and the app's aliases.
    /// Replaces the previous set.
    pub fn set_registered_hosts(&self, hosts: impl IntoIterator<Item = HostName>) {
        let mut table = HostTable::new();
        for host in hosts {
            table.insert(host, ());
        }
        self.registered.store(Arc::new(table));
    }

    /// What `/status` shows.
    pub fn info(&self) -> TlsInfo {
        let default = self.default.load();
        TlsInfo {
            source: self.source(),
            certificate: default.info.clone(),
            next_renewal: match self.source {
                Source::Files => None,
                Source::Issuing(_) => default.renew_at,
            },
        }
    }

    /// The certificate for a handshake naming `sni` (already normalised, see
    /// [`sni_host`]) at `now`: renewed first when due. `None` only when the
    /// certificate has expired and a new one cannot be made.
    pub fn certificate_for(&self, sni: Option<&str>, now: SystemTime) -> Option<Arc<Served>> {
        let Source::Issuing(issuer) = &self.source else {
            return Some(self.default.load_full());
        };
        match sni.filter(|name| self.gets_own_leaf(issuer.as_ref(), name)) {
            Some(name) => self.named_leaf(issuer.as_ref(), name, now),
            None => self.default_leaf(issuer.as_ref(), now),
        }
    }

    /// A name the default does not cover, registered, inside the constraints.
    fn gets_own_leaf(&self, issuer: &dyn Issuer, name: &str) -> bool {
        if self.default.load().info.covers(name) || self.registered.load().lookup(name).is_none() {
            return false;
        }
        if issuer.permits(name) {
            return true;
        }
        if issuer.source() == CertSource::Ca
            && let Ok(mut warned) = self.warned.lock()
            && warned.insert(name.to_owned())
        {
            tracing::warn!(
                "https: {name} is registered but outside the dev CA's name constraints: it gets the default certificate (for {DEFAULT_NAME}), which clients will refuse for it; see `rip-server ca init --name`"
            );
        }
        false
    }

    fn default_leaf(&self, issuer: &dyn Issuer, now: SystemTime) -> Option<Arc<Served>> {
        let current = self.default.load_full();
        if !current.due(now) {
            return Some(current);
        }
        let _issuing = self.issuing.lock().unwrap_or_else(|e| e.into_inner());
        // Another handshake may have renewed it while this one waited.
        let current = self.default.load_full();
        if !current.due(now) {
            return Some(current);
        }
        match issuer.issue(DEFAULT_NAME, now) {
            Ok(served) => {
                let served = Arc::new(served);
                tracing::info!(
                    "https: certificate for {DEFAULT_NAME} renewed (serial {})",
                    served.info.serial_hex
                );
                self.default.store(served.clone());
                Some(served)
            }
            Err(e) => keep_unless_expired(current, now, DEFAULT_NAME, &e),
        }
    }

    fn named_leaf(&self, issuer: &dyn Issuer, name: &str, now: SystemTime) -> Option<Arc<Served>> {
        if let Some(current) = self.named.load().get(name)
            && !current.due(now)
        {
            return Some(current.clone());
        }
        let _issuing = self.issuing.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.named.load().get(name).cloned();
        if let Some(current) = &current
            && !current.due(now)
        {
            return Some(current.clone());
        }
        match issuer.issue(name, now) {
            Ok(served) => {
                let served = Arc::new(served);
                let mut named = BTreeMap::clone(&self.named.load());
                named.insert(name.to_owned(), served.clone());
                self.named.store(Arc::new(named));
                Some(served)
            }
            Err(e) => match current {
                Some(current) => keep_unless_expired(current, now, name, &e),
                None => {
                    tracing::warn!("https: cannot issue a certificate for {name} ({e}): serving the default");
                    self.default_leaf(issuer, now)
                }
            },
        }
    }
}

fn keep_unless_expired(current: Arc<Served>, now: SystemTime, name: &str, error: &str) -> Option<Arc<Served>> {
    if current.expired(now) {
        tracing::error!(
            "https: the certificate for {name} has expired and cannot be renewed ({error}): handshake refused"
        );
        None
    } else {
        tracing::warn!(
            "https: cannot renew the certificate for {name} ({error}): serving the current one until it expires"
        );
        Some(current)
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name().and_then(sni_host);
        let now = (self.clock)();
        self.certificate_for(sni.as_deref(), now)
            .map(|served| served.key.clone())
    }
}

#[cfg(test)]
#[path = "resolver_tests.rs"]
mod tests;
