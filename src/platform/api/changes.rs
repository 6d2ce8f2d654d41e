//! The API's changes: deploy, patch, undeploy, start, stop, restart, scale.
//!
//! Each runs under the change lock and ends in [`Api::commit`]: save the
//! new apps (a failed save answers 500 and nothing happened), then ask the
//! control (a failure writes the old file back and answers the control's
//! error), then let memory take the new apps. Everything that can be
//! checked before (the body, the rules, the directory and its entry, the
//! host registry) is checked before anything is written.

use std::future::Future;
use std::path::{Component, Path, PathBuf};

use http::StatusCode;
use serde::Deserialize;

use super::Api;
use super::respond::{Answer, error_code, json};
use super::routes::Action;
use crate::config::hosts::{HostName, hosts_path, read_registry};
use crate::os::clock::{rfc3339_millis, wall_micros};
use crate::platform::apps::validate::check_workers;
use crate::platform::apps::{AppError, AppPatch, Apps, Desired, NewApp, check_directory};
use crate::platform::control::{AppControl, ControlError};

/// The body of `POST /api/apps/<name>/scale`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleBody {
    workers: u32,
}

/// Why a change is not made: the status and the one-line `error` (kept
/// small; it becomes an answer only at the end).
struct Failure {
    status: u16,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status: status.as_u16(),
            message: message.into(),
        }
    }

    fn app_not_found() -> Failure {
        Failure::new(StatusCode::NOT_FOUND, "App not found")
    }

    fn answer(self) -> Answer {
        error_code(self.status, self.message)
    }
}

impl From<AppError> for Failure {
    fn from(e: AppError) -> Failure {
        Failure {
            status: e.status(),
            message: e.to_string(),
        }
    }
}

impl From<ControlError> for Failure {
    fn from(e: ControlError) -> Failure {
        Failure {
            status: e.status(),
            message: e.message().to_owned(),
        }
    }
}

/// A JSON body, or the 400 that says what is wrong with it.
fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Failure> {
    serde_json::from_slice(body).map_err(|e| Failure::new(StatusCode::BAD_REQUEST, format!("invalid body: {e}")))
}

/// The hosts of a body, validated and normalised as the host registry does
/// (lowercase, IDNA, no trailing dot).
fn normalise_hosts(hosts: &[String]) -> Result<Vec<HostName>, Failure> {
    hosts
        .iter()
        .map(|host| HostName::parse(host).map_err(|e| Failure::new(StatusCode::BAD_REQUEST, format!("host {e}"))))
        .collect()
}

/// `path` without `.` components and trailing slashes. Kept otherwise as
/// given, not canonical: a `current -> releases/v2` link must still be
/// followed at the next start.
fn tidy(path: &Path) -> PathBuf {
    path.components().filter(|c| *c != Component::CurDir).collect()
}

fn same_directory(a: &Path, b: &Path) -> bool {
    a == b
        || match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
}

/// The directory has an app entry (`index.rip`, `index.ts`, `index.js`, an
/// executable `index`), as `rip-server <dir>` would find it.
fn check_entry(directory: &Path) -> Result<(), Failure> {
    let Some(text) = directory.to_str() else {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            format!("directory {}: expected a UTF-8 path", directory.display()),
        ));
    };
    crate::config::resolve_app(text)
        .map(|_| ())
        .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, format!("directory {}: {}", text, e.message)))
}

/// No host of `hosts` is registered in `hosts.json` for another directory
/// than `directory` (409 when one is; 500 when the registry is unusable).
fn check_registry(home: &Path, hosts: &[HostName], directory: &Path) -> Result<(), Failure> {
    if hosts.is_empty() {
        return Ok(()); // a corrupt registry does not block an app without hosts
    }
    let registry = read_registry(home).map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    for host in hosts {
        if let Some(registered) = registry.get(host)
            && !same_directory(registered, directory)
        {
            return Err(Failure::new(
                StatusCode::CONFLICT,
                format!(
                    "host {:?} is registered for {} in {}",
                    host.as_str(),
                    registered.display(),
                    hosts_path(home).display()
                ),
            ));
        }
    }
    Ok(())
}

fn now() -> Option<String> {
    Some(rfc3339_millis(wall_micros()))
}

impl<C: AppControl> Api<C> {
    /// Saves `next`, runs `effect`, then takes `next` into memory; see the
    /// module doc. `current` is what the file held before.
    async fn commit(
        &self,
        current: &Apps,
        next: Apps,
        effect: impl Future<Output = Result<(), ControlError>>,
    ) -> Result<(), Failure> {
        if let Err(e) = self.store.save(&next) {
            return Err(Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot save {}: {e}; nothing changed", self.store.path().display()),
            ));
        }
        if let Err(e) = effect.await {
            if let Err(save) = self.store.save(current) {
                // The file now holds a change that did not happen; memory
                // does not, and the next successful save corrects the file.
                tracing::error!(
                    "platform: cannot write back {} after a failed change: {save}",
                    self.store.path().display()
                );
            }
            return Err(e.into());
        }
        *self.lock_apps() = next;
        Ok(())
    }

    /// `POST /api/apps`.
    pub(super) async fn create(&self, body: &[u8]) -> Answer {
        match self.try_create(body).await {
            Ok(answer) => answer,
            Err(failure) => failure.answer(),
        }
    }

    async fn try_create(&self, body: &[u8]) -> Result<Answer, Failure> {
        let mut new: NewApp = parse_body(body)?;
        let hosts = normalise_hosts(&new.hosts)?;
        new.hosts = hosts.iter().map(|h| h.as_str().to_owned()).collect();
        new.directory = tidy(&new.directory);
        let mut record = new.into_record(self.config.default_workers)?;
        check_directory(&record.directory)?;
        check_entry(&record.directory)?;
        check_registry(&self.config.home, &hosts, &record.directory)?;
        record.started_at = now();
        let _change = self.changes.lock().await;
        let current = self.apps();
        let mut next = current.clone();
        next.insert(record.clone())?;
        self.commit(&current, next, self.control.deploy(&record)).await?;
        Ok(json(StatusCode::CREATED, &self.app_json(&record).await))
    }

    /// `PATCH /api/apps/<name>`.
    pub(super) async fn patch(&self, name: &str, body: &[u8]) -> Answer {
        match self.try_patch(name, body).await {
            Ok(answer) => answer,
            Err(failure) => failure.answer(),
        }
    }

    async fn try_patch(&self, name: &str, body: &[u8]) -> Result<Answer, Failure> {
        let _change = self.changes.lock().await;
        let current = self.apps();
        let old = current.get(name).ok_or_else(Failure::app_not_found)?;
        let mut patch: AppPatch = parse_body(body)?;
        if let Some(hosts) = &patch.hosts {
            let hosts = normalise_hosts(hosts)?;
            check_registry(&self.config.home, &hosts, &old.directory)?;
            patch.hosts = Some(hosts.iter().map(|h| h.as_str().to_owned()).collect());
        }
        let record = patch.applied_to(old);
        let mut next = current.clone();
        next.replace(record.clone())?;
        self.commit(&current, next, self.control.reconfigure(&record)).await?;
        Ok(json(StatusCode::OK, &self.app_json(&record).await))
    }

    /// `DELETE /api/apps/<name>`.
    pub(super) async fn delete(&self, name: &str) -> Answer {
        let _change = self.changes.lock().await;
        let current = self.apps();
        let mut next = current.clone();
        if next.remove(name).is_none() {
            return Failure::app_not_found().answer();
        }
        if let Err(failure) = self.commit(&current, next, self.control.undeploy(name)).await {
            return failure.answer();
        }
        self.logs.remove(name);
        json(StatusCode::OK, &serde_json::json!({"status": "undeployed"}))
    }

    /// `POST /api/apps/<name>/start|stop|restart|scale`.
    pub(super) async fn act(&self, name: &str, action: Action, body: &[u8]) -> Answer {
        match self.try_act(name, action, body).await {
            Ok(answer) => answer,
            Err(failure) => failure.answer(),
        }
    }

    async fn try_act(&self, name: &str, action: Action, body: &[u8]) -> Result<Answer, Failure> {
        let _change = self.changes.lock().await;
        let current = self.apps();
        let mut record = current.get(name).ok_or_else(Failure::app_not_found)?.clone();
        let mut answer = serde_json::json!({"status": action.done(), "name": name});
        match action {
            Action::Start => {
                record.desired = Desired::Running;
                record.started_at = now();
            }
            Action::Stop => record.desired = Desired::Stopped,
            Action::Restart => {
                if record.desired == Desired::Stopped {
                    return Err(Failure::new(
                        StatusCode::CONFLICT,
                        format!("app {name:?} is stopped; start it instead"),
                    ));
                }
                record.started_at = now();
            }
            Action::Scale => {
                let ScaleBody { workers } = parse_body(body)?;
                check_workers(workers)?;
                record.workers = workers;
                answer["workers"] = workers.into();
            }
        }
        let mut next = current.clone();
        next.replace(record.clone())?;
        let control = &self.control;
        let effect = async {
            match action {
                Action::Start => control.start(&record).await,
                Action::Stop => control.stop(name).await,
                Action::Restart => control.restart(&record).await,
                // A stopped app only keeps the count for its next start.
                Action::Scale if record.desired == Desired::Stopped => Ok(()),
                Action::Scale => control.scale(name, record.workers).await,
            }
        };
        self.commit(&current, next, effect).await?;
        Ok(json(StatusCode::OK, &answer))
    }
}

/// The app name for a directory the registry names: its last component,
/// lowercased, other characters than `a-z 0-9 -` as `-`, cut to the rule's
/// 63 characters (`app` when nothing is left).
fn name_for_directory(directory: &Path) -> String {
    let base = directory
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let name: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches('-');
    let mut name: String = name.chars().take(63).collect();
    while name.ends_with('-') {
        name.pop();
    }
    if name.is_empty() { "app".to_owned() } else { name }
}

/// `base`, or `base-2`, `base-3`... : the first name no app has.
fn free_name(apps: &Apps, base: &str) -> String {
    if apps.get(base).is_none() {
        return base.to_owned();
    }
    (2u32..)
        .map(|n| {
            let suffix = format!("-{n}");
            let keep = 63 - suffix.len();
            format!("{}{suffix}", &base[..base.len().min(keep)])
        })
        .find(|name| apps.get(name).is_none())
        .unwrap_or_else(|| base.to_owned())
}

impl<C: AppControl> Api<C> {
    /// Deploys an app for every directory `hosts.json` names that no app
    /// serves yet (the contract's "a running platform deploys an app for a
    /// `hosts.json` path it does not serve yet"): named after the
    /// directory, the default worker count, no hosts of its own (its hosts
    /// are the registry's entries naming it), kept in `apps.json` like any
    /// other. Returns one line for each app deployed and for each directory
    /// refused (no entry, a directory others can write...); a directory is
    /// refused once per reason, not at every re-read of the registry.
    pub async fn adopt_registry(&self) -> Vec<String> {
        let registry = match read_registry(&self.config.home) {
            Ok(registry) => registry,
            Err(_) => return Vec::new(), // reported by the route reload
        };
        let mut directories: Vec<PathBuf> = registry.iter().map(|(_, dir)| dir.to_path_buf()).collect();
        directories.sort();
        directories.dedup();
        let mut lines = Vec::new();
        for directory in directories {
            let _change = self.changes.lock().await;
            let current = self.apps();
            if current.iter().any(|r| same_directory(&r.directory, &directory)) {
                continue;
            }
            let name = free_name(&current, &name_for_directory(&directory));
            let outcome = self.adopt(&current, &name, &directory).await;
            let mut refused = self.lock_adopt_refused();
            match outcome {
                Ok(()) => {
                    refused.remove(&directory);
                    lines.push(format!(
                        "deployed app {name} for {} (named in {})",
                        directory.display(),
                        hosts_path(&self.config.home).display()
                    ));
                }
                Err(failure) => {
                    if refused.get(&directory) != Some(&failure.message) {
                        lines.push(format!(
                            "cannot deploy {} (named in {}): {}",
                            directory.display(),
                            hosts_path(&self.config.home).display(),
                            failure.message
                        ));
                        refused.insert(directory, failure.message);
                    }
                }
            }
        }
        lines
    }

    async fn adopt(&self, current: &Apps, name: &str, directory: &Path) -> Result<(), Failure> {
        let record = NewApp {
            name: name.to_owned(),
            directory: tidy(directory),
            workers: None,
            hosts: Vec::new(),
            env: Default::default(),
        };
        let mut record = record.into_record(self.config.default_workers)?;
        check_directory(&record.directory)?;
        check_entry(&record.directory)?;
        record.started_at = now();
        let mut next = current.clone();
        next.insert(record.clone())?;
        self.commit(current, next, self.control.deploy(&record)).await
    }
}
