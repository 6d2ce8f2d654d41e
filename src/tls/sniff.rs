//! What the first bytes of a connection on the HTTPS port are: a TLS
//! handshake, plain HTTP (answered with the redirect to HTTPS, as the
//! contract asks), or neither (closed).
//!
//! A TLS connection starts with a handshake record: content type 22
//! (`0x16`), then the protocol version's major byte 3. An HTTP/1 request
//! starts with its method, a token of ASCII letters (`GET`, `POST`, ...).

/// What a connection's first bytes look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstBytes {
    /// A TLS handshake record.
    Tls,
    /// An HTTP/1 request line, as far as it has arrived.
    PlainHttp,
    /// Anything else: not worth an answer.
    Other,
    /// Nothing yet.
    Empty,
}

/// Classifies the bytes a connection sent first (as many as have arrived;
/// one is enough to decide, a second confirms a TLS record).
pub fn classify(first: &[u8]) -> FirstBytes {
    match first {
        [] => FirstBytes::Empty,
        [0x16] | [0x16, 0x03, ..] => FirstBytes::Tls,
        [0x16, ..] => FirstBytes::Other,
        [b, ..] if b.is_ascii_uppercase() => {
            // The method: letters up to the first space (or what has come).
            let method = first.iter().take_while(|b| **b != b' ').take(32);
            if method.clone().all(u8::is_ascii_alphabetic) {
                FirstBytes::PlainHttp
            } else {
                FirstBytes::Other
            }
        }
        _ => FirstBytes::Other,
    }
}

/// The name a client asked for with SNI, as the routing tables spell host
/// names: ASCII lowercase, no trailing dot; `None` for something that is
/// not a usable DNS name (rustls already refuses IP addresses and invalid
/// names in SNI; this is the last check before the name is used as a key).
pub fn sni_host(server_name: &str) -> Option<String> {
    let name = server_name.strip_suffix('.').unwrap_or(server_name);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    valid.then(|| name.to_ascii_lowercase())
}

/// The fuzz target's body (`fuzz/fuzz_targets/tls_first_bytes.rs`): for
/// any bytes, sniffing and SNI handling never panic and keep their
/// promises. Panics on a broken promise.
pub fn check(data: &[u8]) {
    let kind = classify(data);
    match kind {
        FirstBytes::Empty => assert!(data.is_empty()),
        FirstBytes::Tls => assert_eq!(data[0], 0x16),
        FirstBytes::PlainHttp => assert!(data[0].is_ascii_uppercase()),
        FirstBytes::Other => {}
    }
    // Deciding on a prefix never contradicts deciding on more bytes, except
    // that more bytes may rule a TLS or HTTP start out.
    if data.len() > 1 {
        let shorter = classify(&data[..1]);
        assert!(
            kind == shorter || kind == FirstBytes::Other,
            "{shorter:?} then {kind:?}"
        );
    }
    let text = String::from_utf8_lossy(data);
    if let Some(host) = sni_host(&text) {
        assert!(!host.is_empty() && host.len() <= 253, "{host:?}");
        assert!(!host.ends_with('.') && host == host.to_ascii_lowercase(), "{host:?}");
        assert!(
            host.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        );
        assert_eq!(sni_host(&host).as_deref(), Some(host.as_str()), "not idempotent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn classifies_first_bytes() {
        assert_eq!(classify(b""), FirstBytes::Empty);
        assert_eq!(classify(&[0x16]), FirstBytes::Tls);
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0x02]), FirstBytes::Tls);
        assert_eq!(classify(&[0x16, 0x04]), FirstBytes::Other);
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), FirstBytes::PlainHttp);
        assert_eq!(classify(b"P"), FirstBytes::PlainHttp);
        assert_eq!(classify(b"POST"), FirstBytes::PlainHttp);
        assert_eq!(classify(b"G3T /"), FirstBytes::Other);
        assert_eq!(classify(b"get /"), FirstBytes::Other);
        assert_eq!(classify(&[0x80, 0x01]), FirstBytes::Other);
        assert_eq!(classify(b"\r\nGET"), FirstBytes::Other);
    }

    #[test]
    fn sni_names_are_normalised_or_refused() {
        assert_eq!(sni_host("App.Test.").as_deref(), Some("app.test"));
        assert_eq!(sni_host("localhost").as_deref(), Some("localhost"));
        for bad in ["", ".", "a..b", "a b", "a/b", "ä.test", &"a".repeat(64)] {
            assert_eq!(sni_host(bad), None, "{bad:?}");
        }
    }

    /// The committed fuzz corpus, replayed on stable.
    #[test]
    fn fuzz_corpus_replays() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/tls_first_bytes");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).expect("corpus dir").flatten() {
            check(&std::fs::read(entry.path()).unwrap());
            count += 1;
        }
        assert!(count > 0, "empty corpus");
    }

    proptest! {
        #[test]
        fn check_holds_for_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            check(&bytes);
        }

        #[test]
        fn classify_never_panics_and_tls_means_0x16(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let kind = classify(&bytes);
            prop_assert_eq!(kind == FirstBytes::Tls, bytes.first() == Some(&0x16) && bytes.get(1).is_none_or(|b| *b == 3));
        }

        #[test]
        fn sni_host_output_is_a_lowercase_name(name in "[a-zA-Z0-9._ -]{0,40}") {
            if let Some(host) = sni_host(&name) {
                prop_assert!(!host.ends_with('.') && host == host.to_ascii_lowercase());
                prop_assert_eq!(sni_host(&host), Some(host.clone()));
            }
        }
    }
}
