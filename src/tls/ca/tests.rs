//! Tests of the CA as a whole (to be written).
