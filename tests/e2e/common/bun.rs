//! Bun for the tests that run TypeScript and Rip apps in Bun workers.
//!
//! [`bun()`] returns a working Bun [`BUN_VERSION`], installing it the first
//! time: on a fresh machine (CI included) nothing but `npm` is needed, and a
//! developer with another Bun on the PATH still tests against the pinned one.
//! `RIP_TEST_BUN=/path/to/bun` uses that binary instead and installs nothing.
//!
//! The pinned copy lives in `<target dir>/test-tools/bun-<version>/` (the
//! target dir is `CARGO_TARGET_DIR` or `<crate>/target`, already ignored by
//! git), so `cargo clean` removes it and every later run reuses it. Several
//! test binaries (and `cargo test` runs) may start at once on a fresh
//! machine, so the install runs under an exclusive `flock` on
//! `test-tools/bun.lock`, re-checks after taking it, installs into a staging
//! directory and publishes it with one `rename`: nobody ever sees a half
//! installed Bun. A failed install panics naming npm, the network and
//! `RIP_TEST_BUN`: a Bun test never passes by skipping.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The Bun version the tests pin.
pub const BUN_VERSION: &str = "1.4.5";

/// A Bun [`BUN_VERSION`] binary (or `RIP_TEST_BUN`), installed once if missing.
pub fn bun() -> PathBuf {
    static BUN: OnceLock<PathBuf> = OnceLock::new();
    BUN.get_or_init(locate_or_install).clone()
}

/// The example apps (`<crate>/examples`: hello-ts, json-api, rip-app).
pub fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn locate_or_install() -> PathBuf {
    if let Some(path) = std::env::var_os("RIP_TEST_BUN") {
        let path = PathBuf::from(path);
        assert!(
            is_executable(&path),
            "RIP_TEST_BUN={} is not an executable file",
            path.display()
        );
        return path;
    }
    let tools = target_dir().join("test-tools");
    let home = tools.join(format!("bun-{BUN_VERSION}"));
    let pinned = bun_in(&home);
    if is_pinned_version(&pinned) {
        return pinned;
    }
    fs::create_dir_all(&tools).unwrap_or_else(|e| panic!("cannot create {}: {e}", tools.display()));
    let lock_path = tools.join("bun.lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", lock_path.display()));
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));
    // Another test binary may have installed it while this one waited.
    if !is_pinned_version(&pinned) {
        install(&tools, &home);
    }
    unlock(lock);
    assert!(
        is_pinned_version(&pinned),
        "{} does not report version {BUN_VERSION} after the install",
        pinned.display()
    );
    pinned
}

/// Installs Bun into a staging directory beside `home`, then renames it to `home`.
fn install(tools: &Path, home: &Path) {
    let staging = tools.join(format!("bun-{BUN_VERSION}.staging-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).unwrap_or_else(|e| panic!("cannot create {}: {e}", staging.display()));
    eprintln!(
        "installing Bun {BUN_VERSION} for the tests into {} (npm)",
        home.display()
    );
    let npm = Command::new("npm")
        .arg("install")
        .arg("--prefix")
        .arg(&staging)
        .args(["--no-save", "--no-audit", "--no-fund", "--loglevel=error"])
        .arg(format!("bun@{BUN_VERSION}"))
        .stdin(Stdio::null())
        .output();
    let failed = |why: String| install_failed(&staging, &why);
    match npm {
        Err(e) => failed(format!("cannot run npm: {e}")),
        Ok(out) if !out.status.success() => failed(format!(
            "npm {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => {}
    }
    let staged = bun_in(&staging);
    if !is_pinned_version(&staged) {
        // The package's postinstall puts the real binary in place; npm skips it
        // when scripts are disabled (ignore-scripts), so run it ourselves.
        let _ = Command::new("node")
            .arg("install.js")
            .current_dir(staging.join("node_modules").join("bun"))
            .stdin(Stdio::null())
            .output();
    }
    if !is_pinned_version(&staged) {
        failed(format!("{} does not report version {BUN_VERSION}", staged.display()));
    }
    // A broken or outdated copy (it failed the version check) makes way.
    let _ = fs::remove_dir_all(home);
    if let Err(e) = fs::rename(&staging, home) {
        failed(format!(
            "cannot rename {} to {}: {e}",
            staging.display(),
            home.display()
        ));
    }
}

fn install_failed(staging: &Path, why: &str) -> ! {
    let _ = fs::remove_dir_all(staging);
    panic!(
        "cannot install Bun {BUN_VERSION} for the tests with `npm install bun@{BUN_VERSION}`: {why}\n\
         The Bun tests need npm and network access to the npm registry, or RIP_TEST_BUN=/path/to/bun \
         naming a Bun {BUN_VERSION} binary."
    )
}

fn unlock(lock: File) {
    let _ = rustix::fs::flock(&lock, rustix::fs::FlockOperation::Unlock);
}

/// Where npm puts the `bun` command under an install prefix.
fn bun_in(prefix: &Path) -> PathBuf {
    prefix.join("node_modules").join(".bin").join("bun")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    )
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether `bun --version` runs and prints [`BUN_VERSION`].
fn is_pinned_version(bun: &Path) -> bool {
    if !is_executable(bun) {
        return false;
    }
    Command::new(bun)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == BUN_VERSION)
}
