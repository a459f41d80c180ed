//! user tests.
