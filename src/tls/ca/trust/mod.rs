//! Trust stores (to be written).
