//! Invariants (filled in below).
