//! The resolver with a fake issuer and an injected clock: renewal on the
//! handshake, never an expired leaf, which names get a leaf of their own.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::*;

const DAY: Duration = Duration::from_secs(86_400);
const LIFETIME: Duration = Duration::from_secs(7 * 86_400);

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// One real key pair for every leaf (rustls needs one); the facts the
/// resolver reads (names, validity, serial) are set per leaf.
fn leaf(names: Vec<String>, now: SystemTime, serial: u32) -> Served {
    static PAIR: Mutex<Option<(String, String)>> = Mutex::new(None);
    let mut pair = PAIR.lock().unwrap();
    let (cert, key) = pair.get_or_insert_with(|| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    });
    let mut served = Served::from_pem(cert.as_bytes(), key.as_bytes(), None).unwrap();
    served.info.names = names;
    served.info.serial_hex = format!("{serial:x}");
    served.info.not_before = now;
    served.info.not_after = now + LIFETIME;
    served.renew_at = Some(now + LIFETIME - LIFETIME / 3);
    served
}

#[derive(Default)]
struct FakeIssuer {
    issued: AtomicU32,
    broken: AtomicBool,
    names: Mutex<Vec<String>>,
}

impl Issuer for Arc<FakeIssuer> {
    fn source(&self) -> CertSource {
        CertSource::Ca
    }

    fn issue(&self, name: &str, now: SystemTime) -> Result<Served, String> {
        if self.broken.load(Ordering::Relaxed) {
            return Err("the CA is unreadable".into());
        }
        let serial = self.issued.fetch_add(1, Ordering::Relaxed) + 1;
        self.names.lock().unwrap().push(name.to_owned());
        let names = vec![
            name.to_owned(),
            format!("*.{name}"),
            "localhost".into(),
            "127.0.0.1".into(),
            "::1".into(),
        ];
        Ok(leaf(names, now, serial))
    }

    fn permits(&self, name: &str) -> bool {
        name.ends_with(".test") || name == "localhost" || name.ends_with(".localhost")
    }
}

struct Setup {
    issuer: Arc<FakeIssuer>,
    resolver: CertResolver,
    now: Arc<Mutex<SystemTime>>,
}

fn setup() -> Setup {
    let issuer = Arc::new(FakeIssuer::default());
    let now = Arc::new(Mutex::new(t0()));
    let clock_now = now.clone();
    let clock: WallClock = Arc::new(move || *clock_now.lock().unwrap());
    let resolver = CertResolver::issuing(Box::new(issuer.clone()), clock).unwrap();
    Setup { issuer, resolver, now }
}

impl Setup {
    fn at(&self, time: SystemTime) -> Option<Arc<Served>> {
        *self.now.lock().unwrap() = time;
        self.resolver.certificate_for(None, time)
    }
}

#[test]
fn a_leaf_inside_its_renewal_window_is_reissued_on_the_handshake() {
    let s = setup();
    assert_eq!(s.issuer.issued.load(Ordering::Relaxed), 1);
    // Early on: the same leaf, nothing issued.
    let first = s.at(t0() + DAY).unwrap();
    assert_eq!(first.info.serial_hex, "1");
    assert_eq!(s.issuer.issued.load(Ordering::Relaxed), 1);
    // Just before the window (a third of 7 days left): still the same.
    let before = t0() + LIFETIME - LIFETIME / 3 - Duration::from_secs(1);
    assert_eq!(s.at(before).unwrap().info.serial_hex, "1");
    // Inside it: a new leaf, valid from now, and /status says so.
    let inside = t0() + LIFETIME - LIFETIME / 3;
    let renewed = s.at(inside).unwrap();
    assert_eq!(renewed.info.serial_hex, "2");
    assert_eq!(renewed.info.not_before, inside);
    assert_eq!(s.resolver.info().certificate.serial_hex, "2");
    assert_eq!(s.resolver.info().next_renewal, renewed.renew_at);
    // And it is kept for the next handshakes.
    assert_eq!(s.at(inside + DAY).unwrap().info.serial_hex, "2");
    assert_eq!(s.issuer.issued.load(Ordering::Relaxed), 2);
}

#[test]
fn an_expired_leaf_is_never_served() {
    let s = setup();
    // A laptop asleep for a month: the first handshake after waking gets a
    // fresh leaf, not the expired one.
    let woke = t0() + 30 * DAY;
    let served = s.at(woke).unwrap();
    assert!(served.info.not_after > woke, "{served:?}");
    assert_eq!(served.info.serial_hex, "2");
    // When no new leaf can be made: refused, never the expired one.
    s.issuer.broken.store(true, Ordering::Relaxed);
    let later = woke + 30 * DAY;
    assert!(s.at(later).is_none());
    // Inside the window but not expired, a failed renewal keeps serving.
    let s = setup();
    s.issuer.broken.store(true, Ordering::Relaxed);
    let in_window = t0() + 6 * DAY;
    assert_eq!(s.at(in_window).unwrap().info.serial_hex, "1");
    s.issuer.broken.store(false, Ordering::Relaxed);
    assert_eq!(s.at(in_window).unwrap().info.serial_hex, "2");
}

#[test]
fn only_registered_permitted_names_get_a_leaf_of_their_own() {
    let s = setup();
    let host = |n: &str| HostName::parse(n).unwrap();
    s.resolver
        .set_registered_hosts([host("app.test"), host("*.wild.test"), host("outside.example")]);
    let now = t0();
    let serial = |sni: Option<&str>| s.resolver.certificate_for(sni, now).unwrap().info.serial_hex.clone();
    // No SNI, localhost, any x.localhost: the default (leaf for localhost).
    assert_eq!(serial(None), "1");
    assert_eq!(serial(Some("localhost")), "1");
    assert_eq!(serial(Some("random-1.localhost")), "1");
    assert_eq!(serial(Some("a.b.localhost")), "1");
    // Unregistered: the default, nothing issued.
    assert_eq!(serial(Some("other.test")), "1");
    // Registered and inside the constraints: its own, issued once.
    assert_eq!(serial(Some("app.test")), "2");
    assert_eq!(serial(Some("app.test")), "2");
    assert_eq!(serial(Some("x.wild.test")), "3");
    // Registered but outside the constraints: the default.
    assert_eq!(serial(Some("outside.example")), "1");
    assert_eq!(
        *s.issuer.names.lock().unwrap(),
        vec!["localhost", "app.test", "x.wild.test"]
    );
}

#[test]
fn files_are_served_as_they_are_and_replaced_whole() {
    let clock: WallClock = Arc::new(t0);
    let resolver = CertResolver::files(leaf(vec!["app.test".into()], t0(), 7), clock);
    assert_eq!(resolver.source(), CertSource::Files);
    // Never renewed by us, whatever the name.
    let far = t0() + 365 * DAY;
    assert_eq!(
        resolver.certificate_for(Some("app.test"), far).unwrap().info.serial_hex,
        "7"
    );
    resolver.replace_default(leaf(vec!["app.test".into()], t0(), 8));
    assert_eq!(resolver.certificate_for(None, far).unwrap().info.serial_hex, "8");
    assert_eq!(resolver.info().next_renewal, None);
}
