//! user rows.
