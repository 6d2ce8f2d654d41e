//! The operating system's trust store: the root as a file in the first
//! anchors directory that exists, then that system's update command
//! (mkcert's steps). Needs root's rights on a real system; a refusal is
//! reported as a failure of this store only.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use super::run::{run, shell_line};
use super::{Outcome, StoreReport, TrustEnv, trust_name};
use crate::config::home::write_private_atomically;
use crate::tls::ca::DevCa;

/// One system layout.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Which family of systems.
    pub family: &'static str,
    /// The anchors directory (absolute).
    pub dir: &'static str,
    /// The extension its tool wants.
    pub extension: &'static str,
    /// The command that rebuilds the bundles from the directory.
    pub update: &'static [&'static str],
}

/// The layouts, in the order they are looked for.
pub const LAYOUTS: [Layout; 3] = [
    Layout {
        family: "Debian",
        dir: "/usr/local/share/ca-certificates",
        // update-ca-certificates takes only *.crt.
        extension: "crt",
        update: &["update-ca-certificates"],
    },
    Layout {
        family: "Fedora",
        dir: "/etc/pki/ca-trust/source/anchors",
        extension: "pem",
        update: &["update-ca-trust", "extract"],
    },
    Layout {
        family: "Arch",
        dir: "/etc/ca-certificates/trust-source/anchors",
        extension: "crt",
        update: &["trust", "extract-compat"],
    },
];

/// The store found here: its layout and the root's file in it.
struct Found {
    layout: Layout,
    dir: PathBuf,
    file: PathBuf,
}

impl Found {
    fn label(&self) -> String {
        format!("system store ({}: {})", self.layout.family, self.dir.display())
    }

    fn update(&self) -> Vec<String> {
        self.layout.update.iter().map(|s| s.to_string()).collect()
    }

    /// Whether the file there is this root.
    fn holds(&self, ca: &DevCa) -> bool {
        fs::read(&self.file).is_ok_and(|bytes| bytes == ca.root_pem().as_bytes())
    }
}

/// `path` under the test root, if any.
fn under(root: Option<&Path>, path: &str) -> PathBuf {
    match root {
        Some(root) => root.join(path.trim_start_matches('/')),
        None => PathBuf::from(path),
    }
}

/// The first layout whose directory exists here, or the skip line.
fn find(ca: &DevCa, env: &TrustEnv) -> Result<Found, StoreReport> {
    let root = env.system_root.as_deref();
    let file_stem = trust_name(ca).replace(' ', "-").to_ascii_lowercase();
    LAYOUTS
        .iter()
        .find_map(|layout| {
            let dir = under(root, layout.dir);
            dir.is_dir().then(|| Found {
                file: dir.join(format!("{file_stem}.{}", layout.extension)),
                layout: *layout,
                dir,
            })
        })
        .ok_or_else(|| {
            let looked: Vec<String> = LAYOUTS
                .iter()
                .map(|l| under(root, l.dir).display().to_string())
                .collect();
            StoreReport {
                store: "system store".into(),
                outcome: Outcome::Skipped(format!(
                    "no system trust directory was found (looked for {})",
                    looked.join(", ")
                )),
            }
        })
}

/// Adds the root: writes the file (0644: trust anchors are public), runs
/// the update command; if that fails the file is removed again, so that
/// "already trusted" always means the update ran.
pub fn trust(ca: &DevCa, env: &TrustEnv, dry_run: bool) -> StoreReport {
    let found = match find(ca, env) {
        Ok(found) => found,
        Err(skipped) => return skipped,
    };
    let report = |outcome| StoreReport {
        store: found.label(),
        outcome,
    };
    if found.holds(ca) {
        return report(Outcome::AlreadyTrusted);
    }
    let copy = vec![
        "install".to_string(),
        "-m".into(),
        "644".into(),
        ca.files().cert.display().to_string(),
        found.file.display().to_string(),
    ];
    if dry_run {
        return report(Outcome::WouldRun(vec![shell_line(&copy), shell_line(&found.update())]));
    }
    if let Err(e) = install(&found.file, ca) {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            "; the system store needs root: run \"sudo rip-server ca trust\" with the same RIP_HOME"
        } else {
            ""
        };
        return report(Outcome::Failed(format!(
            "cannot write {} ({e}){hint}",
            found.file.display()
        )));
    }
    match run(&found.update()) {
        Ok(()) => report(Outcome::Trusted),
        Err(why) => {
            let _ = fs::remove_file(&found.file);
            report(Outcome::Failed(format!(
                "{why} (the certificate file was removed again)"
            )))
        }
    }
}

/// Removes the root's file and runs the update command; if that fails the
/// file is put back, so that running it again tries again.
pub fn untrust(ca: &DevCa, env: &TrustEnv, dry_run: bool) -> StoreReport {
    let found = match find(ca, env) {
        Ok(found) => found,
        Err(skipped) => return skipped,
    };
    let report = |outcome| StoreReport {
        store: found.label(),
        outcome,
    };
    if !found.file.exists() {
        return report(Outcome::NotTrusted);
    }
    let remove = vec!["rm".to_string(), found.file.display().to_string()];
    if dry_run {
        return report(Outcome::WouldRun(vec![
            shell_line(&remove),
            shell_line(&found.update()),
        ]));
    }
    if let Err(e) = fs::remove_file(&found.file) {
        return report(Outcome::Failed(format!("cannot remove {} ({e})", found.file.display())));
    }
    match run(&found.update()) {
        Ok(()) => report(Outcome::Untrusted),
        Err(why) => {
            // Put it back, so that running it again tries the update again.
            let restored = install(&found.file, ca).is_ok();
            let note = if restored {
                " (the certificate file was put back)"
            } else {
                ""
            };
            report(Outcome::Failed(format!("{why}{note}")))
        }
    }
}

/// Writes the root to `file`, 0644 (trust anchors are public).
fn install(file: &Path, ca: &DevCa) -> std::io::Result<()> {
    write_private_atomically(file, ca.root_pem().as_bytes())?;
    fs::set_permissions(file, fs::Permissions::from_mode(0o644))
}

/// Whether the system store holds the root (read-only).
pub fn status(ca: &DevCa, env: &TrustEnv) -> StoreReport {
    match find(ca, env) {
        Ok(found) => StoreReport {
            store: found.label(),
            outcome: if found.holds(ca) {
                Outcome::AlreadyTrusted
            } else {
                Outcome::NotTrusted
            },
        },
        Err(skipped) => skipped,
    }
}
