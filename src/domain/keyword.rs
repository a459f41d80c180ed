//! keyword.
