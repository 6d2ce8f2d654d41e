//! HTTPS: the dev CA and the certificates the front door serves.
//!
//! - [`ca`]: the dev CA written in Rust with rcgen: the name-constrained
//!   root in `$RIP_HOME/ca/`, the leaves it signs (kept in
//!   `$RIP_HOME/certs/`), self-signed certificates for `https:quick`, and
//!   the `ca` subcommands' work (trust stores included).
//!
//! May import: `config`, `core`, `os`.

pub mod ca;
