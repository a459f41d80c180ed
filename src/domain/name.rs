//! name.
