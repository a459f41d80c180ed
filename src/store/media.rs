//! media rows.
