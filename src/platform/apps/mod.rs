//! The platform's apps: what it keeps about each ([`AppRecord`]), the set of
//! them with its rules ([`Apps`]: one app per name, one app per host), the
//! view the API shows ([`AppView`]: environment keys, never values), the API
//! bodies that create and change an app ([`NewApp`], [`AppPatch`]), and
//! their file, `$RIP_HOME/apps.json` ([`store`]).
//!
//! Only the desired state is kept here (running or stopped, workers, hosts,
//! environment); the live state (the pool, its workers, the last error)
//! belongs to the running app and is added to the view by the API.

pub mod store;
pub mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use store::{APPS_FILE, AppsFileError, AppsStore};
pub use validate::{AppError, DirFacts, check_directory, check_directory_facts};

/// What the platform should do with an app: the state it restores after a
/// restart of the platform or a crash of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Desired {
    /// Start it and keep it running.
    Running,
    /// Leave it stopped.
    Stopped,
}

/// One app as the platform keeps it in `apps.json`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppRecord {
    /// `^[a-z0-9][a-z0-9-]{0,62}$`: the `RIP_APP`, socket and metric label.
    pub name: String,
    /// The app's directory, absolute.
    pub directory: PathBuf,
    /// Host names routed to it (besides `hosts.json` entries naming its
    /// directory), lowercase, without port.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// How many workers it runs.
    pub workers: u32,
    /// Its whole environment on top of the platform's: applied exactly at
    /// the next start (a key removed here is gone from the workers).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Running or stopped.
    pub desired: Desired,
    /// When it was last started, RFC 3339 UTC.
    #[serde(default)]
    pub started_at: Option<String>,
}

// By hand: the environment's values are secrets and must not reach a log
// line or a test failure through `{:?}`.
impl fmt::Debug for AppRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppRecord")
            .field("name", &self.name)
            .field("directory", &self.directory)
            .field("hosts", &self.hosts)
            .field("workers", &self.workers)
            .field("env_keys", &self.env.keys().collect::<Vec<_>>())
            .field("desired", &self.desired)
            .field("started_at", &self.started_at)
            .finish()
    }
}

impl AppRecord {
    /// Every rule a record must meet on its own: the name, the worker
    /// count, every environment entry, an absolute directory, host names
    /// (each once). The directory's owner and mode are checked where it is
    /// deployed ([`check_directory`]), not here: a record read back from
    /// `apps.json` stays valid when its directory goes away, and the app
    /// shows the error when it starts.
    pub fn validate(&self) -> Result<(), AppError> {
        validate::check_name(&self.name)?;
        validate::check_workers(self.workers)?;
        for (key, value) in &self.env {
            validate::check_env_entry(key, value)?;
        }
        if !self.directory.is_absolute() {
            return Err(AppError::DirectoryNotAbsolute(self.directory.clone()));
        }
        let mut seen = BTreeSet::new();
        for host in &self.hosts {
            validate::check_host(host)?;
            if !seen.insert(host.to_ascii_lowercase()) {
                return Err(AppError::DuplicateHost(host.clone()));
            }
        }
        Ok(())
    }

    /// What the API shows of it.
    pub fn view(&self) -> AppView {
        AppView {
            name: self.name.clone(),
            directory: self.directory.clone(),
            hosts: self.hosts.clone(),
            workers: self.workers,
            env_keys: self.env.keys().cloned().collect(),
            desired: self.desired,
            started_at: self.started_at.clone(),
        }
    }
}

/// An app as the API shows it: its environment's keys, never the values
/// (they hold passwords and API keys; PM2's web endpoint leaked them). The
/// API adds the live fields (`status`, `error`, `pool`) beside these, e.g.
/// with `#[serde(flatten)]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppView {
    /// The name.
    pub name: String,
    /// The directory, absolute.
    pub directory: PathBuf,
    /// Its hosts.
    pub hosts: Vec<String>,
    /// Its desired worker count.
    pub workers: u32,
    /// The environment's keys, sorted.
    pub env_keys: Vec<String>,
    /// Running or stopped.
    pub desired: Desired,
    /// When it was last started.
    pub started_at: Option<String>,
}

/// The body of `POST /api/apps`: `{"name","directory","workers"?,"hosts"?,"env"?}`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApp {
    /// The name.
    pub name: String,
    /// The directory; must be absolute.
    pub directory: PathBuf,
    /// The worker count, or the platform's default.
    #[serde(default)]
    pub workers: Option<u32>,
    /// Host names.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// The environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl NewApp {
    /// The record to deploy, desired running, with `default_workers` when the
    /// body gave none; refused when it breaks a rule of
    /// [`AppRecord::validate`]. (The directory's owner and mode, and whether
    /// it has an entry, are for the deploy to check: they read the disk.)
    pub fn into_record(self, default_workers: u32) -> Result<AppRecord, AppError> {
        let record = AppRecord {
            name: self.name,
            directory: self.directory,
            hosts: self.hosts,
            workers: self.workers.unwrap_or(default_workers),
            env: self.env,
            desired: Desired::Running,
            started_at: None,
        };
        record.validate()?;
        Ok(record)
    }
}

/// The body of `PATCH /api/apps/<name>`: any of `workers`, `hosts`, `env`
/// (the whole new environment, not a merge: a key left out is removed).
// No `Debug` on the bodies: they hold environment values.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppPatch {
    /// A new worker count.
    #[serde(default)]
    pub workers: Option<u32>,
    /// New hosts (replacing the old list).
    #[serde(default)]
    pub hosts: Option<Vec<String>>,
    /// A new environment (replacing the old one, applied at the next start).
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
}

impl AppPatch {
    /// `record` with the patch applied (validated by [`Apps::replace`]).
    pub fn applied_to(self, record: &AppRecord) -> AppRecord {
        let mut changed = record.clone();
        if let Some(workers) = self.workers {
            changed.workers = workers;
        }
        if let Some(hosts) = self.hosts {
            changed.hosts = hosts;
        }
        if let Some(env) = self.env {
            changed.env = env;
        }
        changed
    }
}

/// The platform's apps: valid records, one per name, no host claimed twice
/// (compared without letter case). The only way in is [`Apps::insert`] or
/// [`Apps::replace`], which check both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Apps {
    by_name: BTreeMap<String, AppRecord>,
}

impl Apps {
    /// No apps.
    pub fn new() -> Apps {
        Apps::default()
    }

    /// Adds a new app: 409 ([`AppError::NameTaken`], [`AppError::HostTaken`])
    /// when its name or a host is taken, 400 when the record is invalid.
    pub fn insert(&mut self, record: AppRecord) -> Result<(), AppError> {
        record.validate()?;
        if self.by_name.contains_key(&record.name) {
            return Err(AppError::NameTaken(record.name));
        }
        self.check_hosts_free(&record)?;
        self.by_name.insert(record.name.clone(), record);
        Ok(())
    }

    /// Replaces the app of the same name, returning the old record: 404
    /// when there is none, 409 when a new host is another app's.
    pub fn replace(&mut self, record: AppRecord) -> Result<AppRecord, AppError> {
        if !self.by_name.contains_key(&record.name) {
            return Err(AppError::NotFound(record.name));
        }
        record.validate()?;
        self.check_hosts_free(&record)?;
        Ok(self.by_name.insert(record.name.clone(), record).expect("checked above"))
    }

    /// Removes an app, returning it.
    pub fn remove(&mut self, name: &str) -> Option<AppRecord> {
        self.by_name.remove(name)
    }

    /// The app named `name`.
    pub fn get(&self, name: &str) -> Option<&AppRecord> {
        self.by_name.get(name)
    }

    /// Every app, by name.
    pub fn iter(&self) -> impl Iterator<Item = &AppRecord> {
        self.by_name.values()
    }

    /// How many apps there are.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The name of the app that lists `host` (exact name, any letter case).
    pub fn host_owner(&self, host: &str) -> Option<&str> {
        self.iter()
            .find(|app| app.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)))
            .map(|app| app.name.as_str())
    }

    /// No other app than `record`'s lists one of its hosts.
    fn check_hosts_free(&self, record: &AppRecord) -> Result<(), AppError> {
        for host in &record.hosts {
            if let Some(owner) = self.host_owner(host)
                && owner != record.name
            {
                return Err(AppError::HostTaken {
                    host: host.clone(),
                    app: owner.to_owned(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
