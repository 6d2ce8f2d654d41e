//! Host names as the CA sees them: a DNS name (perhaps `*.`-prefixed) or
//! an IP address, checked before it goes into a certificate, and the names
//! a leaf covers.

use std::net::IpAddr;

/// The longest DNS name, and the longest label.
const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// The loopback names every generated leaf covers besides its own, so that
/// `https://localhost`, `https://127.0.0.1` and `https://[::1]` all verify.
pub(super) const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A name a certificate can cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Host {
    /// A DNS name, lowercase ASCII; may start with `*.`.
    Dns(String),
    /// An IP address (`[::1]` is accepted and means `::1`).
    Ip(IpAddr),
}

impl Host {
    /// Checks `text`: an IP address, or a DNS name of letters, digits and
    /// `-` labels (1..=63 each, 253 in all; ASCII letters lowercased),
    /// optionally starting with `*.`. The error says what is wrong.
    pub(super) fn parse(text: &str) -> Result<Host, String> {
        let unbracketed = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        let lower = text.to_ascii_lowercase();
        let base = lower.strip_prefix("*.").unwrap_or(&lower);
        if base.is_empty() {
            return Err("not a host name (it is empty)".into());
        }
        if lower.len() > MAX_NAME_LEN {
            return Err(format!("not a host name (over {MAX_NAME_LEN} characters)"));
        }
        for label in base.split('.') {
            let valid_chars = label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if label.is_empty()
                || label.len() > MAX_LABEL_LEN
                || !valid_chars
                || label.starts_with('-')
                || label.ends_with('-')
            {
                return Err(format!(
                    "not a host name (the label {label:?} is not 1..={MAX_LABEL_LEN} letters, digits and inner '-')"
                ));
            }
        }
        Ok(Host::Dns(lower))
    }

    /// The name without a leading `*.` (IP addresses as they are).
    pub(super) fn base(&self) -> Host {
        match self {
            Host::Dns(name) => Host::Dns(name.strip_prefix("*.").unwrap_or(name).to_string()),
            Host::Ip(ip) => Host::Ip(*ip),
        }
    }

    /// Canonical text: the DNS name, or the IP address (`::1`, no brackets).
    pub(super) fn text(&self) -> String {
        match self {
            Host::Dns(name) => name.clone(),
            Host::Ip(ip) => ip.to_string(),
        }
    }
}

/// The names a generated leaf for `host` covers, in this order and each
/// once: the name (without `*.`), `*.<name>`, `localhost`, `127.0.0.1`,
/// `::1`. No wildcard for an IP address, nor for a one-label name such as
/// `localhost`: clients refuse a wildcard over a single label (`*.localhost`
/// is a malformed name to rustls-webpki, which then refuses the whole
/// certificate), so `app.localhost` gets a leaf of its own.
pub(super) fn leaf_names(host: &Host) -> Vec<String> {
    let base = host.base();
    let mut names = vec![base.text()];
    if let Host::Dns(name) = &base
        && name.contains('.')
    {
        names.push(format!("*.{name}"));
    }
    for loopback in LOOPBACK_NAMES {
        if !names.iter().any(|n| n == loopback) {
            names.push(loopback.to_string());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_normalised() {
        assert_eq!(Host::parse("App.Localhost"), Ok(Host::Dns("app.localhost".into())));
        assert_eq!(Host::parse("*.app.test"), Ok(Host::Dns("*.app.test".into())));
        assert_eq!(Host::parse("[::1]"), Ok(Host::Ip("::1".parse().unwrap())));
        assert_eq!(Host::parse("127.0.0.1"), Ok(Host::Ip("127.0.0.1".parse().unwrap())));
        for bad in [
            "", "*.", "a..b", "-a.test", "a-.test", "a b", "a/b", "ü.test", "a.test.", "*.*.a",
        ] {
            assert!(Host::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Host::parse(&"a".repeat(64)).is_err());
        assert!(Host::parse(&["a"; 127].join(".")).is_ok(), "253 characters");
        assert!(Host::parse(&["a"; 128].join(".")).is_err());
    }

    #[test]
    fn a_leaf_covers_the_name_its_wildcard_and_the_loopback_names() {
        let names = |h: &str| leaf_names(&Host::parse(h).unwrap());
        assert_eq!(
            names("app.localhost"),
            ["app.localhost", "*.app.localhost", "localhost", "127.0.0.1", "::1"]
        );
        assert_eq!(names("*.app.test"), names("app.test"));
        assert_eq!(names("localhost"), ["localhost", "127.0.0.1", "::1"]);
        assert_eq!(names("*.localhost"), names("localhost"));
        assert_eq!(names("127.0.0.1"), ["127.0.0.1", "localhost", "::1"]);
        assert_eq!(names("[::1]"), ["::1", "localhost", "127.0.0.1"]);
    }
}
