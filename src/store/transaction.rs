//! transaction rows.
