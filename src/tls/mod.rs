//! HTTPS: the dev CA and the certificates the front door serves.
//!
//! - [`ca`]: the dev CA written in Rust with rcgen: the name-constrained
//!   root in `$RIP_HOME/ca/`, the leaves it signs (kept in
//!   `$RIP_HOME/certs/`), self-signed certificates for `https:quick`, and
//!   the `ca` subcommands' work (trust stores included).
//! - [`resolver`]: which certificate a handshake gets (SNI, a default for
//!   clients sending none, renewal checked on every handshake).
//! - [`files`]: `cert:`/`key:` files, watched and reloaded.
//! - [`issuers`]: `https:quick` and `https:ca` as sources for the resolver.
//! - [`info`]: what a certificate says about itself (for `/status`).
//! - [`sniff`]: a connection's first bytes (TLS, plain HTTP, other) and SNI
//!   names.
//! - [`open`] picks the source a [`ServeConfig`] asks for; [`server_config`]
//!   is rustls's side: TLS 1.2 and 1.3, ALPN `http/1.1` only (the front
//!   door speaks HTTP/1), the aws-lc-rs provider.
//!
//! May import: `config`, `core`, `os`.

pub mod ca;
pub mod files;
pub mod info;
pub mod issuers;
pub mod resolver;
pub mod sniff;

use std::sync::Arc;

use crate::config::{HttpsMode, ServeConfig};
use files::{CertFiles, FileWatch};
use info::CertSource;
use resolver::{CertResolver, WallClock};

/// Why HTTPS cannot start: the command cannot be carried out as written
/// (exit 2: a missing file, `https:ca` without a CA), or something failed
/// (exit 1). One line, naming the file or the word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsError {
    Usage(String),
    Failed(String),
}

/// The certificates of one HTTPS listener and what keeps them fresh.
pub struct Certificates {
    pub resolver: Arc<CertResolver>,
    /// The `cert:`/`key:` files, when they are the source (reload on SIGHUP).
    pub files: Option<Arc<CertFiles>>,
}

impl Certificates {
    /// Starts watching the files (if they are the source); keep the guard.
    pub fn watch(&self) -> Result<Option<FileWatch>, String> {
        self.files.as_ref().map(|files| files.watch()).transpose()
    }

    /// `SIGHUP`: reads the files again (if they are the source).
    pub fn reload(&self) {
        if let Some(files) = &self.files {
            files.reload();
        }
    }
}

/// The certificate source `config` asks for: its `cert`/`key` pair, else
/// its mode (`smart`: the dev CA when `$RIP_HOME/ca/` has one, else quick;
/// the choice is logged).
pub fn open(config: &ServeConfig, clock: WallClock) -> Result<Certificates, TlsError> {
    if let (Some(cert), Some(key)) = (&config.cert, &config.key) {
        let files = CertFiles::open(cert, key, clock).map_err(TlsError::Usage)?;
        return Ok(Certificates {
            resolver: files.resolver(),
            files: Some(files),
        });
    }
    let ca = match (&config.home, config.https_mode) {
        (_, HttpsMode::Quick) => None,
        (None, HttpsMode::Ca) => {
            return Err(TlsError::Usage(format!(
                "https:ca: {} (neither RIP_HOME nor HOME is set)",
                ca::NO_CA
            )));
        }
        (None, HttpsMode::Smart) => None,
        (Some(home), mode) => match ca::DevCa::load(home) {
            Ok(Some(ca)) => Some((ca, home.clone())),
            Ok(None) if mode == HttpsMode::Ca => return Err(TlsError::Usage(format!("https:ca: {}", ca::NO_CA))),
            Ok(None) => None,
            Err(e) => return Err(TlsError::Failed(e.to_string())),
        },
    };
    let issuer: Box<dyn resolver::Issuer> = match ca {
        Some((ca, home)) => Box::new(issuers::CaIssuer { ca, home }),
        None => Box::new(issuers::QuickIssuer),
    };
    let source = issuer.source();
    let resolver = CertResolver::issuing(issuer, clock).map_err(TlsError::Failed)?;
    if config.https_mode == HttpsMode::Smart {
        tracing::info!(
            "https:smart: {}",
            match source {
                CertSource::Ca => "serving certificates signed by the dev CA",
                _ => "no dev CA (rip-server ca init makes one): serving a self-signed certificate",
            }
        );
    }
    Ok(Certificates {
        resolver: Arc::new(resolver),
        files: None,
    })
}

/// rustls's server configuration over `resolver`.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut config = rustls::ServerConfig::builder_with_provider(resolver::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
