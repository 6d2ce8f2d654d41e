//! `$RIP_HOME/apps.json`: the platform's apps and their desired state,
//! kept across restarts of the platform and crashes of it.
//!
//! The file is `{"schemaVersion":1,"apps":[<record>...]}`, records sorted
//! by name, written whole, atomically and 0600 (it holds the apps'
//! environments) by `config::home`. A missing file is no apps. A file that
//! does not read or parse, or whose records break a rule, is reported with
//! one line naming it, and is never overwritten: [`AppsStore::open`] gives
//! the handle that writes only when it read the file successfully, so the
//! platform cannot save over a file it could not read (PM2's saved list
//! coming back empty is the failure this prevents).

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{AppRecord, Apps};
use crate::config::home::{ensure_private_dir, write_private_atomically};

/// The file's name in `$RIP_HOME`.
pub const APPS_FILE: &str = "apps.json";
/// The format this version reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// `apps.json` and why it cannot be used: one line naming the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppsFileError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong, one line.
    pub problem: String,
}

impl fmt::Display for AppsFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)
    }
}

impl std::error::Error for AppsFileError {}

/// The handle that saves `apps.json`; only a successful [`AppsStore::open`]
/// gives one.
#[derive(Debug)]
pub struct AppsStore {
    path: PathBuf,
}

impl AppsStore {
    /// Reads `<home>/apps.json` (no file: no apps).
    pub fn open(home: &Path) -> Result<(AppsStore, Apps), AppsFileError> {
        let path = home.join(APPS_FILE);
        let error = |problem: String| AppsFileError {
            path: path.clone(),
            problem: problem.replace('\n', " "),
        };
        let apps = match fs::read(&path) {
            Ok(bytes) => parse_apps(&bytes).map_err(error)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Apps::new(),
            Err(e) => return Err(error(e.to_string())),
        };
        Ok((AppsStore { path }, apps))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `apps` as the whole file, atomically, 0600 (the home is
    /// created 0700 if it went away).
    pub fn save(&self, apps: &Apps) -> io::Result<()> {
        if let Some(home) = self.path.parent() {
            ensure_private_dir(home)?;
        }
        write_private_atomically(&self.path, &render_apps(apps))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FileOut<'a> {
    schema_version: u32,
    apps: Vec<&'a AppRecord>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileIn {
    #[allow(dead_code)] // checked before this is parsed
    schema_version: u32,
    apps: Vec<AppRecord>,
}

/// The file's text for `apps`.
pub fn render_apps(apps: &Apps) -> Vec<u8> {
    let file = FileOut {
        schema_version: SCHEMA_VERSION,
        apps: apps.iter().collect(),
    };
    let mut text = serde_json::to_vec_pretty(&file).expect("records serialise");
    text.push(b'\n');
    text
}

/// The apps in a file's text, or what is wrong with it (one line): not
/// JSON, another schema version, an unknown field, an invalid record, two
/// records of one name or one host.
pub fn parse_apps(text: &[u8]) -> Result<Apps, String> {
    let value: serde_json::Value = serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
    match value.get("schemaVersion").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(SCHEMA_VERSION) => {}
        Some(v) => {
            return Err(format!(
                "schemaVersion {v}: this rip-server reads version {SCHEMA_VERSION}; refusing to use or change it"
            ));
        }
        None => return Err("expected an object with a numeric \"schemaVersion\"".to_owned()),
    }
    let file: FileIn = serde_json::from_value(value).map_err(|e| format!("not an apps file: {e}"))?;
    let mut apps = Apps::new();
    for record in file.apps {
        let name = record.name.clone();
        apps.insert(record).map_err(|e| format!("app {name:?}: {e}"))?;
    }
    Ok(apps)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt as _;

    use super::super::Desired;
    use super::*;

    fn record(name: &str, hosts: &[&str]) -> AppRecord {
        AppRecord {
            name: name.to_owned(),
            directory: PathBuf::from(format!("/srv/{name}")),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            workers: 2,
            env: BTreeMap::from([("DATABASE_URL".to_owned(), format!("postgres://{name}:pw@db/x"))]),
            desired: Desired::Running,
            started_at: Some("2026-01-01T00:00:00.000Z".to_owned()),
        }
    }

    #[test]
    fn a_missing_file_is_no_apps_and_a_save_reads_back_the_same() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let (store, mut apps) = AppsStore::open(&home).unwrap();
        assert!(apps.is_empty());
        assert!(!store.path().exists(), "opening wrote the file");
        apps.insert(record("blog", &["blog.test"])).unwrap();
        let mut stopped = record("shop", &[]);
        stopped.desired = Desired::Stopped;
        stopped.started_at = None;
        stopped.env.clear();
        apps.insert(stopped).unwrap();
        store.save(&apps).unwrap();
        assert_eq!(fs::metadata(&home).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(fs::metadata(store.path()).unwrap().permissions().mode() & 0o777, 0o600);
        let (_, again) = AppsStore::open(&home).unwrap();
        assert_eq!(again, apps);
        // Saved twice, the same bytes (sorted, stable).
        let first = fs::read(store.path()).unwrap();
        store.save(&again).unwrap();
        assert_eq!(fs::read(store.path()).unwrap(), first);
    }

    #[test]
    fn the_file_format_is_the_documented_one() {
        let mut apps = Apps::new();
        apps.insert(record("blog", &["blog.test"])).unwrap();
        let text = String::from_utf8(render_apps(&apps)).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "schemaVersion": 1,
                "apps": [{
                    "name": "blog",
                    "directory": "/srv/blog",
                    "hosts": ["blog.test"],
                    "workers": 2,
                    "env": {"DATABASE_URL": "postgres://blog:pw@db/x"},
                    "desired": "running",
                    "startedAt": "2026-01-01T00:00:00.000Z",
                }]
            })
        );
        // A hand-written file may leave out the optional fields.
        let minimal =
            br#"{"schemaVersion":1,"apps":[{"name":"a","directory":"/srv/a","workers":1,"desired":"stopped"}]}"#;
        let apps = parse_apps(minimal).unwrap();
        let a = apps.get("a").unwrap();
        assert!(a.hosts.is_empty() && a.env.is_empty() && a.started_at.is_none());
        assert_eq!(a.desired, Desired::Stopped);
    }

    #[test]
    fn a_corrupt_file_is_one_line_naming_it_and_is_never_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        let path = home.join(APPS_FILE);
        let cases: &[(&str, &str)] = &[
            ("", "not JSON"),
            ("{\"schemaVersion\":1,\"apps\":[", "not JSON"),
            ("[]", "schemaVersion"),
            ("{\"apps\":[]}", "schemaVersion"),
            ("{\"schemaVersion\":2,\"apps\":[]}", "schemaVersion 2"),
            ("{\"schemaVersion\":1}", "missing field"),
            ("{\"schemaVersion\":1,\"apps\":[],\"extra\":1}", "unknown field"),
            (
                "{\"schemaVersion\":1,\"apps\":[{\"name\":\"a\",\"directory\":\"/a\",\"workers\":1,\"desired\":\"running\",\"worker\":3}]}",
                "unknown field",
            ),
            (
                "{\"schemaVersion\":1,\"apps\":[{\"name\":\"A\",\"directory\":\"/a\",\"workers\":1,\"desired\":\"running\"}]}",
                "app \"A\": app name",
            ),
            (
                "{\"schemaVersion\":1,\"apps\":[{\"name\":\"a\",\"directory\":\"a\",\"workers\":1,\"desired\":\"running\"}]}",
                "absolute",
            ),
            (
                "{\"schemaVersion\":1,\"apps\":[{\"name\":\"a\",\"directory\":\"/a\",\"workers\":1,\"desired\":\"running\",\"env\":{\"LD_PRELOAD\":\"/x.so\"}}]}",
                "refused",
            ),
            (
                "{\"schemaVersion\":1,\"apps\":[{\"name\":\"a\",\"directory\":\"/a\",\"workers\":1,\"desired\":\"running\"},{\"name\":\"a\",\"directory\":\"/b\",\"workers\":1,\"desired\":\"running\"}]}",
                "exists",
            ),
            (
                "{\"schemaVersion\":1,\"apps\":[{\"name\":\"a\",\"directory\":\"/a\",\"workers\":1,\"desired\":\"running\",\"hosts\":[\"x.test\"]},{\"name\":\"b\",\"directory\":\"/b\",\"workers\":1,\"desired\":\"running\",\"hosts\":[\"X.test\"]}]}",
                "served by app",
            ),
        ];
        for (contents, expected) in cases {
            fs::write(&path, contents).unwrap();
            let err = AppsStore::open(home).unwrap_err();
            let line = err.to_string();
            assert!(line.starts_with(&format!("{}: ", path.display())), "{contents}: {line}");
            assert!(line.contains(expected), "{contents}: {line}");
            assert!(!line.contains('\n'), "{line}");
            assert_eq!(fs::read_to_string(&path).unwrap(), *contents, "the file was changed");
        }
        // Unreadable (a directory in its place): reported, not replaced.
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        let err = AppsStore::open(home).unwrap_err();
        assert!(err.to_string().starts_with(&path.display().to_string()), "{err}");
        assert!(path.is_dir());
    }

    #[test]
    fn a_save_leaves_no_other_file_in_the_home() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        let (store, mut apps) = AppsStore::open(home).unwrap();
        apps.insert(record("blog", &[])).unwrap();
        store.save(&apps).unwrap();
        apps.insert(record("shop", &[])).unwrap();
        store.save(&apps).unwrap();
        let names: Vec<_> = fs::read_dir(home).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(APPS_FILE)]);
        assert_eq!(AppsStore::open(home).unwrap().1.len(), 2);
    }
}
