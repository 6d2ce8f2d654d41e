//! The root's name constraints (RFC 5280 4.2.1.10): which names leaves
//! signed by it may cover. They are written into the root at `ca init`, so
//! every client that checks them (browsers, curl, OpenSSL, rustls) refuses
//! a leaf for any other name even if the root's key leaks.
//!
//! [`NameConstraints::permits`] applies the same rules clients apply:
//! - a DNS constraint `example.dev` permits `example.dev` and every name
//!   under it (`a.example.dev`): "adding zero or more labels to the left";
//! - with a leading dot, `.localhost` permits only names under it
//!   (`app.localhost`, not `localhost`); this is how NSS, rustls-webpki and
//!   SChannel read it, and OpenSSL agrees;
//! - a wildcard name (`*.app.test`) is compared as written, as webpki does:
//!   it is permitted when its text is;
//! - an IP constraint is a network and mask; an address is permitted when
//!   it is inside;
//! - a kind of name with no permitted subtree of its kind is not
//!   constrained; an excluded subtree wins over a permitted one.

use std::fmt;
use std::net::IpAddr;

use super::names::Host;

/// One subtree of a constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subtree {
    /// A DNS name (`localhost`) or domain (`.localhost`), lowercase.
    Dns(String),
    /// An IP network: address and mask bytes (4 or 16 of each).
    Ip {
        /// The network address.
        network: Vec<u8>,
        /// The mask.
        mask: Vec<u8>,
    },
    /// Another kind of name (not written by rip-server; shown, never matched).
    Other(String),
}

impl Subtree {
    /// An IP network from an address and a prefix length.
    pub fn ip(network: IpAddr, prefix: u8) -> Subtree {
        let octets = match network {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        let bits = octets.len() * 8;
        let prefix = usize::from(prefix).min(bits);
        let mask = (0..octets.len())
            .map(|i| {
                let ones = prefix.saturating_sub(i * 8).min(8);
                (0xffu16 << (8 - ones)) as u8
            })
            .collect();
        Subtree::Ip { network: octets, mask }
    }

    fn dns_matches(&self, name: &str) -> Option<bool> {
        let Subtree::Dns(base) = self else { return None };
        Some(if base.is_empty() {
            true
        } else if base.starts_with('.') {
            name.len() > base.len() && name.ends_with(base.as_str())
        } else {
            name == base
                || (name.len() > base.len() + 1
                    && name.ends_with(base.as_str())
                    && name.as_bytes()[name.len() - base.len() - 1] == b'.')
        })
    }

    fn ip_matches(&self, ip: IpAddr) -> Option<bool> {
        let Subtree::Ip { network, mask } = self else {
            return None;
        };
        let octets = match ip {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        // A v4 address never matches a v6 network and the reverse (RFC 5280).
        Some(
            octets.len() == network.len()
                && octets.len() == mask.len()
                && octets.iter().zip(network).zip(mask).all(|((a, n), m)| a & m == n & m),
        )
    }

    /// Whether this subtree is of `host`'s kind, and if so whether it matches.
    fn matches(&self, host: &Host) -> Option<bool> {
        match host {
            Host::Dns(name) => self.dns_matches(name),
            Host::Ip(ip) => self.ip_matches(*ip),
        }
    }

    fn to_rcgen(&self) -> Option<rcgen::GeneralSubtree> {
        match self {
            Subtree::Dns(name) => Some(rcgen::GeneralSubtree::DnsName(name.clone())),
            Subtree::Ip { network, mask } => Some(rcgen::GeneralSubtree::IpAddress(match network.len() {
                4 => rcgen::CidrSubnet::V4(network[..].try_into().ok()?, mask[..].try_into().ok()?),
                _ => rcgen::CidrSubnet::V6(network[..].try_into().ok()?, mask[..].try_into().ok()?),
            })),
            Subtree::Other(_) => None,
        }
    }
}

impl fmt::Display for Subtree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subtree::Dns(name) => f.write_str(name),
            Subtree::Ip { network, mask } => {
                let address = match network.len() {
                    4 => <[u8; 4]>::try_from(&network[..]).map(IpAddr::from).ok(),
                    16 => <[u8; 16]>::try_from(&network[..]).map(IpAddr::from).ok(),
                    _ => None,
                };
                let ones: u32 = mask.iter().map(|m| m.count_ones()).sum();
                let contiguous = mask
                    .iter()
                    .map(|m| format!("{m:08b}"))
                    .collect::<String>()
                    .trim_end_matches('0')
                    .chars()
                    .all(|c| c == '1');
                match address {
                    Some(a) if contiguous => write!(f, "{a}/{ones}"),
                    _ => write!(f, "IP {network:02x?} mask {mask:02x?}"),
                }
            }
            Subtree::Other(text) => f.write_str(text),
        }
    }
}

/// A root's name constraints. Empty lists: no constraint at all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NameConstraints {
    /// Names must match one of these (per kind of name).
    pub permitted: Vec<Subtree>,
    /// Names must match none of these.
    pub excluded: Vec<Subtree>,
}

/// The DNS part of the contract's default: `localhost` and the development
/// domains (RFC 6761: `.localhost`, `.test`; RFC 6762: `.local`).
pub const DEFAULT_DNS: [&str; 4] = ["localhost", ".localhost", ".test", ".local"];

impl NameConstraints {
    /// The contract's default (`localhost`, `.localhost`, `.test`, `.local`,
    /// 127.0.0.0/8, ::1) plus `extra_dns` (each permits the name and every
    /// name under it). The loopback names stay whatever is added: every
    /// leaf covers `localhost`, `127.0.0.1` and `::1`, and a leaf with one
    /// name outside the constraints is refused whole.
    pub fn default_with(extra_dns: &[String]) -> NameConstraints {
        let mut permitted: Vec<Subtree> = DEFAULT_DNS.iter().map(|d| Subtree::Dns(d.to_string())).collect();
        for name in extra_dns {
            let subtree = Subtree::Dns(name.to_ascii_lowercase());
            if !permitted.contains(&subtree) {
                permitted.push(subtree);
            }
        }
        permitted.push(Subtree::ip(IpAddr::from([127, 0, 0, 0]), 8));
        permitted.push(Subtree::ip(IpAddr::from(std::net::Ipv6Addr::LOCALHOST), 128));
        NameConstraints {
            permitted,
            excluded: Vec::new(),
        }
    }

    /// Whether a leaf may cover `host` (a DNS name, `*.` name or IP text).
    /// Text that is not a host name is not permitted.
    pub fn permits(&self, host: &str) -> bool {
        match Host::parse(host) {
            Ok(host) => self.permits_host(&host),
            Err(_) => false,
        }
    }

    pub(super) fn permits_host(&self, host: &Host) -> bool {
        if self.excluded.iter().any(|s| s.matches(host) == Some(true)) {
            return false;
        }
        let of_its_kind: Vec<bool> = self.permitted.iter().filter_map(|s| s.matches(host)).collect();
        of_its_kind.is_empty() || of_its_kind.contains(&true)
    }

    /// The extension for rcgen (`None` when there is no constraint).
    pub(super) fn to_rcgen(&self) -> Option<rcgen::NameConstraints> {
        if self.permitted.is_empty() && self.excluded.is_empty() {
            return None;
        }
        Some(rcgen::NameConstraints {
            permitted_subtrees: self.permitted.iter().filter_map(Subtree::to_rcgen).collect(),
            excluded_subtrees: self.excluded.iter().filter_map(Subtree::to_rcgen).collect(),
        })
    }

    /// The constraints of a parsed certificate; `Err` when the extension is
    /// there but malformed.
    pub(super) fn from_certificate(
        cert: &x509_parser::certificate::X509Certificate<'_>,
    ) -> Result<NameConstraints, String> {
        let extension = cert
            .name_constraints()
            .map_err(|e| format!("its name constraints do not parse ({e})"))?;
        let Some(extension) = extension else {
            return Ok(NameConstraints::default());
        };
        let convert = |subtrees: &Option<Vec<x509_parser::extensions::GeneralSubtree<'_>>>| -> Vec<Subtree> {
            subtrees
                .iter()
                .flatten()
                .map(|subtree| {
                    use x509_parser::extensions::GeneralName;
                    match &subtree.base {
                        GeneralName::DNSName(name) => Subtree::Dns(name.to_ascii_lowercase()),
                        GeneralName::IPAddress(bytes) if bytes.len() == 8 || bytes.len() == 32 => {
                            let half = bytes.len() / 2;
                            Subtree::Ip {
                                network: bytes[..half].to_vec(),
                                mask: bytes[half..].to_vec(),
                            }
                        }
                        other => Subtree::Other(format!("{other}")),
                    }
                })
                .collect()
        };
        Ok(NameConstraints {
            permitted: convert(&extension.value.permitted_subtrees),
            excluded: convert(&extension.value.excluded_subtrees),
        })
    }
}

impl fmt::Display for NameConstraints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.permitted.is_empty() && self.excluded.is_empty() {
            return f.write_str("none (any name)");
        }
        let list = |subtrees: &[Subtree]| subtrees.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        if !self.permitted.is_empty() {
            write!(f, "{}", list(&self.permitted))?;
        }
        if !self.excluded.is_empty() {
            let sep = if self.permitted.is_empty() { "" } else { "; " };
            write!(f, "{sep}excluded: {}", list(&self.excluded))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_permits_the_development_names_and_loopback_only() {
        let c = NameConstraints::default_with(&[]);
        for yes in [
            "localhost",
            "app.localhost",
            "a.b.localhost",
            "*.localhost",
            "*.app.localhost",
            "app.test",
            "printer.local",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
        ] {
            assert!(c.permits(yes), "{yes}");
        }
        for no in [
            "test",
            "local",
            "example.com",
            "localhost.example.com",
            "notlocalhost",
            "evil-localhost",
            "app.testing",
            "10.0.0.1",
            "128.0.0.1",
            "::2",
            "::ffff:127.0.0.1",
            "",
            "a b",
        ] {
            assert!(!c.permits(no), "{no}");
        }
        assert_eq!(
            c.to_string(),
            "localhost, .localhost, .test, .local, 127.0.0.0/8, ::1/128"
        );
    }

    #[test]
    fn an_added_name_permits_itself_and_its_subdomains() {
        let c = NameConstraints::default_with(&["example.dev".into(), "Example.dev".into()]);
        assert_eq!(c.permitted.len(), 7, "added once");
        for yes in ["example.dev", "api.example.dev", "*.example.dev", "localhost"] {
            assert!(c.permits(yes), "{yes}");
        }
        for no in ["badexample.dev", "dev", "example.dev.evil"] {
            assert!(!c.permits(no), "{no}");
        }
    }

    #[test]
    fn excluded_wins_and_an_unconstrained_kind_is_permitted() {
        let c = NameConstraints {
            permitted: vec![Subtree::Dns("test".into())],
            excluded: vec![Subtree::Dns("bad.test".into())],
        };
        assert!(c.permits("ok.test"));
        assert!(!c.permits("x.bad.test"));
        assert!(c.permits("10.0.0.1"), "no IP subtree: IPs are not constrained");
        assert!(NameConstraints::default().permits("example.com"));
        assert_eq!(NameConstraints::default().to_string(), "none (any name)");
    }

    #[test]
    fn prefixes_become_masks() {
        assert_eq!(
            Subtree::ip("10.1.0.0".parse().unwrap(), 12),
            Subtree::Ip {
                network: vec![10, 1, 0, 0],
                mask: vec![255, 240, 0, 0]
            }
        );
        assert_eq!(Subtree::ip("10.1.0.0".parse().unwrap(), 12).to_string(), "10.1.0.0/12");
        assert_eq!(Subtree::ip("::".parse().unwrap(), 0).to_string(), "::/0");
    }
}
