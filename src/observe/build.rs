//! Which build runs: the crate version and a build id, shown in `/status`
//! (`build`) so that a hitless upgrade can be seen to have taken effect.
//!
//! The id is a fingerprint of the executable file this process was started
//! from (its size, modification time and inode, read once at start): two
//! different builds put at the same path have different ids, the same file
//! keeps its id across restarts, and reading it costs one `stat` (a hash of
//! the file's bytes would cost a read of tens of megabytes at every start).

use std::os::unix::fs::MetadataExt as _;
use std::sync::OnceLock;

use serde::Serialize;

/// The build this process runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildInfo {
    /// The crate version (`CARGO_PKG_VERSION`).
    pub version: &'static str,
    /// 16 hex digits identifying the executable file; `unknown` when it
    /// cannot be read.
    pub id: String,
}

/// The build of this process, fixed at the first call (made at start).
pub fn current() -> &'static BuildInfo {
    static BUILD: OnceLock<BuildInfo> = OnceLock::new();
    BUILD.get_or_init(|| BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        id: executable_fingerprint().unwrap_or_else(|| "unknown".to_owned()),
    })
}

fn executable_fingerprint() -> Option<String> {
    // /proc/self/exe is the file this process runs, even if its path has
    // been replaced since.
    let meta = std::fs::metadata("/proc/self/exe").ok()?;
    Some(format!(
        "{:016x}",
        fnv1a(&[
            meta.len(),
            meta.mtime() as u64,
            meta.mtime_nsec() as u64,
            meta.ino(),
            meta.dev()
        ])
    ))
}

/// FNV-1a over the words' bytes: a stable, dependency-free mix.
fn fnv1a(words: &[u64]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in words.iter().flat_map(|w| w.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_stable_in_a_process_and_differs_between_files() {
        assert_eq!(current().id, current().id);
        assert_eq!(current().id.len(), 16);
        assert_ne!(fnv1a(&[1, 2, 3]), fnv1a(&[1, 2, 4]));
    }
}
