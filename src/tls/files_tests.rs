//! `cert:`/`key:` reloading with real files and a real watcher: a rename
//! over the file, a Kubernetes-style `..data` symlink swap, a broken
//! replacement (the last good pair kept), SIGHUP's reload. Each test waits
//! for the condition with a deadline, never for a fixed time.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::tls::resolver::system_clock;

/// A new self-signed pair (a new key, so a new serial): (cert PEM, key PEM, serial).
fn pair() -> (String, String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let serial = crate::tls::info::CertInfo::from_der(cert.der()).unwrap().serial_hex;
    (cert.pem(), key.serialize_pem(), serial)
}

fn write_pair(dir: &Path, (cert, key, _): &(String, String, String)) {
    std::fs::write(dir.join("tls.crt"), cert).unwrap();
    std::fs::write(dir.join("tls.key"), key).unwrap();
}

/// Replaces `path` by renaming a new file over it, as deploy tools do.
fn rename_over(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Polls `done` until it holds; fails after a generous bound.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let polled = tokio::time::timeout(Duration::from_secs(10), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    assert!(polled.await.is_ok(), "{what}: not within 10 s");
}

async fn wait_for_serial(files: &CertFiles, serial: &str) {
    eventually(&format!("serial {serial} served"), || {
        files.resolver().default_certificate().info.serial_hex == serial
    })
    .await;
}

#[test]
fn a_missing_or_broken_pair_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let e = load_pair(&cert, &key).unwrap_err();
    assert!(e.contains("tls.crt") && e.contains("cannot read"), "{e}");
    let good = pair();
    write_pair(dir.path(), &good);
    assert_eq!(load_pair(&cert, &key).unwrap().info.serial_hex, good.2);
    std::fs::write(&key, "nonsense").unwrap();
    let e = load_pair(&cert, &key).unwrap_err();
    assert!(e.contains("tls.key") && e.contains("private key"), "{e}");
    // A key of another pair.
    std::fs::write(&key, pair().1).unwrap();
    let e = load_pair(&cert, &key).unwrap_err();
    assert!(e.contains("does not match"), "{e}");
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
    std::fs::write(&key, good.1).unwrap();
    assert!(load_pair(&cert, &key).unwrap_err().contains("tls.crt"));
}

#[test]
fn reload_keeps_the_last_good_pair() {
    let dir = tempfile::tempdir().unwrap();
    let first = pair();
    write_pair(dir.path(), &first);
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let files = CertFiles::open(&cert, &key, system_clock()).unwrap();
    assert_eq!(files.reload(), Reloaded::Unchanged);
    // Half written: the old pair stays.
    std::fs::write(&cert, &first.0[..first.0.len() / 2]).unwrap();
    assert!(matches!(files.reload(), Reloaded::Kept(_)));
    assert_eq!(files.resolver().default_certificate().info.serial_hex, first.2);
    // Gone for a moment: still the old pair.
    std::fs::remove_file(&key).unwrap();
    assert!(matches!(files.reload(), Reloaded::Kept(e) if e.contains("tls.key")));
    let second = pair();
    write_pair(dir.path(), &second);
    assert_eq!(files.reload(), Reloaded::Replaced(second.2.clone()));
    assert_eq!(files.resolver().info().certificate.serial_hex, second.2);
}

#[tokio::test]
async fn a_file_renamed_over_the_old_one_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), &pair());
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let files = CertFiles::open(&cert, &key, system_clock()).unwrap();
    let _watch = files.watch().unwrap();
    let next = pair();
    rename_over(&key, &next.1);
    rename_over(&cert, &next.0);
    wait_for_serial(&files, &next.2).await;
    // A broken replacement is read, refused, and the last good pair kept.
    let (before, _) = files.reloads();
    rename_over(&cert, "not a certificate");
    eventually(
        "the broken file read and refused",
        || matches!(files.reloads(), (n, Some(Reloaded::Kept(_))) if n > before),
    )
    .await;
    assert_eq!(files.resolver().default_certificate().info.serial_hex, next.2);
    let fixed = pair();
    rename_over(&key, &fixed.1);
    rename_over(&cert, &fixed.0);
    wait_for_serial(&files, &fixed.2).await;
}

#[tokio::test]
async fn a_kubernetes_style_symlink_swap_is_seen() {
    // dir/tls.crt -> ..data/tls.crt, ..data -> ..v1; the update writes ..v2,
    // points ..data_tmp at it and renames ..data_tmp over ..data.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let v1 = root.join("..v1");
    std::fs::create_dir(&v1).unwrap();
    write_pair(&v1, &pair());
    std::os::unix::fs::symlink("..v1", root.join("..data")).unwrap();
    for name in ["tls.crt", "tls.key"] {
        std::os::unix::fs::symlink(format!("..data/{name}"), root.join(name)).unwrap();
    }
    let files = CertFiles::open(&root.join("tls.crt"), &root.join("tls.key"), system_clock()).unwrap();
    let _watch = files.watch().unwrap();
    let v2 = root.join("..v2");
    std::fs::create_dir(&v2).unwrap();
    let next = pair();
    write_pair(&v2, &next);
    std::os::unix::fs::symlink("..v2", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(&v1).unwrap();
    wait_for_serial(&files, &next.2).await;
}
