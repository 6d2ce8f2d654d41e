//! The platform's API token: `$RIP_HOME/platform.token`.
//!
//! The first start creates it: 32 random bytes from the operating system,
//! written as 64 lowercase hex digits, mode 0600, atomically, in a 0700
//! home. Later starts read it back. The token is the one secret that drives
//! the API (it deploys code), so a file that is not a regular file, that
//! belongs to someone else, or that anyone but its owner can read is
//! refused (the contract: "a token or key file that others can read is
//! refused"); a file that is empty or garbled is reported with one line
//! naming it and left as it is, never replaced.
//!
//! An operator may put a token of their own in the file (from a secret
//! store, say): 32 to 256 characters of `A-Z a-z 0-9 - . _ ~`, the
//! characters that need no escaping in a URL query, a cookie or a header.

use std::fmt;
use std::fs;
use std::io::{self, Read as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use crate::config::home::{ensure_private_dir, write_private_atomically};

/// The token's file name in `$RIP_HOME`.
pub const TOKEN_FILE: &str = "platform.token";
/// How many random bytes a new token has (64 hex digits).
pub const TOKEN_BYTES: usize = 32;
/// The shortest token accepted from the file.
pub const MIN_TOKEN_LEN: usize = 32;
/// The longest token accepted from the file.
pub const MAX_TOKEN_LEN: usize = 256;
/// A token file larger than this is garbled without reading further.
const MAX_FILE_LEN: u64 = 4096;

/// The API token. Its `Debug` never shows it, so it cannot leak into a log
/// line through `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct PlatformToken(String);

impl fmt::Debug for PlatformToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlatformToken(<redacted>)")
    }
}

impl PlatformToken {
    /// A token from text, if it is one the file may hold (see the module
    /// doc); `None` otherwise.
    pub fn parse(text: &str) -> Option<PlatformToken> {
        let valid = (MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        valid.then(|| PlatformToken(text.to_owned()))
    }

    /// A fresh token: [`TOKEN_BYTES`] bytes from the operating system's
    /// random source, in hex.
    pub fn generate() -> Result<PlatformToken, getrandom::Error> {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes)?;
        let mut hex = String::with_capacity(TOKEN_BYTES * 2);
        for byte in bytes {
            hex.push_str(&format!("{byte:02x}"));
        }
        Ok(PlatformToken(hex))
    }

    /// The token's text (for the `Set-Cookie` header and the login URL;
    /// never for a log line).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, in time that does not depend on
    /// where they first differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        constant_time_eq(self.0.as_bytes(), presented)
    }

    /// The dashboard's login URL for the start line:
    /// `http://<admin>/?token=<token>`. An unspecified admin address
    /// (`0.0.0.0`, `::`) is printed as the loopback address of its family,
    /// which reaches it from this machine.
    pub fn login_url(&self, admin: SocketAddr) -> String {
        let ip = match admin.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}/?token={}", SocketAddr::new(ip, admin.port()), self.0)
    }
}

/// Whether `a` and `b` are equal, comparing every byte whatever the first
/// difference, so the time taken does not tell an attacker how much of a
/// guess was right. Lengths are compared first (the length of a token is
/// not a secret: every token we create has 64 characters).
///
/// Five lines instead of the `subtle` crate: the OR of XORs has no branch
/// on the data, and `black_box` keeps the optimiser from turning the fold
/// back into an early-exit comparison.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

/// Why the token file cannot be used.
#[derive(Debug)]
pub enum TokenProblem {
    /// Reading, creating or writing it failed.
    Io(io::Error),
    /// It is a symbolic link, a directory, a FIFO or anything but a file.
    NotARegularFile,
    /// It belongs to another user (uid given).
    OwnedByOther(u32),
    /// Its group or other users may read or write it (its mode given).
    OpenToOthers(u32),
    /// It is empty.
    Empty,
    /// It holds something that is not a token.
    Garbled,
    /// The operating system gave no random bytes for a new token.
    NoRandomness(getrandom::Error),
}

/// The token file and why it cannot be used: one line naming the file.
#[derive(Debug)]
pub struct TokenError {
    /// The token file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: TokenProblem,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.problem {
            TokenProblem::Io(e) => write!(f, "{path}: {e}"),
            TokenProblem::NotARegularFile => write!(f, "{path}: not a regular file; refused"),
            TokenProblem::OwnedByOther(uid) => {
                write!(f, "{path}: owned by uid {uid}, not by this user; refused")
            }
            TokenProblem::OpenToOthers(mode) => write!(
                f,
                "{path}: other users can access it (mode {:04o}); refused, run `chmod 600 {path}`",
                mode & 0o7777
            ),
            TokenProblem::Empty => write!(f, "{path}: empty; write a token into it or remove it"),
            TokenProblem::Garbled => write!(
                f,
                "{path}: not a token ({MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} characters of A-Z a-z 0-9 - . _ ~); \
                 fix it or remove it"
            ),
            TokenProblem::NoRandomness(e) => write!(f, "{path}: no random bytes for a new token: {e}"),
        }
    }
}

impl std::error::Error for TokenError {}

/// `<home>/platform.token`.
pub fn token_path(home: &Path) -> PathBuf {
    home.join(TOKEN_FILE)
}

/// The token of the platform whose home is `home`: read from
/// `platform.token`, or created there (with the home, 0700) when the file
/// does not exist yet. Every refusal is a [`TokenError`] naming the file;
/// nothing is written unless the file was missing.
pub fn load_or_create(home: &Path) -> Result<PlatformToken, TokenError> {
    let path = token_path(home);
    let error = |problem| TokenError {
        path: path.clone(),
        problem,
    };
    match read_token_file(&path) {
        Err(TokenError {
            problem: TokenProblem::Io(e),
            ..
        }) if e.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    let token = PlatformToken::generate().map_err(|e| error(TokenProblem::NoRandomness(e)))?;
    ensure_private_dir(home).map_err(|e| error(TokenProblem::Io(e)))?;
    let mut text = token.as_str().as_bytes().to_vec();
    text.push(b'\n');
    write_private_atomically(&path, &text).map_err(|e| error(TokenProblem::Io(e)))?;
    // Read back through the same checks: if another platform created the
    // file at the same moment, both use the one that won the rename.
    read_token_file(&path)
}

/// Reads and checks an existing token file. The file is opened without
/// following a symbolic link and without blocking on a FIFO, and its
/// checks are made on the opened file itself, so it cannot be swapped
/// between the check and the read.
pub fn read_token_file(path: &Path) -> Result<PlatformToken, TokenError> {
    let error = |problem| TokenError {
        path: path.to_owned(),
        problem,
    };
    let opened = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        // O_NOFOLLOW on a symbolic link fails with ELOOP.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(error(TokenProblem::NotARegularFile)),
        Err(e) => return Err(error(TokenProblem::Io(e))),
    };
    let meta = file.metadata().map_err(|e| error(TokenProblem::Io(e)))?;
    check_token_file(&FileFacts::of(&meta), rustix::process::geteuid().as_raw()).map_err(error)?;
    let mut text = String::new();
    file.take(MAX_FILE_LEN + 1)
        .read_to_string(&mut text)
        .map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => error(TokenProblem::Garbled),
            _ => error(TokenProblem::Io(e)),
        })?;
    if text.len() as u64 > MAX_FILE_LEN {
        return Err(error(TokenProblem::Garbled));
    }
    let trimmed = text.trim_ascii();
    if trimmed.is_empty() {
        return Err(error(TokenProblem::Empty));
    }
    PlatformToken::parse(trimmed).ok_or_else(|| error(TokenProblem::Garbled))
}

/// What the token checks need to know about a file, apart from the file
/// system so that every case can be tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFacts {
    /// A regular file (not a directory, FIFO, socket, device).
    pub is_file: bool,
    /// The owner's uid.
    pub uid: u32,
    /// `st_mode` (the permission bits are the low 12).
    pub mode: u32,
}

impl FileFacts {
    /// The facts of real metadata.
    pub fn of(meta: &fs::Metadata) -> FileFacts {
        FileFacts {
            is_file: meta.is_file(),
            uid: meta.uid(),
            mode: meta.mode(),
        }
    }
}

/// Whether a file with these facts may hold the token of user `euid`: a
/// regular file, owned by `euid`, that no group or other user can read,
/// write or run.
pub fn check_token_file(facts: &FileFacts, euid: u32) -> Result<(), TokenProblem> {
    if !facts.is_file {
        Err(TokenProblem::NotARegularFile)
    } else if facts.uid != euid {
        Err(TokenProblem::OwnedByOther(facts.uid))
    } else if facts.mode & 0o077 != 0 {
        Err(TokenProblem::OpenToOthers(facts.mode))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn the_first_start_creates_a_private_token_and_later_starts_read_it_back() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let first = load_or_create(&home).unwrap();
        assert_eq!(first.as_str().len(), 2 * TOKEN_BYTES);
        assert!(
            first
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(mode_of(&home), 0o700);
        assert_eq!(mode_of(&token_path(&home)), 0o600);
        let again = load_or_create(&home).unwrap();
        assert_eq!(again, first);
        let on_disk = fs::read_to_string(token_path(&home)).unwrap();
        assert_eq!(on_disk, format!("{}\n", first.as_str()));
        // Only the token file is left in the home (no temporary file).
        let names: Vec<_> = fs::read_dir(&home).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(TOKEN_FILE)]);
    }

    #[test]
    fn two_homes_get_different_tokens() {
        let tmp = tempfile::tempdir().unwrap();
        let a = load_or_create(&tmp.path().join("a")).unwrap();
        let b = load_or_create(&tmp.path().join("b")).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn a_token_file_others_can_read_is_refused_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        let token = load_or_create(home).unwrap();
        let path = token_path(home);
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o610] {
            chmod(&path, mode);
            let err = load_or_create(home).unwrap_err();
            assert!(
                matches!(err.problem, TokenProblem::OpenToOthers(m) if m & 0o777 == mode),
                "{err}"
            );
            let line = err.to_string();
            assert!(line.contains(&path.display().to_string()), "{line}");
            assert!(line.contains("refused"), "{line}");
            assert!(!line.contains('\n'), "{line}");
            assert!(!line.contains(token.as_str()), "the error shows the token: {line}");
        }
        // Kept as it was: same token, same (open) mode.
        assert_eq!(mode_of(&path), 0o610);
        assert_eq!(fs::read_to_string(&path).unwrap().trim(), token.as_str());
        chmod(&path, 0o400);
        assert_eq!(load_or_create(home).unwrap(), token, "0400 is private");
    }

    #[test]
    fn a_token_path_that_is_not_a_regular_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        // A symbolic link to a good token file: refused, not followed.
        let real = tmp.path().join("real");
        let good = load_or_create(&real).unwrap();
        let home = tmp.path().join("linked");
        fs::create_dir(&home).unwrap();
        std::os::unix::fs::symlink(token_path(&real), token_path(&home)).unwrap();
        let err = load_or_create(&home).unwrap_err();
        assert!(matches!(err.problem, TokenProblem::NotARegularFile), "{err}");
        assert_eq!(load_or_create(&real).unwrap(), good);
        // A directory where the file should be.
        let dir_home = tmp.path().join("dir");
        fs::create_dir_all(token_path(&dir_home)).unwrap();
        let err = load_or_create(&dir_home).unwrap_err();
        assert!(matches!(err.problem, TokenProblem::NotARegularFile), "{err}");
        // A FIFO: refused without blocking on the open.
        let fifo_home = tmp.path().join("fifo");
        fs::create_dir(&fifo_home).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            token_path(&fifo_home),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let err = load_or_create(&fifo_home).unwrap_err();
        assert!(matches!(err.problem, TokenProblem::NotARegularFile), "{err}");
    }

    #[test]
    fn an_empty_or_garbled_file_is_one_line_naming_it_and_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        let path = token_path(home);
        // (contents, whether it counts as empty rather than garbled)
        let long = [b'a'; 300];
        let cases: [(&[u8], bool); 6] = [
            (b"", true),
            (b"  \n\n", true),
            (b"short\n", false),
            (b"has spaces in the middle of a token value, long enough", false),
            (b"\xff\xfe not utf-8 at all, and long enough to be a token", false),
            (&long, false),
        ];
        for (contents, empty) in cases {
            write_private_atomically(&path, contents).unwrap();
            let err = load_or_create(home).unwrap_err();
            if empty {
                assert!(matches!(err.problem, TokenProblem::Empty), "{contents:?}: {err}");
            } else {
                assert!(matches!(err.problem, TokenProblem::Garbled), "{contents:?}: {err}");
            }
            let line = err.to_string();
            assert!(line.starts_with(&path.display().to_string()), "{line}");
            assert!(!line.contains('\n'), "{line}");
            assert_eq!(fs::read(&path).unwrap(), contents, "the file was changed");
        }
    }

    #[test]
    fn an_operators_own_token_is_used_with_surrounding_whitespace_trimmed() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        let own = "my-Own_token.from~a-secret-store-0123456789";
        write_private_atomically(&token_path(home), format!("  {own}\r\n").as_bytes()).unwrap();
        assert_eq!(load_or_create(home).unwrap().as_str(), own);
    }

    #[test]
    fn the_checks_on_file_facts() {
        let me = 1000;
        let file = |uid: u32, mode: u32| FileFacts {
            is_file: true,
            uid,
            mode: 0o100_000 | mode,
        };
        assert!(check_token_file(&file(me, 0o600), me).is_ok());
        assert!(check_token_file(&file(me, 0o400), me).is_ok());
        assert!(check_token_file(&file(me, 0o700), me).is_ok());
        assert!(matches!(
            check_token_file(&file(0, 0o600), me),
            Err(TokenProblem::OwnedByOther(0))
        ));
        for mode in [0o640, 0o604, 0o660, 0o606, 0o601, 0o610, 0o777] {
            assert!(
                matches!(
                    check_token_file(&file(me, mode), me),
                    Err(TokenProblem::OpenToOthers(_))
                ),
                "{mode:o}"
            );
        }
        let dir = FileFacts {
            is_file: false,
            uid: me,
            mode: 0o040_700,
        };
        assert!(matches!(check_token_file(&dir, me), Err(TokenProblem::NotARegularFile)));
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"xbc"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    proptest::proptest! {
        #[test]
        fn constant_time_eq_agrees_with_eq(a: Vec<u8>, b: Vec<u8>) {
            proptest::prop_assert_eq!(constant_time_eq(&a, &b), a == b);
            proptest::prop_assert!(constant_time_eq(&a, &a.clone()));
        }
    }

    #[test]
    fn the_token_never_shows_in_debug_and_the_login_url_reaches_the_admin() {
        let token = PlatformToken::parse(&"ab".repeat(32)).unwrap();
        assert_eq!(format!("{token:?}"), "PlatformToken(<redacted>)");
        assert!(token.matches("ab".repeat(32).as_bytes()));
        assert!(!token.matches("ab".repeat(31).as_bytes()));
        let t = "ab".repeat(32);
        assert_eq!(
            token.login_url("127.0.0.1:3000".parse().unwrap()),
            format!("http://127.0.0.1:3000/?token={t}")
        );
        assert_eq!(
            token.login_url("0.0.0.0:3000".parse().unwrap()),
            format!("http://127.0.0.1:3000/?token={t}")
        );
        assert_eq!(
            token.login_url("[::]:4000".parse().unwrap()),
            format!("http://[::1]:4000/?token={t}")
        );
        assert_eq!(
            token.login_url("10.0.0.5:3000".parse().unwrap()),
            format!("http://10.0.0.5:3000/?token={t}")
        );
    }

    #[test]
    fn parse_accepts_only_url_safe_tokens_of_a_sane_length() {
        assert!(PlatformToken::parse(&"a".repeat(MIN_TOKEN_LEN)).is_some());
        assert!(PlatformToken::parse(&"a".repeat(MAX_TOKEN_LEN)).is_some());
        assert!(PlatformToken::parse(&"a".repeat(MIN_TOKEN_LEN - 1)).is_none());
        assert!(PlatformToken::parse(&"a".repeat(MAX_TOKEN_LEN + 1)).is_none());
        for bad in [";", "=", " ", "%", "&", "\"", "é"] {
            let text = format!("{}{bad}", "a".repeat(MIN_TOKEN_LEN));
            assert!(PlatformToken::parse(&text).is_none(), "{text}");
        }
    }
}
