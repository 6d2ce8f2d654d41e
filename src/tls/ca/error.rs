//! [`CaError`]: what went wrong, as the one line the command line prints.

use std::fmt;
use std::path::Path;

use super::NO_CA;

/// One-line error naming the file or the name; `Display` is the line the
/// CLI prints (`rip-server: <file or name>: <what>`, or exactly [`NO_CA`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaError {
    /// The file or name it is about; empty for [`CaError::no_ca`].
    subject: String,
    /// What is wrong with it.
    reason: String,
}

impl CaError {
    /// There is no CA in the home (Display: exactly [`NO_CA`]).
    pub fn no_ca() -> CaError {
        CaError {
            subject: String::new(),
            reason: NO_CA.to_string(),
        }
    }

    /// A problem with `path`.
    pub fn file(path: &Path, reason: impl Into<String>) -> CaError {
        CaError {
            subject: path.display().to_string(),
            reason: reason.into(),
        }
    }

    /// A problem with a host name (or another word).
    pub fn name(name: &str, reason: impl Into<String>) -> CaError {
        CaError {
            subject: name.to_string(),
            reason: reason.into(),
        }
    }

    /// Whether this is "no CA" (the line is then exactly [`NO_CA`]).
    pub fn is_no_ca(&self) -> bool {
        self.subject.is_empty() && self.reason == NO_CA
    }

    /// The file or name it is about (empty for "no CA").
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// What is wrong.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for CaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_no_ca() {
            return f.write_str(NO_CA);
        }
        // Whatever a user typed or a file is called, the line stays one line.
        let escape = |s: &str| -> String {
            s.chars()
                .flat_map(|c| {
                    let escaped: Vec<char> = if c.is_control() {
                        c.escape_default().collect()
                    } else {
                        vec![c]
                    };
                    escaped
                })
                .collect()
        };
        write!(f, "rip-server: {}: {}", escape(&self.subject), escape(&self.reason))
    }
}

impl std::error::Error for CaError {}
