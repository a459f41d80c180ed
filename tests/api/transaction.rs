//! transaction tests.
