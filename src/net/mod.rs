//! The network edge below HTTP: listeners and the one accept loop
//! ([`listen`]), Unix socket files ([`unix_socket`]) and the byte streams
//! to workers ([`transport`]).
//!
//! May import: `os`. Nothing here knows about requests, workers' state or
//! the driver.

pub mod inherited;
pub mod listen;
pub mod transport;
pub mod unix_socket;
