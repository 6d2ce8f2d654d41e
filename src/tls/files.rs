//! `cert:`/`key:` files: loaded at start (a missing or unusable file stops
//! the start, naming it), then watched and reloaded without a restart.
//!
//! The files are watched through their parent directories (notify, inotify
//! on Linux), not the files themselves: an editor or a deploy tool renames
//! a new file over the old one, and Kubernetes swaps a `..data` symlink
//! next to them; a watch on the old file would see neither. Events are
//! debounced ([`DEBOUNCE`]), then both files are read again; unchanged
//! bytes change nothing, a broken pair (half written, a key that does not
//! match) is logged and the last good pair keeps being served. `SIGHUP`
//! reloads too ([`CertFiles::reload`]). A certificate with under
//! [`EXPIRY_WARNING`] left is logged as a warning when it is loaded.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{Event, RecommendedWatcher, RecursiveMode, Watcher};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use super::resolver::{CertResolver, Served, WallClock};

/// Quiet time after the last change before the files are read again.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// A certificate with less than this left is warned about.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Reads and checks a pair, naming the file at fault.
pub fn load_pair(cert: &Path, key: &Path) -> Result<Served, String> {
    let cert_pem = std::fs::read(cert).map_err(|e| format!("{}: cannot read the certificate ({e})", cert.display()))?;
    let key_pem = std::fs::read(key).map_err(|e| format!("{}: cannot read the key ({e})", key.display()))?;
    pair_from_pem(cert, &cert_pem, key, &key_pem)
}

fn pair_from_pem(cert: &Path, cert_pem: &[u8], key: &Path, key_pem: &[u8]) -> Result<Served, String> {
    if let Err(e) = PrivateKeyDer::from_pem_slice(key_pem) {
        return Err(format!(
            "{}: not a PEM private key ({e}); expected PKCS#8, PKCS#1 or SEC1",
            key.display()
        ));
    }
    Served::from_pem(cert_pem, key_pem, None).map_err(|e| {
        if e.starts_with("the key") {
            format!("{} and {}: {e}", cert.display(), key.display())
        } else {
            format!("{}: {e}", cert.display())
        }
    })
}

/// Logs a warning when `served` has under [`EXPIRY_WARNING`] left at `now`.
pub fn warn_if_expiring(served: &Served, path: &Path, clock: &WallClock) {
    let left = served.info.time_left(clock());
    if left < EXPIRY_WARNING {
        let days = left.as_secs() / 86_400;
        let hours = left.as_secs() % 86_400 / 3600;
        tracing::warn!(
            "https: {}: the certificate expires in {days} days {hours} hours (serial {}); replace the file (it is reloaded when it changes)",
            path.display(),
            served.info.serial_hex
        );
    }
}

/// What a reload did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// The files hold the pair already served.
    Unchanged,
    /// A new pair is served; its serial.
    Replaced(String),
    /// The new files are unusable: the last good pair is kept.
    Kept(String),
}

/// A `cert:`/`key:` pair feeding a [`CertResolver`].
pub struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    resolver: Arc<CertResolver>,
    clock: WallClock,
    /// The bytes of the pair served, to tell a real change.
    served: Mutex<(Vec<u8>, Vec<u8>)>,
    /// Reloads done so far, and the outcome of the last.
    reloads: Mutex<(u64, Option<Reloaded>)>,
}

impl CertFiles {
    /// Loads the pair and a resolver serving it.
    pub fn open(cert: &Path, key: &Path, clock: WallClock) -> Result<Arc<CertFiles>, String> {
        let cert_pem =
            std::fs::read(cert).map_err(|e| format!("{}: cannot read the certificate ({e})", cert.display()))?;
        let key_pem = std::fs::read(key).map_err(|e| format!("{}: cannot read the key ({e})", key.display()))?;
        let served = pair_from_pem(cert, &cert_pem, key, &key_pem)?;
        warn_if_expiring(&served, cert, &clock);
        let resolver = Arc::new(CertResolver::files(served, clock.clone()));
        Ok(Arc::new(CertFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            resolver,
            clock,
            served: Mutex::new((cert_pem, key_pem)),
            reloads: Mutex::new((0, None)),
        }))
    }

    /// The resolver serving the pair.
    pub fn resolver(&self) -> Arc<CertResolver> {
        self.resolver.clone()
    }

    /// How many reloads ran, and what the last one did.
    pub fn reloads(&self) -> (u64, Option<Reloaded>) {
        self.reloads.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the files again; serves the new pair if it is good.
    pub fn reload(&self) -> Reloaded {
        let outcome = self.read_again();
        let mut reloads = self.reloads.lock().unwrap_or_else(|e| e.into_inner());
        *reloads = (reloads.0 + 1, Some(outcome.clone()));
        outcome
    }

    fn read_again(&self) -> Reloaded {
        let read = std::fs::read(&self.cert)
            .map_err(|e| format!("{}: cannot read the certificate ({e})", self.cert.display()))
            .and_then(|c| {
                std::fs::read(&self.key)
                    .map(|k| (c, k))
                    .map_err(|e| format!("{}: cannot read the key ({e})", self.key.display()))
            });
        let (cert_pem, key_pem) = match read {
            Ok(pair) => pair,
            Err(e) => return self.kept(e),
        };
        let mut served = self.served.lock().unwrap_or_else(|e| e.into_inner());
        if served.0 == cert_pem && served.1 == key_pem {
            return Reloaded::Unchanged;
        }
        match pair_from_pem(&self.cert, &cert_pem, &self.key, &key_pem) {
            Ok(pair) => {
                warn_if_expiring(&pair, &self.cert, &self.clock);
                let serial = pair.info.serial_hex.clone();
                tracing::info!("https: {}: certificate reloaded (serial {serial})", self.cert.display());
                self.resolver.replace_default(pair);
                *served = (cert_pem, key_pem);
                Reloaded::Replaced(serial)
            }
            Err(e) => self.kept(e),
        }
    }

    fn kept(&self, error: String) -> Reloaded {
        tracing::warn!("https: {error}; still serving the last good certificate");
        Reloaded::Kept(error)
    }

    /// Watches the files' directories and reloads after each burst of
    /// changes, until the returned guard drops. Needs a tokio runtime.
    pub fn watch(self: &Arc<Self>) -> Result<FileWatch, String> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
            if event.is_ok() {
                let _ = tx.send(());
            }
        })
        .map_err(|e| format!("cannot watch the certificate files ({e})"))?;
        let mut dirs: Vec<PathBuf> = [&self.cert, &self.key]
            .iter()
            .map(|p| p.parent().map_or_else(|| PathBuf::from("/"), Path::to_path_buf))
            .collect();
        dirs.dedup();
        for dir in &dirs {
            watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|e| format!("{}: cannot watch ({e})", dir.display()))?;
        }
        let files = self.clone();
        let task = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Debounce: wait for a quiet moment.
                loop {
                    match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                        Ok(Some(())) => continue,
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                let files = files.clone();
                let _ = tokio::task::spawn_blocking(move || files.reload()).await;
            }
        });
        Ok(FileWatch {
            _watcher: watcher,
            task,
        })
    }
}

/// Keeps the watch running; dropping it stops it.
pub struct FileWatch {
    _watcher: RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
