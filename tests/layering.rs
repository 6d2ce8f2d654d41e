//! The layout's rules, checked: each folder of `src/` imports only the
//! folders below it (the table in `docs/ARCHITECTURE.md`), no two modules
//! import each other (directly or round a longer circle), and no file in
//! `src/` grows past the size at which it has more than one job.
//!
//! The check reads the source text: every `crate::a::b` path and every
//! `super::x` path outside comments is an import of the module it names.
//! A module and its own parent or children are allowed to name each other
//! (a folder's `mod.rs` declares its files, its files use its items);
//! anything else that goes both ways is a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Which top-level folders each folder may import, lowest layers first.
/// `main.rs` and the hidden `fuzzing` module (test support) may import
/// anything and are not listed.
const MAY_IMPORT: &[(&str, &[&str])] = &[
    ("core", &[]),
    ("http", &["protocol"]),
    ("protocol", &[]),
    ("os", &["core"]),
    ("config", &["core", "os"]),
    ("net", &["os"]),
    ("tls", &["config", "core", "os"]),
    ("observe", &["core", "os"]),
    ("upstream", &["http", "net", "os", "protocol"]),
    ("runtime", &["core", "observe", "os", "protocol", "upstream"]),
    (
        "frontdoor",
        &[
            "config", "core", "http", "net", "observe", "os", "protocol", "runtime", "tls", "upstream",
        ],
    ),
    ("control", &["core", "net", "observe", "protocol", "runtime"]),
    ("manager", &["config", "core", "net", "os", "runtime"]),
    ("worker", &["net", "os", "protocol"]),
    (
        "server",
        &[
            "config",
            "control",
            "core",
            "frontdoor",
            "manager",
            "net",
            "observe",
            "os",
            "protocol",
            "runtime",
            "tls",
            "upstream",
        ],
    ),
    (
        "platform",
        &[
            "config",
            "control",
            "core",
            "frontdoor",
            "http",
            "manager",
            "net",
            "observe",
            "os",
            "protocol",
            "runtime",
            "server",
            "tls",
            "upstream",
        ],
    ),
    (
        "cli",
        &["config", "control", "core", "observe", "platform", "protocol", "tls"],
    ),
];

/// A file in `src/` past this many lines has more than one job.
const MAX_LINES: usize = 800;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file: `src/core/balancer/mod.rs` → `["core", "balancer"]`.
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).expect("under src/");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_owned());
    }
    parts
}

/// The source without comments (line comments, and doc comments with them).
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_string = false;
        let mut cut = line.len();
        let bytes = line.as_bytes();
        for i in 0..bytes.len() {
            match bytes[i] {
                b'"' if i == 0 || bytes[i - 1] != b'\\' => in_string = !in_string,
                b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => {
                    cut = i;
                    break;
                }
                _ => {}
            }
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths after each occurrence of `prefix` (`crate::` or `super::`),
/// as segment lists; a `{a, b::c}` group at the first level gives one path
/// per member.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| is_ident(c) || c == ':') {
            continue; // `foo::super::`, `rip_crate::`: not ours
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for member in group[..end].split(',') {
                let segments: Vec<String> = member
                    .trim()
                    .split("::")
                    .map(|s| s.trim().split(' ').next().unwrap_or("").to_owned())
                    .take_while(|s| !s.is_empty() && s.chars().all(is_ident))
                    .collect();
                if !segments.is_empty() {
                    found.push(segments);
                }
            }
            continue;
        }
        let path: String = rest.chars().take_while(|&c| is_ident(c) || c == ':').collect();
        let segments: Vec<String> = path.split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect();
        if !segments.is_empty() {
            found.push(segments);
        }
    }
    found
}

/// The longest module that `path` (absolute, from the crate root) names.
fn resolve(modules: &BTreeSet<Vec<String>>, path: &[String]) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|m| modules.contains(m))
}

struct Crate {
    /// Module → the modules it names.
    imports: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
    /// Module → its file and line count.
    files: BTreeMap<Vec<String>, (PathBuf, usize)>,
}

fn read_crate(root: &Path) -> Crate {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let mut modules = BTreeSet::new();
    let mut sources = BTreeMap::new();
    let mut info = BTreeMap::new();
    for file in &files {
        let module = module_of(root, file);
        let text = fs::read_to_string(file).expect("read a source file");
        modules.insert(module.clone());
        info.insert(module.clone(), (file.clone(), text.lines().count()));
        sources.insert(module, code_of(&text));
    }
    let mut imports: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, code) in &sources {
        let targets = imports.entry(module.clone()).or_default();
        for path in paths_after(code, "crate::") {
            if let Some(target) = resolve(&modules, &path) {
                targets.insert(target);
            }
        }
        // `super::x` in a file module means its parent's `x`.
        let parent = &module[..module.len().saturating_sub(1)];
        for path in paths_after(code, "super::") {
            let mut absolute = parent.to_vec();
            let mut rest = &path[..];
            while rest.first().is_some_and(|s| s == "super") {
                absolute.pop();
                rest = &rest[1..];
            }
            absolute.extend(rest.iter().cloned());
            if let Some(target) = resolve(&modules, &absolute) {
                targets.insert(target);
            }
        }
        targets.remove(module);
    }
    Crate { imports, files: info }
}

fn is_prefix(a: &[String], b: &[String]) -> bool {
    a.len() <= b.len() && b[..a.len()] == *a
}

/// Import circles among modules, leaving out a module and its ancestors.
fn circles(krate: &Crate) -> Vec<Vec<String>> {
    let edges = |m: &Vec<String>| -> Vec<Vec<String>> {
        krate.imports[m]
            .iter()
            .filter(|t| !is_prefix(t, m) && !is_prefix(m, t))
            .cloned()
            .collect()
    };
    let mut found = Vec::new();
    for start in krate.imports.keys() {
        // Depth-first search for a path back to `start`.
        let mut stack = vec![(start.clone(), vec![start.join("::")])];
        let mut seen = BTreeSet::new();
        while let Some((at, trail)) = stack.pop() {
            for next in edges(&at) {
                if next == *start {
                    let mut circle = trail.clone();
                    circle.push(start.join("::"));
                    found.push(circle);
                } else if seen.insert(next.clone()) {
                    let mut longer = trail.clone();
                    longer.push(next.join("::"));
                    stack.push((next, longer));
                }
            }
        }
    }
    found
}

#[test]
fn folders_import_only_the_layers_below_them() {
    let krate = read_crate(&src_dir());
    let allowed: BTreeMap<&str, &[&str]> = MAY_IMPORT.iter().copied().collect();
    let mut wrong = Vec::new();
    for (module, targets) in &krate.imports {
        let Some(folder) = module.first() else { continue }; // lib.rs
        if folder == "main" || folder == "fuzzing" {
            continue;
        }
        let Some(may) = allowed.get(folder.as_str()) else {
            wrong.push(format!(
                "src/{folder}: a folder the layer table does not know; add it there and to docs/ARCHITECTURE.md"
            ));
            continue;
        };
        for target in targets {
            let other = &target[0];
            if other != folder && !may.contains(&other.as_str()) {
                wrong.push(format!("{} imports {}", module.join("::"), target.join("::")));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layer table:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let krate = read_crate(&src_dir());
    let found = circles(&krate);
    assert!(
        found.is_empty(),
        "import circles:\n{}",
        found.iter().map(|c| c.join(" -> ")).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn no_source_file_has_more_than_one_job() {
    let krate = read_crate(&src_dir());
    let long: Vec<String> = krate
        .files
        .values()
        .filter(|(_, lines)| *lines > MAX_LINES)
        .map(|(path, lines)| format!("{}: {lines} lines", path.display()))
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines:\n{}", long.join("\n"));
}

#[test]
fn the_simulation_has_no_import_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sim/src");
    let found = circles(&read_crate(&root));
    assert!(
        found.is_empty(),
        "import circles in sim/src:\n{}",
        found.iter().map(|c| c.join(" -> ")).collect::<Vec<_>>().join("\n")
    );
}

/// The checker itself: a circle and an upward import planted in a scratch
/// crate are found (so the tests above cannot pass by finding nothing).
#[test]
fn the_checker_finds_a_planted_circle_and_an_upward_import() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path();
    fs::create_dir_all(src.join("core")).unwrap();
    fs::write(src.join("lib.rs"), "pub mod core;\npub mod runtime;\n").unwrap();
    fs::write(src.join("core/mod.rs"), "pub mod a;\npub mod b;\n").unwrap();
    fs::write(
        src.join("core/a.rs"),
        "use crate::core::b::B; // crate::runtime in a comment is not an import\n",
    )
    .unwrap();
    fs::write(
        src.join("core/b.rs"),
        "use super::a::A;\nfn f() { crate::runtime::run(); }\n",
    )
    .unwrap();
    fs::write(src.join("runtime.rs"), "use crate::core::a::A;\n").unwrap();
    let krate = read_crate(src);
    let found = circles(&krate);
    assert!(
        found
            .iter()
            .any(|c| c.contains(&"core::a".to_owned()) && c.contains(&"core::b".to_owned())),
        "{found:?}"
    );
    let b = &krate.imports[&vec!["core".to_owned(), "b".to_owned()]];
    assert!(b.contains(&vec!["runtime".to_owned()]), "{b:?}");
    let a = &krate.imports[&vec!["core".to_owned(), "a".to_owned()]];
    assert!(
        !a.contains(&vec!["runtime".to_owned()]),
        "a comment counted as an import: {a:?}"
    );
}
