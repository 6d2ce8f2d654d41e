//! The last lines of each app's worker output, kept in memory for
//! `GET /api/apps/<name>/logs` and the dashboard's log tail.
//!
//! One [`LogRing`] per app: a bounded ring of at most `capacity` lines
//! (default [`DEFAULT_LOG_LINES`]), each at most [`MAX_LINE_BYTES`] bytes, so
//! an app that prints without end, or prints one endless line, costs a fixed
//! amount of memory. Appending takes one short lock and, once the ring is
//! full, reuses the buffer of the line it drops (no allocation per line in
//! the steady state). [`AppLogs`] holds the rings by app name; the platform's
//! wiring appends to an app's ring as its workers print, the API reads a
//! snapshot.
//!
//! The lines are kept in memory only: they may hold whatever the app
//! prints (secrets included), so they are never written to `RIP_HOME` and
//! are served only behind the API's authentication.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// How many lines each app keeps by default.
pub const DEFAULT_LOG_LINES: usize = 500;
/// The longest line kept, in bytes; a longer one is cut (at a character
/// boundary) and ends with [`TRUNCATED`].
pub const MAX_LINE_BYTES: usize = 4096;
/// What ends a line that was cut.
pub const TRUNCATED: &str = "…";

/// One app's last lines of output.
#[derive(Debug)]
pub struct LogRing {
    capacity: usize,
    lines: Mutex<VecDeque<String>>,
}

impl LogRing {
    /// A ring keeping at most `capacity` lines (at least one).
    pub fn new(capacity: usize) -> LogRing {
        let capacity = capacity.max(1);
        LogRing {
            capacity,
            lines: Mutex::new(VecDeque::with_capacity(capacity)),
        }
    }

    /// The most lines it keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Appends `text`: one line per `\n`-separated piece (a trailing `\r` is
    /// dropped, so is the empty piece after a final `\n`). The oldest lines
    /// go when the ring is full.
    pub fn push(&self, text: &str) {
        let text = text.strip_suffix('\n').unwrap_or(text);
        let mut lines = self.lock();
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            let mut slot = if lines.len() >= self.capacity {
                // Reuse the dropped line's buffer.
                let mut old = lines.pop_front().unwrap_or_default();
                old.clear();
                old
            } else {
                String::new()
            };
            push_capped(&mut slot, line);
            lines.push_back(slot);
        }
    }

    /// Appends output bytes (invalid UTF-8 is replaced, not dropped).
    pub fn push_bytes(&self, bytes: &[u8]) {
        self.push(&String::from_utf8_lossy(bytes));
    }

    /// The lines kept now, oldest first.
    pub fn snapshot(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    /// How many lines it holds now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<String>> {
        // A panic while appending cannot leave the ring inconsistent (every
        // step keeps it a valid deque), so a poisoned lock is still usable.
        self.lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `line`, cut to [`MAX_LINE_BYTES`] (marker included) at a character
/// boundary, appended to `out`.
fn push_capped(out: &mut String, line: &str) {
    if line.len() <= MAX_LINE_BYTES {
        out.push_str(line);
        return;
    }
    let mut end = MAX_LINE_BYTES - TRUNCATED.len();
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    out.push_str(&line[..end]);
    out.push_str(TRUNCATED);
}

/// Every app's ring, by app name.
#[derive(Debug)]
pub struct AppLogs {
    capacity: usize,
    rings: Mutex<BTreeMap<String, Arc<LogRing>>>,
}

impl Default for AppLogs {
    fn default() -> AppLogs {
        AppLogs::new(DEFAULT_LOG_LINES)
    }
}

impl AppLogs {
    /// Rings of `capacity` lines each.
    pub fn new(capacity: usize) -> AppLogs {
        AppLogs {
            capacity,
            rings: Mutex::new(BTreeMap::new()),
        }
    }

    /// The ring of app `name`, created empty if it has none: the wiring
    /// keeps it and appends to it without looking the app up again.
    pub fn ring(&self, name: &str) -> Arc<LogRing> {
        self.lock()
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(LogRing::new(self.capacity)))
            .clone()
    }

    /// App `name`'s lines, oldest first (none if it has no ring).
    pub fn snapshot(&self, name: &str) -> Vec<String> {
        let ring = self.lock().get(name).cloned();
        ring.map(|ring| ring.snapshot()).unwrap_or_default()
    }

    /// Forgets app `name`'s lines (when it is undeployed).
    pub fn remove(&self, name: &str) {
        self.lock().remove(name);
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Arc<LogRing>>> {
        self.rings.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_never_grows_past_its_capacity_and_keeps_the_newest_lines() {
        let ring = LogRing::new(500);
        for i in 0..2_000 {
            ring.push(&format!("line {i}"));
            assert!(ring.len() <= 500, "{} lines after {i}", ring.len());
        }
        let lines = ring.snapshot();
        assert_eq!(lines.len(), 500);
        assert_eq!(lines.first().map(String::as_str), Some("line 1500"));
        assert_eq!(lines.last().map(String::as_str), Some("line 1999"));
        // A burst of many lines in one push is bounded the same way.
        ring.push(&"x\n".repeat(10_000));
        assert_eq!(ring.len(), 500);
        assert!(ring.snapshot().iter().all(|l| l == "x"));
    }

    #[test]
    fn text_is_split_into_lines_without_their_endings() {
        let ring = LogRing::new(10);
        ring.push("one\r\ntwo\nthree\n");
        ring.push("");
        ring.push_bytes(b"four \xff\n");
        assert_eq!(ring.snapshot(), vec!["one", "two", "three", "", "four \u{fffd}"]);
    }

    #[test]
    fn a_long_line_is_cut_at_a_character_boundary() {
        let ring = LogRing::new(3);
        // 'é' is two bytes: the cut must not split one.
        ring.push(&"é".repeat(MAX_LINE_BYTES));
        ring.push(&"a".repeat(MAX_LINE_BYTES));
        let lines = ring.snapshot();
        assert!(lines[0].len() <= MAX_LINE_BYTES, "{}", lines[0].len());
        assert!(lines[0].ends_with(TRUNCATED));
        assert!(lines[0].trim_end_matches(TRUNCATED).chars().all(|c| c == 'é'));
        assert_eq!(
            lines[1].len(),
            MAX_LINE_BYTES,
            "a line of exactly the cap is kept whole"
        );
        assert!(!lines[1].ends_with(TRUNCATED));
    }

    #[test]
    fn a_zero_capacity_keeps_one_line() {
        let ring = LogRing::new(0);
        ring.push("a\nb");
        assert_eq!(ring.snapshot(), vec!["b"]);
    }

    #[test]
    fn apps_have_separate_rings_and_a_removed_app_has_none() {
        let logs = AppLogs::new(2);
        let blog = logs.ring("blog");
        blog.push("a\nb\nc");
        logs.ring("shop").push("x");
        assert_eq!(logs.snapshot("blog"), vec!["b", "c"]);
        assert_eq!(logs.snapshot("shop"), vec!["x"]);
        assert!(Arc::ptr_eq(&blog, &logs.ring("blog")), "the same ring is handed out");
        logs.remove("blog");
        assert!(logs.snapshot("blog").is_empty());
        assert!(logs.snapshot("nobody").is_empty());
    }
}
