//! The root: `$RIP_HOME/ca/root.crt` and `root.key`, made once by `ca init`
//! and never overwritten. [`DevCa`] is a loaded root: it checks names
//! against the root's constraints and signs leaves.
//!
//! The root is P-256, valid [`ROOT_LIFETIME`] (10 years), `CA:TRUE` with
//! path length 0 (it signs leaves only), key usages keyCertSign and
//! cRLSign, a random serial, and the name constraints chosen at `ca init`.
//! A root that cannot be read or parsed, or whose key does not match it or
//! can be read by others, is an error naming the file; the file is left as
//! it is.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::CaError;
use super::constraints::NameConstraints;
use super::leaf::{self, CLOCK_SKEW_ALLOWANCE, Leaf, Signer, first_certificate, random_serial, serial_hex};
use super::names::{Host, leaf_names};
use super::store::{LeafFiles, lock_issuance};
use super::validity::{from_unix_seconds, set_validity};
use crate::config::home::{ensure_private_dir, lock_exclusive, write_private_atomically};

/// The CA's directory in `$RIP_HOME`.
pub const CA_DIR: &str = "ca";
/// The root certificate's file name in [`CA_DIR`].
pub const ROOT_CERT_FILE: &str = "root.crt";
/// The root key's file name in [`CA_DIR`].
pub const ROOT_KEY_FILE: &str = "root.key";
/// How long a root lives: 10 years (3650 days).
pub const ROOT_LIFETIME: Duration = Duration::from_secs(3650 * 24 * 60 * 60);
/// The organisation in the root's subject (also how `ca trust` names it).
pub const ROOT_ORGANIZATION: &str = "rip-server development CA";

/// Where a home's root lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootFiles {
    /// `<home>/ca`.
    pub dir: PathBuf,
    /// `<home>/ca/root.crt`.
    pub cert: PathBuf,
    /// `<home>/ca/root.key`.
    pub key: PathBuf,
}

impl RootFiles {
    /// The files of `home`'s root.
    pub fn of(home: &Path) -> RootFiles {
        let dir = home.join(CA_DIR);
        RootFiles {
            cert: dir.join(ROOT_CERT_FILE),
            key: dir.join(ROOT_KEY_FILE),
            dir,
        }
    }
}

/// The dev CA root of `$RIP_HOME/ca/` (root.crt, root.key).
pub struct DevCa {
    files: RootFiles,
    root_pem: String,
    root_der: Vec<u8>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    subject_der: Vec<u8>,
    key_id: Option<Vec<u8>>,
    constraints: NameConstraints,
    subject: String,
    serial_hex: String,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl std::fmt::Debug for DevCa {
    // By hand: the key never appears in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa")
            .field("cert", &self.files.cert)
            .field("subject", &self.subject)
            .field("serial_hex", &self.serial_hex)
            .finish_non_exhaustive()
    }
}

/// What `ca init` found or made.
#[derive(Debug)]
pub enum Initialized {
    /// A new root was written.
    Created(DevCa),
    /// A root was there already; it was kept as it is.
    Existing(DevCa),
}

impl DevCa {
    /// `Ok(None)` when there is no CA in `home`; an error (naming the file)
    /// when it is unreadable/corrupt.
    pub fn load(home: &Path) -> Result<Option<DevCa>, CaError> {
        let files = RootFiles::of(home);
        let cert_text = read_optional(&files.cert)?;
        let key_present = fs::symlink_metadata(&files.key).is_ok();
        let Some(cert_text) = cert_text else {
            if key_present {
                return Err(CaError::file(
                    &files.cert,
                    format!(
                        "missing while {ROOT_KEY_FILE} is there (a half-made or half-removed CA); restore it, or remove {} to start again",
                        files.dir.display()
                    ),
                ));
            }
            return Ok(None);
        };
        if !key_present {
            return Err(CaError::file(
                &files.key,
                format!(
                    "missing while {ROOT_CERT_FILE} is there: without its key the CA cannot sign; restore it, or remove {} to start again",
                    files.dir.display()
                ),
            ));
        }
        check_private(&files.key)?;
        let key_text = read_optional(&files.key)?.unwrap_or_default();
        let corrupt = |what: String| {
            CaError::file(
                &files.cert,
                format!("{what}; not a usable CA certificate, left as it is"),
            )
        };
        let der = first_certificate(cert_text.as_bytes()).map_err(corrupt)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| corrupt(format!("the certificate does not parse ({e})")))?;
        if !cert.is_ca() {
            return Err(corrupt("it is not a CA certificate".into()));
        }
        let constraints = NameConstraints::from_certificate(&cert).map_err(corrupt)?;
        let key = rcgen::KeyPair::from_pem(&key_text)
            .map_err(|e| CaError::file(&files.key, format!("not a PEM private key ({e}); left as it is")))?;
        if key.public_key_raw() != &cert.public_key().subject_public_key.data[..] {
            return Err(CaError::file(
                &files.key,
                format!(
                    "does not belong to {} (another key); left as it is",
                    files.cert.display()
                ),
            ));
        }
        let key_id = cert.extensions().iter().find_map(|ext| match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        });
        let subject = cert.subject().to_string();
        let subject_der = cert.subject().as_raw().to_vec();
        let serial = serial_hex(cert.raw_serial());
        let not_before = from_unix_seconds(cert.validity().not_before.timestamp());
        let not_after = from_unix_seconds(cert.validity().not_after.timestamp());
        let issuer = rcgen::Issuer::from_ca_cert_der(&der, key)
            .map_err(|e| corrupt(format!("rcgen cannot sign with it ({e})")))?;
        Ok(Some(DevCa {
            files,
            root_pem: cert_text,
            root_der: der.to_vec(),
            issuer,
            subject_der,
            key_id,
            constraints,
            subject,
            serial_hex: serial,
            not_before,
            not_after,
        }))
    }

    /// `ca init`: the root of `home`, made now if there is none (valid from
    /// `now` less an hour for 10 years, constrained to the default names
    /// plus `extra_names`). An existing root is kept as it is, whatever
    /// `extra_names` says; a corrupt one is an error and is not replaced.
    /// `owner` (e.g. `user@host`) goes into the subject, so that a trust
    /// store listing says whose CA it is.
    pub fn init(home: &Path, extra_names: &[String], owner: &str, now: SystemTime) -> Result<Initialized, CaError> {
        let files = RootFiles::of(home);
        ensure_private_dir(&files.dir).map_err(|e| CaError::file(&files.dir, format!("cannot create it ({e})")))?;
        // Two inits at once make one root.
        let lock_path = files.dir.join(".init.lock");
        let _lock =
            lock_exclusive(&lock_path).map_err(|e| CaError::file(&lock_path, format!("cannot lock it ({e})")))?;
        if let Some(existing) = DevCa::load(home)? {
            return Ok(Initialized::Existing(existing));
        }
        let failed = |e: rcgen::Error| CaError::file(&files.cert, format!("cannot make the root ({e})"));
        let mut params = rcgen::CertificateParams::default();
        let mut subject = rcgen::DistinguishedName::new();
        subject.push(rcgen::DnType::OrganizationName, ROOT_ORGANIZATION);
        subject.push(rcgen::DnType::CommonName, format!("{ROOT_ORGANIZATION} ({owner})"));
        params.distinguished_name = subject;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        params.name_constraints = NameConstraints::default_with(extra_names).to_rcgen();
        params.serial_number = Some(random_serial()?);
        set_validity(&mut params, now - CLOCK_SKEW_ALLOWANCE, now + ROOT_LIFETIME);
        let key = rcgen::KeyPair::generate().map_err(failed)?;
        let cert = params.self_signed(&key).map_err(failed)?;
        // The key first: a crash between the two leaves a key without a
        // certificate, which `load` names (never a certificate whose key is lost).
        write_private_atomically(&files.key, key.serialize_pem().as_bytes())
            .map_err(|e| CaError::file(&files.key, format!("cannot write it ({e})")))?;
        write_private_atomically(&files.cert, cert.pem().as_bytes())
            .map_err(|e| CaError::file(&files.cert, format!("cannot write it ({e})")))?;
        let made =
            DevCa::load(home)?.ok_or_else(|| CaError::file(&files.cert, "disappeared right after it was written"))?;
        Ok(Initialized::Created(made))
    }

    /// Whether `host` (a lowercase DNS name or IP text) is inside the root's
    /// name constraints.
    pub fn permits(&self, host: &str) -> bool {
        self.constraints.permits(host)
    }

    /// The leaf for `name` from `$RIP_HOME/certs/` when one there is signed
    /// by this root and does not need renewal at `now`; otherwise a new one
    /// is issued (covering name, *.name, localhost, 127.0.0.1, ::1; 7 days),
    /// written atomically 0600 into certs/, and returned. Errors when `name`
    /// is outside the constraints (the caller then serves its default).
    ///
    /// A `*.` name is the same as the name without it (a leaf covers both).
    /// The reuse path reads and parses two small files, with no signing.
    pub fn leaf_for(&self, home: &Path, name: &str, now: SystemTime) -> Result<Leaf, CaError> {
        let host = Host::parse(name).map_err(|reason| CaError::name(name, reason))?.base();
        if let Some(outside) = leaf_names(&host).into_iter().find(|n| !self.permits(n)) {
            return Err(CaError::name(
                name,
                format!(
                    "outside the dev CA's name constraints ({outside} is not in: {}); they are fixed at \"rip-server ca init --name DOMAIN\"",
                    self.constraints
                ),
            ));
        }
        let files = LeafFiles::of(home, &host.text());
        if let Some(leaf) = self.reusable(&files, &host, now) {
            return Ok(leaf);
        }
        let _lock = lock_issuance(home)?;
        // Another process may have issued it while this one waited.
        if let Some(leaf) = self.reusable(&files, &host, now) {
            return Ok(leaf);
        }
        let leaf = self.issue(&host, now)?;
        files.write(&leaf)?;
        Ok(leaf)
    }

    /// The cached leaf if it is ours, whole, for the same names and usable
    /// at `now`. Anything else (no file, a corrupt one, another root's, a
    /// key that does not match) means: issue a new one.
    fn reusable(&self, files: &LeafFiles, host: &Host, now: SystemTime) -> Option<Leaf> {
        let (leaf, provenance) = files.read()?.ok()?;
        let ours = provenance.issuer_der == self.subject_der
            && provenance.authority_key_id.is_some()
            && provenance.authority_key_id == self.key_id;
        (ours && provenance.key_matches && leaf.names == leaf_names(host) && leaf.usable_at(now)).then_some(leaf)
    }

    /// A new leaf for `host`, signed by this root, without checking the
    /// constraints (the callers do; tests use it to make a leaf clients
    /// must refuse).
    pub(super) fn issue(&self, host: &Host, now: SystemTime) -> Result<Leaf, CaError> {
        leaf::issue(
            host,
            now,
            Signer::Root {
                issuer: &self.issuer,
                root_pem: &self.root_pem,
            },
        )
    }

    /// The root's name, key identifier and key (tests sign odd leaves with it).
    #[cfg(test)]
    pub(super) fn issuer(&self) -> &rcgen::Issuer<'static, rcgen::KeyPair> {
        &self.issuer
    }

    /// The root certificate (PEM).
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// The root certificate (DER).
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// Where its files are.
    pub fn files(&self) -> &RootFiles {
        &self.files
    }

    /// Its subject, e.g. `O=rip-server development CA, CN=...`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Its serial number, lowercase hex.
    pub fn serial_hex(&self) -> &str {
        &self.serial_hex
    }

    /// Valid from.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// Valid until.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The names its leaves may cover.
    pub fn constraints(&self) -> &NameConstraints {
        &self.constraints
    }

    /// The SHA-256 fingerprint of the certificate, as `AB:CD:...` (the form
    /// `openssl x509 -fingerprint -sha256` and browsers show).
    pub fn fingerprint_sha256(&self) -> String {
        sha256(&self.root_der)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// SHA-256, from the TLS provider the server uses (aws-lc-rs), which
/// exposes its hash through a cipher suite; no second crypto library.
fn sha256(bytes: &[u8]) -> Vec<u8> {
    let rustls::SupportedCipherSuite::Tls13(suite) = rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256
    else {
        unreachable!("a TLS 1.3 suite");
    };
    suite.common.hash_provider.hash(bytes).as_ref().to_vec()
}

/// `path`'s text; `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, CaError> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| CaError::file(path, "not PEM text (corrupt?); left as it is")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CaError::file(path, format!("cannot read it ({e})"))),
    }
}

/// A key file others can read is refused (the contract's rule for keys).
fn check_private(key: &Path) -> Result<(), CaError> {
    let mode = fs::metadata(key)
        .map_err(|e| CaError::file(key, format!("cannot read it ({e})")))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(CaError::file(
            key,
            format!(
                "others can read or write it (mode {:04o}); a CA key must be private: chmod 600 {}",
                mode & 0o7777,
                key.display()
            ),
        ));
    }
    Ok(())
}

/// `user@host` for the root's subject: `user` as given (or `uid<N>`), and
/// this machine's host name.
pub fn owner_label(user: Option<&str>) -> String {
    let user = user
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("uid{}", rustix::process::getuid().as_raw()));
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| fs::read_to_string(p).ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!("{user}@{host}")
}
