//! The host registry's unit and property tests.

use std::os::unix::fs::PermissionsExt as _;

use proptest::prelude::*;

use super::*;

fn name(s: &str) -> HostName {
    HostName::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn refused(s: &str, problem: &str) {
    let e = HostName::parse(s).expect_err(s);
    assert_eq!(e.word, s);
    assert!(e.message.contains(problem), "{s:?}: {}", e.message);
    assert!(e.message.ends_with(EXPECTED), "{s:?}: {}", e.message);
}

#[test]
fn names_are_normalised() {
    for (input, normal) in [
        ("api.test", "api.test"),
        ("API.Test", "api.test"),
        ("api.test.", "api.test"),
        ("*.Api.Test", "*.api.test"),
        ("*.api.test.", "*.api.test"),
        ("localhost", "localhost"),
        ("a-b.c1", "a-b.c1"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("例え。テスト", "xn--r8jz45g.xn--zckzah"),
        ("*.bücher.example", "*.xn--bcher-kva.example"),
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "[::1]"),
        ("[::1]", "[::1]"),
        ("[0:0::1]", "[::1]"),
        ("[FE80::1]", "[fe80::1]"),
    ] {
        assert_eq!(name(input).as_str(), normal, "{input:?}");
    }
    assert!(name("*.api.test").is_wildcard());
    assert_eq!(name("*.api.test").wildcard_parent(), Some("api.test"));
    assert!(!name("api.test").is_wildcard());
    let longest_label = "a".repeat(63);
    assert_eq!(name(&longest_label).as_str(), longest_label);
    let longest = [&"a".repeat(63)[..], &"b".repeat(63), &"c".repeat(63), &"d".repeat(61)].join(".");
    assert_eq!(longest.len(), 253);
    assert_eq!(name(&longest).as_str(), longest);
}

#[test]
fn bad_names_are_refused_naming_the_problem() {
    refused("", "it is empty");
    refused(".", "it is empty");
    refused("api.test:8080", "it has a port (:8080)");
    refused("[::1]:8080", "it has a port (:8080)");
    refused("[::1", "bracketed IPv6");
    refused("[nope]", "is not an IPv6 address");
    refused("api test", "space");
    refused(" api.test", "space");
    refused("api.test\n", "control");
    refused("http://api.test", "URL");
    refused("api.test/x", "'/'");
    refused("a..b", "empty label");
    refused(".api.test", "empty label");
    refused("api.test..", "empty label");
    refused("a_b.test", "'_' is not allowed");
    refused("a@b.test", "'@' is not allowed");
    refused("-a.test", "starts or ends with '-'");
    refused("a-.test", "starts or ends with '-'");
    refused(&"a".repeat(64), "over 63");
    refused(
        &[&"a".repeat(63)[..], &"b".repeat(63), &"c".repeat(63), &"d".repeat(62)].join("."),
        "over 253",
    );
    refused("*.com", "at least two labels after *.");
    refused("*.dev", "at least two labels after *.");
    // The development domains may be covered whole.
    for dev in ["*.localhost", "*.test", "*.local"] {
        assert!(name(dev).is_wildcard(), "{dev}");
    }
    refused("*.", "at least two labels after *.");
    refused("*", "'*' is allowed only");
    refused("a.*.test", "'*' is allowed only");
    refused("*a.test", "'*' is allowed only");
    refused("**.a.test", "'*' is allowed only");
    refused("127.1", "is a number");
    refused("1.2.3.256", "is a number");
    refused("999", "is a number");
    refused("*.1.2.3", "is a number");
    refused("xn--a.test", "IDNA");
}

#[test]
fn request_hosts() {
    for (header, host) in [
        ("api.test", Some("api.test")),
        ("API.test:5002", Some("api.test")),
        ("api.test.", Some("api.test")),
        ("api.test.:80", Some("api.test")),
        ("api.test:", Some("api.test")),
        ("127.0.0.1:5002", Some("127.0.0.1")),
        ("[::1]:5002", Some("[::1]")),
        ("[0::1]", Some("[::1]")),
        ("", None),
        (".", None),
        (":80", None),
        ("api.test:x", None),
        ("api.test:80:80", None),
        ("[::1", None),
        ("[::1]x", None),
        ("[zz]", None),
        ("a b", None),
        ("bücher.example", None),
    ] {
        assert_eq!(request_host(header).as_deref(), host, "{header:?}");
    }
}

#[test]
fn lookup_exact_then_one_label_wildcard() {
    let mut table = HostTable::new();
    table.insert(name("*.api.test"), "wild");
    table.insert(name("v1.api.test"), "v1");
    table.insert(name("127.0.0.1"), "ip");
    table.insert(name("[::1]"), "ip6");
    assert_eq!(table.lookup("v1.api.test"), Some(&"v1"));
    assert_eq!(table.lookup("v2.api.test"), Some(&"wild"));
    assert_eq!(table.lookup("api.test"), None, "a wildcard does not cover its parent");
    assert_eq!(table.lookup("a.v2.api.test"), None, "a wildcard covers one label");
    assert_eq!(table.lookup(".api.test"), None);
    assert_eq!(table.lookup("127.0.0.1"), Some(&"ip"));
    assert_eq!(table.lookup("[::1]"), Some(&"ip6"));
    assert_eq!(table.lookup("x.0.0.1"), None);
    assert_eq!(table.len(), 4);
    assert_eq!(table.get(&name("*.api.test")), Some(&"wild"));
    let names: Vec<String> = table.iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["*.api.test", "127.0.0.1", "[::1]", "v1.api.test"]);
    assert_eq!(table.remove(&name("*.api.test")), Some("wild"));
    assert_eq!(table.lookup("v2.api.test"), None);
    assert_eq!(table.insert(name("v1.api.test"), "again"), Some("v1"));
}

#[test]
fn registry_json_round_trip_and_rules() {
    let mut registry = HostRegistry::default();
    assert_eq!(registry.add(name("b.test"), "/srv/b".into()), Ok(Added::New));
    assert_eq!(registry.add(name("*.a.test"), "/srv/a".into()), Ok(Added::New));
    assert_eq!(registry.add(name("B.test"), "/srv/b".into()), Ok(Added::AlreadyThere));
    assert_eq!(
        registry.add(name("b.test"), "/srv/c".into()),
        Err(PathBuf::from("/srv/b"))
    );
    let text = registry.to_json();
    assert_eq!(
        text,
        "{\n  \"hosts\": {\n    \"*.a.test\": \"/srv/a\",\n    \"b.test\": \"/srv/b\"\n  }\n}\n"
    );
    assert_eq!(HostRegistry::from_json(text.as_bytes()), Ok(registry.clone()));
    assert_eq!(registry.table().lookup("x.a.test"), Some(&PathBuf::from("/srv/a")));
    assert_eq!(registry.remove(&name("b.test")), Some(PathBuf::from("/srv/b")));
    assert_eq!(registry.remove(&name("b.test")), None);
    assert_eq!(registry.len(), 1);
    // Hand-edited names are normalised on reading.
    let read = HostRegistry::from_json(br#"{"hosts":{"API.test.":"/srv/a"}}"#).unwrap();
    assert_eq!(read.get(&name("api.test")), Some(Path::new("/srv/a")));
    for (bad, why) in [
        (&b""[..], "not a valid host registry"),
        (b"{}", "missing field `hosts`"),
        (b"{\"hosts\":{},\"x\":1}", "unknown field `x`"),
        (b"{\"hosts\":[]}", "not a valid host registry"),
        (b"{\"hosts\":{\"a b\":\"/x\"}}", "host \"a b\": not a valid host name"),
        (b"{\"hosts\":{\"a.test\":\"rel\"}}", "is not absolute"),
        (b"{\"hosts\":{\"a.test\":\"/x\",\"A.test\":\"/y\"}}", "appears twice"),
    ] {
        let e = HostRegistry::from_json(bad).expect_err(why);
        assert!(e.contains(why), "{}: {e}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn the_file_is_private_and_edits_keep_each_other() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    assert!(read_registry(&home).unwrap().is_empty(), "no file: empty");
    assert!(!home.exists(), "reading creates nothing");
    assert_eq!(
        add_host(&home, &name("a.test"), Path::new("/srv/a")).unwrap(),
        Added::New
    );
    assert_eq!(
        add_host(&home, &name("b.test"), Path::new("/srv/b")).unwrap(),
        Added::New
    );
    assert_eq!(
        add_host(&home, &name("a.test"), Path::new("/srv/a")).unwrap(),
        Added::AlreadyThere
    );
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&home), 0o700);
    assert_eq!(mode(&hosts_path(&home)), 0o600);
    assert_eq!(mode(&home.join(HOSTS_LOCK_FILE)), 0o600);
    let before = fs::read(hosts_path(&home)).unwrap();
    let e = add_host(&home, &name("a.test"), Path::new("/srv/other")).unwrap_err();
    assert!(
        matches!(&e, RegistryError::Claimed { app_dir, .. } if app_dir == Path::new("/srv/a")),
        "{e}"
    );
    assert_eq!(fs::read(hosts_path(&home)).unwrap(), before);
    assert_eq!(remove_host(&home, &name("a.test")).unwrap(), PathBuf::from("/srv/a"));
    let e = remove_host(&home, &name("a.test")).unwrap_err();
    assert!(e.to_string().starts_with("a.test: not in the host registry ("), "{e}");
    let registry = read_registry(&home).unwrap();
    assert_eq!(registry.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["b.test"]);
}

#[test]
fn a_corrupt_file_is_named_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let path = hosts_path(tmp.path());
    fs::write(&path, b"{\"hosts\": {").unwrap();
    for e in [
        read_registry(tmp.path()).unwrap_err(),
        add_host(tmp.path(), &name("a.test"), Path::new("/srv/a")).unwrap_err(),
        remove_host(tmp.path(), &name("a.test")).unwrap_err(),
    ] {
        let line = e.to_string();
        assert!(
            line.starts_with(&format!("{}: not a valid host registry (", path.display())),
            "{line}"
        );
        assert!(line.ends_with("; left as it is") && !line.contains('\n'), "{line}");
    }
    assert_eq!(fs::read(&path).unwrap(), b"{\"hosts\": {");
}

fn plausible_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "(\\*\\.)?([a-zA-Z0-9-]{1,8}\\.){1,4}[a-zA-Z][a-zA-Z0-9-]{0,6}\\.?",
        "(\\*\\.)?([a-zäöüßéÅ0-9-]{1,6}[.。]){1,3}[a-zäöüß]{1,5}",
        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
        "\\[?[0-9a-fA-F:]{2,20}\\]?",
        "[a-zA-Z0-9*._:\\[\\] -]{0,24}",
    ]
}

proptest! {
    #[test]
    fn normalising_is_idempotent(input in plausible_name()) {
        if let Ok(once) = HostName::parse(&input) {
            let twice = HostName::parse(once.as_str());
            prop_assert_eq!(twice.as_ref().map(HostName::as_str), Ok(once.as_str()));
            prop_assert!(once.as_str().len() <= MAX_NAME_LEN);
            // A request for an exact name, with or without a port, asks for it.
            if !once.is_wildcard() {
                prop_assert_eq!(request_host(once.as_str()), Some(once.to_string()));
                let with_port = format!("{}:5002", once.as_str().to_ascii_uppercase());
                prop_assert_eq!(request_host(&with_port), Some(once.to_string()));
            }
        }
    }

    #[test]
    fn an_exact_entry_beats_a_wildcard(
        label in "[a-z0-9]{1,10}",
        parent in "([a-z0-9]{1,8}\\.){1,3}[a-z]{1,6}",
    ) {
        let exact = name(&format!("{label}.{parent}"));
        let wildcard = name(&format!("*.{parent}"));
        let mut table = HostTable::new();
        table.insert(wildcard.clone(), "wildcard");
        prop_assert_eq!(table.lookup(exact.as_str()), Some(&"wildcard"));
        table.insert(exact.clone(), "exact");
        prop_assert_eq!(table.lookup(exact.as_str()), Some(&"exact"));
        let mut other_order = HostTable::new();
        other_order.insert(exact.clone(), "exact");
        other_order.insert(wildcard, "wildcard");
        prop_assert_eq!(other_order.lookup(exact.as_str()), Some(&"exact"));
        prop_assert_eq!(other_order.lookup(&parent), None);
        prop_assert_eq!(other_order.lookup(&format!("x.{}", exact.as_str())), None);
    }

    #[test]
    fn lookup_and_request_host_never_panic(input in any::<String>(), plausible in plausible_name()) {
        let mut table = HostTable::new();
        table.insert(name("*.api.test"), 1);
        table.insert(name("api.test"), 2);
        for s in [&input, &plausible] {
            let _ = table.lookup(s);
            let _ = HostName::parse(s);
            if let Some(host) = request_host(s) {
                let _ = table.lookup(&host);
            }
        }
    }
}
