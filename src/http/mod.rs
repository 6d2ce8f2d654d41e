//! HTTP helpers shared by the front door and the upstream client: which
//! headers pass, and how header lines are written.
//!
//! May import: nothing of the crate's. The front door and `upstream` both
//! import this, so neither has to import the other.

pub mod headers;
