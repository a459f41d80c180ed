//! keyword tests.
