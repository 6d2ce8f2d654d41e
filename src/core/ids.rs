//! Identifiers the core hands out or receives.
//!
//! A worker *slot* ([`Slot`]) is the stable number `0..N-1` that the contract
//! calls `RIP_WORKER_ID`; a replacement keeps its slot. A worker *process* is
//! identified by its [`Pid`], which is unique among live processes, so the
//! core keys workers by pid: during a planned handover two processes of the
//! same slot are registered at once (the draining old one and its
//! replacement).

use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
        pub struct $name(pub $inner);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_type!(
    /// A request, numbered by the caller (unique for the life of the core).
    RequestId(u64)
);
id_type!(
    /// A worker slot, `0..N-1` (`RIP_WORKER_ID`).
    Slot(u32)
);
id_type!(
    /// A worker process (its operating-system pid, or any unique number in a simulation).
    Pid(u32)
);
id_type!(
    /// A worker generation (`RIP_VERSION`); it grows with every rolling restart.
    Version(u64)
);
