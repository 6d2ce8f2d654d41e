//! `$RIP_HOME/certs/`: the leaves the CA issued, `<name>.crt` (the chain:
//! leaf, then root) and `<name>.key` (PKCS#8), each 0600 and written
//! atomically, in a 0700 directory.
//!
//! It is a cache: a leaf can always be issued again, so a file that cannot
//! be read or parsed, or whose key does not match, is replaced (unlike the
//! root, which is never overwritten). Issuing takes an exclusive lock on
//! `certs/.lock`, so that two processes renewing the same name at once
//! leave one consistent pair; reading takes none (each file is replaced by
//! a rename, and a half-updated pair shows up as a key that does not match,
//! which sends the reader to the locked path).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::CaError;
use super::leaf::{Leaf, Provenance, parse};
use crate::config::home::{FileLock, ensure_private_dir, lock_exclusive, write_private_atomically};

/// The directory of issued leaves in `$RIP_HOME`.
pub const CERTS_DIR: &str = "certs";
/// The lock file serialising issuance.
const LOCK_FILE: &str = ".lock";

/// `<home>/certs`.
pub fn certs_dir(home: &Path) -> PathBuf {
    home.join(CERTS_DIR)
}

/// A file name for any host name: letters, digits, `-` and inner `.` as
/// they are; every other byte (`*`, `:`, `_`, a leading `.`) as `_` and two
/// hex digits. So `*.app.test` is `_2a.app.test` and `::1` is `_3a_3a1`:
/// no `/`, never a dotfile, and two names never share a file.
pub fn file_stem(name: &str) -> String {
    let mut stem = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric() || b == b'-' || (b == b'.' && i > 0);
        if plain {
            stem.push(char::from(b));
        } else {
            stem.push_str(&format!("_{b:02x}"));
        }
    }
    stem
}

/// The name a [`file_stem`] was made from (`None` if it is not one).
pub fn name_of_stem(stem: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(stem.len());
    let mut rest = stem.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'_' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// The two files of one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafFiles {
    /// `<name>.crt`.
    pub cert: PathBuf,
    /// `<name>.key`.
    pub key: PathBuf,
}

impl LeafFiles {
    /// The files for `name` in `home`.
    pub fn of(home: &Path, name: &str) -> LeafFiles {
        let stem = file_stem(name);
        let dir = certs_dir(home);
        LeafFiles {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        }
    }

    /// The cached leaf: `None` when there is none; `Some(Err)` with what is
    /// wrong when the files cannot be read or parsed.
    pub(super) fn read(&self) -> Option<Result<(Leaf, Provenance), String>> {
        let chain = match fs::read_to_string(&self.cert) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => return Some(Err(format!("cannot read {} ({e})", self.cert.display()))),
        };
        let key = match fs::read_to_string(&self.key) {
            Ok(text) => text,
            Err(e) => return Some(Err(format!("cannot read {} ({e})", self.key.display()))),
        };
        Some(parse(chain, key).map_err(|e| format!("{}: {e}", self.cert.display())))
    }

    /// Writes `leaf` (key first; each file atomic and 0600), creating the
    /// directory (0700) if needed.
    pub(super) fn write(&self, leaf: &Leaf) -> Result<(), CaError> {
        let dir = self.cert.parent().unwrap_or(Path::new("."));
        ensure_private_dir(dir).map_err(|e| CaError::file(dir, format!("cannot create it ({e})")))?;
        write_private_atomically(&self.key, leaf.key_pem.as_bytes())
            .map_err(|e| CaError::file(&self.key, format!("cannot write it ({e})")))?;
        write_private_atomically(&self.cert, leaf.chain_pem.as_bytes())
            .map_err(|e| CaError::file(&self.cert, format!("cannot write it ({e})")))
    }
}

/// Holds `certs/.lock` (creating the directory) while a leaf is issued.
pub(super) fn lock_issuance(home: &Path) -> Result<FileLock, CaError> {
    let dir = certs_dir(home);
    ensure_private_dir(&dir).map_err(|e| CaError::file(&dir, format!("cannot create it ({e})")))?;
    let path = dir.join(LOCK_FILE);
    lock_exclusive(&path).map_err(|e| CaError::file(&path, format!("cannot lock it ({e})")))
}

/// One issued leaf found in `certs/`.
pub struct Listed {
    /// The name its files are for.
    pub name: String,
    /// Its files.
    pub files: LeafFiles,
    /// The leaf, or what is wrong with its files.
    pub leaf: Result<Leaf, String>,
}

/// Every `<name>.crt` in `certs/`, by name (no directory: none).
pub fn list(home: &Path) -> Result<Vec<Listed>, CaError> {
    let mut listed: Vec<Listed> = cert_stems(home)?
        .into_iter()
        .map(|stem| {
            let name = name_of_stem(&stem).unwrap_or_else(|| stem.clone());
            let files = LeafFiles::of(home, &name);
            let leaf = match files.read() {
                Some(read) => read.map(|(leaf, _)| leaf),
                None => Err(format!("{} disappeared", files.cert.display())),
            };
            Listed { name, files, leaf }
        })
        .collect();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(listed)
}

/// Removes every issued leaf (`*.crt` and `*.key`, not dotfiles) from
/// `certs/`; returns how many certificates it removed.
pub fn remove_all(home: &Path) -> Result<usize, CaError> {
    let dir = certs_dir(home);
    let _lock = match fs::metadata(&dir) {
        Ok(_) => Some(lock_issuance(home)?),
        Err(_) => None,
    };
    let mut removed = 0;
    for entry in read_dir(&dir)? {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !(name.ends_with(".crt") || name.ends_with(".key")) {
            continue;
        }
        let path = entry.path();
        fs::remove_file(&path).map_err(|e| CaError::file(&path, format!("cannot remove it ({e})")))?;
        if name.ends_with(".crt") {
            removed += 1;
        }
    }
    Ok(removed)
}

fn cert_stems(home: &Path) -> Result<Vec<String>, CaError> {
    let mut stems = Vec::new();
    for entry in read_dir(&certs_dir(home))? {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".crt")
            && !name.starts_with('.')
        {
            stems.push(stem.to_string());
        }
    }
    Ok(stems)
}

/// The entries of `dir`; none when it does not exist.
fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>, CaError> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CaError::file(dir, format!("cannot list it ({e})"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(CaError::file(dir, format!("cannot list it ({e})"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_has_a_safe_file_name_of_its_own() {
        for (name, stem) in [
            ("localhost", "localhost"),
            ("app.localhost", "app.localhost"),
            ("*.app.test", "_2a.app.test"),
            ("::1", "_3a_3a1"),
            ("127.0.0.1", "127.0.0.1"),
            ("..", "_2e."),
            ("a/b", "a_2fb"),
            ("_2a", "_5f2a"),
        ] {
            assert_eq!(file_stem(name), stem, "{name}");
            assert_eq!(name_of_stem(stem).as_deref(), Some(name), "{stem}");
        }
        assert_ne!(file_stem("*.a"), file_stem("_2a.a"));
    }
}
