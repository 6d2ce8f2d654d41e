//! Worker runtime (being written).
