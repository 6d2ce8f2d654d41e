//! The dev CA (being built): the published API first, bodies next.

use std::path::Path;
use std::time::{Duration, SystemTime};

/// The exact line of the contract, for every `ca` subcommand but `init`
/// without a CA and for `https:ca` without one.
pub const NO_CA: &str = "No CA found. Run \"rip-server ca init\" first.";

/// A certificate and its key, ready to serve (PEM), with what /status shows.
#[derive(Clone)]
pub struct Leaf {
    /// The leaf certificate, then (for CA-signed) the root.
    pub chain_pem: String,
    /// PKCS#8 private key (never logged, never in /status).
    pub key_pem: String,
    /// DNS names and IPs it covers, as text.
    pub names: Vec<String>,
    /// e.g. "CN=localhost".
    pub subject: String,
    /// e.g. "CN=rip-server development CA ..." or the subject when self-signed.
    pub issuer: String,
    /// The serial number in hex.
    pub serial_hex: String,
    /// Valid from.
    pub not_before: SystemTime,
    /// Valid until.
    pub not_after: SystemTime,
}

impl Leaf {
    /// How long a generated leaf lives: 7 days.
    pub const LIFETIME: Duration = Duration::from_secs(7 * 24 * 60 * 60);

    /// When it is renewed: `not_after - LIFETIME/3` (a third left).
    pub fn renew_at(&self) -> SystemTime {
        self.not_after - Self::LIFETIME / 3
    }

    /// `now >= renew_at` (so also when expired).
    pub fn needs_renewal(&self, now: SystemTime) -> bool {
        now >= self.renew_at()
    }
}

/// `https:quick`: a self-signed leaf covering `name` (e.g. "localhost"), plus
/// `*.<name>`, `localhost`, `127.0.0.1`, `::1`; valid 7 days from `now`.
pub fn self_signed(_name: &str, _now: SystemTime) -> Result<Leaf, CaError> {
    todo!()
}

/// The dev CA root of `$RIP_HOME/ca/` (root.crt, root.key).
pub struct DevCa {
    root_pem: String,
}

impl DevCa {
    /// `Ok(None)` when there is no CA in `home`; an error (naming the file)
    /// when it is unreadable/corrupt.
    pub fn load(_home: &Path) -> Result<Option<DevCa>, CaError> {
        todo!()
    }

    /// Whether `host` (a lowercase DNS name or IP text) is inside the root's
    /// name constraints.
    pub fn permits(&self, _host: &str) -> bool {
        todo!()
    }

    /// The leaf for `name` from `$RIP_HOME/certs/` when one there is signed
    /// by this root and does not need renewal at `now`; otherwise a new one
    /// is issued (covering name, *.name, localhost, 127.0.0.1, ::1; 7 days),
    /// written atomically 0600 into certs/, and returned. Errors when `name`
    /// is outside the constraints (the caller then serves its default).
    pub fn leaf_for(&self, _home: &Path, _name: &str, _now: SystemTime) -> Result<Leaf, CaError> {
        todo!()
    }

    /// The root certificate (PEM).
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }
}

/// One-line error naming the file or the name; Display is the line the CLI prints.
#[derive(Debug)]
pub struct CaError {
    message: String,
}

impl std::fmt::Display for CaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CaError {}
