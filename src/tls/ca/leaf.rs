//! Leaves: the certificates the front door serves. [`Leaf`] (what is served
//! and what `/status` shows), issuing one (signed by the root, or
//! self-signed for `https:quick`), and reading one back from PEM.
//!
//! Every generated leaf is P-256, lives [`Leaf::LIFETIME`] (7 days) from
//! one hour before `now` (a client whose clock is a little behind still
//! accepts it), has a random serial, the `serverAuth` extended key usage and
//! `CA:FALSE`, and covers the names of [`leaf_names`]. Short lives are safe
//! because renewal is automatic and checked against the clock on every use.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

use super::CaError;
use super::names::{Host, leaf_names};
use super::validity::{from_unix_seconds, set_validity};

/// How far before `now` a generated certificate starts being valid, for
/// clients whose clock is behind ours.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(60 * 60);

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
    /// The serial number, lowercase hex.
    pub serial_hex: String,
    /// Valid from.
    pub not_before: SystemTime,
    /// Valid until.
    pub not_after: SystemTime,
}

impl std::fmt::Debug for Leaf {
    // By hand: the key never appears in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaf")
            .field("names", &self.names)
            .field("subject", &self.subject)
            .field("issuer", &self.issuer)
            .field("serial_hex", &self.serial_hex)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
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

    /// Whether it can be served as it is at `now`: started, and not yet due
    /// for renewal. (A leaf from the future, after the clock went back, is
    /// not usable either.)
    pub fn usable_at(&self, now: SystemTime) -> bool {
        self.not_before <= now && !self.needs_renewal(now)
    }
}

/// What a leaf says about who signed it, for deciding whether a cached one
/// is still ours.
pub(super) struct Provenance {
    /// The Authority Key Identifier (the signer's Subject Key Identifier).
    pub authority_key_id: Option<Vec<u8>>,
    /// The issuer name, DER.
    pub issuer_der: Vec<u8>,
    /// Whether the key file holds the certificate's key.
    pub key_matches: bool,
}

/// Who signs a new leaf.
pub(super) enum Signer<'a> {
    /// The leaf signs itself (`https:quick`).
    Itself,
    /// The dev CA's root.
    Root {
        /// The root's name, key identifier and key.
        issuer: &'a rcgen::Issuer<'static, rcgen::KeyPair>,
        /// Appended to the chain.
        root_pem: &'a str,
    },
}

/// A new leaf for `host` valid from `now - CLOCK_SKEW_ALLOWANCE` to
/// `now + LIFETIME`. The caller checked the names against the root's
/// constraints (or, self-signed, there are none).
pub(super) fn issue(host: &Host, now: SystemTime, signer: Signer<'_>) -> Result<Leaf, CaError> {
    let base = host.base().text();
    let failed = |e: rcgen::Error| CaError::name(&base, format!("cannot issue a certificate ({e})"));
    let mut params = rcgen::CertificateParams::new(leaf_names(host)).map_err(failed)?;
    let mut subject = rcgen::DistinguishedName::new();
    subject.push(rcgen::DnType::CommonName, base.as_str());
    params.distinguished_name = subject;
    params.serial_number = Some(random_serial()?);
    set_validity(&mut params, now - CLOCK_SKEW_ALLOWANCE, now + Leaf::LIFETIME);
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().map_err(failed)?;
    let (cert, chain_tail) = match signer {
        Signer::Itself => (params.self_signed(&key).map_err(failed)?, ""),
        Signer::Root { issuer, root_pem } => {
            params.use_authority_key_identifier_extension = true;
            (params.signed_by(&key, issuer).map_err(failed)?, root_pem)
        }
    };
    let chain_pem = format!("{}{chain_tail}", cert.pem());
    let (leaf, _) = parse(chain_pem, key.serialize_pem())
        .map_err(|e| CaError::name(&base, format!("issued a certificate that does not parse ({e})")))?;
    Ok(leaf)
}

/// A random positive serial of 16 bytes (RFC 5280 allows 20). rcgen's
/// default is a hash of the key; a random one never repeats for a new key
/// or the same one.
pub(super) fn random_serial() -> Result<rcgen::SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| CaError::name("serial number", format!("the system's random source failed ({e})")))?;
    // Positive and of full length: top bit clear, next one set.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(rcgen::SerialNumber::from_slice(&bytes))
}

/// The first certificate of `chain_pem` (DER).
pub(super) fn first_certificate(chain_pem: &[u8]) -> Result<CertificateDer<'static>, String> {
    match CertificateDer::pem_slice_iter(chain_pem).next() {
        Some(Ok(der)) => Ok(der),
        Some(Err(e)) => Err(format!("not a PEM certificate ({e})")),
        None => Err("no PEM certificate in it".into()),
    }
}

/// Reads a leaf back: the first certificate of `chain_pem` and the key.
pub(super) fn parse(chain_pem: String, key_pem: String) -> Result<(Leaf, Provenance), String> {
    let der = first_certificate(chain_pem.as_bytes())?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| format!("the certificate does not parse ({e})"))?;
    let names = subject_alt_names(&cert)?;
    let authority_key_id = cert.extensions().iter().find_map(|ext| match ext.parsed_extension() {
        x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) => {
            aki.key_identifier.as_ref().map(|k| k.0.to_vec())
        }
        _ => None,
    });
    let key_matches = rcgen::KeyPair::from_pem(&key_pem)
        .is_ok_and(|key| key.public_key_raw() == &cert.public_key().subject_public_key.data[..]);
    let provenance = Provenance {
        authority_key_id,
        issuer_der: cert.issuer().as_raw().to_vec(),
        key_matches,
    };
    let leaf = Leaf {
        names,
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial_hex: serial_hex(cert.raw_serial()),
        not_before: from_unix_seconds(cert.validity().not_before.timestamp()),
        not_after: from_unix_seconds(cert.validity().not_after.timestamp()),
        chain_pem,
        key_pem,
    };
    Ok((leaf, provenance))
}

/// Lowercase hex of a serial's bytes, without the sign byte DER may add.
pub(super) fn serial_hex(raw: &[u8]) -> String {
    let trimmed = match raw {
        [0, rest @ ..] if !rest.is_empty() => rest,
        all => all,
    };
    trimmed.iter().map(|b| format!("{b:02x}")).collect()
}

/// The DNS names and IP addresses a certificate covers, as text.
fn subject_alt_names(cert: &x509_parser::certificate::X509Certificate<'_>) -> Result<Vec<String>, String> {
    use x509_parser::extensions::GeneralName;
    let Some(san) = cert
        .subject_alternative_name()
        .map_err(|e| format!("its subject alternative names do not parse ({e})"))?
    else {
        return Ok(Vec::new());
    };
    Ok(san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_string()),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes).ok().map(|b| IpAddr::from(b).to_string()),
                16 => <[u8; 16]>::try_from(*bytes).ok().map(|b| IpAddr::from(b).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect())
}

/// `https:quick`: a self-signed leaf covering `name` (e.g. "localhost"), plus
/// `*.<name>`, `localhost`, `127.0.0.1`, `::1`; valid 7 days from `now`.
pub fn self_signed(name: &str, now: SystemTime) -> Result<Leaf, CaError> {
    let host = Host::parse(name).map_err(|reason| CaError::name(name, reason))?;
    issue(&host, now, Signer::Itself)
}
