//! The CA as clients see it: leaves verified by rustls's webpki verifier
//! with a trust store holding only the root (the constraints are enforced
//! by the verifier, not by us), renewal with injected times, and the files
//! on disk (modes, a corrupt root kept, a corrupt cache replaced).

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::ServerCertVerifier as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::names::Host;
use super::store::{LeafFiles, certs_dir};
use super::*;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// A fixed "now": nothing here depends on the real clock.
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn new_ca(home: &Path, names: &[&str]) -> DevCa {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    match DevCa::init(home, &names, "tester@test-host", t0()).unwrap() {
        Initialized::Created(ca) => ca,
        Initialized::Existing(_) => panic!("expected a new CA"),
    }
}

/// Verifies `leaf` for `server_name` at `at` against a trust store that
/// holds only `root_pem`, as a rustls client does.
fn verify(root_pem: &str, leaf: &Leaf, server_name: &str, at: SystemTime) -> Result<(), rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(root_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .unwrap();
    let chain: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(leaf.chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    let at = UnixTime::since_unix_epoch(at.duration_since(UNIX_EPOCH).unwrap());
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &name, &[], at)
        .map(|_| ())
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_leaf_verifies_against_the_root_for_every_name_it_covers() {
    let home = tempfile::tempdir().unwrap();
    let ca = new_ca(home.path(), &[]);
    let now = t0() + HOUR;
    let localhost = ca.leaf_for(home.path(), "localhost", now).unwrap();
    assert_eq!(
        localhost.names,
        ["localhost", "127.0.0.1", "::1"],
        "no *.localhost: clients refuse it"
    );
    for name in ["localhost", "127.0.0.1", "::1"] {
        verify(ca.root_pem(), &localhost, name, now).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    let app = ca.leaf_for(home.path(), "app.localhost", now).unwrap();
    assert_eq!(
        app.names,
        ["app.localhost", "*.app.localhost", "localhost", "127.0.0.1", "::1"]
    );
    for name in ["app.localhost", "v1.app.localhost", "localhost", "127.0.0.1", "::1"] {
        verify(ca.root_pem(), &app, name, now).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    // A name it does not cover is refused (the verifier really checks).
    assert!(verify(ca.root_pem(), &app, "other.localhost", now).is_err());
    let test = ca.leaf_for(home.path(), "shop.test", now).unwrap();
    verify(ca.root_pem(), &test, "shop.test", now).unwrap();
    let ip = ca.leaf_for(home.path(), "127.0.0.1", now).unwrap();
    assert_eq!(ip.names, ["127.0.0.1", "localhost", "::1"]);
    verify(ca.root_pem(), &ip, "127.0.0.1", now).unwrap();
    assert_eq!(app.subject, "CN=app.localhost");
    assert_eq!(app.issuer, ca.subject());
    assert!(
        ca.subject().contains("rip-server development CA (tester@test-host)"),
        "{}",
        ca.subject()
    );
    // The chain is the leaf then the root.
    assert!(app.chain_pem.ends_with(ca.root_pem()));
    assert!(app.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
}

#[test]
fn a_leaf_for_a_name_outside_the_constraints_is_refused_by_the_client() {
    let home = tempfile::tempdir().unwrap();
    let ca = new_ca(home.path(), &[]);
    let now = t0() + HOUR;
    // leaf_for refuses to issue it...
    let e = ca.leaf_for(home.path(), "example.com", now).unwrap_err();
    assert!(
        e.to_string().contains("example.com") && e.to_string().contains("name constraints"),
        "{e}"
    );
    assert!(!LeafFiles::of(home.path(), "example.com").cert.exists());
    // ...and a leaf signed anyway (bypassing permits) is refused by the
    // client: the constraints are in the root.
    let rogue = ca.issue(&Host::parse("example.com").unwrap(), now).unwrap();
    let e = verify(ca.root_pem(), &rogue, "example.com", now).unwrap_err();
    assert!(format!("{e:?}").contains("NameConstraint"), "{e:?}");
    // The same path for a permitted name verifies: it is the name that fails.
    let fine = ca.issue(&Host::parse("fine.test").unwrap(), now).unwrap();
    verify(ca.root_pem(), &fine, "fine.test", now).unwrap();
    // An IP outside 127.0.0.0/8 too.
    let rogue_ip = ca.issue(&Host::parse("10.0.0.1").unwrap(), now).unwrap();
    assert!(verify(ca.root_pem(), &rogue_ip, "10.0.0.1", now).is_err());
}

#[test]
fn init_names_add_to_the_default_constraints() {
    let home = tempfile::tempdir().unwrap();
    let ca = new_ca(home.path(), &["example.dev"]);
    let now = t0() + HOUR;
    assert_eq!(
        ca.constraints().to_string(),
        "localhost, .localhost, .test, .local, example.dev, 127.0.0.0/8, ::1/128"
    );
    let leaf = ca.leaf_for(home.path(), "api.example.dev", now).unwrap();
    verify(ca.root_pem(), &leaf, "api.example.dev", now).unwrap();
    verify(ca.root_pem(), &leaf, "localhost", now).unwrap();
    assert!(ca.leaf_for(home.path(), "example.com", now).is_err());
}

#[test]
fn leaf_for_reuses_until_a_third_is_left_then_reissues_and_never_returns_an_expired_leaf() {
    let home = tempfile::tempdir().unwrap();
    let ca = new_ca(home.path(), &[]);
    let issued_at = t0() + HOUR;
    let first = ca.leaf_for(home.path(), "app.localhost", issued_at).unwrap();
    assert_eq!(first.not_after, issued_at + Leaf::LIFETIME);
    assert_eq!(first.not_before, issued_at - leaf::CLOCK_SKEW_ALLOWANCE);
    assert_eq!(first.renew_at(), first.not_after - Duration::from_secs(56 * 3600));
    // Reused (same serial, from certs/) up to just before renew_at.
    for later in [issued_at, issued_at + DAY, first.renew_at() - Duration::from_secs(1)] {
        let again = ca.leaf_for(home.path(), "app.localhost", later).unwrap();
        assert_eq!(again.serial_hex, first.serial_hex, "at {later:?}");
    }
    // At renew_at: a new one, written, then reused.
    let renewed = ca.leaf_for(home.path(), "app.localhost", first.renew_at()).unwrap();
    assert_ne!(renewed.serial_hex, first.serial_hex);
    assert_eq!(renewed.not_after, first.renew_at() + Leaf::LIFETIME);
    let again = ca
        .leaf_for(home.path(), "app.localhost", first.renew_at() + HOUR)
        .unwrap();
    assert_eq!(again.serial_hex, renewed.serial_hex);
    // Long after expiry (a laptop asleep for a month): a fresh, valid one.
    let wake = first.not_after + 30 * DAY;
    let woke = ca.leaf_for(home.path(), "app.localhost", wake).unwrap();
    assert!(woke.not_before <= wake && !woke.needs_renewal(wake), "{woke:?}");
    verify(ca.root_pem(), &woke, "app.localhost", wake).unwrap();
    // Whatever the time, what comes back verifies then and is not due.
    for hours in (0..24 * 40).step_by(7) {
        let at = issued_at + HOUR * hours;
        let leaf = ca.leaf_for(home.path(), "app.localhost", at).unwrap();
        assert!(leaf.usable_at(at) && leaf.not_after > at, "at +{hours}h: {leaf:?}");
    }
    // A clock that went back before the cached leaf's start gets a new one.
    let before = ca.leaf_for(home.path(), "app.localhost", issued_at - 2 * DAY).unwrap();
    assert!(before.not_before <= issued_at - 2 * DAY);
}

#[test]
fn a_wildcard_name_is_its_base_name() {
    let home = tempfile::tempdir().unwrap();
    let ca = new_ca(home.path(), &[]);
    let now = t0() + HOUR;
    let base = ca.leaf_for(home.path(), "app.test", now).unwrap();
    let wild = ca.leaf_for(home.path(), "*.app.test", now).unwrap();
    assert_eq!(base.serial_hex, wild.serial_hex);
}

#[test]
fn files_are_private() {
    let home = tempfile::tempdir().unwrap();
    let ca = new_ca(home.path(), &[]);
    ca.leaf_for(home.path(), "localhost", t0()).unwrap();
    let files = LeafFiles::of(home.path(), "localhost");
    for dir in [ca.files().dir.as_path(), &certs_dir(home.path())] {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
    }
    for file in [&ca.files().cert, &ca.files().key, &files.cert, &files.key] {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
}

#[test]
fn a_key_others_can_read_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let ca = new_ca(home.path(), &[]);
    let key = ca.files().key.clone();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let e = DevCa::load(home.path()).unwrap_err().to_string();
    assert!(e.contains(&key.display().to_string()) && e.contains("chmod 600"), "{e}");
    assert!(!e.contains('\n'));
}

#[test]
fn a_corrupt_root_is_an_error_naming_it_and_is_never_overwritten() {
    let home = tempfile::tempdir().unwrap();
    let ca = new_ca(home.path(), &[]);
    let cert = ca.files().cert.clone();
    let key = ca.files().key.clone();
    let key_bytes = fs::read(&key).unwrap();
    for garbage in [
        &b"not a certificate"[..],
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        b"\xff\xfe",
    ] {
        fs::write(&cert, garbage).unwrap();
        let e = DevCa::load(home.path()).unwrap_err().to_string();
        assert!(e.contains(&cert.display().to_string()), "{e}");
        assert!(DevCa::init(home.path(), &[], "x@y", t0()).is_err());
        assert_eq!(fs::read(&cert).unwrap(), garbage, "kept as it was");
        assert_eq!(fs::read(&key).unwrap(), key_bytes);
    }
    // A key that is not the root's.
    let other = tempfile::tempdir().unwrap();
    let other_ca = new_ca(other.path(), &[]);
    fs::write(&cert, ca.root_pem()).unwrap();
    fs::copy(&other_ca.files().key, &key).unwrap();
    let e = DevCa::load(home.path()).unwrap_err().to_string();
    assert!(
        e.contains(&key.display().to_string()) && e.contains("does not belong"),
        "{e}"
    );
    // Half a CA: each missing file is named.
    fs::remove_file(&key).unwrap();
    let e = DevCa::load(home.path()).unwrap_err().to_string();
    assert!(e.contains(&key.display().to_string()), "{e}");
    fs::remove_file(&cert).unwrap();
    fs::write(&key, &key_bytes).unwrap();
    let e = DevCa::load(home.path()).unwrap_err().to_string();
    assert!(e.contains(&cert.display().to_string()), "{e}");
    // Nothing at all: no CA.
    fs::remove_file(&key).unwrap();
    assert!(DevCa::load(home.path()).unwrap().is_none());
}

#[test]
fn a_corrupt_or_foreign_cached_leaf_is_replaced() {
    let home = tempfile::tempdir().unwrap();
    let ca = new_ca(home.path(), &[]);
    let now = t0() + HOUR;
    let files = LeafFiles::of(home.path(), "localhost");
    let first = ca.leaf_for(home.path(), "localhost", now).unwrap();
    fs::write(&files.cert, "garbage").unwrap();
    let replaced = ca.leaf_for(home.path(), "localhost", now).unwrap();
    assert_ne!(replaced.serial_hex, first.serial_hex);
    assert_eq!(fs::read_to_string(&files.cert).unwrap(), replaced.chain_pem);
    verify(ca.root_pem(), &replaced, "localhost", now).unwrap();
    // A key that does not match its certificate.
    let other = self_signed("localhost", now).unwrap();
    fs::write(&files.key, &other.key_pem).unwrap();
    let rekeyed = ca.leaf_for(home.path(), "localhost", now).unwrap();
    assert_ne!(rekeyed.serial_hex, replaced.serial_hex);
    // A leaf of another root (the CA was made again): not reused.
    fs::remove_dir_all(&ca.files().dir).unwrap();
    let second = new_ca(home.path(), &[]);
    let fresh = second.leaf_for(home.path(), "localhost", now).unwrap();
    assert_ne!(fresh.serial_hex, rekeyed.serial_hex);
    verify(second.root_pem(), &fresh, "localhost", now).unwrap();
    assert!(verify(ca.root_pem(), &fresh, "localhost", now).is_err());
}

#[test]
fn init_twice_keeps_the_root() {
    let home = tempfile::tempdir().unwrap();
    let ca = new_ca(home.path(), &[]);
    let pem = fs::read(&ca.files().cert).unwrap();
    match DevCa::init(home.path(), &["other.dev".into()], "x@y", t0() + DAY).unwrap() {
        Initialized::Existing(again) => assert_eq!(again.fingerprint_sha256(), ca.fingerprint_sha256()),
        Initialized::Created(_) => panic!("made a second root"),
    }
    assert_eq!(fs::read(&ca.files().cert).unwrap(), pem);
    let fp = ca.fingerprint_sha256();
    assert_eq!(fp.len(), 32 * 3 - 1, "{fp}");
    assert_eq!(ca.not_after(), t0() + root::ROOT_LIFETIME);
}

#[test]
fn self_signed_covers_the_name_and_loopback_for_seven_days() {
    let now = t0();
    let leaf = self_signed("localhost", now).unwrap();
    assert_eq!(leaf.names, ["localhost", "127.0.0.1", "::1"]);
    assert_eq!(leaf.subject, leaf.issuer);
    assert_eq!(leaf.not_after, now + Leaf::LIFETIME);
    assert!(leaf.usable_at(now) && leaf.needs_renewal(leaf.renew_at()));
    // Its chain is the one certificate.
    assert_eq!(CertificateDer::pem_slice_iter(leaf.chain_pem.as_bytes()).count(), 1);
    let other = self_signed("app.test", now).unwrap();
    assert_eq!(other.names, ["app.test", "*.app.test", "localhost", "127.0.0.1", "::1"]);
    assert_ne!(other.serial_hex, leaf.serial_hex);
    assert!(self_signed("not a name", now).is_err());
}

#[test]
fn keys_stay_out_of_debug_output_and_the_ca_can_be_shared() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<DevCa>();
    shared::<Leaf>();
    let leaf = self_signed("localhost", t0()).unwrap();
    let shown = format!("{leaf:?}");
    assert!(
        !shown.contains("PRIVATE") && !shown.contains(&leaf.key_pem[40..80]),
        "{shown}"
    );
}

#[test]
fn no_ca_is_the_contract_line() {
    assert_eq!(
        CaError::no_ca().to_string(),
        "No CA found. Run \"rip-server ca init\" first."
    );
    assert_eq!(
        CaError::file(Path::new("/x\ny"), "bad").to_string(),
        "rip-server: /x\\ny: bad"
    );
}

/// A leaf covering only `name`, signed by `ca` whatever its constraints say.
fn single_name_leaf(ca: &DevCa, name: &str, now: SystemTime) -> Leaf {
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    validity::set_validity(&mut params, now - HOUR, now + DAY);
    params.use_authority_key_identifier_extension = true;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca.issuer()).unwrap();
    Leaf {
        chain_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        names: vec![name.to_string()],
        subject: String::new(),
        issuer: String::new(),
        serial_hex: String::new(),
        not_before: now - HOUR,
        not_after: now + DAY,
    }
}

/// `permits` decides as a client does: for generated names and addresses,
/// rustls's webpki verifier accepts a leaf covering just that name exactly
/// when `permits` says yes.
#[test]
fn permits_agrees_with_the_verifier() {
    use proptest::prelude::*;
    let home = tempfile::tempdir().unwrap();
    let ca = new_ca(home.path(), &["example.dev"]);
    let now = t0() + HOUR;
    let label = prop::sample::select(vec![
        "localhost",
        "test",
        "local",
        "example",
        "dev",
        "a",
        "b-c",
        "xn--bcher-kva",
        "localhostx",
    ]);
    let dns = prop::collection::vec(label, 1..4).prop_map(|labels| labels.join("."));
    let ip = prop_oneof![
        any::<[u8; 4]>().prop_map(|o| std::net::IpAddr::from(o).to_string()),
        Just("127.0.0.1".to_string()),
        Just("127.255.0.9".to_string()),
        Just("::1".to_string()),
        Just("::2".to_string()),
        any::<[u8; 16]>().prop_map(|o| std::net::IpAddr::from(o).to_string()),
    ];
    let seen = std::cell::RefCell::new([0usize; 2]);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(192));
    runner
        .run(&prop_oneof![dns, ip], |name| {
            let leaf = single_name_leaf(&ca, &name, now);
            let verified = verify(ca.root_pem(), &leaf, &name, now);
            seen.borrow_mut()[usize::from(verified.is_ok())] += 1;
            prop_assert_eq!(ca.permits(&name), verified.is_ok(), "{}: {:?}", name, verified);
            Ok(())
        })
        .unwrap();
    let [refused, accepted] = *seen.borrow();
    assert!(
        refused >= 20 && accepted >= 20,
        "both sides tried: {refused} refused, {accepted} accepted"
    );
}
