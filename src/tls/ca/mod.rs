//! The dev CA (being built).
