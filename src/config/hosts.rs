//! The host registry: which app directory answers for which host name.
//!
//! Three layers, the first two sans-IO:
//! - [`HostName`]: a host name as a user types it, validated and normalised
//!   (lowercase, IDNA to its ASCII form, one trailing dot dropped), and
//!   [`request_host`]: the name a request's `Host` header asks for, in the
//!   same form.
//! - [`HostTable`]: what a router matches on: an exact name first, then a
//!   wildcard `*.<parent>` covering exactly one more label (the TLS rule, as
//!   in Caddy: `*.api.test` answers `v1.api.test`, not `api.test` and not
//!   `a.v1.api.test`).
//! - [`HostRegistry`] and the functions below it: `$RIP_HOME/hosts.json`,
//!   `{"hosts":{"<host>":"<absolute app dir>"}}`, written atomically (0600)
//!   and edited under an exclusive lock on `hosts.json.lock`, so that two
//!   processes adding at once both land. A file that cannot be read or does
//!   not parse is reported with one line naming it and never rewritten.
//!
//! IP literals are names too: an IPv4 address in dotted-quad form
//! (`127.0.0.1`), and an IPv6 address with or without brackets, always
//! stored with them (`[::1]`, the form it takes in a `Host` header).

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::home::{ensure_private_dir, lock_exclusive, write_private_atomically};

/// The registry's file name in `$RIP_HOME`.
pub const HOSTS_FILE: &str = "hosts.json";
/// The lock file serialising edits of [`HOSTS_FILE`].
pub const HOSTS_LOCK_FILE: &str = "hosts.json.lock";
/// The longest host name, in ASCII form.
pub const MAX_NAME_LEN: usize = 253;
/// The longest label.
pub const MAX_LABEL_LEN: usize = 63;

/// What every refusal of a host name ends with.
const EXPECTED: &str = "expected a host name such as api.test, *.api.test, 127.0.0.1 or [::1]";

/// A valid, normalised host name: an exact name, a wildcard `*.<parent>`, or
/// an IP literal. Its text is what the registry stores and what
/// [`request_host`] yields for a request to it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostName(String);

/// Special-use top-level domains (RFC 6761, RFC 6762) a wildcard may cover
/// whole: names under them never resolve publicly, and they are what
/// developers use (`*.localhost` resolves to loopback in browsers).
pub const DEVELOPMENT_DOMAINS: &[&str] = &["localhost", "test", "local"];

impl HostName {
    /// Validates and normalises `input`: ASCII letters lowercased,
    /// internationalised labels to their IDNA ASCII (`xn--`) form, one
    /// trailing dot dropped. Then each label has 1..=63 letters, digits and
    /// `-` (not first or last), the whole name at most 253 characters, the
    /// last label is not all digits (unless the name is an IPv4 address),
    /// and a leading `*.` has at least two labels after it (except the
    /// development domains `*.localhost`, `*.test`, `*.local`, which no
    /// public name can be under, and which the dev CA covers). No port, no
    /// space, no path. The error names what is wrong.
    pub fn parse(input: &str) -> Result<HostName, ConfigError> {
        normalise(input)
            .map(HostName)
            .map_err(|problem| ConfigError::new(input, format!("not a valid host name: {problem}; {EXPECTED}")))
    }

    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `*.<parent>`.
    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }

    /// The parent a wildcard covers the children of (`api.test` for `*.api.test`).
    pub fn wildcard_parent(&self) -> Option<&str> {
        self.0.strip_prefix("*.")
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The normalised text of `input`, or what is wrong with it.
fn normalise(input: &str) -> Result<String, String> {
    if input.is_empty() {
        return Err("it is empty".into());
    }
    if let Some(inside) = input.strip_prefix('[') {
        return match inside.split_once(']') {
            Some((addr, "")) => match addr.parse::<Ipv6Addr>() {
                Ok(addr) => Ok(format!("[{addr}]")),
                Err(_) => Err(format!("[{addr}] is not an IPv6 address")),
            },
            Some((_, rest)) if rest.starts_with(':') => Err(format!("it has a port ({rest})")),
            _ => Err("it starts with '[' but is not a bracketed IPv6 address".into()),
        };
    }
    if let Ok(addr) = input.parse::<Ipv6Addr>() {
        return Ok(format!("[{addr}]"));
    }
    if let Some(c) = input.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("it has a space or control character ({c:?})"));
    }
    if input.contains("://") {
        return Err("it is a URL, not a host name".into());
    }
    if input.contains('/') {
        return Err("it has a '/' (a URL or a path, not a host name)".into());
    }
    if let Some((_, port)) = input.split_once(':') {
        return Err(format!("it has a port (:{port})"));
    }
    let (wildcard, rest) = match input.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, input),
    };
    let ascii = idna::domain_to_ascii(rest)
        .map_err(|_| "it is not a valid internationalised domain name (IDNA)".to_string())?;
    let ascii = ascii.strip_suffix('.').unwrap_or(&ascii);
    if ascii.is_empty() {
        return Err(if wildcard {
            "a wildcard needs at least two labels after *. (e.g. *.api.test)".into()
        } else {
            "it is empty".into()
        });
    }
    if !wildcard && ascii.parse::<Ipv4Addr>().is_ok() {
        return Ok(ascii.to_string());
    }
    let name = if wildcard {
        format!("*.{ascii}")
    } else {
        ascii.to_string()
    };
    if name.len() > MAX_NAME_LEN {
        return Err(format!("it is {} characters long, over {MAX_NAME_LEN}", name.len()));
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    for label in &labels {
        check_label(label)?;
    }
    let last = labels[labels.len() - 1];
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "its last label ({last}) is a number, but it is not an IPv4 address (a.b.c.d)"
        ));
    }
    if wildcard && labels.len() < 2 && !DEVELOPMENT_DOMAINS.contains(&ascii) {
        return Err(format!(
            "a wildcard needs at least two labels after *. (*.{ascii} would cover a whole top-level domain; only *.localhost, *.test and *.local may)"
        ));
    }
    Ok(name)
}

fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("it has an empty label (two dots in a row, or a leading dot)".into());
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(format!(
            "the label {label} is {} characters long, over {MAX_LABEL_LEN}",
            label.len()
        ));
    }
    if let Some(c) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
        return Err(if c == '*' {
            "'*' is allowed only as the whole first label (*.api.test)".into()
        } else {
            format!("{c:?} is not allowed (labels are letters, digits and '-')")
        });
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!("the label {label} starts or ends with '-'"));
    }
    Ok(())
}

/// The name a request asks for, from its `Host` header (or the authority of
/// an absolute-form target): ASCII lowercased, the port removed, one
/// trailing dot removed; an IPv6 literal keeps its brackets, in canonical
/// form (`[::1]`). `None` when the value is not a host at all (empty, not
/// visible ASCII, a port that is not digits, a bad IPv6 literal): such a
/// request matches no entry. It does not validate the name further; a name
/// nobody registered simply finds nothing in a [`HostTable`].
pub fn request_host(header_value: &str) -> Option<String> {
    if header_value.is_empty() || !header_value.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let digits = |port: &str| port.bytes().all(|b| b.is_ascii_digit());
    if let Some(inside) = header_value.strip_prefix('[') {
        let (addr, rest) = inside.split_once(']')?;
        let port_ok = rest.is_empty() || rest.strip_prefix(':').is_some_and(digits);
        let addr: Ipv6Addr = addr.parse().ok()?;
        return port_ok.then(|| format!("[{addr}]"));
    }
    let host = match header_value.split_once(':') {
        Some((host, port)) if digits(port) => host,
        Some(_) => return None,
        None => header_value,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// Host names to values (an app, a pool), looked up the way a router needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTable<T> {
    /// Exact names.
    exact: BTreeMap<String, T>,
    /// Wildcards, by the parent they cover the children of.
    wildcard: BTreeMap<String, T>,
}

impl<T> Default for HostTable<T> {
    fn default() -> HostTable<T> {
        HostTable {
            exact: BTreeMap::new(),
            wildcard: BTreeMap::new(),
        }
    }
}

impl<T> HostTable<T> {
    /// An empty table.
    pub fn new() -> HostTable<T> {
        HostTable::default()
    }

    /// Maps `name` (exact or wildcard) to `value`; returns the value it replaces.
    pub fn insert(&mut self, name: HostName, value: T) -> Option<T> {
        match name.wildcard_parent() {
            Some(parent) => self.wildcard.insert(parent.to_string(), value),
            None => self.exact.insert(name.0, value),
        }
    }

    /// Removes `name`'s own entry (a wildcard's, for a wildcard).
    pub fn remove(&mut self, name: &HostName) -> Option<T> {
        match name.wildcard_parent() {
            Some(parent) => self.wildcard.remove(parent),
            None => self.exact.remove(name.as_str()),
        }
    }

    /// `name`'s own entry (a wildcard's, for a wildcard): no wildcard matching.
    pub fn get(&self, name: &HostName) -> Option<&T> {
        match name.wildcard_parent() {
            Some(parent) => self.wildcard.get(parent),
            None => self.exact.get(name.as_str()),
        }
    }

    /// What answers a request for `host` (as [`request_host`] gives it): the
    /// exact entry if there is one, else the wildcard `*.<parent>` where
    /// `host` is `<one label>.<parent>`. A wildcard never covers its parent
    /// itself nor a name two labels below it.
    pub fn lookup(&self, host: &str) -> Option<&T> {
        if let Some(value) = self.exact.get(host) {
            return Some(value);
        }
        let (first, parent) = host.split_once('.')?;
        if first.is_empty() {
            return None;
        }
        self.wildcard.get(parent)
    }

    /// The number of names.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    /// Whether there are no names.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every name (wildcards as `*.<parent>`) with its value, wildcards first,
    /// each kind in name order.
    pub fn iter(&self) -> impl Iterator<Item = (String, &T)> {
        let wildcards = self.wildcard.iter().map(|(parent, v)| (format!("*.{parent}"), v));
        wildcards.chain(self.exact.iter().map(|(name, v)| (name.clone(), v)))
    }
}

/// The contents of `hosts.json`: host name → absolute app directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostRegistry {
    hosts: BTreeMap<HostName, PathBuf>,
}

/// The file's JSON shape. Unknown fields are refused rather than dropped at
/// the next write.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryJson {
    hosts: BTreeMap<String, PathBuf>,
}

/// What [`HostRegistry::add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// The name is new.
    New,
    /// The name already named this directory: nothing changed.
    AlreadyThere,
}

impl HostRegistry {
    /// Parses the file's bytes; the error says what is wrong (not which file).
    pub fn from_json(bytes: &[u8]) -> Result<HostRegistry, String> {
        let file: RegistryJson = serde_json::from_slice(bytes).map_err(|e| {
            format!("not a valid host registry ({e}); expected {{\"hosts\":{{\"<host>\":\"<app dir>\"}}}}")
        })?;
        let mut hosts = BTreeMap::new();
        for (text, dir) in file.hosts {
            let name = HostName::parse(&text).map_err(|e| format!("host {text:?}: {}", e.message))?;
            if !dir.is_absolute() {
                return Err(format!(
                    "host {text:?}: the app directory {} is not absolute",
                    dir.display()
                ));
            }
            if hosts.insert(name.clone(), dir).is_some() {
                return Err(format!("host {name} appears twice (as {text:?} too)"));
            }
        }
        Ok(HostRegistry { hosts })
    }

    /// The file's text: pretty JSON, names sorted, a final newline.
    pub fn to_json(&self) -> String {
        let file = RegistryJson {
            hosts: self
                .hosts
                .iter()
                .map(|(name, dir)| (name.0.clone(), dir.clone()))
                .collect(),
        };
        let mut text = serde_json::to_string_pretty(&file).expect("a map of strings serialises");
        text.push('\n');
        text
    }

    /// Maps `host` to `app_dir` (absolute). A name already mapped to another
    /// directory is refused with that directory; the same mapping again
    /// changes nothing.
    pub fn add(&mut self, host: HostName, app_dir: PathBuf) -> Result<Added, PathBuf> {
        match self.hosts.get(&host) {
            Some(existing) if *existing == app_dir => Ok(Added::AlreadyThere),
            Some(existing) => Err(existing.clone()),
            None => {
                self.hosts.insert(host, app_dir);
                Ok(Added::New)
            }
        }
    }

    /// Removes `host`; returns the directory it named.
    pub fn remove(&mut self, host: &HostName) -> Option<PathBuf> {
        self.hosts.remove(host)
    }

    /// The directory `host` names (exactly: no wildcard matching).
    pub fn get(&self, host: &HostName) -> Option<&Path> {
        self.hosts.get(host).map(PathBuf::as_path)
    }

    /// Every name and its directory, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&HostName, &Path)> {
        self.hosts.iter().map(|(name, dir)| (name, dir.as_path()))
    }

    /// The number of names.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether no name is registered.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// The routing table of these names.
    pub fn table(&self) -> HostTable<PathBuf> {
        let mut table = HostTable::new();
        for (name, dir) in &self.hosts {
            table.insert(name.clone(), dir.clone());
        }
        table
    }
}

// --- the file ---------------------------------------------------------------

/// `$RIP_HOME/hosts.json`.
pub fn hosts_path(home: &Path) -> PathBuf {
    home.join(HOSTS_FILE)
}

/// Why the registry could not be read or changed. `Display` is one line.
#[derive(Debug)]
pub enum RegistryError {
    /// The file exists but cannot be read or parsed; it is left as it is.
    Unusable {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The home, the lock or the write failed.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done (`lock`, `write`, ...).
        action: &'static str,
        /// The error.
        error: io::Error,
    },
    /// The name is already registered for another directory.
    Claimed {
        /// The name.
        host: HostName,
        /// The directory it names.
        app_dir: PathBuf,
    },
    /// The name is not registered.
    NotRegistered {
        /// The name.
        host: HostName,
        /// The registry file.
        path: PathBuf,
    },
}

impl RegistryError {
    /// What the error is about: the file, or the host name.
    pub fn subject(&self) -> String {
        match self {
            RegistryError::Unusable { path, .. } | RegistryError::Io { path, .. } => path.display().to_string(),
            RegistryError::Claimed { host, .. } | RegistryError::NotRegistered { host, .. } => host.to_string(),
        }
    }

    /// What went wrong, without the subject.
    pub fn reason(&self) -> String {
        match self {
            RegistryError::Unusable { reason, .. } => format!("{reason}; left as it is"),
            RegistryError::Io { action, error, .. } => format!("cannot {action} ({error})"),
            RegistryError::Claimed { host, app_dir } => format!(
                "already registered for {}; a host name answers for one app (rip-server remove {host} first)",
                app_dir.display()
            ),
            RegistryError::NotRegistered { path, .. } => {
                format!("not in the host registry ({})", path.display())
            }
        }
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject(), self.reason())
    }
}

impl std::error::Error for RegistryError {}

/// Reads `$RIP_HOME/hosts.json`; no file is an empty registry. Needs no
/// lock: the file is replaced by rename, so a reader sees a whole version.
pub fn read_registry(home: &Path) -> Result<HostRegistry, RegistryError> {
    let path = hosts_path(home);
    let unusable = |reason: String| RegistryError::Unusable {
        path: path.clone(),
        reason,
    };
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HostRegistry::default()),
        Err(e) => return Err(unusable(format!("cannot read the host registry ({e})"))),
    };
    HostRegistry::from_json(&bytes).map_err(unusable)
}

/// Adds `host` → `app_dir` (absolute) to `$RIP_HOME/hosts.json`, creating
/// the home (0700) and the file (0600) if needed. See [`HostRegistry::add`].
pub fn add_host(home: &Path, host: &HostName, app_dir: &Path) -> Result<Added, RegistryError> {
    edit(home, |registry| {
        match registry.add(host.clone(), app_dir.to_path_buf()) {
            Ok(added) => Ok((added, added == Added::New)),
            Err(existing) => Err(RegistryError::Claimed {
                host: host.clone(),
                app_dir: existing,
            }),
        }
    })
}

/// Removes `host` from `$RIP_HOME/hosts.json`; returns the directory it named.
pub fn remove_host(home: &Path, host: &HostName) -> Result<PathBuf, RegistryError> {
    edit(home, |registry| match registry.remove(host) {
        Some(dir) => Ok((dir, true)),
        None => Err(RegistryError::NotRegistered {
            host: host.clone(),
            path: hosts_path(home),
        }),
    })
}

/// Read-modify-write under the lock. `change` returns its result and whether
/// it changed the registry (only then is the file written).
fn edit<R>(
    home: &Path,
    change: impl FnOnce(&mut HostRegistry) -> Result<(R, bool), RegistryError>,
) -> Result<R, RegistryError> {
    let io_error = |path: &Path, action: &'static str| {
        let path = path.to_path_buf();
        move |error| RegistryError::Io { path, action, error }
    };
    ensure_private_dir(home).map_err(io_error(home, "create the home directory"))?;
    let lock_path = home.join(HOSTS_LOCK_FILE);
    let _lock = lock_exclusive(&lock_path).map_err(io_error(&lock_path, "lock the host registry"))?;
    let mut registry = read_registry(home)?;
    let (result, changed) = change(&mut registry)?;
    if changed {
        let path = hosts_path(home);
        write_private_atomically(&path, registry.to_json().as_bytes())
            .map_err(io_error(&path, "write the host registry"))?;
    }
    Ok(result)
}

#[cfg(test)]
mod tests;
