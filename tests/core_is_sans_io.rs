//! Fails the build's tests if the core reaches for IO, a clock, threads or
//! randomly ordered collections. (clippy's disallowed-methods lint covers
//! clock reads crate-wide; this covers imports that lint cannot see.)

use std::path::Path;

const FORBIDDEN: &[&str] = &[
    "tokio",
    "hyper",
    "std::net",
    "std::fs",
    "std::process",
    "std::thread",
    "std::env",
    "std::io::",
    "Instant",
    "SystemTime",
    "::now(",
    "HashMap",
    "HashSet",
    "rand::",
    "Mutex",
    "RwLock",
    "Rc<",
    "Arc<",
    "unsafe",
];

fn scan(dir: &Path, offences: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("src/core is readable") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            scan(&path, offences);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("source is readable");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in FORBIDDEN {
                if code.contains(word) {
                    offences.push(format!("{}:{}: `{word}` in `{}`", path.display(), n + 1, line.trim()));
                }
            }
        }
    }
}

#[test]
fn core_touches_no_io_clock_or_threads() {
    let core = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let mut offences = Vec::new();
    scan(&core, &mut offences);
    assert!(
        offences.is_empty(),
        "the core must stay sans-IO:\n{}",
        offences.join("\n")
    );
}

#[test]
fn the_scan_would_catch_an_offence() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("bad.rs"),
        "fn f() { let _ = std::time::Instant::now(); }\n",
    )
    .expect("write");
    let mut offences = Vec::new();
    scan(dir.path(), &mut offences);
    assert_eq!(offences.len(), 2, "{offences:?}");
}
