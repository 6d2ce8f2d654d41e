//! One file watcher per app, for hot reload: tells the driver that
//! something under the app directory changed.
//!
//! The watcher only reports; deciding is the core's job (`core::reload`
//! coalesces a burst into one reload, the supervisor rolls or reloads). So
//! the callback here is cheap and called once per relevant change.
//!
//! Directories are watched one by one (inotify through the `notify` crate,
//! non-recursive watches) rather than with one recursive watch, so that
//! `node_modules/`, `.git/` and other dot directories are never entered: a
//! recursive watch would add an inotify watch for each of their thousands of
//! directories and could exhaust the user's watch limit. A directory created
//! later is added when its creation is seen.
//!
//! Ignored: any path with a component that starts with `.` (dotfiles, `.git/`),
//! `node_modules/`, and editors' temporary files (`*~`, `*.swp`, `*.swo`,
//! `*.swx`, `*.tmp`, `#*#`, vim's `4913`, JetBrains' `*___jb_tmp___` and
//! `*___jb_old___`, `*.crswap`). Only changes count: opening or reading a
//! file (the workers do that when they reload) and metadata changes (atime,
//! chmod) are not changes.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use notify::event::{EventKind, ModifyKind};
use notify::{Event, RecommendedWatcher, RecursiveMode, Watcher};

/// A running watcher; stops when dropped.
pub struct AppWatcher {
    stop: mpsc::Sender<Note>,
}

enum Note {
    Event(notify::Result<Event>),
    Stop,
}

impl Drop for AppWatcher {
    fn drop(&mut self) {
        let _ = self.stop.send(Note::Stop);
    }
}

/// Whether a path under the app directory (given relative to it) is never
/// a reason to reload.
pub fn is_ignored(relative: &Path) -> bool {
    let mut components = relative.components().peekable();
    while let Some(component) = components.next() {
        let name = component.as_os_str().to_string_lossy();
        if name.starts_with('.') || name == "node_modules" {
            return true;
        }
        if components.peek().is_none() && is_editor_temporary(&name) {
            return true;
        }
    }
    false
}

fn is_editor_temporary(name: &str) -> bool {
    const SUFFIXES: &[&str] = &[
        "~",
        ".swp",
        ".swo",
        ".swx",
        ".tmp",
        ".crswap",
        "___jb_tmp___",
        "___jb_old___",
    ];
    name == "4913" || (name.starts_with('#') && name.ends_with('#')) || SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Whether the event is a change to the app (not a read, not metadata).
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

/// Starts watching `app_dir`; `on_change` is called (on the watcher's own
/// thread) once per event that changes a file that is not ignored, with the
/// first such path of the event.
pub fn watch(app_dir: &Path, on_change: impl Fn(&Path) + Send + 'static) -> notify::Result<AppWatcher> {
    let (tx, rx) = mpsc::channel();
    let events = tx.clone();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = events.send(Note::Event(event));
    })?;
    let root = app_dir.to_path_buf();
    add_tree(&mut watcher, &root, &root)?;
    std::thread::Builder::new()
        .name("rip-watch".into())
        .spawn(move || run(watcher, &root, &rx, &on_change))
        .map_err(notify::Error::io)?;
    Ok(AppWatcher { stop: tx })
}

fn run(mut watcher: RecommendedWatcher, root: &Path, rx: &mpsc::Receiver<Note>, on_change: &dyn Fn(&Path)) {
    while let Ok(Note::Event(event)) = rx.recv() {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("file watcher: {e}");
                continue;
            }
        };
        if !is_change(&event.kind) {
            continue;
        }
        let mut relevant: Option<&Path> = None;
        for path in &event.paths {
            let relative = path.strip_prefix(root).unwrap_or(path);
            if is_ignored(relative) {
                continue;
            }
            relevant.get_or_insert(path);
            let created = matches!(
                event.kind,
                EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(_))
            );
            if created
                && path.is_dir()
                && let Err(e) = add_tree(&mut watcher, root, path)
            {
                tracing::warn!("file watcher: cannot watch {}: {e}", path.display());
            }
        }
        if let Some(path) = relevant {
            tracing::debug!(path = %path.display(), "app file changed");
            on_change(path);
        }
    }
}

/// Watches `dir` and every directory below it that is not ignored.
fn add_tree(watcher: &mut RecommendedWatcher, root: &Path, dir: &Path) -> notify::Result<()> {
    let mut pending: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && !is_ignored(path.strip_prefix(root).unwrap_or(&path)) {
                pending.push(path);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dotfiles_node_modules_and_editor_temporaries_are_ignored() {
        for ignored in [
            ".git/HEAD",
            ".env",
            "src/.hidden.ts",
            "node_modules/x/index.js",
            "lib/node_modules/y.ts",
            "index.ts~",
            ".index.ts.swp",
            "index.ts.swp",
            "index.ts.swx",
            "4913",
            "src/#index.ts#",
            "index.ts.tmp",
            "index.ts___jb_tmp___",
            "index.ts.crswap",
        ] {
            assert!(is_ignored(Path::new(ignored)), "{ignored}");
        }
        for watched in [
            "index.ts",
            "src/greeting.ts",
            "lib/util.rip",
            "4913.ts",
            "data/x.json",
            "tmp/a.ts",
        ] {
            assert!(!is_ignored(Path::new(watched)), "{watched}");
        }
    }

    #[test]
    fn reads_and_metadata_changes_are_not_changes() {
        use notify::event::{AccessKind, CreateKind, DataChange, MetadataKind, RemoveKind, RenameMode};
        assert!(!is_change(&EventKind::Access(AccessKind::Any)));
        assert!(!is_change(&EventKind::Modify(ModifyKind::Metadata(
            MetadataKind::AccessTime
        ))));
        assert!(is_change(&EventKind::Modify(ModifyKind::Data(DataChange::Any))));
        assert!(is_change(&EventKind::Modify(ModifyKind::Name(RenameMode::To))));
        assert!(is_change(&EventKind::Create(CreateKind::File)));
        assert!(is_change(&EventKind::Remove(RemoveKind::File)));
    }

    #[test]
    fn changes_in_new_and_nested_directories_are_seen_and_ignored_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("node_modules/pkg")).unwrap();
        std::fs::create_dir_all(root.join("src")).unwrap();
        let (tx, rx) = mpsc::channel::<PathBuf>();
        let _watcher = watch(&root, move |path| {
            let _ = tx.send(path.to_path_buf());
        })
        .unwrap();
        let next = || rx.recv_timeout(Duration::from_secs(10)).expect("a change reported");

        // Ignored writes first, then one that counts: inotify keeps the
        // order, so had an ignored one been reported it would come first.
        std::fs::write(root.join("node_modules/pkg/index.js"), "x").unwrap();
        std::fs::write(root.join(".env"), "x").unwrap();
        std::fs::write(root.join("src/index.ts.swp"), "x").unwrap();
        std::fs::write(root.join("src/a.ts"), "x").unwrap();
        assert_eq!(next(), root.join("src/a.ts"));
        // Reading is not a change; a directory made after the start is
        // watched too: after the rest of a.ts's events come the new
        // directory and then its file.
        let _ = std::fs::read(root.join("src/a.ts")).unwrap();
        std::fs::create_dir(root.join("lib")).unwrap();
        let mut seen = next();
        while seen == root.join("src/a.ts") {
            seen = next();
        }
        assert_eq!(seen, root.join("lib"));
        std::fs::write(root.join("lib/b.ts"), "x").unwrap();
        assert_eq!(next(), root.join("lib/b.ts"));
    }
}
