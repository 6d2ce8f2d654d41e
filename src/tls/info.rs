//! What a served certificate says about itself, read from its DER with
//! x509-parser: the names it covers, subject, issuer, serial, validity.
//! This is what `/status` shows (never key material) and what the resolver
//! needs to decide whether a certificate covers a name or is due for renewal.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::extensions::GeneralName;

/// Where the certificates come from, as `/status` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertSource {
    /// `cert:`/`key:` files.
    Files,
    /// `https:quick`: self-signed, renewed in place.
    Quick,
    /// The dev CA of `$RIP_HOME/ca/`.
    Ca,
}

impl CertSource {
    /// `files`, `quick` or `ca`.
    pub fn as_str(self) -> &'static str {
        match self {
            CertSource::Files => "files",
            CertSource::Quick => "quick",
            CertSource::Ca => "ca",
        }
    }
}

/// The public facts of one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// e.g. `CN=localhost`.
    pub subject: String,
    /// The DNS names and IP addresses it covers, as text.
    pub names: Vec<String>,
    /// The issuer's name (the subject again when self-signed).
    pub issuer: String,
    /// Lowercase hex, no separators.
    pub serial_hex: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// What the front door serves right now, for `/status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    pub source: CertSource,
    /// The default certificate (the one a client sending no SNI gets).
    pub certificate: CertInfo,
    /// When the default certificate is renewed next (`None` for files,
    /// which are reloaded when they change instead).
    pub next_renewal: Option<SystemTime>,
}

impl CertInfo {
    /// Reads a certificate (DER).
    pub fn from_der(der: &[u8]) -> Result<CertInfo, String> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| format!("not an X.509 certificate ({e})"))?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => names.push(dns.to_ascii_lowercase()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            names.push(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        let validity = cert.validity();
        Ok(CertInfo {
            subject: cert.subject().to_string(),
            names,
            issuer: cert.issuer().to_string(),
            serial_hex: cert
                .tbs_certificate
                .raw_serial()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            not_before: system_time(validity.not_before.timestamp()),
            not_after: system_time(validity.not_after.timestamp()),
        })
    }

    /// Whether the certificate names `host` (lowercase; a DNS name or an IP
    /// address as text): exactly, or through a wildcard one label up.
    pub fn covers(&self, host: &str) -> bool {
        self.names.iter().any(|name| match name.strip_prefix("*.") {
            Some(parent) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
            None => name == host,
        })
    }

    /// How long until it expires at `now` (zero once it has).
    pub fn time_left(&self, now: SystemTime) -> Duration {
        self.not_after.duration_since(now).unwrap_or(Duration::ZERO)
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

fn system_time(unix_seconds: i64) -> SystemTime {
    match u64::try_from(unix_seconds) {
        Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => UNIX_EPOCH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(names: &[&str]) -> CertInfo {
        CertInfo {
            subject: String::new(),
            names: names.iter().map(|n| n.to_string()).collect(),
            issuer: String::new(),
            serial_hex: String::new(),
            not_before: UNIX_EPOCH,
            not_after: UNIX_EPOCH,
        }
    }

    #[test]
    fn covers_exact_names_and_one_wildcard_label() {
        let c = info(&["localhost", "*.localhost", "127.0.0.1", "::1"]);
        for yes in ["localhost", "app.localhost", "127.0.0.1", "::1"] {
            assert!(c.covers(yes), "{yes}");
        }
        for no in ["a.b.localhost", ".localhost", "localhostx", "example.com", "127.0.0.2"] {
            assert!(!c.covers(no), "{no}");
        }
    }

    #[test]
    fn reads_a_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["app.test".to_string(), "127.0.0.1".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let info = CertInfo::from_der(cert.der()).unwrap();
        assert_eq!(info.names, vec!["app.test", "127.0.0.1"]);
        assert!(!info.serial_hex.is_empty());
        assert!(info.not_after > info.not_before);
        assert!(CertInfo::from_der(b"nonsense").is_err());
    }
}
