//! keyword rows.
