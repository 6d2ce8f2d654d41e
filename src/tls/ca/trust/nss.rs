//! NSS databases (Chromium, Firefox): every `cert9.db` directory under the
//! user's home in the places those browsers keep one, each changed with
//! `certutil` (Debian's libnss3-tools, Fedora's nss-tools) and reported on
//! its own line.

use std::path::{Path, PathBuf};

use super::run::{run, shell_line};
use super::{Outcome, StoreReport, TrustEnv, trust_name};
use crate::tls::ca::DevCa;

/// Databases used as they are (relative to `$HOME`): Chromium's old and
/// new (M146+, XDG) places and the snap's.
pub const DATABASES: [&str; 3] = [
    ".pki/nssdb",
    ".local/share/pki/nssdb",
    "snap/chromium/current/.pki/nssdb",
];
/// Directories of Firefox profiles (relative to `$HOME`): classic, XDG,
/// snap; each profile directory is a database.
pub const PROFILE_DIRS: [&str; 3] = [
    ".mozilla/firefox",
    ".config/mozilla/firefox",
    "snap/firefox/common/.mozilla/firefox",
];

/// The NSS databases under `home`: the directories above holding `cert9.db`
/// (the SQL format; the old `cert8.db` is not supported by `sql:`).
pub fn databases(home: &Path) -> Vec<PathBuf> {
    let mut candidates: Vec<PathBuf> = DATABASES.iter().map(|d| home.join(d)).collect();
    for dir in PROFILE_DIRS {
        let mut profiles: Vec<PathBuf> = std::fs::read_dir(home.join(dir))
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .collect();
        profiles.sort();
        candidates.extend(profiles);
    }
    candidates.retain(|dir| dir.join("cert9.db").is_file());
    candidates
}

fn label(db: &Path) -> String {
    format!("NSS database {}", db.display())
}

fn certutil(db: &Path, args: &[&str]) -> Vec<String> {
    let mut argv = vec!["certutil".to_string()];
    for arg in args {
        argv.push(arg.to_string());
    }
    argv.push("-d".into());
    argv.push(format!("sql:{}", db.display()));
    argv
}

/// The databases to act on, or the one line saying why there are none.
fn each(env: &TrustEnv) -> Result<Vec<PathBuf>, StoreReport> {
    let skip = |why: String| StoreReport {
        store: "NSS (Chromium, Firefox)".into(),
        outcome: Outcome::Skipped(why),
    };
    let Some(home) = &env.user_home else {
        return Err(skip("HOME is not set".into()));
    };
    let found = databases(home);
    if found.is_empty() {
        let mut looked: Vec<String> = DATABASES.iter().map(|d| format!("~/{d}")).collect();
        looked.extend(PROFILE_DIRS.iter().map(|d| format!("~/{d}/*")));
        return Err(skip(format!(
            "no NSS database (cert9.db) was found in {}",
            looked.join(", ")
        )));
    }
    Ok(found)
}

/// Whether `db` holds the root: `certutil -L -n <nickname>` succeeds.
/// `Err` when certutil cannot tell (not installed, database unreadable).
fn holds(db: &Path, nickname: &str) -> Result<bool, String> {
    let argv = certutil(db, &["-L", "-n", nickname]);
    match run(&argv) {
        Ok(()) => Ok(true),
        // certutil says "could not find certificate named ..." with status 255.
        Err(why) if why.contains("exit status") => Ok(false),
        Err(why) => Err(why),
    }
}

/// Adds the root to every database (`certutil -A -t C,,`: a CA trusted
/// for TLS servers).
pub fn trust(ca: &DevCa, env: &TrustEnv, dry_run: bool) -> Vec<StoreReport> {
    let nickname = trust_name(ca);
    let root = ca.files().cert.display().to_string();
    let dbs = match each(env) {
        Ok(dbs) => dbs,
        Err(skipped) => return vec![skipped],
    };
    dbs.iter()
        .map(|db| {
            let add = certutil(db, &["-A", "-t", "C,,", "-n", &nickname, "-i", &root]);
            let outcome = match holds(db, &nickname) {
                Ok(true) => Outcome::AlreadyTrusted,
                _ if dry_run => Outcome::WouldRun(vec![shell_line(&add)]),
                Err(why) => Outcome::Failed(install_hint(why)),
                Ok(false) => match run(&add) {
                    Ok(()) => Outcome::Trusted,
                    Err(why) => Outcome::Failed(why),
                },
            };
            StoreReport {
                store: label(db),
                outcome,
            }
        })
        .collect()
}

/// Removes the root from every database that holds it.
pub fn untrust(ca: &DevCa, env: &TrustEnv, dry_run: bool) -> Vec<StoreReport> {
    let nickname = trust_name(ca);
    let dbs = match each(env) {
        Ok(dbs) => dbs,
        Err(skipped) => return vec![skipped],
    };
    dbs.iter()
        .map(|db| {
            let delete = certutil(db, &["-D", "-n", &nickname]);
            let outcome = match holds(db, &nickname) {
                Ok(false) => Outcome::NotTrusted,
                _ if dry_run => Outcome::WouldRun(vec![shell_line(&delete)]),
                Err(why) => Outcome::Failed(install_hint(why)),
                Ok(true) => match run(&delete) {
                    Ok(()) => Outcome::Untrusted,
                    Err(why) => Outcome::Failed(why),
                },
            };
            StoreReport {
                store: label(db),
                outcome,
            }
        })
        .collect()
}

/// Whether each database holds the root (read-only).
pub fn status(ca: &DevCa, env: &TrustEnv) -> Vec<StoreReport> {
    let nickname = trust_name(ca);
    match each(env) {
        Ok(dbs) => dbs
            .iter()
            .map(|db| StoreReport {
                store: label(db),
                outcome: match holds(db, &nickname) {
                    Ok(true) => Outcome::AlreadyTrusted,
                    Ok(false) => Outcome::NotTrusted,
                    Err(why) => Outcome::Failed(install_hint(why)),
                },
            })
            .collect(),
        Err(skipped) => vec![skipped],
    }
}

fn install_hint(why: String) -> String {
    if why.contains("not found on PATH") {
        format!("{why} (Debian, Ubuntu: apt-get install libnss3-tools; Fedora: dnf install nss-tools)")
    } else {
        why
    }
}
